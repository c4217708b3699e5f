//! `bench issue`: many participants entering «Сформировать документ» at once, counted at the portal.

use std::time::{Duration, Instant};

use crate::bench::peak_rss_mb;
use crate::mail::sink::SmtpSink;
use crate::sandbox::{Sandbox, seed};

pub struct IssueFigures {
    pub certificates: usize,
    pub requests_per_cert: f64,
    pub per_minute: f64,
    pub seconds: f64,
    pub peak_rss_mb: f64,
}

pub async fn run(participants: u64, batch_size: usize) -> anyhow::Result<IssueFigures> {
    let dir = std::env::temp_dir().join(format!(
        "certportal-bench-issue-{:x}",
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir)?;
    let sandbox = Sandbox::start(0).await?;
    let sink = SmtpSink::start(0, None).await?;
    sandbox.edit(|p| {
        seed::demo(p);
        for i in 0..participants {
            let contact = 50_000 + i;
            let email = format!("bench{i}@example.org");
            seed::add_contact(
                p,
                contact,
                "Участник",
                &format!("Номер{i}"),
                "Тестович",
                &[(90_000 + i, email.as_str())],
            );
            seed::add_participant(p, 200_000 + i, contact, 7, None, seed::STAGE_NEW);
        }
        p.changes.clear();
    });
    let token = "bench-token";
    let (store, app) = crate::bench::local_app(
        &sandbox,
        &sink,
        &dir,
        &[
            ("BITRIX_APP_TOKEN", token.into()),
            ("BATCH_SIZE", batch_size.to_string()),
            ("RETRY_BASE_MS", "1000".into()),
        ],
    )
    .await?;
    let port = app.port();
    tokio::spawn(app.run_until_stopped());
    sandbox.set_event_handler(&format!("http://127.0.0.1:{port}/bitrix/events"), token);
    sandbox.set_rate_limit(true);
    let before = sandbox.requests().len();
    let started = Instant::now();
    sandbox.edit(|p| {
        for i in 0..participants {
            p.move_item(seed::PARTICIPANT_TYPE, 200_000 + i, seed::STAGE_GENERATE);
        }
    });
    let deadline = started + Duration::from_secs(3600);
    while (sink.count() as u64) < participants && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut done_at = started.elapsed();
    // The events our own stage moves cause are part of the cost: wait for the queue to drain.
    loop {
        let moved = {
            let p = sandbox.portal();
            (0..participants)
                .filter(|i| {
                    p.item(seed::PARTICIPANT_TYPE, 200_000 + i)
                        .and_then(|x| x.get("stageId"))
                        .and_then(|s| s.as_str())
                        == Some(seed::STAGE_SENT)
                })
                .count() as u64
        };
        if moved == participants {
            done_at = done_at.max(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        if moved == participants && store.pending_job_count().await? == 0
            || Instant::now() > deadline
        {
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = sandbox.requests();
    let requests = log.len() - before;
    if std::env::var_os("BENCH_BREAKDOWN").is_some() {
        let mut by_method = std::collections::BTreeMap::new();
        for r in &log[before..] {
            *by_method.entry((r.method.clone(), r.status)).or_insert(0) += 1;
        }
        eprintln!("requests by method and status: {by_method:?}");
    }
    let sent = sink.count();
    anyhow::ensure!(
        sent as u64 == participants,
        "{sent} e-mails for {participants} participants"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(IssueFigures {
        certificates: sent,
        requests_per_cert: requests as f64 / participants as f64,
        per_minute: participants as f64 / done_at.as_secs_f64() * 60.0,
        seconds: done_at.as_secs_f64(),
        peak_rss_mb: peak_rss_mb(),
    })
}
