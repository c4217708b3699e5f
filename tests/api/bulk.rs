//! Many participants at once: bulk reads, batched writes, and the portal's request count.

use std::time::Duration;

use certportal::sandbox::{FaultKind, seed};

use crate::helpers::{Options, TestApp, spawn_app_with};

fn add_participants(app: &TestApp, ids: std::ops::Range<u64>) {
    app.sandbox.edit(|p| {
        for id in ids {
            let contact = 70_000 + id;
            let email = format!("m{id}@example.org");
            seed::add_contact(
                p,
                contact,
                "Массовый",
                &format!("Участник{id}"),
                "",
                &[(80_000 + id, email.as_str())],
            );
            seed::add_participant(p, id, contact, 7, None, seed::STAGE_NEW);
        }
        p.changes.clear();
    });
}

#[tokio::test]
async fn five_hundred_participants_moved_at_once_are_issued_within_the_portal_limit() {
    // Arrange
    let app = spawn_app_with(Options {
        extra: vec![("BITRIX_RATE", "2".into())],
        ..Options::default()
    })
    .await;
    add_participants(&app, 1..501);
    app.sandbox.set_rate_limit(true);
    let before = app.sandbox.requests().len();
    // Act
    app.sandbox.edit(|p| {
        for id in 1..501 {
            p.move_item(seed::PARTICIPANT_TYPE, id, seed::STAGE_GENERATE);
        }
    });
    let mails = app.wait_for_mail(500, Duration::from_secs(240)).await;
    app.settle().await;
    // Assert
    assert_eq!(mails.len(), 500);
    let mut to: Vec<String> = mails.iter().map(|m| m.to.join(",")).collect();
    to.sort();
    to.dedup();
    assert_eq!(to.len(), 500, "nobody gets two e-mails");
    for id in [1, 250, 500] {
        assert_eq!(app.stage_of(id), seed::STAGE_SENT, "{id}");
        assert_eq!(app.qr_of(id), Some(format!("S.{id}.7")));
    }
    let sent = (1..501)
        .filter(|id| app.stage_of(*id) == seed::STAGE_SENT)
        .count();
    assert_eq!(sent, 500);
    let requests = app.sandbox.requests().len() - before;
    // Unbatched this costs ~4 requests per certificate; the benchmark measures ~0.10 (52 here when
    // the machine is quiet, 68 during the whole suite): a loaded run batches less tightly.
    assert!(requests <= 100, "{requests} requests for 500 certificates");
    assert!(
        app.sandbox.requests().iter().all(|r| r.status != 503),
        "the client stayed under the limit"
    );
}

#[tokio::test]
async fn a_failing_sub_call_in_a_batch_retries_alone() {
    let app = spawn_app_with(Options {
        workers: 1,
        ..Options::default()
    })
    .await;
    add_participants(&app, 1..6);
    app.sandbox
        .inject(Some("crm.item.update"), 1, FaultKind::ServerError);
    app.sandbox.edit(|p| {
        for id in 1..6 {
            p.move_item(seed::PARTICIPANT_TYPE, id, seed::STAGE_GENERATE);
        }
    });
    let mails = app.wait_for_mail(5, Duration::from_secs(30)).await;
    app.settle().await;
    assert_eq!(mails.len(), 5, "one e-mail each, the retried one included");
    for id in 1..6 {
        assert_eq!(app.stage_of(id), seed::STAGE_SENT, "{id}");
    }
    let mut retried = 0;
    for id in 1..6 {
        let events = app.store.job_events(id as i64).await.unwrap();
        retried += events.iter().filter(|e| e.step == "retry").count();
    }
    assert_eq!(retried, 1, "only the failed sub-call was retried");
}

#[tokio::test]
async fn a_batch_the_portal_refuses_as_a_whole_is_written_item_by_item() {
    let app = spawn_app_with(Options {
        workers: 1,
        ..Options::default()
    })
    .await;
    add_participants(&app, 1..6);
    app.sandbox.inject(Some("batch"), 1, FaultKind::TooLarge);
    app.sandbox.edit(|p| {
        for id in 1..6 {
            p.move_item(seed::PARTICIPANT_TYPE, id, seed::STAGE_GENERATE);
        }
    });
    let mails = app.wait_for_mail(5, Duration::from_secs(30)).await;
    app.settle().await;
    assert_eq!(mails.len(), 5);
    for id in 1..6 {
        assert_eq!(app.stage_of(id), seed::STAGE_SENT, "{id}");
        assert_eq!(app.qr_of(id), Some(format!("S.{id}.7")));
        assert!(app.comments_for(id).is_empty(), "{id} reported no problem");
    }
    let log = app.sandbox.requests();
    assert_eq!(log.iter().filter(|r| r.status == 413).count(), 1);
    assert!(
        log.iter()
            .any(|r| r.method == "crm.item.update" && r.status == 200),
        "the refused batch's items were written directly"
    );
}
