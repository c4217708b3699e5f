//! Public verification: is the certificate behind a code authentic, and why. The CRM is the source
//! of truth; this service's registry adds what was printed and revocations. A CRM that cannot be
//! asked never makes a certificate look fake: the verdict is then "cannot check now".

pub mod api;
mod cache;
pub mod decode;
pub mod pages;
mod ratelimit;

pub use ratelimit::IpLimiter;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::bitrix::{BitrixError, Contact, Crm, EventCard, LeakyBucket, Participant, Stages};
use crate::domain::{CertificateCode, Points};
use crate::store::{CertificateRecord, CertificateStatus, Store};
use cache::{CrmView, LookupCache};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Authentic,
    NotAuthentic,
    NotFound,
    Unavailable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckResult {
    Passed,
    Failed,
    Unknown,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub result: CheckResult,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CertificateInfo {
    pub number: u64,
    pub holder: String,
    pub event: String,
    pub points: u32,
    pub points_text: String,
    pub issued_at: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub code: String,
    pub status: Status,
    pub checks: Vec<Check>,
    pub certificate: Option<CertificateInfo>,
}

impl Verification {
    /// One sentence for the page's headline.
    pub fn headline(&self) -> &'static str {
        match self.status {
            Status::Authentic => "Сертификат подлинный",
            Status::NotAuthentic => "Сертификат не подтверждён",
            Status::NotFound => "Сертификат не найден",
            Status::Unavailable => "Проверить сейчас не удалось",
        }
    }

    pub fn status_class(&self) -> &'static str {
        match self.status {
            Status::Authentic => "authentic",
            Status::NotAuthentic => "not_authentic",
            Status::NotFound => "not_found",
            Status::Unavailable => "unavailable",
        }
    }

    /// Why, in one sentence: the first failed or unknown check.
    pub fn reason(&self) -> String {
        self.checks
            .iter()
            .find(|c| c.result != CheckResult::Passed)
            .map_or_else(
                || {
                    "Все проверки пройдены: сертификат выдан Томским политехническим университетом."
                        .into()
                },
                |c| c.message.clone(),
            )
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct VerifyStats {
    pub authentic: AtomicU64,
    pub not_authentic: AtomicU64,
    pub not_found: AtomicU64,
    pub unavailable: AtomicU64,
}

#[derive(Clone)]
pub struct Verifier {
    store: Store,
    crm: Option<Crm>,
    stages: Arc<Stages>,
    cache: Arc<LookupCache>,
    /// Verification's own share of the REST budget, so issuing keeps going under any traffic.
    budget: Arc<LeakyBucket>,
    full_name: bool,
    pub stats: Arc<VerifyStats>,
}

fn check(name: &'static str, result: CheckResult, message: impl Into<String>) -> Check {
    Check {
        name,
        result,
        message: message.into(),
    }
}

impl Verifier {
    pub fn new(
        store: Store,
        crm: Option<Crm>,
        stages: Arc<Stages>,
        ttl: Duration,
        rate: f64,
        full_name: bool,
    ) -> Self {
        let rate = rate.max(0.05);
        Self {
            store,
            crm,
            stages,
            cache: Arc::new(LookupCache::new(ttl, ttl.min(Duration::from_secs(30)))),
            budget: Arc::new(LeakyBucket::new(rate, (rate * 10.0).ceil() as u32)),
            full_name,
            stats: Arc::default(),
        }
    }

    pub fn forget(&self, participant_id: u64) {
        self.cache.remove(participant_id);
    }

    pub async fn verify(&self, code: CertificateCode) -> Verification {
        let v = self.run_checks(code).await;
        let counter = match v.status {
            Status::Authentic => &self.stats.authentic,
            Status::NotAuthentic => &self.stats.not_authentic,
            Status::NotFound => &self.stats.not_found,
            Status::Unavailable => &self.stats.unavailable,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        v
    }

    async fn run_checks(&self, code: CertificateCode) -> Verification {
        let id = code.participant_id();
        let mut checks = vec![check(
            "format",
            CheckResult::Passed,
            "Код сертификата записан верно.",
        )];
        let record = match self.store.certificate(id as i64).await {
            Ok(r) => r.filter(|r| r.status == CertificateStatus::Sent || r.is_revoked()),
            Err(e) => {
                tracing::error!(error = ?e, "registry unavailable during verification");
                None
            }
        };
        let view = self.crm_view(id).await;
        let view = match view {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "Bitrix24 unavailable during verification");
                checks.push(check(
                    "participant",
                    CheckResult::Unknown,
                    "CRM университета сейчас недоступна, проверка невозможна. Попробуйте через несколько минут.",
                ));
                let certificate = record.as_ref().map(|r| self.info_from_record(r));
                return self.finish(code, checks, certificate, Status::Unavailable);
            }
        };

        let Some(participant) = view.participant.clone() else {
            if let Some(r) = &record {
                checks.push(check(
                    "participant",
                    CheckResult::Failed,
                    "Запись участника удалена из CRM университета.",
                ));
                checks.push(check(
                    "revoked",
                    CheckResult::Failed,
                    "Сертификат аннулирован: участник удалён из CRM.",
                ));
                let info = self.info_from_record(r);
                return self.finish(code, checks, Some(info), Status::NotAuthentic);
            }
            checks.push(check(
                "participant",
                CheckResult::Failed,
                format!("Участник №{id} не найден: сертификата с таким номером не существует."),
            ));
            return self.finish(code, checks, None, Status::NotFound);
        };
        checks.push(check(
            "participant",
            CheckResult::Passed,
            format!("Участник №{id} найден в CRM университета."),
        ));

        let event_ok = view
            .event
            .as_ref()
            .is_some_and(|e| e.template.is_some() && e.title.is_some());
        checks.push(if event_ok {
            check(
                "event",
                CheckResult::Passed,
                "Участник относится к мероприятию, по которому выдаются сертификаты.",
            )
        } else {
            check(
                "event",
                CheckResult::Failed,
                "Участник не относится к мероприятию, по которому выдаются сертификаты.",
            )
        });

        let in_sent = self
            .stages
            .sent
            .values()
            .any(|s| *s == participant.stage_id);
        let issued = in_sent
            || record
                .as_ref()
                .is_some_and(|r| r.status == CertificateStatus::Sent);
        let in_problem = self
            .stages
            .problem
            .values()
            .any(|s| *s == participant.stage_id);
        checks.push(if issued {
            check("issued", CheckResult::Passed, "Сертификат выдан участнику.")
        } else if in_problem {
            check(
                "issued",
                CheckResult::Failed,
                "Сертификат не выдан: при его выдаче возникла проблема.",
            )
        } else {
            check(
                "issued",
                CheckResult::Failed,
                "Сертификат этому участнику не выдавался.",
            )
        });

        let expected = record
            .as_ref()
            .map(|r| r.snapshot.points as u32)
            .or_else(|| effective_points(&participant, view.event.as_ref()).map(|p| p.value()));
        checks.push(match expected {
            Some(p) if p == code.points() => check(
                "points",
                CheckResult::Passed,
                format!(
                    "Баллы в коде ({}) совпадают с баллами сертификата.",
                    code.points()
                ),
            ),
            Some(p) => check(
                "points",
                CheckResult::Failed,
                format!(
                    "Баллы в коде ({}) не совпадают с баллами сертификата ({p}).",
                    code.points()
                ),
            ),
            None => check(
                "points",
                CheckResult::Failed,
                "Баллы сертификата не заданы.",
            ),
        });

        let revoked = record.as_ref().filter(|r| r.is_revoked());
        checks.push(match revoked {
            Some(r) => check(
                "revoked",
                CheckResult::Failed,
                format!(
                    "Сертификат аннулирован{}.",
                    r.revoked_reason
                        .as_deref()
                        .map(|x| format!(": {x}"))
                        .unwrap_or_default()
                ),
            ),
            None => check("revoked", CheckResult::Passed, "Сертификат не аннулирован."),
        });

        let certificate = match &record {
            Some(r) => Some(self.info_from_record(r)),
            None => self.info_from_crm(&participant, &view),
        };
        let status = if checks.iter().all(|c| c.result == CheckResult::Passed) {
            Status::Authentic
        } else {
            Status::NotAuthentic
        };
        self.finish(code, checks, certificate, status)
    }

    fn finish(
        &self,
        code: CertificateCode,
        checks: Vec<Check>,
        certificate: Option<CertificateInfo>,
        status: Status,
    ) -> Verification {
        Verification {
            code: code.to_string(),
            status,
            checks,
            certificate,
        }
    }

    async fn crm_view(&self, id: u64) -> Result<Arc<CrmView>, BitrixError> {
        if let Some(v) = self.cache.get(id) {
            return Ok(v);
        }
        let Some(crm) = &self.crm else {
            return Err(BitrixError::Transport {
                method: "crm.item.get".into(),
                message: "Bitrix24 is not configured".into(),
            });
        };
        let participant = self.budgeted(crm.participant(id)).await?;
        let mut view = CrmView {
            participant,
            event: None,
            contact: None,
        };
        if let Some(p) = &view.participant {
            if let Some(event_id) = p.event_id {
                view.event = self.budgeted(crm.event(event_id)).await?;
            }
            if let Some(contact_id) = p.contact_id {
                view.contact = self.budgeted(crm.contact(contact_id)).await?;
            }
        }
        let view = Arc::new(view);
        self.cache.put(id, view.clone());
        Ok(view)
    }

    /// Runs a CRM read within verification's share of the budget, or reports the CRM as busy.
    async fn budgeted<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, BitrixError>>,
    ) -> Result<T, BitrixError> {
        for _ in 0..30 {
            if self.budget.try_acquire() {
                return call.await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(BitrixError::Api {
            method: "verification".into(),
            status: 503,
            code: "QUERY_LIMIT_EXCEEDED".into(),
            description: "verification share of the REST budget is used up".into(),
        })
    }

    fn holder(&self, last: &str, first: &str, second: &str) -> String {
        if self.full_name {
            return [last, first, second]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" ");
        }
        let initial = |s: &str| {
            s.chars()
                .next()
                .map(|c| format!("{c}."))
                .unwrap_or_default()
        };
        let initials = [initial(first), initial(second)]
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join(" ");
        [last.to_string(), initials]
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn info_from_record(&self, r: &CertificateRecord) -> CertificateInfo {
        let s = &r.snapshot;
        CertificateInfo {
            number: s.number as u64,
            holder: self.holder(&s.last_name, &s.first_name, &s.second_name),
            event: s.event_title.clone(),
            points: s.points as u32,
            points_text: s.points_text.clone(),
            issued_at: r
                .issued_at
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        }
    }

    fn info_from_crm(&self, p: &Participant, view: &CrmView) -> Option<CertificateInfo> {
        let event = view.event.as_ref()?;
        let points = effective_points(p, Some(event))?;
        let empty = Contact::default();
        let c = view.contact.as_ref().unwrap_or(&empty);
        Some(CertificateInfo {
            number: p.id,
            holder: self.holder(&c.last_name, &c.first_name, &c.second_name),
            event: event.title.clone().unwrap_or_default(),
            points: points.value(),
            points_text: points.text().to_string(),
            // Issued before certportal: the move into «Выслан файл» is the issue date.
            issued_at: self
                .stages
                .sent
                .values()
                .any(|s| *s == p.stage_id)
                .then(|| utc_timestamp(&p.moved_time))
                .flatten(),
        })
    }
}

fn effective_points(p: &Participant, event: Option<&EventCard>) -> Option<Points> {
    match &p.achievement {
        Some(a) => Points::parse(a).ok(),
        None => event?.points.as_deref().and_then(|t| Points::parse(t).ok()),
    }
}

/// A portal timestamp (`2026-12-04T13:00:00+03:00`) as the API's UTC form (`2026-12-04T10:00:00Z`).
fn utc_timestamp(portal: &str) -> Option<String> {
    chrono::DateTime::parse_from_rfc3339(portal.trim())
        .ok()
        .map(|d| {
            d.with_timezone(&chrono::Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
}
