//! `certportal bench …`: figures for the speed and size targets, printed for the issue notes.

use std::time::{Duration, Instant};

use clap::Subcommand;

use crate::config::Settings;
use crate::render::{CertificateData, Renderer};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Median time per certificate (PDF + QR PNG) and PDF size.
    Render {
        #[arg(long, default_value_t = 300)]
        iterations: usize,
    },
    /// Cached verification throughput and latency against a running server, QR photo decode time.
    Verify {
        #[arg(long, default_value_t = 50_000)]
        requests: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Issuing many participants at once against the sandbox with its 2 req/s limit on.
    Issue {
        #[arg(long, default_value_t = 500)]
        participants: u64,
        /// Size of the comparison run with batching off (it costs ~5 requests per certificate).
        #[arg(long, default_value_t = 40)]
        unbatched_participants: u64,
    },
    /// Console listing speed at the database over a large registry.
    Registry {
        #[arg(long, default_value_t = 100_000)]
        rows: i64,
        /// Database to fill (default: a temporary SQLite file); a PostgreSQL URL measures that backend.
        #[arg(long)]
        database_url: Option<String>,
    },
}

pub async fn run(settings: &Settings, what: BenchCommand) -> anyhow::Result<()> {
    match what {
        BenchCommand::Render { iterations } => render(settings, iterations),
        BenchCommand::Verify {
            requests,
            concurrency,
        } => super::bench_verify::run(requests, concurrency).await,
        BenchCommand::Issue {
            participants,
            unbatched_participants,
        } => {
            let batched = super::bench_issue::run(participants, 50).await?;
            let unbatched = super::bench_issue::run(unbatched_participants, 1).await?;
            println!("bench issue: sandbox limit 2 req/s (burst 50) on, SMTP sink, SQLite");
            println!(
                "  {:<10} {:>12} {:>14} {:>12} {:>10} {:>10}",
                "mode", "certificates", "requests/cert", "certs/min", "seconds", "peak RSS"
            );
            for (mode, r) in [("batched", &batched), ("unbatched", &unbatched)] {
                println!(
                    "  {:<10} {:>12} {:>14.3} {:>12.0} {:>10.1} {:>8.1} MB",
                    mode,
                    r.certificates,
                    r.requests_per_cert,
                    r.per_minute,
                    r.seconds,
                    r.peak_rss_mb
                );
            }
            println!(
                "  targets (batched): <= 0.15 requests per certificate, 500 in <= 120 s, RSS <= 150 MB"
            );
            Ok(())
        }
        BenchCommand::Registry { rows, database_url } => {
            super::bench_verify::registry(rows, database_url).await
        }
    }
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn render(settings: &Settings, iterations: usize) -> anyhow::Result<()> {
    let renderer = Renderer::new(settings.templates_dir.as_deref())?;
    let base = CertificateData::sample();
    // Warm-up: font parsing happens once per process.
    renderer.render("2026-Сертификат", &base)?;
    let mut times = Vec::with_capacity(iterations);
    let mut sizes = Vec::with_capacity(iterations);
    for i in 0..iterations.max(1) {
        let mut data = base.clone();
        data.number = 100_000 + i as u64;
        let start = Instant::now();
        let r = renderer.render("2026-Сертификат", &data)?;
        times.push(start.elapsed());
        sizes.push(r.pdf.len());
    }
    times.sort();
    sizes.sort();
    println!(
        "bench render: {} certificates of 2026-Сертификат (PDF + QR PNG)",
        times.len()
    );
    println!(
        "  median {:.2} ms, p90 {:.2} ms, max {:.2} ms",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.9)),
        ms(*times.last().unwrap_or(&Duration::ZERO))
    );
    println!(
        "  PDF size median {:.1} KB, max {:.1} KB",
        sizes[sizes.len() / 2] as f64 / 1024.0,
        *sizes.last().unwrap_or(&0) as f64 / 1024.0
    );
    println!("  targets: <= 3 ms, <= 40 KB");
    let qr_start = Instant::now();
    for i in 0..100u64 {
        let _ = crate::render::QrMatrix::encode(&format!("S.{}.7", 100_000 + i)).to_png(8);
    }
    println!(
        "  of which QR matrix + PNG: {:.2} ms",
        ms(qr_start.elapsed()) / 100.0
    );
    let _ = crate::render::font_clone_cost();
    println!(
        "  of which copying the parsed fonts: {:.2} ms",
        ms(crate::render::font_clone_cost())
    );
    Ok(())
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Peak resident memory of this process (VmHWM), in MB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// certportal on a free local port against `sandbox` and `sink`, with a SQLite file in `dir`;
/// `extra` adds or overrides variables.
pub async fn local_app(
    sandbox: &crate::sandbox::Sandbox,
    sink: &crate::mail::sink::SmtpSink,
    dir: &std::path::Path,
    extra: &[(&str, String)],
) -> anyhow::Result<(crate::store::Store, crate::startup::Application)> {
    use crate::sandbox::seed;
    let mut vars: Vec<(String, String)> = [
        ("CERTPORTAL_BIND", "127.0.0.1:0".to_string()),
        (
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("bench.db").display()),
        ),
        ("BITRIX_WEBHOOK_URL", sandbox.webhook_url()),
        (
            "BITRIX_PARTICIPANT_TYPE_ID",
            seed::PARTICIPANT_TYPE.to_string(),
        ),
        ("BITRIX_EVENT_TYPE_ID", seed::EVENT_TYPE.to_string()),
        ("SMTP_URL", sink.url()),
        ("MAIL_FROM", "bench@tpu.example".into()),
        ("POLL_INTERVAL_SECS", "0".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let settings = Settings::load(&crate::config::Source::from_map(vars))?;
    let store = crate::store::Store::connect(&settings.database_url).await?;
    let renderer = std::sync::Arc::new(Renderer::new(None)?);
    let issuer = crate::startup::build_issuer(&settings, store.clone(), renderer.clone()).await?;
    let app =
        crate::startup::Application::start(settings, store.clone(), renderer, Some(issuer)).await?;
    Ok((store, app))
}
