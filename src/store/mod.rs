//! Persistence on SQLite (embedded default) or PostgreSQL (shared by many instances), through one
//! set of portable queries on sqlx's `Any` driver. Times are Unix milliseconds in BIGINT columns.

mod admins;
mod audit;
mod certificates;
mod jobs;
mod registry;
mod sessions;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

pub use admins::Admin;
pub use audit::AuditEntry;
pub use certificates::{CertificateRecord, CertificateStatus, IssuedSnapshot};
pub use jobs::{ClaimedJob, Job, JobEvent, JobKind, JobState, Progress, StageEntry};
pub use registry::{RegistryFilter, RegistryPage, RegistryRow, RegistrySort};
pub use sessions::{Session, random_token};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Store {
    /// Connects, creating a SQLite file if missing, and applies the backend's migrations.
    pub async fn connect(url: &SecretString) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let raw = url.expose_secret();
        let (backend, url) = if raw.starts_with("sqlite:") {
            // Create the file if missing, whatever other options the URL carries.
            let with_mode = if raw.contains("mode=") || raw.contains(":memory:") {
                raw.to_string()
            } else if raw.contains('?') {
                format!("{raw}&mode=rwc")
            } else {
                format!("{raw}?mode=rwc")
            };
            (Backend::Sqlite, with_mode)
        } else if raw.starts_with("postgres:") || raw.starts_with("postgresql:") {
            (Backend::Postgres, raw.to_string())
        } else {
            anyhow::bail!("DATABASE_URL must start with sqlite: or postgres://");
        };
        let options = AnyConnectOptions::from_str(&url).context("DATABASE_URL does not parse")?;
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 10 })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .context("cannot connect to the database named by DATABASE_URL")?;
        let store = Self { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        match self.backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite").run(&self.pool).await,
            Backend::Postgres => sqlx::migrate!("migrations/postgres").run(&self.pool).await,
        }
        .context("database migrations failed")
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .context("database does not answer")?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
