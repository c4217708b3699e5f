//! The portal refusing us rather than failing: a revoked webhook, a refused comment, a refused batch.
//! None of these is the participant's fault, and none may lose a certificate or send one twice.

use certportal::sandbox::{FaultKind, seed};
use certportal::store::{CertificateStatus, JobState};

use crate::helpers::{Options, quiet, spawn_app_with};

const REVOKED: FaultKind = FaultKind::Refuse(401, "NO_AUTH_FOUND");

#[tokio::test]
async fn a_revoked_webhook_makes_jobs_wait_not_problems() {
    let app = spawn_app_with(quiet()).await;
    app.sandbox.move_participant(100500, seed::STAGE_GENERATE);
    app.sandbox.inject(None, 1000, REVOKED);

    app.issuer().hint(100500).await.unwrap();
    app.issuer().try_execute_task("w").await.unwrap();

    let queued = app
        .store
        .jobs_in_states(&[JobState::Queued], 5)
        .await
        .unwrap();
    assert_eq!(queued.len(), 1, "the job waits for another try");
    assert!(
        queued[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("NO_AUTH_FOUND")
    );
    assert_eq!(app.sink.count(), 0);
    assert!(app.store.certificate(100500).await.unwrap().is_none());
    app.sandbox.clear_faults();
    assert_eq!(app.stage_of(100500), seed::STAGE_GENERATE);
}

#[tokio::test]
async fn an_entry_whose_retries_ran_out_is_finished_by_the_next_poll_without_a_second_email() {
    let app = spawn_app_with(Options {
        extra: vec![("MAX_ATTEMPTS", "1".into())],
        ..quiet()
    })
    .await;
    app.sandbox.move_participant(100500, seed::STAGE_GENERATE);
    app.issuer().hint(100500).await.unwrap();
    // The webhook loses its rights after the e-mail went out: the final write, the problem
    // comment and the move to «Проблемные» are all refused, and the one attempt is used up.
    app.sandbox.inject(Some("crm.item.update"), 1000, REVOKED);
    app.sandbox
        .inject(Some("crm.timeline.comment.add"), 1000, REVOKED);
    app.issuer().try_execute_task("w").await.unwrap();
    assert_eq!(app.sink.count(), 1);
    assert_eq!(app.stage_of(100500), seed::STAGE_GENERATE);
    let failed = app
        .store
        .jobs_in_states(&[JobState::Failed], 5)
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);

    // Fixed; the reconciliation poll finds the participant still waiting.
    app.sandbox.clear_faults();
    app.issuer().hint(100500).await.unwrap();
    app.issuer().try_execute_task("w").await.unwrap();

    assert_eq!(app.stage_of(100500), seed::STAGE_SENT);
    assert_eq!(app.qr_of(100500), Some("S.100500.7".into()));
    assert_eq!(app.sink.count(), 1, "no second e-mail");
    let c = app.store.certificate(100500).await.unwrap().unwrap();
    assert_eq!(c.status, CertificateStatus::Sent);
    let events = app.store.job_events(100500).await.unwrap();
    assert!(events.iter().any(|e| e.outcome == "resumed"));
}

#[tokio::test]
async fn a_refused_problem_comment_still_moves_the_participant_to_problems() {
    let app = spawn_app_with(quiet()).await;
    app.sandbox.inject(
        Some("crm.timeline.comment.add"),
        5,
        FaultKind::Refuse(400, "INVALID_ARG_VALUE"),
    );
    // 100502's contact has no e-mail.
    app.sandbox.move_participant(100502, seed::STAGE_GENERATE);
    app.issuer().hint(100502).await.unwrap();
    app.issuer().try_execute_task("w").await.unwrap();

    assert_eq!(app.stage_of(100502), seed::STAGE_PROBLEM);
    assert!(app.comments_for(100502).is_empty());
    let c = app.store.certificate(100502).await.unwrap().unwrap();
    assert_eq!(c.status, CertificateStatus::Problem);
    assert_eq!(app.sink.count(), 0);
}
