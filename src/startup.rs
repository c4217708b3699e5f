//! Builds the running service: database, CRM client, mailer, HTTP server, workers and poll.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::DefaultHeaders;
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing_actix_web::TracingLogger;

use crate::bitrix::{BitrixClient, Crm, Stages};
use crate::config::Settings;
use crate::issuing::{Issuer, IssuerConfig, run_poll, run_workers, triggers};
use crate::mail::Mailer;
use crate::render::Renderer;
use crate::store::Store;
use crate::verify;
use crate::verify::{IpLimiter, Verifier};

/// Shared by every request handler.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub renderer: Arc<Renderer>,
    pub issuer: Option<Issuer>,
    pub verifier: Verifier,
    pub verify_limiter: IpLimiter,
    pub login_throttle: crate::admin::LoginThrottle,
}

pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    shutdown: watch::Sender<bool>,
    background: Vec<JoinHandle<()>>,
}

impl Application {
    /// Everything `serve` runs. Binds `CERTPORTAL_BIND` (port 0 picks a free port, for tests).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.require_for_serve()?;
        let store = Store::connect(&settings.database_url).await?;
        let renderer = Arc::new(
            Renderer::new(settings.templates_dir.as_deref())
                .context("certificate templates do not load")?,
        );
        let issuer = build_issuer(&settings, store.clone(), renderer.clone()).await?;
        Self::start(settings, store, renderer, Some(issuer)).await
    }

    /// Starts the server, and workers and poll when `issuer` is given.
    pub async fn start(
        settings: Settings,
        store: Store,
        renderer: Arc<Renderer>,
        issuer: Option<Issuer>,
    ) -> anyhow::Result<Self> {
        if let (Some(login), Some(password)) = (&settings.admin_login, &settings.admin_password) {
            store
                .upsert_admin(login, password)
                .await
                .context("ADMIN_LOGIN / ADMIN_PASSWORD")?;
        }
        let orphans = store.release_orphans().await?;
        if orphans > 0 {
            tracing::info!(orphans, "resuming jobs the previous process left running");
        }
        let listener = TcpListener::bind(&settings.bind)
            .with_context(|| format!("CERTPORTAL_BIND: cannot listen on {}", settings.bind))?;
        let port = listener.local_addr()?.port();
        let settings = Arc::new(settings);
        let verifier = Verifier::new(
            store.clone(),
            issuer.as_ref().map(|i| i.crm.impatient()),
            issuer
                .as_ref()
                .map(|i| i.stages.clone())
                .unwrap_or_default(),
            settings.verify_cache_ttl,
            settings.bitrix.rate * settings.verify_share,
            settings.verify_full_name,
        );
        let state = web::Data::new(AppState {
            settings: settings.clone(),
            store,
            renderer,
            issuer: issuer.clone(),
            verifier,
            verify_limiter: IpLimiter::new(settings.verify_per_minute, settings.verify_burst),
            login_throttle: crate::admin::LoginThrottle::default(),
        });
        let app_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(TracingLogger::default())
                .wrap(security_headers())
                .app_data(app_state.clone())
                .app_data(web::PayloadConfig::new(12 * 1024 * 1024))
                .configure(routes)
                .default_service(web::to(crate::web::not_found))
        })
        .listen(listener)?
        .shutdown_timeout(30)
        .run();

        let (shutdown, rx) = watch::channel(false);
        let mut background = Vec::new();
        if let Some(issuer) = issuer {
            if settings.workers > 0 {
                background.push(tokio::spawn(run_workers(
                    issuer.clone(),
                    settings.workers,
                    rx.clone(),
                )));
            }
            background.push(tokio::spawn(run_poll(issuer, settings.poll_interval, rx)));
        }
        Ok(Self {
            port,
            server,
            state,
            shutdown,
            background,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until SIGINT/SIGTERM, then lets workers finish or release their jobs.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let result = self.server.await;
        tracing::info!("shutting down: workers finish the jobs in flight");
        let _ = self.shutdown.send(true);
        for h in self.background {
            let _ = h.await;
        }
        self.state.store.close().await;
        result.context("HTTP server failed")
    }
}

/// Connects to Bitrix24, resolves the stages and opens the mailer.
pub async fn build_issuer(
    settings: &Settings,
    store: Store,
    renderer: Arc<Renderer>,
) -> anyhow::Result<Issuer> {
    let b = &settings.bitrix;
    let webhook = b
        .webhook_url
        .as_ref()
        .context("BITRIX_WEBHOOK_URL is required")?;
    let client = BitrixClient::new(webhook, b.rate, b.burst, b.timeout)?;
    let crm = Crm::new(
        client,
        b.participant_type_id
            .context("BITRIX_PARTICIPANT_TYPE_ID is required")?,
        b.event_type_id
            .context("BITRIX_EVENT_TYPE_ID is required")?,
        b.fields.clone(),
    );
    let stages = resolve_stages_with_retry(&crm, settings).await?;
    tracing::info!(?stages, "participant stages resolved");
    let mailer = Mailer::new(
        settings.smtp_url.as_ref().context("SMTP_URL is required")?,
        settings
            .mail_from
            .as_deref()
            .context("MAIL_FROM is required")?,
        settings.mail_rate,
    )?;
    Ok(Issuer {
        store,
        crm,
        stages: Arc::new(stages),
        renderer,
        mailer,
        config: Arc::new(IssuerConfig {
            subject_template: settings.mail_subject.clone(),
            max_attempts: settings.max_attempts.max(1),
            lease: settings.job_lease,
            base_backoff: settings.retry_base,
            batch_size: settings.batch_size,
            ..IssuerConfig::default()
        }),
        stats: Arc::default(),
        wake: Arc::default(),
    })
}

/// A portal that is briefly unreachable at start-up should not stop the service; a stage that
/// does not exist should, at once.
async fn resolve_stages_with_retry(crm: &Crm, settings: &Settings) -> anyhow::Result<Stages> {
    let mut attempt = 0;
    loop {
        match crm.resolve_stages(&settings.bitrix.stages).await {
            Ok(s) => return Ok(s),
            Err(crate::bitrix::StageError::Bitrix(e)) if e.is_transient() && attempt < 5 => {
                attempt += 1;
                tracing::warn!(error = %e, "Bitrix24 not reachable yet; retrying");
                tokio::time::sleep(Duration::from_secs(2 * attempt)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("Referrer-Policy", "no-referrer"))
        .add(("X-Frame-Options", "DENY"))
        .add((
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/bitrix/events", web::post().to(triggers::events))
        .route("/bitrix/robot", web::get().to(triggers::robot))
        .route("/bitrix/robot", web::post().to(triggers::robot))
        .route("/static/style.css", web::get().to(crate::web::style_css))
        .route("/favicon.ico", web::get().to(crate::web::favicon))
        .route("/favicon.svg", web::get().to(crate::web::favicon))
        .route("/metrics", web::get().to(crate::metrics::metrics))
        .configure(crate::admin::routes)
        .route("/", web::get().to(verify::pages::home))
        .route("/verify", web::get().to(verify::pages::verify_get))
        .route("/verify", web::post().to(verify::pages::verify_post))
        .route(
            "/api/v1/certificates/{code:.*}",
            web::get().to(verify::api::certificate),
        )
        .route(
            "/api/v1/certificates/{code:.*}",
            web::method(actix_web::http::Method::OPTIONS).to(verify::api::preflight),
        );
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let db = state.store.ping().await.is_ok();
    let bitrix = match &state.issuer {
        Some(issuer) => {
            let params = json!({"entityTypeId": issuer.crm.participant_type});
            issuer
                .crm
                .client
                .call("crm.category.list", &params, crate::bitrix::Idempotent::Yes)
                .await
                .is_ok()
        }
        None => false,
    };
    let body = json!({"database": db, "bitrix24": bitrix});
    if db && bitrix {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
