//! The durable issuing queue. A job is one stage entry of one participant; it is leased by one worker
//! at a time, records each finished step in `progress`, and is taken again after its lease runs out
//! if its worker died, resuming after the last recorded step.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{Backend, Store, now_ms};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Issue a certificate for a participant entering «Сформировать документ».
    Issue,
    /// Send an already issued certificate again (admin action).
    Resend,
    /// Run the whole pipeline again whatever the stage (admin action).
    Reissue,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issue => "issue",
            Self::Resend => "resend",
            Self::Reissue => "reissue",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "resend" => Self::Resend,
            "reissue" => Self::Reissue,
            _ => Self::Issue,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    Done,
    Problem,
    Failed,
    Ignored,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Problem => "problem",
            Self::Failed => "failed",
            Self::Ignored => "ignored",
        }
    }
    pub fn parse(s: &str) -> Self {
        match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "done" => Self::Done,
            "problem" => Self::Problem,
            "ignored" => Self::Ignored,
            _ => Self::Failed,
        }
    }
}

/// Steps of one job that are already done; saved after each step so a restart resumes, never repeats.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Set once the item was seen in «Сформировать документ»: later reads (after our own stage
    /// move) must not turn the job into "ignored".
    #[serde(default)]
    pub confirmed: bool,
    #[serde(default)]
    pub mail_sent: bool,
    #[serde(default)]
    pub message_id: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub pdf_sha256: Option<String>,
    /// The code printed and put in the QR, needed to write the QR after a restart.
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub crm_updated: bool,
    /// The problem comment was added (comments are not idempotent, so never twice).
    #[serde(default)]
    pub problem_commented: bool,
    /// How many times a later job took this stage entry over after a failure.
    #[serde(default)]
    pub resumed: u32,
}

/// A stage entry whose jobs keep failing is taken over this many times, then left to staff.
const MAX_RESUMES: u32 = 3;

/// What binding a job to a stage entry found.
#[derive(Debug, Clone, PartialEq)]
pub enum StageEntry {
    /// First job for this entry.
    New,
    /// The entry's earlier job failed; this one continues from its progress.
    Resumed(Progress),
    /// Another job served (or is serving) the entry.
    Served,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub participant_id: i64,
    pub kind: JobKind,
    /// The stage entry (`movedTime`) this job serves, once known.
    pub dedupe_key: Option<String>,
    pub state: JobState,
    pub attempts: i64,
    pub run_at: i64,
    pub last_error: Option<String>,
    pub progress: Progress,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A job leased by this worker: its id and the worker's name guard every write.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub job: Job,
    pub worker: String,
}

#[derive(Debug, Clone)]
pub struct JobEvent {
    pub job_id: i64,
    pub at: i64,
    pub step: String,
    pub outcome: String,
    pub message: String,
}

const COLUMNS: &str = "id, participant_id, kind, dedupe_key, state, attempts, run_at, last_error, \
    progress, created_at, updated_at";

fn from_row(row: &AnyRow) -> Result<Job, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    let progress: String = row.try_get("progress")?;
    Ok(Job {
        id: row.try_get("id")?,
        participant_id: row.try_get("participant_id")?,
        kind: JobKind::parse(&kind),
        dedupe_key: row.try_get("dedupe_key")?,
        state: JobState::parse(&state),
        attempts: row.try_get("attempts")?,
        run_at: row.try_get("run_at")?,
        last_error: row.try_get("last_error")?,
        progress: serde_json::from_str(&progress).unwrap_or_default(),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    /// Queues a job for a participant unless one is already waiting or running (`jobs_one_active`);
    /// true when a new job was queued. Duplicate hints for one stage entry collapse here.
    pub async fn enqueue(&self, participant_id: i64, kind: JobKind) -> anyhow::Result<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "INSERT INTO jobs (participant_id, kind, state, run_at, created_at, updated_at) \
             VALUES ($1, $2, 'queued', $3, $3, $3) ON CONFLICT DO NOTHING",
        )
        .bind(participant_id)
        .bind(kind.as_str())
        .bind(now)
        .execute(self.pool())
        .await
        .context("failed to queue the job")?;
        Ok(done.rows_affected() == 1)
    }

    /// Binds a leased job to the stage entry it serves (the item's `movedTime`). An entry another
    /// job already served is `Served`: this one must not issue again. An entry whose job failed
    /// (retries used up while Bitrix24 or the mail server was down) is taken over with the progress
    /// that job made, so the certificate still goes out, and its e-mail never twice.
    pub async fn bind_stage_entry(
        &self,
        claimed: &ClaimedJob,
        key: &str,
    ) -> anyhow::Result<StageEntry> {
        if claimed.job.dedupe_key.as_deref() == Some(key) {
            return Ok(StageEntry::New);
        }
        let holder = sqlx::query(
            "SELECT id, state, progress FROM jobs WHERE participant_id = $1 AND kind = $2 \
             AND dedupe_key = $3 AND id <> $4",
        )
        .bind(claimed.job.participant_id)
        .bind(claimed.job.kind.as_str())
        .bind(key)
        .bind(claimed.job.id)
        .fetch_optional(self.pool())
        .await?;
        // The key moves with the progress (an e-mail already sent stays sent) in one transaction,
        // and of two jobs racing for the entry exactly one gets it (the unique key guards the rest).
        let mut tx = self.pool().begin().await?;
        let mut inherited = None;
        if let Some(row) = holder {
            let state: String = row.try_get("state")?;
            let mut progress: Progress =
                serde_json::from_str(&row.try_get::<String, _>("progress")?).unwrap_or_default();
            if JobState::parse(&state) != JobState::Failed || progress.resumed >= MAX_RESUMES {
                return Ok(StageEntry::Served);
            }
            let freed = sqlx::query(
                "UPDATE jobs SET dedupe_key = $1, updated_at = $2 \
                 WHERE id = $3 AND state = 'failed' AND dedupe_key = $4",
            )
            .bind(format!("{key}~{}", claimed.job.id))
            .bind(now_ms())
            .bind(row.try_get::<i64, _>("id")?)
            .bind(key)
            .execute(&mut *tx)
            .await
            .context("failed to take over the failed job's stage entry")?;
            if freed.rows_affected() != 1 {
                return Ok(StageEntry::Served);
            }
            progress.resumed += 1;
            progress.confirmed = true;
            // A new problem deserves its own comment.
            progress.problem_commented = false;
            inherited = Some(progress);
        }
        let progress_json = inherited.as_ref().map(serde_json::to_string).transpose()?;
        let bound = sqlx::query(
            "UPDATE jobs SET dedupe_key = $1, progress = COALESCE($2, progress), updated_at = $3 \
             WHERE id = $4 AND leased_by = $5 AND state = 'running'",
        )
        .bind(key)
        .bind(progress_json)
        .bind(now_ms())
        .bind(claimed.job.id)
        .bind(&claimed.worker)
        .execute(&mut *tx)
        .await;
        match bound {
            Ok(done) if done.rows_affected() == 1 => {
                tx.commit()
                    .await
                    .context("failed to bind the job to its stage entry")?;
                Ok(inherited.map_or(StageEntry::New, StageEntry::Resumed))
            }
            Ok(_) => Ok(StageEntry::Served),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(StageEntry::Served),
            Err(e) => Err(e).context("failed to bind the job to its stage entry"),
        }
    }

    /// Leases up to `limit` ready jobs (queued and due, or running with an expired lease).
    pub async fn claim_jobs(
        &self,
        worker: &str,
        limit: i64,
        lease_ms: i64,
    ) -> anyhow::Result<Vec<ClaimedJob>> {
        let now = now_ms();
        let lock = match self.backend() {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            // SQLite serialises writers, so the UPDATE below is already atomic.
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE jobs SET state = 'running', lease_until = $1, leased_by = $2, \
             attempts = attempts + 1, updated_at = $3 \
             WHERE id IN (SELECT id FROM jobs WHERE (state = 'queued' AND run_at <= $3) \
               OR (state = 'running' AND lease_until < $3) ORDER BY run_at, id LIMIT $4 {lock}) \
             RETURNING {COLUMNS}"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(now + lease_ms)
            .bind(worker)
            .bind(now)
            .bind(limit)
            .fetch_all(self.pool())
            .await
            .context("failed to claim jobs")?;
        let mut jobs = rows
            .iter()
            .map(from_row)
            .collect::<Result<Vec<_>, _>>()
            .context("job row has an unexpected shape")?;
        jobs.sort_by_key(|j| (j.run_at, j.id));
        Ok(jobs
            .into_iter()
            .map(|job| ClaimedJob {
                job,
                worker: worker.to_string(),
            })
            .collect())
    }

    /// Saves finished steps; false when the lease was lost (another worker took the job over).
    pub async fn save_progress(&self, claimed: &ClaimedJob, lease_ms: i64) -> anyhow::Result<bool> {
        let now = now_ms();
        let progress = serde_json::to_string(&claimed.job.progress)?;
        let done = sqlx::query(
            "UPDATE jobs SET progress = $1, lease_until = $2, updated_at = $3 \
             WHERE id = $4 AND leased_by = $5 AND state = 'running'",
        )
        .bind(progress)
        .bind(now + lease_ms)
        .bind(now)
        .bind(claimed.job.id)
        .bind(&claimed.worker)
        .execute(self.pool())
        .await
        .context("failed to save job progress")?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends a leased job in a final state.
    pub async fn finish_job(
        &self,
        claimed: &ClaimedJob,
        state: JobState,
        error: Option<&str>,
    ) -> anyhow::Result<()> {
        let now = now_ms();
        let progress = serde_json::to_string(&claimed.job.progress)?;
        sqlx::query(
            "UPDATE jobs SET state = $1, last_error = $2, progress = $3, lease_until = NULL, \
             updated_at = $4 WHERE id = $5 AND leased_by = $6",
        )
        .bind(state.as_str())
        .bind(error)
        .bind(progress)
        .bind(now)
        .bind(claimed.job.id)
        .bind(&claimed.worker)
        .execute(self.pool())
        .await
        .context("failed to finish the job")?;
        Ok(())
    }

    /// Puts a leased job back in the queue to run again at `run_at`.
    pub async fn retry_job(
        &self,
        claimed: &ClaimedJob,
        run_at: i64,
        error: &str,
    ) -> anyhow::Result<()> {
        self.requeue(claimed, run_at, error, false).await
    }

    /// Like `retry_job`, but the attempt is given back: the job did nothing wrong, the portal asked
    /// it to wait (a method blocked by its time limit).
    pub async fn postpone_job(
        &self,
        claimed: &ClaimedJob,
        run_at: i64,
        error: &str,
    ) -> anyhow::Result<()> {
        self.requeue(claimed, run_at, error, true).await
    }

    async fn requeue(
        &self,
        claimed: &ClaimedJob,
        run_at: i64,
        error: &str,
        refund_attempt: bool,
    ) -> anyhow::Result<()> {
        let now = now_ms();
        let progress = serde_json::to_string(&claimed.job.progress)?;
        sqlx::query(
            "UPDATE jobs SET state = 'queued', run_at = $1, last_error = $2, progress = $3, \
             attempts = CASE WHEN attempts >= $7 THEN attempts - $7 ELSE 0 END, \
             lease_until = NULL, leased_by = NULL, updated_at = $4 WHERE id = $5 AND leased_by = $6",
        )
        .bind(run_at)
        .bind(error)
        .bind(progress)
        .bind(now)
        .bind(claimed.job.id)
        .bind(&claimed.worker)
        .bind(i64::from(refund_attempt))
        .execute(self.pool())
        .await
        .context("failed to reschedule the job")?;
        Ok(())
    }

    /// Extends every lease `worker` holds: the heartbeat of a worker busy with a batch.
    pub async fn renew_leases(&self, worker: &str, lease_ms: i64) -> anyhow::Result<u64> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE jobs SET lease_until = $1 WHERE leased_by = $2 AND state = 'running'",
        )
        .bind(now + lease_ms)
        .bind(worker)
        .execute(self.pool())
        .await
        .context("failed to renew leases")?;
        Ok(done.rows_affected())
    }

    /// Releases leases held by `worker` (graceful shutdown), so another worker can start at once.
    pub async fn release_jobs(&self, worker: &str) -> anyhow::Result<u64> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE jobs SET state = 'queued', lease_until = NULL, leased_by = NULL, \
             attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, updated_at = $1 \
             WHERE leased_by = $2 AND state = 'running'",
        )
        .bind(now)
        .bind(worker)
        .execute(self.pool())
        .await
        .context("failed to release jobs")?;
        Ok(done.rows_affected())
    }

    /// SQLite serves one instance: at start-up, whatever it had running died with the last process.
    pub async fn release_orphans(&self) -> anyhow::Result<u64> {
        if self.backend() != Backend::Sqlite {
            return Ok(0);
        }
        let done = sqlx::query(
            "UPDATE jobs SET state = 'queued', lease_until = NULL, leased_by = NULL, updated_at = $1 \
             WHERE state = 'running'",
        )
        .bind(now_ms())
        .execute(self.pool())
        .await
        .context("failed to release orphaned jobs")?;
        Ok(done.rows_affected())
    }

    /// Makes a waiting or failed job run now (admin "retry now").
    pub async fn retry_now(&self, job_id: i64) -> anyhow::Result<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE jobs SET state = 'queued', run_at = $1, attempts = 0, updated_at = $1 \
             WHERE id = $2 AND state IN ('queued', 'failed')",
        )
        .bind(now)
        .bind(job_id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn jobs_in_states(
        &self,
        states: &[JobState],
        limit: i64,
    ) -> anyhow::Result<Vec<Job>> {
        let list = states
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM jobs WHERE state IN ({list}) ORDER BY run_at, id LIMIT $1"
        )))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// Jobs not yet finished: queued or running.
    pub async fn pending_job_count(&self) -> anyhow::Result<i64> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')")
                .fetch_one(self.pool())
                .await?;
        Ok(n)
    }

    pub async fn record_job_event(
        &self,
        job: &Job,
        step: &str,
        outcome: &str,
        message: &str,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO job_events (job_id, participant_id, at, step, outcome, message) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(job.id)
        .bind(job.participant_id)
        .bind(now_ms())
        .bind(step)
        .bind(outcome)
        .bind(message)
        .execute(self.pool())
        .await
        .context("failed to record the job event")?;
        Ok(())
    }

    pub async fn job_events(&self, participant_id: i64) -> anyhow::Result<Vec<JobEvent>> {
        let rows = sqlx::query(
            "SELECT job_id, at, step, outcome, message FROM job_events \
             WHERE participant_id = $1 ORDER BY at, id",
        )
        .bind(participant_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(JobEvent {
                    job_id: r.try_get("job_id")?,
                    at: r.try_get("at")?,
                    step: r.try_get("step")?,
                    outcome: r.try_get("outcome")?,
                    message: r.try_get("message")?,
                })
            })
            .collect()
    }
}
