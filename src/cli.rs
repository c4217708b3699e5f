//! Command line: `serve`, `demo`, `render`, `config`, `admin`, `bench`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secrecy::SecretString;

use crate::config::{LogFormat, Settings, Source};
use crate::domain::Points;
use crate::render::{CertificateData, Renderer};
use crate::startup::Application;
use crate::store::Store;

#[derive(Parser)]
#[command(
    name = "certportal",
    version,
    about = "Issues and verifies event certificates for a Bitrix24 CRM"
)]
struct Cli {
    /// TOML file under the environment (keys are the variable names); also CERTPORTAL_CONFIG.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Web server, workers and the reconciliation poll.
    Serve,
    /// Everything with embedded defaults: sandbox portal, SMTP sink, SQLite.
    Demo {
        /// Where the demo's web server listens (default: CERTPORTAL_BIND, else 127.0.0.1:8080).
        #[arg(long)]
        bind: Option<String>,
        /// Port of the sandbox portal's pages (0 picks one).
        #[arg(long, default_value_t = 8081)]
        sandbox_port: u16,
        /// Folder for the demo's database and received .eml files.
        #[arg(long, default_value = "demo-data")]
        dir: PathBuf,
    },
    /// Renders one certificate to a PDF.
    Render(RenderArgs),
    /// Prints the effective configuration, secrets redacted.
    Config,
    /// Manages console accounts.
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Measures speed and size.
    Bench {
        #[command(subcommand)]
        what: crate::bench::BenchCommand,
    },
}

#[derive(clap::Args)]
struct RenderArgs {
    /// Use sample data.
    #[arg(long)]
    sample: bool,
    #[arg(long, default_value = "2026-Сертификат")]
    template: String,
    #[arg(long)]
    id: Option<u64>,
    #[arg(long)]
    last_name: Option<String>,
    #[arg(long)]
    first_name: Option<String>,
    #[arg(long, default_value = "")]
    second_name: String,
    #[arg(long)]
    event: Option<String>,
    /// Points as printed, e.g. "7 баллов".
    #[arg(long)]
    points: Option<String>,
    #[arg(long)]
    out: PathBuf,
    /// Also write the QR image for the CRM field.
    #[arg(long)]
    qr_png: Option<PathBuf>,
}

#[derive(Subcommand)]
enum AdminAction {
    /// Creates an account or sets its password (read from standard input).
    Add {
        login: String,
    },
    List,
    Remove {
        login: String,
    },
}

pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    let settings = Source::from_env(cli.config.as_deref()).and_then(|s| Settings::load(&s));
    let settings = match settings {
        Ok(s) => s,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init(settings.log_format);
    let log_format = settings.log_format;
    let result = match cli.command {
        Command::Serve => serve(settings.clone()).await,
        Command::Demo {
            bind,
            sandbox_port,
            dir,
        } => {
            let bind = bind.unwrap_or_else(|| settings.bind.clone());
            crate::demo::run(settings.clone(), &bind, sandbox_port, &dir).await
        }
        Command::Render(args) => render(&settings, args),
        Command::Config => {
            print!("{}", settings.redacted());
            Ok(())
        }
        Command::Admin { action } => admin(&settings, action).await,
        Command::Bench { what } => crate::bench::run(&settings, what).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if log_format == LogFormat::Json {
                tracing::error!(error = ?e, "certportal stopped");
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    tracing::info!(port = app.port(), "certportal is serving");
    app.run_until_stopped().await
}

fn render(settings: &Settings, a: RenderArgs) -> anyhow::Result<()> {
    let renderer = Renderer::new(settings.templates_dir.as_deref())?;
    let data = if a.sample {
        CertificateData::sample()
    } else {
        let need = |v: Option<String>, flag: &str| {
            v.ok_or_else(|| anyhow::anyhow!("--{flag} is required (or use --sample)"))
        };
        CertificateData::new(
            a.id.ok_or_else(|| anyhow::anyhow!("--id is required (or use --sample)"))?,
            &need(a.last_name, "last-name")?,
            &need(a.first_name, "first-name")?,
            &a.second_name,
            &need(a.event, "event")?,
            Points::parse(&need(a.points, "points")?)?,
        )
    };
    anyhow::ensure!(data.number > 0, "--id must be a participant id (1 or more)");
    let rendered = renderer.render(&a.template, &data)?;
    std::fs::write(&a.out, &rendered.pdf)?;
    if let Some(path) = a.qr_png {
        std::fs::write(path, &rendered.qr_png)?;
    }
    println!(
        "{}: certificate №{} ({}), {} bytes, sha256 {}",
        a.out.display(),
        data.number,
        data.code(),
        rendered.pdf.len(),
        rendered.sha256
    );
    Ok(())
}

async fn admin(settings: &Settings, action: AdminAction) -> anyhow::Result<()> {
    let store = Store::connect(&settings.database_url).await?;
    match action {
        AdminAction::Add { login } => {
            let mut password = String::new();
            std::io::stdin().read_to_string(&mut password)?;
            let password = SecretString::from(password.trim_end_matches(['\r', '\n']).to_string());
            store.upsert_admin(&login, &password).await?;
            store.audit("cli", "admin.add", &login, "").await?;
            println!("account {login} saved");
        }
        AdminAction::List => {
            for a in store.admins().await? {
                let created = chrono::DateTime::from_timestamp_millis(a.created_at)
                    .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default();
                println!("{}\t{}", a.login, created);
            }
        }
        AdminAction::Remove { login } => {
            anyhow::ensure!(store.remove_admin(&login).await?, "no account {login}");
            store.audit("cli", "admin.remove", &login, "").await?;
            println!("account {login} removed");
        }
    }
    Ok(())
}
