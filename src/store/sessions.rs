//! Console sessions. Tokens are random; only their hashes are stored.

use anyhow::Context;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Store, now_ms};

#[derive(Debug, Clone)]
pub struct Session {
    pub admin_id: i64,
    pub login: String,
    pub csrf: String,
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

impl Store {
    /// Opens a session; returns the cookie token.
    pub async fn create_session(&self, admin_id: i64, ttl_ms: i64) -> anyhow::Result<String> {
        let token = random_token();
        let now = now_ms();
        sqlx::query(
            "INSERT INTO sessions (token_hash, admin_id, csrf, created_at, updated_at, expires_at) \
             VALUES ($1, $2, $3, $4, $4, $5)",
        )
        .bind(hash(&token))
        .bind(admin_id)
        .bind(random_token())
        .bind(now)
        .bind(now + ttl_ms)
        .execute(self.pool())
        .await
        .context("failed to open a session")?;
        sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(token)
    }

    pub async fn session(&self, token: &str) -> anyhow::Result<Option<Session>> {
        let row = sqlx::query(
            "SELECT s.admin_id, a.login, s.csrf FROM sessions s JOIN admins a ON a.id = s.admin_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(hash(token))
        .bind(now_ms())
        .fetch_optional(self.pool())
        .await
        .context("failed to read the session")?;
        row.map(|r| {
            Ok(Session {
                admin_id: r.try_get("admin_id")?,
                login: r.try_get("login")?,
                csrf: r.try_get("csrf")?,
            })
        })
        .transpose()
    }

    pub async fn end_session(&self, token: &str) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(hash(token))
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
