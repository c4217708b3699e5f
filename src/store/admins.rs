//! Admin accounts: logins with argon2id password hashes.

use anyhow::Context;
use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use secrecy::{ExposeSecret, SecretString};
use sqlx::Row;

use super::{Store, now_ms};

#[derive(Debug, Clone)]
pub struct Admin {
    pub id: i64,
    pub login: String,
    pub created_at: i64,
}

pub fn hash_password(password: &SecretString) -> anyhow::Result<String> {
    let hash = Argon2::default()
        .hash_password(password.expose_secret().as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
    Ok(hash.to_string())
}

fn verify_password(hash: &str, password: &SecretString) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.expose_secret().as_bytes(), &parsed)
            .is_ok()
    })
}

impl Store {
    /// Creates the account or replaces its password.
    pub async fn upsert_admin(&self, login: &str, password: &SecretString) -> anyhow::Result<()> {
        let login = login.trim();
        anyhow::ensure!(!login.is_empty(), "login must not be empty");
        anyhow::ensure!(
            password.expose_secret().chars().count() >= 8,
            "password must have at least 8 characters"
        );
        let hash = hash_password(password)?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO admins (login, password_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $3) ON CONFLICT (login) DO UPDATE SET \
             password_hash = excluded.password_hash, updated_at = excluded.updated_at",
        )
        .bind(login)
        .bind(hash)
        .bind(now)
        .execute(self.pool())
        .await
        .context("failed to save the admin account")?;
        Ok(())
    }

    pub async fn remove_admin(&self, login: &str) -> anyhow::Result<bool> {
        let done = sqlx::query("DELETE FROM admins WHERE login = $1")
            .bind(login.trim())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn admins(&self) -> anyhow::Result<Vec<Admin>> {
        let rows = sqlx::query("SELECT id, login, created_at FROM admins ORDER BY login")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Admin {
                    id: r.try_get("id")?,
                    login: r.try_get("login")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// The account when login and password match. Unknown logins cost a hash too, so timing does
    /// not reveal which logins exist.
    pub async fn check_admin(
        &self,
        login: &str,
        password: &SecretString,
    ) -> anyhow::Result<Option<Admin>> {
        let row =
            sqlx::query("SELECT id, login, password_hash, created_at FROM admins WHERE login = $1")
                .bind(login.trim())
                .fetch_optional(self.pool())
                .await?;
        let Some(row) = row else {
            let _ = hash_password(password);
            return Ok(None);
        };
        let hash: String = row.try_get("password_hash")?;
        if !verify_password(&hash, password) {
            return Ok(None);
        }
        Ok(Some(Admin {
            id: row.try_get("id")?,
            login: row.try_get("login")?,
            created_at: row.try_get("created_at")?,
        }))
    }
}
