//! `spawn_app`: certportal on port 0 with its own database, a sandbox portal and an SMTP sink.

use std::sync::Arc;

use mail_parser::MimeHeaders;
use std::time::{Duration, Instant};

use certportal::config::{Settings, Source};
use certportal::mail::sink::{ReceivedMail, SmtpSink};
use certportal::render::Renderer;
use certportal::sandbox::{Sandbox, seed};
use certportal::startup::{AppState, Application, build_issuer};
use certportal::store::Store;
use secrecy::SecretString;

pub const APP_TOKEN: &str = "test-application-token";
pub const ROBOT_KEY: &str = "test-robot-key";

/// The server every PostgreSQL test uses; a missing server fails the test, it is never skipped.
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A fresh, empty database of the given kind; the files or database are dropped with the process.
pub async fn fresh_database(db: Db) -> (SecretString, Option<tempfile::TempDir>) {
    match db {
        Db::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("test.db").display());
            (SecretString::from(url), Some(dir))
        }
        Db::Postgres => {
            use sqlx::Connection;
            let admin = postgres_admin_url();
            let mut conn = sqlx::PgConnection::connect(&admin)
                .await
                .expect("PostgreSQL must be running for the tests (see .ci/run)");
            let name = format!("certportal_test_{:016x}", rand::random::<u64>());
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("create test database");
            let base = admin
                .rsplit_once('/')
                .map_or(admin.as_str(), |(b, _)| b)
                .to_string();
            (SecretString::from(format!("{base}/{name}")), None)
        }
    }
}

pub struct TestApp {
    pub address: String,
    pub sandbox: Sandbox,
    pub sink: SmtpSink,
    pub state: actix_web::web::Data<AppState>,
    pub store: Store,
    pub http: reqwest::Client,
    _dir: Option<tempfile::TempDir>,
}

pub struct Options {
    pub db: Db,
    pub workers: usize,
    pub poll_secs: u64,
    pub lease_secs: u64,
    pub extra: Vec<(&'static str, String)>,
    /// Reuse these instead of starting new ones (several instances on one portal).
    pub sandbox: Option<Sandbox>,
    pub sink: Option<SmtpSink>,
    pub database: Option<SecretString>,
    pub register_handler: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            db: Db::Sqlite,
            workers: 2,
            poll_secs: 0,
            lease_secs: 30,
            extra: Vec::new(),
            sandbox: None,
            sink: None,
            database: None,
            register_handler: true,
        }
    }
}

pub fn init_logs() {
    if std::env::var("TEST_LOG").is_ok() {
        certportal::telemetry::init(certportal::config::LogFormat::Text);
    }
}

/// No background workers and no event handler: the test drives the queue or the API itself.
pub fn quiet() -> Options {
    Options {
        workers: 0,
        register_handler: false,
        ..Options::default()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(o: Options) -> TestApp {
    init_logs();
    let sandbox = match o.sandbox {
        Some(s) => s,
        None => {
            let s = Sandbox::start(0).await.expect("sandbox starts");
            s.edit(seed::demo);
            s
        }
    };
    let sink = match o.sink {
        Some(s) => s,
        None => SmtpSink::start(0, None).await.expect("SMTP sink starts"),
    };
    let (db_url, dir) = match o.database {
        Some(url) => (url, None),
        None => fresh_database(o.db).await,
    };
    let mut vars: Vec<(String, String)> = vec![
        ("CERTPORTAL_BIND", "127.0.0.1:0".to_string()),
        ("BITRIX_WEBHOOK_URL", sandbox.webhook_url()),
        ("BITRIX_APP_TOKEN", APP_TOKEN.into()),
        ("BITRIX_ROBOT_KEY", ROBOT_KEY.into()),
        (
            "BITRIX_PARTICIPANT_TYPE_ID",
            seed::PARTICIPANT_TYPE.to_string(),
        ),
        ("BITRIX_EVENT_TYPE_ID", seed::EVENT_TYPE.to_string()),
        ("SMTP_URL", sink.url()),
        ("MAIL_FROM", "Отдел набора <noreply@tpu.example>".into()),
        ("POLL_INTERVAL_SECS", o.poll_secs.to_string()),
        ("WORKERS", o.workers.to_string()),
        ("JOB_LEASE_SECS", o.lease_secs.to_string()),
        ("RETRY_BASE_MS", "100".into()),
        ("BITRIX_RATE", "50".into()),
        ("BITRIX_BURST", "50".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    vars.extend(o.extra.into_iter().map(|(k, v)| (k.to_string(), v)));
    let mut settings = Settings::load(&Source::from_map(vars)).expect("test settings");
    settings.database_url = db_url;
    let store = Store::connect(&settings.database_url).await.expect("store");
    let renderer = Arc::new(Renderer::new(None).expect("templates"));
    let issuer = build_issuer(&settings, store.clone(), renderer.clone())
        .await
        .expect("issuer");
    let app = Application::start(settings, store.clone(), renderer, Some(issuer))
        .await
        .expect("app starts");
    let port = app.port();
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    if o.register_handler {
        sandbox.set_event_handler(&format!("http://127.0.0.1:{port}/bitrix/events"), APP_TOKEN);
    }
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        sandbox,
        sink,
        state,
        store,
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

impl TestApp {
    pub fn issuer(&self) -> &certportal::issuing::Issuer {
        self.state.issuer.as_ref().expect("issuer configured")
    }

    pub async fn post_event(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}/bitrix/events", self.address))
            .form(form)
            .send()
            .await
            .expect("request")
    }

    /// The outbound event a portal sends when participant `id` changes.
    pub async fn post_update_event(&self, id: u64) -> reqwest::Response {
        let id = id.to_string();
        let ty = seed::PARTICIPANT_TYPE.to_string();
        self.post_event(&[
            ("event", "ONCRMDYNAMICITEMUPDATE"),
            ("event_handler_id", "5"),
            ("data[FIELDS][ID]", &id),
            ("data[FIELDS][ENTITY_TYPE_ID]", &ty),
            ("ts", "1723538517"),
            ("auth[domain]", "x.bitrix24.ru"),
            ("auth[member_id]", "a223"),
            ("auth[application_token]", APP_TOKEN),
        ])
        .await
    }

    pub fn stage_of(&self, id: u64) -> String {
        self.sandbox
            .portal()
            .item(seed::PARTICIPANT_TYPE, id)
            .and_then(|i| {
                i.get("stageId")
                    .and_then(|s| s.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_default()
    }

    pub fn comments_for(&self, id: u64) -> Vec<String> {
        self.sandbox
            .portal()
            .comments
            .iter()
            .filter(|(_, i, _)| *i == id)
            .map(|(_, _, c)| c.clone())
            .collect()
    }

    /// The QR file written to the participant's field, decoded.
    pub fn qr_of(&self, id: u64) -> Option<String> {
        let portal = self.sandbox.portal();
        let file_id = portal
            .item(seed::PARTICIPANT_TYPE, id)?
            .get("UF_CRM_20_QR")?
            .get("id")?
            .as_u64()?;
        let (_, bytes) = portal.files.get(&file_id)?;
        decode_qr_png(bytes)
    }

    /// Waits until `n` messages have arrived, then a little longer to catch any extra ones.
    pub async fn wait_for_mail(&self, n: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = Instant::now() + timeout;
        while self.sink.count() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.settle().await;
        self.sink.messages()
    }

    /// The public JSON check of `code`: HTTP status and body.
    pub async fn verify_api(&self, code: &str) -> (u16, serde_json::Value) {
        let r = self
            .http
            .get(format!("{}/api/v1/certificates/{code}", self.address))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or_default())
    }

    /// Waits until no job is waiting or running.
    pub async fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        tokio::time::sleep(Duration::from_millis(300)).await;
        while self.store.pending_job_count().await.unwrap_or(1) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// GETs `url` with `client` and returns the body as text.
pub async fn page_text(client: &reqwest::Client, url: String) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

pub fn decode_qr_png(bytes: &[u8]) -> Option<String> {
    let img = image::load_from_memory(bytes).ok()?.to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(img);
    let grids = prepared.detect_grids();
    grids.first()?.decode().ok().map(|(_, c)| c)
}

/// The parts of a received certificate letter.
pub struct Parsed {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub attachment_name: String,
    pub pdf: Vec<u8>,
    pub message_id: String,
}

pub fn parse_mail(m: &ReceivedMail) -> Parsed {
    let msg = mail_parser::MessageParser::default()
        .parse(&m.data)
        .expect("a parseable message");
    let att = msg.attachments().next().expect("an attachment");
    Parsed {
        to: m.to.join(","),
        subject: msg.subject().unwrap_or_default().to_string(),
        text: msg.body_text(0).unwrap_or_default().to_string(),
        html: msg.body_html(0).unwrap_or_default().to_string(),
        attachment_name: att.attachment_name().unwrap_or_default().to_string(),
        pdf: att.contents().to_vec(),
        message_id: msg.message_id().unwrap_or_default().to_string(),
    }
}

/// Text of a PDF by poppler's pdftotext (installed by .ci/run).
pub fn pdf_text(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("c.pdf");
    std::fs::write(&path, pdf).expect("write pdf");
    let out = std::process::Command::new("pdftotext")
        .arg(&path)
        .arg("-")
        .output()
        .expect("pdftotext must be installed (poppler-utils)");
    assert!(out.status.success(), "pdftotext failed");
    String::from_utf8(out.stdout).expect("utf-8 text")
}

/// The QR code read off the PDF rendered as a picture by pdftoppm at `dpi`.
pub fn pdf_qr(pdf: &[u8], dpi: u32) -> Option<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("c.pdf");
    std::fs::write(&path, pdf).expect("write pdf");
    let status = std::process::Command::new("pdftoppm")
        .args(["-r", &dpi.to_string(), "-png", "-singlefile"])
        .arg(&path)
        .arg(dir.path().join("page"))
        .status()
        .expect("pdftoppm must be installed (poppler-utils)");
    assert!(status.success(), "pdftoppm failed");
    decode_qr_png(&std::fs::read(dir.path().join("page.png")).ok()?)
}
