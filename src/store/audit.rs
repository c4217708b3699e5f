//! Who did what in the console, and when.

use anyhow::Context;
use sqlx::Row;

use super::{Store, now_ms};

#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: String,
}

impl Store {
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        details: &str,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, target, details) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(now_ms())
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(details)
        .execute(self.pool())
        .await
        .context("failed to write the audit log")?;
        Ok(())
    }

    pub async fn audit_for(&self, target: &str) -> anyhow::Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT at, actor, action, target, details FROM audit_log WHERE target = $1 \
             ORDER BY at DESC, id DESC",
        )
        .bind(target)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    details: r.try_get("details")?,
                })
            })
            .collect()
    }
}
