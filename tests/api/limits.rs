//! The portal's per-method operating-time limit (429 `OPERATION_TIME_LIMIT`): certportal waits for the
//! window the portal announced, never hammers a blocked method, and never loses or repeats work.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use certportal::issuing::ExecutionOutcome;
use certportal::sandbox::{FaultKind, seed};
use certportal::store::JobState;

use crate::helpers::{TestApp, quiet, spawn_app_with};

/// Runs one job for a participant outside «Сформировать документ»: a successful `crm.item.get`
/// that tells the client when the method's window resets.
async fn learn_the_window(app: &TestApp) {
    app.issuer().hint(100501).await.unwrap();
    let outcome = app.issuer().try_execute_task("w").await.unwrap();
    assert_eq!(outcome, ExecutionOutcome::TaskCompleted);
}

fn gets(app: &TestApp) -> Vec<(std::time::Instant, u16)> {
    app.sandbox
        .requests()
        .into_iter()
        .filter(|r| r.method == "crm.item.get")
        .map(|r| (r.at, r.status))
        .collect()
}

#[tokio::test]
async fn a_short_block_is_waited_out_and_the_certificate_goes_out_once() {
    let app = spawn_app_with(quiet()).await;
    app.sandbox.set_operating(420.0, Duration::from_secs(3));
    learn_the_window(&app).await;
    app.sandbox.set_operating(0.0, Duration::from_secs(600));
    app.sandbox
        .inject(Some("crm.item.get"), 1, FaultKind::OperatingLimit);

    app.sandbox.move_participant(100500, seed::STAGE_GENERATE);
    app.issuer().hint(100500).await.unwrap();
    app.issuer().try_execute_task("w").await.unwrap();

    assert_eq!(app.sink.count(), 1);
    assert_eq!(app.stage_of(100500), seed::STAGE_SENT);
    let log = gets(&app);
    let refused = log.iter().position(|(_, s)| *s == 429).expect("a 429");
    let (blocked_at, _) = log[refused];
    let (next_at, status) = log[refused + 1];
    assert_eq!(status, 200);
    // The reset was announced 2-3 s after the learning call (whole seconds).
    assert!(
        next_at - blocked_at >= Duration::from_millis(700),
        "retried after {:?}",
        next_at - blocked_at
    );
}

#[tokio::test]
async fn a_long_block_postpones_the_job_without_spending_an_attempt_or_a_request() {
    let app = spawn_app_with(quiet()).await;
    app.sandbox.set_operating(10.0, Duration::from_secs(120));
    learn_the_window(&app).await;
    app.sandbox
        .inject(Some("crm.item.get"), 1, FaultKind::OperatingLimit);

    app.sandbox.move_participant(100500, seed::STAGE_GENERATE);
    app.issuer().hint(100500).await.unwrap();
    app.issuer().try_execute_task("w").await.unwrap();

    assert_eq!(app.sink.count(), 0);
    let queued = app
        .store
        .jobs_in_states(&[JobState::Queued], 10)
        .await
        .unwrap();
    assert_eq!(queued.len(), 1);
    let job = &queued[0];
    assert_eq!(job.participant_id, 100500);
    assert_eq!(
        job.attempts, 0,
        "the portal's limit is not the job's failure"
    );
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let wait = job.run_at - now_ms;
    assert!((100_000..=121_000).contains(&wait), "run in {wait} ms");
    assert!(
        job.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("OPERATION_TIME_LIMIT")
    );
    // Nothing to do until then; the job is not taken again early.
    let outcome = app.issuer().try_execute_task("w").await.unwrap();
    assert_eq!(outcome, ExecutionOutcome::EmptyQueue);

    // A visitor checking meanwhile hears "cannot check now", and the blocked method is not called.
    let before = gets(&app).len();
    let (_, v) = app.verify_api("S.100500.7").await;
    assert_eq!(v["status"], "unavailable", "{v}");
    assert_eq!(gets(&app).len(), before);
    assert_eq!(gets(&app).iter().filter(|(_, s)| *s == 429).count(), 1);
}

#[tokio::test]
async fn a_batched_write_out_of_method_time_waits_for_the_window_without_a_second_email() {
    let app = spawn_app_with(quiet()).await;
    app.sandbox.set_operating(10.0, Duration::from_secs(2));
    for id in [100500, 100501] {
        app.sandbox.move_participant(id, seed::STAGE_GENERATE);
        app.issuer().hint(id).await.unwrap();
    }
    // Inside the batch, the first update is refused for the method's time limit.
    app.sandbox
        .inject(Some("crm.item.update"), 1, FaultKind::OperatingLimit);
    app.issuer().try_execute_batch("w").await.unwrap();
    assert_eq!(app.sink.count(), 2);
    let queued = app
        .store
        .jobs_in_states(&[JobState::Queued], 10)
        .await
        .unwrap();
    assert_eq!(queued.len(), 1, "only the refused write waits");
    assert_eq!(
        queued[0].attempts, 0,
        "waiting for the window spends no attempt"
    );

    tokio::time::sleep(Duration::from_millis(2500)).await;
    app.issuer().try_execute_batch("w").await.unwrap();
    for id in [100500, 100501] {
        assert_eq!(app.stage_of(id), seed::STAGE_SENT, "{id}");
    }
    assert_eq!(app.sink.count(), 2, "no second e-mail");
}
