//! Several `certportal serve` processes on one PostgreSQL, one killed with SIGKILL mid-run.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use certportal::mail::sink::SmtpSink;
use certportal::sandbox::{Sandbox, seed};
use secrecy::ExposeSecret;

use crate::helpers::{APP_TOKEN, Db, fresh_database};

struct Instance(Child);

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(port: u16, db: &str, sandbox: &Sandbox, sink: &SmtpSink) -> Instance {
    let child = Command::new(env!("CARGO_BIN_EXE_certportal"))
        .arg("serve")
        .env("CERTPORTAL_BIND", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", db)
        .env("BITRIX_WEBHOOK_URL", sandbox.webhook_url())
        .env("BITRIX_APP_TOKEN", APP_TOKEN)
        .env(
            "BITRIX_PARTICIPANT_TYPE_ID",
            seed::PARTICIPANT_TYPE.to_string(),
        )
        .env("BITRIX_EVENT_TYPE_ID", seed::EVENT_TYPE.to_string())
        .env("BITRIX_RATE", "1")
        .env("BITRIX_BURST", "16")
        .env("SMTP_URL", sink.url())
        .env("MAIL_FROM", "Отдел набора <noreply@tpu.example>")
        .env("POLL_INTERVAL_SECS", "2")
        .env("JOB_LEASE_SECS", "3")
        .env("RETRY_BASE_MS", "500")
        .env("BATCH_SIZE", "20")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("certportal serve starts");
    Instance(child)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn message_id(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    text.lines()
        .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
        .map(|l| l[11..].trim().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn three_instances_with_one_killed_mid_run_send_every_certificate_once() {
    // Arrange
    crate::helpers::init_logs();
    let sandbox = Sandbox::start(0).await.unwrap();
    let sink = SmtpSink::start(0, None).await.unwrap();
    let n: u64 = 500;
    sandbox.edit(|p| {
        seed::demo(p);
        for i in 0..n {
            let email = format!("k{i}@example.org");
            seed::add_contact(
                p,
                60_000 + i,
                "Инстансов",
                &format!("Имя{i}"),
                "",
                &[(161_000 + i, email.as_str())],
            );
            seed::add_participant(p, 400_000 + i, 60_000 + i, 7, None, seed::STAGE_NEW);
        }
        p.changes.clear();
    });
    let (db, _dir) = fresh_database(Db::Postgres).await;
    let db = db.expose_secret().to_string();
    let ports = [free_port(), free_port(), free_port()];
    let mut instances: Vec<Option<Instance>> = ports
        .iter()
        .map(|p| Some(serve(*p, &db, &sandbox, &sink)))
        .collect();
    // Wait until all three answer.
    let http = reqwest::Client::new();
    for p in ports {
        let deadline = Instant::now() + Duration::from_secs(60);
        while http
            .get(format!("http://127.0.0.1:{p}/healthz"))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "instance on {p} did not start");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    sandbox.set_event_handler(
        &format!("http://127.0.0.1:{}/bitrix/events", ports[0]),
        APP_TOKEN,
    );
    // Act: everyone enters the stage; the second instance dies once mail is flowing.
    sandbox.edit(|p| {
        for i in 0..n {
            p.move_item(seed::PARTICIPANT_TYPE, 400_000 + i, seed::STAGE_GENERATE);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(480);
    while sink.count() < 40 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(mut victim) = instances[1].take() {
        victim.0.kill().unwrap(); // SIGKILL: no graceful shutdown, leases left behind
        victim.0.wait().unwrap();
    }
    while (sink.count() as u64) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Assert: every participant got its certificate; a repeat, if any, carries the same Message-ID.
    let mut by_recipient: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in sink.messages() {
        by_recipient
            .entry(m.to.join(","))
            .or_default()
            .push(message_id(&m.data));
    }
    assert_eq!(
        by_recipient.len() as u64,
        n,
        "every participant got a certificate"
    );
    for (to, ids) in &by_recipient {
        let mut unique = ids.clone();
        unique.dedup();
        assert_eq!(unique.len(), 1, "{to} got different letters: {ids:?}");
    }
    let repeats: usize = by_recipient.values().map(|ids| ids.len() - 1).sum();
    assert!(
        repeats <= 20,
        "{repeats} repeats for at most one killed batch"
    );
    let portal = sandbox.portal();
    for i in 0..n {
        let stage = portal
            .item(seed::PARTICIPANT_TYPE, 400_000 + i)
            .and_then(|x| x.get("stageId"))
            .and_then(|s| s.as_str().map(str::to_string));
        assert_eq!(stage.as_deref(), Some(seed::STAGE_SENT), "{}", 400_000 + i);
    }
    drop(portal);
    drop(instances);
}
