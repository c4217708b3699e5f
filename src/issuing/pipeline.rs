//! One job, step by step. Each finished step is saved in the job's progress before the next
//! begins, so a crash anywhere resumes where it stopped and the e-mail goes out at most once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;

use super::prefetch::Prefetch;
use super::prepare::{PrepareError, Prepared, prepare};
use crate::bitrix::{BitrixError, Crm, Participant, Stages};
use crate::domain::CertificateCode;
use crate::mail::{Letter, MailError, Mailer};
use crate::render::{QrMatrix, RenderError, Renderer};
use crate::store::{
    CertificateStatus, ClaimedJob, IssuedSnapshot, JobKind, JobState, StageEntry, Store, now_ms,
};

#[derive(Debug, Clone)]
pub struct IssuerConfig {
    pub subject_template: String,
    pub max_attempts: u32,
    pub lease: Duration,
    /// First retry delay; doubles per attempt up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Jobs a worker takes at once (bulk reads, batched writes); 1 turns batching off.
    pub batch_size: usize,
}

impl Default for IssuerConfig {
    fn default() -> Self {
        Self {
            subject_template: crate::config::DEFAULT_SUBJECT.into(),
            max_attempts: 8,
            lease: Duration::from_secs(120),
            base_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(600),
            batch_size: 50,
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct IssuingStats {
    pub issued: AtomicU64,
    pub problems: AtomicU64,
    pub failures: AtomicU64,
    pub retries: AtomicU64,
}

/// Everything a worker needs; cheap to clone.
#[derive(Clone)]
pub struct Issuer {
    pub store: Store,
    pub crm: Crm,
    pub stages: Arc<Stages>,
    pub renderer: Arc<Renderer>,
    pub mailer: Mailer,
    pub config: Arc<IssuerConfig>,
    pub stats: Arc<IssuingStats>,
    pub wake: Arc<tokio::sync::Notify>,
}

/// A job whose e-mail went out and whose QR and stage are still to be written to the CRM.
pub struct Completion {
    pub claimed: ClaimedJob,
    pub stage: String,
    pub qr: Vec<u8>,
}

enum Step {
    Finish(JobState),
    /// What is left: write the QR and move the stage.
    Complete {
        stage: String,
        qr: Vec<u8>,
    },
}

/// How a job run ended, when it did not finish.
enum Stop {
    /// Staff must fix something: comment, move to «Проблемные».
    Problem(String),
    /// Try again later.
    Transient(String),
    /// The portal blocks a method until `run_at` (ms): wait for it without spending an attempt.
    Postponed { run_at: i64, error: String },
    /// Another worker owns the job now; leave it alone.
    LeaseLost,
}

impl From<BitrixError> for Stop {
    fn from(e: BitrixError) -> Self {
        if let Some(until) = e.retry_at() {
            let run_at = until
                .duration_since(std::time::UNIX_EPOCH)
                .map_or_else(|_| now_ms(), |d| d.as_millis() as i64);
            Stop::Postponed {
                run_at,
                error: e.to_string(),
            }
        } else if e.is_temporary() {
            Stop::Transient(e.to_string())
        } else {
            Stop::Problem(format!("ошибка Bitrix24: {e}"))
        }
    }
}

impl From<anyhow::Error> for Stop {
    fn from(e: anyhow::Error) -> Self {
        Stop::Transient(format!("{e:#}"))
    }
}

impl Issuer {
    /// Runs one claimed job to its end (done, problem, retry later or ignored). With `defer`, the
    /// final CRM write is handed back instead, for a batched write of many jobs.
    #[tracing::instrument(skip_all, fields(job = claimed.job.id, participant = claimed.job.participant_id))]
    pub async fn run_job(
        &self,
        mut claimed: ClaimedJob,
        prefetch: &Prefetch,
        defer: bool,
    ) -> anyhow::Result<Option<Completion>> {
        match self.steps(&mut claimed, prefetch).await {
            Ok(Step::Finish(state)) => self.store.finish_job(&claimed, state, None).await?,
            Ok(Step::Complete { stage, qr }) if defer => {
                return Ok(Some(Completion { claimed, stage, qr }));
            }
            Ok(Step::Complete { stage, qr }) => {
                let pid = claimed.job.participant_id as u64;
                let result = self.crm.complete(pid, &stage, &qr).await;
                self.complete(claimed, result).await?;
            }
            Err(stop) => self.stop(claimed, stop).await?,
        }
        Ok(None)
    }

    /// Ends a job after the (possibly batched) write of its QR and stage.
    pub async fn complete(
        &self,
        mut claimed: ClaimedJob,
        result: Result<(), BitrixError>,
    ) -> anyhow::Result<()> {
        match result {
            Ok(()) => {
                claimed.job.progress.crm_updated = true;
                self.store
                    .record_job_event(
                        &claimed.job,
                        "crm",
                        "ok",
                        "QR сохранён, участник переведён в «Выслан файл»",
                    )
                    .await?;
                self.store.finish_job(&claimed, JobState::Done, None).await
            }
            Err(e) if !e.is_temporary() => {
                let reason = format!(
                    "сертификат отправлен, но участника не удалось перевести в «Выслан файл»: {e}"
                );
                self.stop(claimed, Stop::Problem(reason)).await
            }
            Err(e) => self.stop(claimed, e.into()).await,
        }
    }

    async fn stop(&self, mut claimed: ClaimedJob, stop: Stop) -> anyhow::Result<()> {
        match stop {
            Stop::LeaseLost => {
                tracing::warn!("lease lost; another worker continues this job");
            }
            Stop::Problem(reason) => {
                self.problem(&mut claimed, &reason, CertificateStatus::Problem)
                    .await?;
            }
            Stop::Postponed { run_at, error } => {
                tracing::warn!(%error, "job postponed until the portal lifts its limit");
                self.store
                    .record_job_event(&claimed.job, "retry", "postponed", &error)
                    .await?;
                self.store.postpone_job(&claimed, run_at, &error).await?;
            }
            Stop::Transient(error) => {
                let attempts = claimed.job.attempts.max(1) as u32;
                if attempts >= self.config.max_attempts {
                    let reason = format!(
                        "не удалось выдать сертификат за {attempts} попыток; последняя ошибка: {error}"
                    );
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    self.problem(&mut claimed, &reason, CertificateStatus::Failed)
                        .await?;
                } else {
                    let delay = self.backoff(attempts);
                    tracing::warn!(%error, attempts, "job failed; retrying in {delay:?}");
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    self.store
                        .record_job_event(&claimed.job, "retry", "error", &error)
                        .await?;
                    self.store
                        .retry_job(&claimed, now_ms() + delay.as_millis() as i64, &error)
                        .await?;
                }
            }
        }
        Ok(())
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let exp = self
            .config
            .base_backoff
            .saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1)));
        let capped = exp.min(self.config.max_backoff);
        capped.mul_f64(rand::rng().random_range(0.8..1.2))
    }

    async fn save(&self, claimed: &ClaimedJob) -> Result<(), Stop> {
        let lease = self.config.lease.as_millis() as i64;
        if self.store.save_progress(claimed, lease).await? {
            Ok(())
        } else {
            Err(Stop::LeaseLost)
        }
    }

    /// The steps, up to the final CRM write.
    async fn steps(&self, claimed: &mut ClaimedJob, prefetch: &Prefetch) -> Result<Step, Stop> {
        let pid = claimed.job.participant_id as u64;
        let Some(participant) = prefetch.participant(&self.crm, pid).await? else {
            self.note(claimed, "read", "ignored", "участник не найден в CRM")
                .await?;
            return Ok(Step::Finish(JobState::Ignored));
        };

        if !claimed.job.progress.confirmed {
            if claimed.job.kind == JobKind::Issue {
                if !self.stages.generate.contains(&participant.stage_id) {
                    let msg = format!(
                        "участник в стадии {}, не «Сформировать документ»",
                        participant.stage_id
                    );
                    self.note(claimed, "read", "ignored", &msg).await?;
                    return Ok(Step::Finish(JobState::Ignored));
                }
                let entry = format!("{}@{}", participant.stage_id, participant.moved_time);
                match self.store.bind_stage_entry(claimed, &entry).await? {
                    StageEntry::New => {}
                    StageEntry::Resumed(progress) => {
                        claimed.job.progress = progress;
                        self.note(
                            claimed,
                            "read",
                            "resumed",
                            "продолжение выдачи, прерванной после исчерпания попыток",
                        )
                        .await?;
                    }
                    StageEntry::Served => {
                        self.note(
                            claimed,
                            "read",
                            "ignored",
                            "этот переход в стадию уже обработан",
                        )
                        .await?;
                        return Ok(Step::Finish(JobState::Ignored));
                    }
                }
                claimed.job.dedupe_key = Some(entry);
            }
            claimed.job.progress.confirmed = true;
            self.save(claimed).await?;
        }

        if !claimed.job.progress.mail_sent {
            self.render_and_send(claimed, &participant, prefetch)
                .await?;
        }
        if claimed.job.kind == JobKind::Resend || claimed.job.progress.crm_updated {
            return Ok(Step::Finish(JobState::Done));
        }

        let code = claimed
            .job
            .progress
            .code
            .as_deref()
            .and_then(|c| CertificateCode::parse(c).ok())
            .ok_or_else(|| Stop::Transient("progress lost the certificate code".into()))?;
        let qr = QrMatrix::encode(&code.to_string()).to_png(8);
        let Some(stage) = Stages::target(&self.stages.sent, participant.category_id) else {
            return Err(Stop::Problem(format!(
                "в воронке {} нет стадии «Выслан файл»",
                participant.category_id.unwrap_or_default()
            )));
        };
        Ok(Step::Complete {
            stage: stage.clone(),
            qr,
        })
    }

    async fn render_and_send(
        &self,
        claimed: &mut ClaimedJob,
        participant: &Participant,
        prefetch: &Prefetch,
    ) -> Result<(), Stop> {
        let prepared: Prepared =
            match prepare(&self.crm, prefetch, &self.renderer, participant).await {
                Ok(p) => p,
                Err(PrepareError::Problem(reason)) => return Err(Stop::Problem(reason)),
                Err(PrepareError::Bitrix(e)) => return Err(e.into()),
            };
        let rendered = self
            .renderer
            .render(&prepared.template, &prepared.data)
            .map_err(|e| match e {
                RenderError::MissingGlyph { .. } | RenderError::UnknownTemplate(_) => {
                    Stop::Problem(format!("сертификат не сформирован: {e}"))
                }
                RenderError::Background(_) | RenderError::Write(_) => {
                    Stop::Transient(e.to_string())
                }
            })?;
        let data = &prepared.data;
        let code = data.code().to_string();
        self.store
            .record_rendered(&IssuedSnapshot {
                number: data.number as i64,
                code: code.clone(),
                event_id: Some(prepared.event_id as i64),
                template: prepared.template.clone(),
                last_name: data.last_name.clone(),
                first_name: data.first_name.clone(),
                second_name: data.second_name.clone(),
                event_title: data.event_title.clone(),
                points: i64::from(data.points.value()),
                points_text: data.points.text().to_string(),
                email: Some(prepared.email.to_string()),
                pdf_sha256: rendered.sha256.clone(),
            })
            .await?;
        // One id per job: a resend after a crash between acceptance and our record repeats it.
        let message_id = format!(
            "<certificate-{}-{}@{}>",
            data.number,
            claimed.job.id,
            self.mailer.from_domain()
        );
        let subject = self
            .config
            .subject_template
            .replace("{event}", &data.event_title)
            .replace("{number}", &data.number.to_string());
        let letter = Letter {
            to: &prepared.email,
            subject,
            body: &prepared.letter,
            attachment_name: format!("Сертификат-{}.pdf", data.number),
            pdf: &rendered.pdf,
            message_id: message_id.clone(),
        };
        // Renew the lease (and make sure it is still ours) right before the one step that cannot be
        // taken back.
        self.save(claimed).await?;
        match self.mailer.send(letter).await {
            Ok(()) => {}
            Err(MailError::Permanent(e)) => {
                return Err(Stop::Problem(format!(
                    "почтовый сервер отклонил письмо на {}: {e}",
                    prepared.email
                )));
            }
            Err(MailError::Transient(e)) => return Err(Stop::Transient(e)),
        }
        let progress = &mut claimed.job.progress;
        progress.mail_sent = true;
        progress.message_id = Some(message_id.clone());
        progress.email = Some(prepared.email.to_string());
        progress.pdf_sha256 = Some(rendered.sha256.clone());
        progress.code = Some(code);
        // Recorded at once: from here on a restart must not send again.
        self.save(claimed).await?;
        self.store
            .mark_sent(data.number as i64, &message_id)
            .await?;
        self.stats.issued.fetch_add(1, Ordering::Relaxed);
        let msg = format!("письмо отправлено на {}", prepared.email);
        self.note(claimed, "mail", "ok", &msg).await?;
        Ok(())
    }

    /// Comments the reason in the CRM, moves the participant to «Проблемные» and records it.
    async fn problem(
        &self,
        claimed: &mut ClaimedJob,
        reason: &str,
        status: CertificateStatus,
    ) -> anyhow::Result<()> {
        tracing::warn!(reason, "participant goes to the problem stage");
        self.stats.problems.fetch_add(1, Ordering::Relaxed);
        let pid = claimed.job.participant_id as u64;
        let mut crm_error = None;
        if !claimed.job.progress.problem_commented {
            let comment = format!("Сертификат не выслан: {reason}.");
            match self.crm.comment(pid, &comment).await {
                Ok(()) => claimed.job.progress.problem_commented = true,
                Err(e) => crm_error = Some(e),
            }
        }
        // A re-send leaves the participant where it is: the certificate itself stands. A comment
        // the portal refuses for good must not keep the participant in «Сформировать документ».
        let comment_may_wait = crm_error.as_ref().is_some_and(BitrixError::is_temporary);
        if !comment_may_wait && claimed.job.kind != JobKind::Resend {
            let category = match self.crm.participant(pid).await {
                Ok(p) => p.and_then(|p| p.category_id),
                Err(_) => None,
            };
            if let Some(stage) = Stages::target(&self.stages.problem, category)
                && let Err(e) = self.crm.move_to(pid, stage).await
            {
                crm_error = Some(e);
            }
        }
        // Staff must see the reason in the CRM: while Bitrix24 is only briefly unreachable, try again.
        if let Some(e) = crm_error.filter(BitrixError::is_temporary) {
            if (claimed.job.attempts.max(1) as u32) < self.config.max_attempts {
                let delay = self.backoff(claimed.job.attempts.max(1) as u32);
                let error = format!("{reason}; CRM: {e}");
                self.store
                    .record_job_event(&claimed.job, "crm", "error", &error)
                    .await?;
                return self
                    .store
                    .retry_job(claimed, now_ms() + delay.as_millis() as i64, &error)
                    .await;
            }
            tracing::error!(error = %e, "could not report the problem in Bitrix24");
        }
        if !claimed.job.progress.mail_sent {
            self.store.mark_problem(pid as i64, status, reason).await?;
        }
        self.store
            .record_job_event(&claimed.job, "problem", "problem", reason)
            .await?;
        let state = if status == CertificateStatus::Failed {
            JobState::Failed
        } else {
            JobState::Problem
        };
        self.store.finish_job(claimed, state, Some(reason)).await
    }

    async fn note(
        &self,
        claimed: &ClaimedJob,
        step: &str,
        outcome: &str,
        message: &str,
    ) -> Result<(), Stop> {
        self.store
            .record_job_event(&claimed.job, step, outcome, message)
            .await?;
        Ok(())
    }
}
