//! The store on both backends: the same assertions against SQLite and PostgreSQL.

use certportal::store::{
    CertificateStatus, IssuedSnapshot, JobKind, JobState, RegistryFilter, RegistrySort, StageEntry,
    Store,
};
use secrecy::SecretString;

use crate::helpers::{Db, fresh_database};

async fn store(db: Db) -> (Store, Option<tempfile::TempDir>) {
    let (url, dir) = fresh_database(db).await;
    (
        Store::connect(&url).await.expect("connects and migrates"),
        dir,
    )
}

fn snapshot(number: i64) -> IssuedSnapshot {
    IssuedSnapshot {
        number,
        code: format!("S.{number}.7"),
        event_id: Some(7),
        template: "2026-Сертификат".into(),
        last_name: "Иванова".into(),
        first_name: "Анастасия".into(),
        second_name: "Сергеевна".into(),
        event_title: "Олимпиада".into(),
        points: 7,
        points_text: "7 баллов".into(),
        email: Some("a@example.org".into()),
        pdf_sha256: "ab".repeat(32),
    }
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test] async fn $name() { super::$name(super::Db::Sqlite).await } )* }
        mod postgres { $( #[tokio::test] async fn $name() { super::$name(super::Db::Postgres).await } )* }
    };
}

both_backends!(
    duplicate_hints_for_one_participant_make_one_job,
    a_job_is_leased_by_one_worker_and_taken_again_after_its_lease,
    a_stage_entry_is_bound_to_one_job_only,
    a_failed_stage_entry_is_resumed_once_with_its_progress,
    an_entry_that_keeps_failing_is_left_to_staff_after_three_takeovers,
    a_reissue_job_is_read_back_as_a_reissue,
    progress_survives_and_a_lost_lease_refuses_writes,
    certificates_are_recorded_sent_and_revoked,
    admin_passwords_are_checked_against_argon2_hashes,
    migrations_can_run_twice,
    a_postponed_job_waits_without_spending_its_attempt,
    the_registry_searches_filters_and_pages_alike_on_both_backends,
);

async fn duplicate_hints_for_one_participant_make_one_job(db: Db) {
    let (s, _d) = store(db).await;
    assert!(s.enqueue(100, JobKind::Issue).await.unwrap());
    for _ in 0..4 {
        assert!(!s.enqueue(100, JobKind::Issue).await.unwrap());
    }
    assert!(s.enqueue(101, JobKind::Issue).await.unwrap());
    assert!(s.enqueue(100, JobKind::Resend).await.unwrap());
    assert_eq!(s.pending_job_count().await.unwrap(), 3);
}

async fn a_job_is_leased_by_one_worker_and_taken_again_after_its_lease(db: Db) {
    let (s, _d) = store(db).await;
    s.enqueue(100, JobKind::Issue).await.unwrap();
    let first = s.claim_jobs("w1", 10, 300).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(s.claim_jobs("w2", 10, 300).await.unwrap().is_empty());
    // A new hint while the job runs is folded into it.
    assert!(!s.enqueue(100, JobKind::Issue).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let again = s.claim_jobs("w2", 10, 300).await.unwrap();
    assert_eq!(again.len(), 1, "the dead worker's job is taken again");
    assert_eq!(again[0].job.attempts, 2);
    s.finish_job(&again[0], JobState::Done, None).await.unwrap();
    assert_eq!(s.pending_job_count().await.unwrap(), 0);
    assert!(
        s.enqueue(100, JobKind::Issue).await.unwrap(),
        "a later stage entry queues anew"
    );
}

async fn a_stage_entry_is_bound_to_one_job_only(db: Db) {
    let (s, _d) = store(db).await;
    s.enqueue(100, JobKind::Issue).await.unwrap();
    let a = s.claim_jobs("w1", 1, 60_000).await.unwrap().remove(0);
    assert_eq!(
        s.bind_stage_entry(&a, "stage@t1").await.unwrap(),
        StageEntry::New
    );
    s.finish_job(&a, JobState::Done, None).await.unwrap();
    s.enqueue(100, JobKind::Issue).await.unwrap();
    let b = s.claim_jobs("w1", 1, 60_000).await.unwrap().remove(0);
    assert_eq!(
        s.bind_stage_entry(&b, "stage@t1").await.unwrap(),
        StageEntry::Served,
        "same entry twice"
    );
    assert_eq!(
        s.bind_stage_entry(&b, "stage@t2").await.unwrap(),
        StageEntry::New,
        "a new entry"
    );
}

async fn a_failed_stage_entry_is_resumed_once_with_its_progress(db: Db) {
    let (s, _d) = store(db).await;
    s.enqueue(100, JobKind::Issue).await.unwrap();
    let mut a = s.claim_jobs("w1", 1, 60_000).await.unwrap().remove(0);
    s.bind_stage_entry(&a, "stage@t1").await.unwrap();
    a.job.dedupe_key = Some("stage@t1".into());
    a.job.progress.confirmed = true;
    a.job.progress.mail_sent = true;
    a.job.progress.code = Some("S.100.7".into());
    assert!(s.save_progress(&a, 60_000).await.unwrap());
    s.finish_job(&a, JobState::Failed, Some("Bitrix24 down"))
        .await
        .unwrap();

    s.enqueue(100, JobKind::Issue).await.unwrap();
    let b = s.claim_jobs("w1", 1, 60_000).await.unwrap().remove(0);
    match s.bind_stage_entry(&b, "stage@t1").await.unwrap() {
        StageEntry::Resumed(p) => {
            assert!(p.mail_sent, "the e-mail already sent is remembered");
            assert_eq!(p.code.as_deref(), Some("S.100.7"));
        }
        other => panic!("expected a resumed entry, got {other:?}"),
    }
    s.finish_job(&b, JobState::Done, None).await.unwrap();
    s.enqueue(100, JobKind::Issue).await.unwrap();
    let c = s.claim_jobs("w1", 1, 60_000).await.unwrap().remove(0);
    assert_eq!(
        s.bind_stage_entry(&c, "stage@t1").await.unwrap(),
        StageEntry::Served,
        "resumed once, then served"
    );
}

async fn an_entry_that_keeps_failing_is_left_to_staff_after_three_takeovers(db: Db) {
    let (s, _d) = store(db).await;
    let mut takeovers = 0;
    for _ in 0..6 {
        s.enqueue(100, JobKind::Issue).await.unwrap();
        let mut job = s.claim_jobs("w1", 1, 60_000).await.unwrap().remove(0);
        match s.bind_stage_entry(&job, "stage@t1").await.unwrap() {
            StageEntry::New => {}
            StageEntry::Resumed(p) => {
                takeovers += 1;
                assert!(!p.problem_commented, "a new problem gets its own comment");
                job.job.progress = p;
            }
            StageEntry::Served => break,
        }
        job.job.progress.problem_commented = true;
        assert!(s.save_progress(&job, 60_000).await.unwrap());
        s.finish_job(&job, JobState::Failed, Some("down"))
            .await
            .unwrap();
    }
    assert_eq!(takeovers, 3);
}

async fn a_reissue_job_is_read_back_as_a_reissue(db: Db) {
    let (s, _d) = store(db).await;
    s.enqueue(100, JobKind::Reissue).await.unwrap();
    let job = s.claim_jobs("w1", 1, 60_000).await.unwrap().remove(0);
    assert_eq!(job.job.kind, JobKind::Reissue);
}

async fn progress_survives_and_a_lost_lease_refuses_writes(db: Db) {
    let (s, _d) = store(db).await;
    s.enqueue(100, JobKind::Issue).await.unwrap();
    let mut a = s.claim_jobs("w1", 1, 200).await.unwrap().remove(0);
    a.job.progress.mail_sent = true;
    a.job.progress.message_id = Some("<m@x>".into());
    assert!(s.save_progress(&a, 200).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let b = s.claim_jobs("w2", 1, 60_000).await.unwrap().remove(0);
    assert!(
        b.job.progress.mail_sent,
        "the new worker sees the e-mail was sent"
    );
    assert_eq!(b.job.progress.message_id.as_deref(), Some("<m@x>"));
    assert!(
        !s.save_progress(&a, 200).await.unwrap(),
        "the old worker lost its lease"
    );
}

async fn certificates_are_recorded_sent_and_revoked(db: Db) {
    let (s, _d) = store(db).await;
    s.record_rendered(&snapshot(100500)).await.unwrap();
    let c = s.certificate(100500).await.unwrap().unwrap();
    assert_eq!(c.status, CertificateStatus::Sending);
    assert_eq!(c.holder_full(), "Иванова Анастасия Сергеевна");
    s.mark_sent(100500, "<id@x>").await.unwrap();
    let c = s.certificate(100500).await.unwrap().unwrap();
    assert_eq!(c.status, CertificateStatus::Sent);
    assert!(c.issued_at.is_some());
    assert!(
        s.set_revoked(100500, Some("ошибка в фамилии"))
            .await
            .unwrap()
    );
    assert!(s.certificate(100500).await.unwrap().unwrap().is_revoked());
    assert!(s.set_revoked(100500, None).await.unwrap());
    assert!(!s.certificate(100500).await.unwrap().unwrap().is_revoked());
    s.mark_problem(100501, CertificateStatus::Problem, "нет e-mail")
        .await
        .unwrap();
    let p = s.certificate(100501).await.unwrap().unwrap();
    assert_eq!(
        (p.status, p.problem.as_deref()),
        (CertificateStatus::Problem, Some("нет e-mail"))
    );
    assert!(s.certificate(9).await.unwrap().is_none());
}

async fn admin_passwords_are_checked_against_argon2_hashes(db: Db) {
    let (s, _d) = store(db).await;
    let good = SecretString::from("correct horse".to_string());
    s.upsert_admin("staff", &good).await.unwrap();
    assert!(s.check_admin("staff", &good).await.unwrap().is_some());
    let bad = SecretString::from("wrong password".to_string());
    assert!(s.check_admin("staff", &bad).await.unwrap().is_none());
    assert!(s.check_admin("nobody", &good).await.unwrap().is_none());
    assert!(
        s.upsert_admin("staff", &SecretString::from("short".to_string()))
            .await
            .is_err()
    );
    assert_eq!(s.admins().await.unwrap().len(), 1);
    assert!(s.remove_admin("staff").await.unwrap());
}

async fn migrations_can_run_twice(db: Db) {
    let (url, _d) = fresh_database(db).await;
    Store::connect(&url).await.unwrap();
    let again = Store::connect(&url).await.unwrap();
    again.ping().await.unwrap();
}

async fn a_postponed_job_waits_without_spending_its_attempt(db: Db) {
    let (s, _d) = store(db).await;
    s.enqueue(100, JobKind::Issue).await.unwrap();
    let claimed = s.claim_jobs("w1", 1, 30_000).await.unwrap().remove(0);
    assert_eq!(claimed.job.attempts, 1);
    let later = certportal::store::now_ms() + 60_000;
    s.postpone_job(&claimed, later, "OPERATION_TIME_LIMIT")
        .await
        .unwrap();
    assert!(s.claim_jobs("w1", 1, 30_000).await.unwrap().is_empty());
    let queued = s.jobs_in_states(&[JobState::Queued], 5).await.unwrap();
    assert_eq!((queued[0].attempts, queued[0].run_at), (0, later));
    // A plain retry keeps the attempt it spent.
    s.retry_now(queued[0].id).await.unwrap();
    let claimed = s.claim_jobs("w1", 1, 30_000).await.unwrap().remove(0);
    s.retry_job(&claimed, 0, "SMTP 451").await.unwrap();
    let queued = s.jobs_in_states(&[JobState::Queued], 5).await.unwrap();
    assert_eq!(queued[0].attempts, 1);
}

async fn the_registry_searches_filters_and_pages_alike_on_both_backends(db: Db) {
    let (s, _d) = store(db).await;
    let surnames = ["Иванова", "Петров", "Кузнецова"];
    for i in 0..60_i64 {
        let mut c = snapshot(1000 + i);
        c.last_name = format!("{}{i}", surnames[(i % 3) as usize]);
        c.event_id = Some(1 + i % 2);
        c.email = Some(format!("p{i}@example.org"));
        s.record_rendered(&c).await.unwrap();
        if i % 4 != 0 {
            s.mark_sent(1000 + i, "<m@x>").await.unwrap();
        }
    }
    let numbers = |page: &certportal::store::RegistryPage| -> Vec<i64> {
        page.rows.iter().map(|r| r.record.snapshot.number).collect()
    };
    let search = |q: &str| RegistryFilter {
        q: Some(q.into()),
        ..Default::default()
    };
    // Case-insensitive Cyrillic substring, long enough for a trigram index and too short for one.
    let page = s
        .registry_page(&search("КУЗНЕЦОВА5"), RegistrySort::NumberAsc, None, 50)
        .await
        .unwrap();
    assert_eq!(numbers(&page), vec![1005, 1050, 1053, 1056, 1059]);
    let page = s
        .registry_page(&search("ов"), RegistrySort::NumberAsc, None, 100)
        .await
        .unwrap();
    assert_eq!(page.rows.len(), 60);
    let page = s
        .registry_page(&search("p17@"), RegistrySort::NumberAsc, None, 50)
        .await
        .unwrap();
    assert_eq!(numbers(&page), vec![1017]);
    // Status and event together: unsent certificates (every 4th) of event 1 (even i).
    let filter = RegistryFilter {
        status: Some("sending".into()),
        event_id: Some(1),
        ..Default::default()
    };
    let page = s
        .registry_page(&filter, RegistrySort::NumberDesc, None, 50)
        .await
        .unwrap();
    let expected: Vec<i64> = (0..60)
        .rev()
        .filter(|i| i % 4 == 0)
        .map(|i| 1000 + i)
        .collect();
    assert_eq!(numbers(&page), expected);
    // Keyset pages cover everything once.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s
            .registry_page(
                &RegistryFilter::default(),
                RegistrySort::NumberDesc,
                after.as_deref(),
                25,
            )
            .await
            .unwrap();
        seen.extend(numbers(&page));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, (1000..1060).rev().collect::<Vec<i64>>());
    let counts = s.registry_counts(&search("иванова")).await.unwrap();
    let count = |k: &str| counts.iter().find(|(s, _)| s == k).map_or(0, |(_, n)| *n);
    assert_eq!((count("sent"), count("sending")), (15, 5));
}
