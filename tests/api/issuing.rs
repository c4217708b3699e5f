//! From «Сформировать документ» to the mailbox and «Выслан файл», against the sandbox portal.

use std::time::Duration;

use certportal::sandbox::{FaultKind, seed};
use certportal::store::CertificateStatus;
use sha2::Digest;

use crate::helpers::{Db, Options, parse_mail, pdf_qr, pdf_text, spawn_app, spawn_app_with};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_participant_entering_the_stage_gets_the_certificate_by_mail() {
    // Arrange
    let app = spawn_app().await;
    // Act
    app.sandbox.move_participant(100500, seed::STAGE_GENERATE);
    let mails = app.wait_for_mail(1, WAIT).await;
    // Assert
    assert_eq!(mails.len(), 1);
    let m = parse_mail(&mails[0]);
    assert_eq!(m.to, "a.ivanova@example.org");
    assert!(
        m.subject
            .contains("Инженерная олимпиада школьников «Будущее Сибири»"),
        "{}",
        m.subject
    );
    assert!(m.text.contains("Благодарим вас за участие"), "{}", m.text);
    assert!(m.html.contains("<p>Здравствуйте!</p>"), "{}", m.html);
    assert_eq!(m.attachment_name, "Сертификат-100500.pdf");
    let text = pdf_text(&m.pdf);
    assert!(
        text.contains("Иванова Анастасия") && text.contains("7 баллов") && text.contains("№100500"),
        "{text}"
    );
    assert_eq!(pdf_qr(&m.pdf, 150).as_deref(), Some("S.100500.7"));
    assert_eq!(app.stage_of(100500), seed::STAGE_SENT);
    assert_eq!(app.qr_of(100500).as_deref(), Some("S.100500.7"));
    let record = app.store.certificate(100500).await.unwrap().unwrap();
    assert_eq!(record.status, CertificateStatus::Sent);
    assert_eq!(
        record.snapshot.email.as_deref(),
        Some("a.ivanova@example.org")
    );
    assert_eq!(
        record.snapshot.pdf_sha256,
        hex::encode(sha2::Sha256::digest(&m.pdf))
    );
    assert_eq!(
        record
            .message_id
            .as_deref()
            .map(|s| s.trim_matches(['<', '>'])),
        Some(m.message_id.as_str())
    );
}

#[tokio::test]
async fn a_contact_with_two_emails_gets_it_at_the_last_added_one() {
    let app = spawn_app().await;
    app.sandbox.move_participant(100501, seed::STAGE_GENERATE);
    let mails = app.wait_for_mail(1, WAIT).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, vec!["d.petrov@example.org".to_string()]);
}

#[tokio::test]
async fn an_individual_achievement_overrides_the_event_points() {
    let app = spawn_app().await;
    app.sandbox.move_participant(100503, seed::STAGE_GENERATE);
    let mails = app.wait_for_mail(1, WAIT).await;
    let m = parse_mail(&mails[0]);
    assert!(pdf_text(&m.pdf).contains("10 баллов"));
    assert_eq!(app.qr_of(100503).as_deref(), Some("S.100503.10"));
}

#[tokio::test]
async fn a_contact_without_email_goes_to_problem_with_the_reason_in_the_crm() {
    let app = spawn_app().await;
    app.sandbox.move_participant(100502, seed::STAGE_GENERATE);
    app.wait_for_mail(1, Duration::from_secs(3)).await;
    assert_eq!(app.sink.count(), 0);
    assert_eq!(app.stage_of(100502), seed::STAGE_PROBLEM);
    let comments = app.comments_for(100502);
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(comments[0].contains("нет e-mail"), "{comments:?}");
    let record = app.store.certificate(100502).await.unwrap().unwrap();
    assert_eq!(record.status, CertificateStatus::Problem);
}

#[tokio::test]
async fn data_staff_must_fix_is_reported_as_a_problem() {
    let app = spawn_app().await;
    let cases: [(u64, &str, &str, &str); 3] = [
        (8, "2030-Несуществующий", "7 баллов", "не найден"),
        (9, "2026-Сертификат", "много баллов", "нет числа"),
        (10, "", "7 баллов", "не выбран шаблон"),
    ];
    app.sandbox.edit(|p| {
        for (i, (event, template, points, _)) in cases.iter().enumerate() {
            seed::add_event(
                p,
                &seed::NewEvent {
                    id: *event,
                    template,
                    title: "Событие",
                    points,
                    letter: "Письмо",
                },
            );
            seed::add_participant(p, 200 + i as u64, 45, *event, None, seed::STAGE_NEW);
        }
        seed::add_participant(p, 210, 45, 999, None, seed::STAGE_NEW);
    });
    for id in [200, 201, 202, 210] {
        app.sandbox.move_participant(id, seed::STAGE_GENERATE);
    }
    app.wait_for_mail(1, Duration::from_secs(3)).await;
    assert_eq!(app.sink.count(), 0);
    for (i, (_, _, _, reason)) in cases.iter().enumerate() {
        let id = 200 + i as u64;
        assert_eq!(app.stage_of(id), seed::STAGE_PROBLEM, "{id}");
        assert!(
            app.comments_for(id).iter().any(|c| c.contains(reason)),
            "{id}: {:?}",
            app.comments_for(id)
        );
    }
    assert!(
        app.comments_for(210)
            .iter()
            .any(|c| c.contains("не найдено")),
        "{:?}",
        app.comments_for(210)
    );
}

#[tokio::test]
async fn a_permanent_smtp_rejection_is_a_problem_and_not_retried() {
    let app = spawn_app().await;
    app.sink
        .faults
        .reject_permanent
        .store(true, std::sync::atomic::Ordering::SeqCst);
    app.sandbox.move_participant(100500, seed::STAGE_GENERATE);
    app.wait_for_mail(1, Duration::from_secs(3)).await;
    assert_eq!(app.stage_of(100500), seed::STAGE_PROBLEM);
    assert!(
        app.comments_for(100500)
            .iter()
            .any(|c| c.contains("отклонил")),
        "{:?}",
        app.comments_for(100500)
    );
}

#[tokio::test]
async fn the_same_event_delivered_five_times_sends_one_email() {
    let app = spawn_app_with(Options {
        register_handler: false,
        ..Options::default()
    })
    .await;
    app.sandbox.move_participant(100500, seed::STAGE_GENERATE);
    let sends = (0..5).map(|_| app.post_update_event(100500));
    for r in futures_util::future::join_all(sends).await {
        assert_eq!(r.status(), 200);
    }
    let mails = app.wait_for_mail(1, WAIT).await;
    for _ in 0..3 {
        assert_eq!(app.post_update_event(100500).await.status(), 200);
    }
    app.settle().await;
    assert_eq!(app.sink.count(), 1, "{mails:?}");
    assert_eq!(app.stage_of(100500), seed::STAGE_SENT);
}

#[tokio::test]
async fn an_item_not_in_the_stage_is_left_alone() {
    let app = spawn_app_with(Options {
        register_handler: false,
        ..Options::default()
    })
    .await;
    assert_eq!(app.post_update_event(100500).await.status(), 200);
    app.settle().await;
    assert_eq!(app.sink.count(), 0);
    assert_eq!(app.stage_of(100500), seed::STAGE_NEW);
    assert!(app.comments_for(100500).is_empty());
}

#[tokio::test]
async fn rate_limits_and_server_faults_still_deliver_once() {
    let app = spawn_app().await;
    app.sandbox.set_rate_limit(true);
    app.sandbox
        .inject(Some("crm.item.get"), 2, FaultKind::ServerError);
    app.sandbox
        .inject(Some("crm.item.update"), 1, FaultKind::Html);
    app.sandbox.inject(None, 2, FaultKind::Limit);
    app.sandbox.inject(
        Some("crm.contact.get"),
        1,
        FaultKind::Delay(Duration::from_millis(500)),
    );
    for id in [100500, 100501, 100503] {
        app.sandbox.move_participant(id, seed::STAGE_GENERATE);
    }
    let mails = app.wait_for_mail(3, Duration::from_secs(40)).await;
    assert_eq!(mails.len(), 3);
    for id in [100500, 100501, 100503] {
        assert_eq!(app.stage_of(id), seed::STAGE_SENT, "{id}");
    }
}

#[tokio::test]
async fn smtp_down_then_up_delivers_once() {
    let app = spawn_app().await;
    app.sink
        .faults
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    app.sandbox.move_participant(100500, seed::STAGE_GENERATE);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(app.sink.count(), 0);
    app.sink
        .faults
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    app.sink
        .faults
        .reject_transient
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let mails = app.wait_for_mail(1, WAIT).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(app.stage_of(100500), seed::STAGE_SENT);
}

#[tokio::test]
async fn a_worker_killed_between_email_and_stage_move_is_resumed_without_a_second_email() {
    // Arrange: no background workers; this test is the worker.
    let app = spawn_app_with(Options {
        workers: 0,
        lease_secs: 1,
        register_handler: false,
        ..Options::default()
    })
    .await;
    app.sandbox.move_participant(100500, seed::STAGE_GENERATE);
    app.issuer().hint(100500).await.unwrap();
    app.sandbox.inject(
        Some("crm.item.update"),
        1,
        FaultKind::Delay(Duration::from_secs(30)),
    );
    // Act: the worker sends, then dies while moving the stage.
    let issuer = app.issuer().clone();
    let doomed = tokio::spawn(async move { issuer.try_execute_task("doomed").await });
    let deadline = std::time::Instant::now() + WAIT;
    while app.sink.count() == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    doomed.abort();
    app.sandbox.clear_faults();
    assert_eq!(app.stage_of(100500), seed::STAGE_GENERATE);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let outcome = app.issuer().try_execute_task("successor").await.unwrap();
    // Assert
    assert_eq!(
        outcome,
        certportal::issuing::ExecutionOutcome::TaskCompleted
    );
    assert_eq!(app.sink.count(), 1);
    assert_eq!(app.stage_of(100500), seed::STAGE_SENT);
    assert_eq!(app.qr_of(100500).as_deref(), Some("S.100500.7"));
}

#[tokio::test]
async fn the_poll_finds_participants_whose_event_was_lost() {
    let app = spawn_app_with(Options {
        poll_secs: 1,
        register_handler: false,
        ..Options::default()
    })
    .await;
    app.sandbox.move_participant(100500, seed::STAGE_GENERATE);
    let mails = app.wait_for_mail(1, WAIT).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(app.stage_of(100500), seed::STAGE_SENT);
}

#[tokio::test]
async fn two_instances_on_postgres_share_fifty_participants_without_duplicates() {
    // Arrange
    let first = spawn_app_with(Options {
        db: Db::Postgres,
        register_handler: false,
        ..Options::default()
    })
    .await;
    let db = first.store.clone();
    let ids: Vec<u64> = (300..350).collect();
    first.sandbox.edit(|p| {
        for (i, id) in ids.iter().enumerate() {
            let contact = 5000 + i as u64;
            let email = format!("p{id}@example.org");
            seed::add_contact(
                p,
                contact,
                "Участник",
                &format!("Номер{i}"),
                "",
                &[(9000 + i as u64, email.as_str())],
            );
            seed::add_participant(p, *id, contact, 7, None, seed::STAGE_NEW);
        }
    });
    let url = first_database_url(&db).await;
    let second = spawn_app_with(Options {
        db: Db::Postgres,
        database: Some(url),
        sandbox: Some(first.sandbox.clone()),
        sink: Some(first.sink.clone()),
        register_handler: false,
        ..Options::default()
    })
    .await;
    // Act: the portal's events go to both instances, alternating, and every one is sent to both.
    for id in &ids {
        first.sandbox.move_participant(*id, seed::STAGE_GENERATE);
    }
    for id in &ids {
        let (a, b) = tokio::join!(first.post_update_event(*id), second.post_update_event(*id));
        assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    }
    let mails = first.wait_for_mail(50, Duration::from_secs(60)).await;
    second.settle().await;
    // Assert
    let mut to: Vec<String> = first
        .sink
        .messages()
        .iter()
        .map(|m| m.to.join(","))
        .collect();
    assert_eq!(to.len(), 50, "{} mails", mails.len());
    to.sort();
    to.dedup();
    assert_eq!(to.len(), 50, "a participant got two e-mails");
    for id in &ids {
        assert_eq!(first.stage_of(*id), seed::STAGE_SENT);
    }
}

async fn first_database_url(store: &certportal::store::Store) -> secrecy::SecretString {
    let name: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let admin = crate::helpers::postgres_admin_url();
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(b, _)| b)
        .to_string();
    secrecy::SecretString::from(format!("{base}/{name}"))
}

#[tokio::test]
async fn a_template_option_added_after_start_up_is_found() {
    let app = spawn_app_with(crate::helpers::quiet()).await;
    app.sandbox.move_participant(100500, seed::STAGE_GENERATE);
    app.issuer().hint(100500).await.unwrap();
    app.issuer().try_execute_task("w").await.unwrap();
    assert_eq!(app.sink.count(), 1, "the options were read");

    // Staff add a list option and an event using it while the service runs.
    app.sandbox.edit(|p| {
        let items = p
            .fields
            .get_mut(&seed::EVENT_TYPE)
            .and_then(|f| f["ufCrm19Template"]["items"].as_array_mut())
            .expect("the template list field");
        items.push(serde_json::json!({"ID": "52", "VALUE": "2026-Сертификат"}));
        seed::add_event(
            p,
            &seed::NewEvent {
                id: 8,
                template: "52",
                title: "День открытых дверей",
                points: "3 балла",
                letter: "Спасибо!",
            },
        );
        seed::add_participant(p, 100600, 45, 8, None, seed::STAGE_GENERATE);
    });
    app.issuer().hint(100600).await.unwrap();
    app.issuer().try_execute_task("w").await.unwrap();

    assert_eq!(app.stage_of(100600), seed::STAGE_SENT);
    assert_eq!(app.sink.count(), 2);
}
