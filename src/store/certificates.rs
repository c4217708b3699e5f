//! The registry of certificates: what was printed, to whom it went, and its status.

use anyhow::Context;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{Store, now_ms};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateStatus {
    Queued,
    Sending,
    Sent,
    Problem,
    Failed,
}

impl CertificateStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Problem => "problem",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => Self::Queued,
            "sending" => Self::Sending,
            "sent" => Self::Sent,
            "problem" => Self::Problem,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// What was printed on a certificate, recorded when it is rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuedSnapshot {
    pub number: i64,
    pub code: String,
    pub event_id: Option<i64>,
    pub template: String,
    pub last_name: String,
    pub first_name: String,
    pub second_name: String,
    pub event_title: String,
    pub points: i64,
    pub points_text: String,
    pub email: Option<String>,
    pub pdf_sha256: String,
}

#[derive(Debug, Clone)]
pub struct CertificateRecord {
    pub snapshot: IssuedSnapshot,
    pub status: CertificateStatus,
    pub problem: Option<String>,
    pub message_id: Option<String>,
    pub issued_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub revoked_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl CertificateRecord {
    pub fn holder_full(&self) -> String {
        let s = &self.snapshot;
        [&s.last_name, &s.first_name, &s.second_name]
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

pub(super) const COLUMNS: &str = "number, code, event_id, template, last_name, first_name, second_name, \
    event_title, points, points_text, email, pdf_sha256, status, problem, message_id, issued_at, \
    revoked_at, revoked_reason, created_at, updated_at";

pub(super) fn from_row(row: &AnyRow) -> Result<CertificateRecord, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(CertificateRecord {
        snapshot: IssuedSnapshot {
            number: row.try_get("number")?,
            code: row.try_get("code")?,
            event_id: row.try_get("event_id")?,
            template: row.try_get("template")?,
            last_name: row.try_get("last_name")?,
            first_name: row.try_get("first_name")?,
            second_name: row.try_get("second_name")?,
            event_title: row.try_get("event_title")?,
            points: row.try_get("points")?,
            points_text: row.try_get("points_text")?,
            email: row.try_get("email")?,
            pdf_sha256: row
                .try_get::<Option<String>, _>("pdf_sha256")?
                .unwrap_or_default(),
        },
        status: CertificateStatus::parse(&status).unwrap_or(CertificateStatus::Failed),
        problem: row.try_get("problem")?,
        message_id: row.try_get("message_id")?,
        issued_at: row.try_get("issued_at")?,
        revoked_at: row.try_get("revoked_at")?,
        revoked_reason: row.try_get("revoked_reason")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn search_text(s: &IssuedSnapshot) -> String {
    format!(
        "{} {} {} {} {} {} {}",
        s.number,
        s.last_name,
        s.first_name,
        s.second_name,
        s.email.as_deref().unwrap_or(""),
        s.event_title,
        s.code
    )
    .to_lowercase()
}

impl Store {
    /// Records what is about to be sent; the row exists before the e-mail leaves.
    pub async fn record_rendered(&self, s: &IssuedSnapshot) -> anyhow::Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO certificates (number, code, event_id, template, last_name, first_name, \
             second_name, event_title, points, points_text, email, pdf_sha256, status, \
             search_text, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'sending', $13, $14, $14) \
             ON CONFLICT (number) DO UPDATE SET code = excluded.code, event_id = excluded.event_id, \
             template = excluded.template, last_name = excluded.last_name, \
             first_name = excluded.first_name, second_name = excluded.second_name, \
             event_title = excluded.event_title, points = excluded.points, \
             points_text = excluded.points_text, email = excluded.email, \
             pdf_sha256 = excluded.pdf_sha256, status = 'sending', problem = NULL, \
             search_text = excluded.search_text, updated_at = excluded.updated_at",
        )
        .bind(s.number)
        .bind(&s.code)
        .bind(s.event_id)
        .bind(&s.template)
        .bind(&s.last_name)
        .bind(&s.first_name)
        .bind(&s.second_name)
        .bind(&s.event_title)
        .bind(s.points)
        .bind(&s.points_text)
        .bind(&s.email)
        .bind(&s.pdf_sha256)
        .bind(search_text(s))
        .bind(now)
        .execute(self.pool())
        .await
        .context("failed to record the rendered certificate")?;
        Ok(())
    }

    pub async fn mark_sent(&self, number: i64, message_id: &str) -> anyhow::Result<()> {
        let now = now_ms();
        sqlx::query(
            "UPDATE certificates SET status = 'sent', problem = NULL, message_id = $2, \
             issued_at = $3, updated_at = $3 WHERE number = $1",
        )
        .bind(number)
        .bind(message_id)
        .bind(now)
        .execute(self.pool())
        .await
        .context("failed to mark the certificate sent")?;
        Ok(())
    }

    /// Records a participant whose certificate could not be issued, with the reason staff will see.
    pub async fn mark_problem(
        &self,
        number: i64,
        status: CertificateStatus,
        reason: &str,
    ) -> anyhow::Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO certificates (number, code, status, problem, search_text, created_at, \
             updated_at) VALUES ($1, '', $2, $3, $4, $5, $5) \
             ON CONFLICT (number) DO UPDATE SET status = excluded.status, \
             problem = excluded.problem, updated_at = excluded.updated_at",
        )
        .bind(number)
        .bind(status.as_str())
        .bind(reason)
        .bind(number.to_string())
        .bind(now)
        .execute(self.pool())
        .await
        .context("failed to record the certificate problem")?;
        Ok(())
    }

    pub async fn set_revoked(&self, number: i64, reason: Option<&str>) -> anyhow::Result<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE certificates SET revoked_at = $2, revoked_reason = $3, updated_at = $4 \
             WHERE number = $1",
        )
        .bind(number)
        .bind(reason.map(|_| now))
        .bind(reason)
        .bind(now)
        .execute(self.pool())
        .await
        .context("failed to change revocation")?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn certificate(&self, number: i64) -> anyhow::Result<Option<CertificateRecord>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM certificates WHERE number = $1"
        )))
        .bind(number)
        .fetch_optional(self.pool())
        .await
        .context("failed to read the certificate")?;
        row.as_ref()
            .map(from_row)
            .transpose()
            .context("certificate row has an unexpected shape")
    }

    pub async fn count_certificates(&self) -> anyhow::Result<i64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM certificates")
            .fetch_one(self.pool())
            .await?;
        Ok(n)
    }
}
