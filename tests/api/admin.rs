//! The staff console: access control, registry search and export, actions, metrics.

use std::time::{Duration, Instant};

use certportal::sandbox::seed;
use certportal::store::{CertificateStatus, IssuedSnapshot};

use crate::helpers::{Options, TestApp, page_text, spawn_app_with};

const LOGIN: &str = "staff";
const PASSWORD: &str = "correct horse battery";

async fn app(workers: usize) -> TestApp {
    spawn_app_with(Options {
        workers,
        extra: vec![
            ("ADMIN_LOGIN", LOGIN.into()),
            ("ADMIN_PASSWORD", PASSWORD.into()),
            ("METRICS_TOKEN", "metrics-secret".into()),
        ],
        ..Options::default()
    })
    .await
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_default()
        .to_string()
}

/// Signs in and returns the client (with its cookie) and the session's CSRF token.
async fn sign_in(app: &TestApp) -> (reqwest::Client, String) {
    let c = browser();
    let page = page_text(&c, format!("{}/admin/login", app.address)).await;
    let r = c
        .post(format!("{}/admin/login", app.address))
        .form(&[
            ("login", LOGIN),
            ("password", PASSWORD),
            ("csrf", &csrf_of(&page)),
            ("next", "/admin/certificates"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "sign-in");
    let list = page_text(&c, format!("{}/admin/certificates", app.address)).await;
    let csrf = csrf_of(&list);
    assert!(!csrf.is_empty());
    (c, csrf)
}

/// Posts a confirmed console action on certificate `number` (extra form fields appended).
async fn act(
    app: &TestApp,
    c: &reqwest::Client,
    csrf: &str,
    number: u64,
    action: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut form = vec![("csrf", csrf), ("confirm", "yes")];
    form.extend_from_slice(extra);
    c.post(format!(
        "{}/admin/certificates/{number}/{action}",
        app.address
    ))
    .form(&form)
    .send()
    .await
    .unwrap()
}

#[tokio::test]
async fn anonymous_access_is_refused_on_every_admin_route() {
    let app = app(0).await;
    let c = browser();
    for path in [
        "/admin",
        "/admin/certificates",
        "/admin/certificates/100500",
        "/admin/certificates/100500/certificate.pdf",
        "/admin/certificates/100500/qr.png",
        "/admin/queue",
    ] {
        let r = c
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{path}");
        assert!(
            r.headers()["location"]
                .to_str()
                .unwrap()
                .starts_with("/admin/"),
            "{path}"
        );
    }
    let r = c
        .get(format!("{}/admin/certificates.csv", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    for path in [
        "/admin/certificates/100500/revoke",
        "/admin/queue/1/retry",
        "/admin/logout",
    ] {
        let r = c
            .post(format!("{}{path}", app.address))
            .form(&[("csrf", "x"), ("confirm", "yes")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{path}");
    }
    let r = c
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn a_wrong_password_is_refused_and_slowed_down() {
    let app = app(0).await;
    let c = browser();
    let mut times = Vec::new();
    for _ in 0..4 {
        let page = page_text(&c, format!("{}/admin/login", app.address)).await;
        let started = Instant::now();
        let r = c
            .post(format!("{}/admin/login", app.address))
            .form(&[
                ("login", LOGIN),
                ("password", "guess"),
                ("csrf", &csrf_of(&page)),
            ])
            .send()
            .await
            .unwrap();
        times.push(started.elapsed());
        assert_eq!(r.status(), 401);
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("Неверный логин или пароль")
        );
    }
    assert!(times[3] >= Duration::from_millis(1500), "{times:?}");
    assert!(times[3] > times[0], "{times:?}");
}

#[tokio::test]
async fn state_changing_forms_without_the_csrf_token_get_403() {
    let app = app(0).await;
    let c = browser();
    let r = c
        .post(format!("{}/admin/login", app.address))
        .form(&[("login", LOGIN), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let (c, _) = sign_in(&app).await;
    app.store
        .record_rendered(&snapshot(100500, "Иванова", 7))
        .await
        .unwrap();
    let r = c
        .post(format!("{}/admin/certificates/100500/revoke", app.address))
        .form(&[("confirm", "yes"), ("reason", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        !app.store
            .certificate(100500)
            .await
            .unwrap()
            .unwrap()
            .is_revoked()
    );
}

fn snapshot(number: i64, last: &str, event: i64) -> IssuedSnapshot {
    IssuedSnapshot {
        number,
        code: format!("S.{number}.7"),
        event_id: Some(event),
        template: "2026-Сертификат".into(),
        last_name: last.into(),
        first_name: "Анна".into(),
        second_name: String::new(),
        event_title: format!("Мероприятие {event}"),
        points: 7,
        points_text: "7 баллов".into(),
        email: Some(format!("p{number}@example.org")),
        pdf_sha256: "00".repeat(32),
    }
}

async fn seed_registry(app: &TestApp, n: i64) {
    for i in 0..n {
        let number = 10_000 + i;
        let last = if i % 10 == 0 {
            "Соловьёва".to_string()
        } else {
            format!("Фамилия{i}")
        };
        app.store
            .record_rendered(&snapshot(number, &last, 1 + i % 3))
            .await
            .unwrap();
        if i % 4 != 0 {
            app.store
                .mark_sent(number, &format!("<{number}@x>"))
                .await
                .unwrap();
        }
    }
    app.store
        .mark_problem(9_999, CertificateStatus::Problem, "нет e-mail")
        .await
        .unwrap();
}

fn numbers_in(html: &str) -> Vec<i64> {
    html.split("<a href=\"/admin/certificates/")
        .skip(1)
        .filter_map(|s| s.split('"').next()?.parse().ok())
        .collect()
}

#[tokio::test]
async fn search_filters_and_pages_give_the_right_rows_over_1000_certificates() {
    let app = app(0).await;
    seed_registry(&app, 1000).await;
    let (c, _) = sign_in(&app).await;
    let get = |q: String| {
        let c = c.clone();
        let url = format!("{}/admin/certificates?{q}", app.address);
        async move { page_text(&c, url).await }
    };
    // Pages of 50, newest number first, no row twice.
    let mut seen = Vec::new();
    let mut page = get(String::new()).await;
    assert!(page.contains("id=\"total\">1001<"), "total");
    for _ in 0..100 {
        let rows = numbers_in(&page);
        seen.extend(rows.iter().copied());
        let Some(next) = page
            .split("id=\"next\" href=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
        else {
            break;
        };
        page = c
            .get(format!(
                "{}{}",
                app.address,
                next.replace("&amp;", "&").replace("&#38;", "&")
            ))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    }
    assert_eq!(seen.len(), 1001);
    assert!(seen.windows(2).all(|w| w[0] > w[1]));
    // Search by name: every tenth row.
    let rows = numbers_in(&get("q=соловьёва".into()).await);
    assert_eq!(rows.len(), 50);
    assert!(rows.iter().all(|n| (n - 10_000) % 10 == 0));
    // By number and by e-mail.
    assert_eq!(numbers_in(&get("q=10567".into()).await), vec![10567]);
    assert_eq!(
        numbers_in(&get("q=p10042%40example.org".into()).await),
        vec![10042]
    );
    // Status and event filters together: queued (not sent) rows of event 1.
    let rows = numbers_in(&get("status=sending&event=1&sort=number_asc".into()).await);
    let expected: Vec<i64> = (0..1000)
        .filter(|i| i % 4 == 0 && i % 3 == 0)
        .map(|i| 10_000 + i)
        .take(50)
        .collect();
    assert_eq!(rows, expected);
    assert_eq!(numbers_in(&get("status=problem".into()).await), vec![9_999]);
    // A date range that excludes today finds nothing.
    assert!(numbers_in(&get("from=2001-01-01&to=2001-12-31".into()).await).is_empty());
}

#[tokio::test]
async fn the_csv_export_round_trips_cyrillic() {
    let app = app(0).await;
    seed_registry(&app, 30).await;
    let (c, _) = sign_in(&app).await;
    let r = c
        .get(format!(
            "{}/admin/certificates.csv?q=соловьёва",
            app.address
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let bytes = r.bytes().await.unwrap();
    assert!(bytes.starts_with(&[0xEF, 0xBB, 0xBF]), "UTF-8 BOM");
    let text = String::from_utf8(bytes[3..].to_vec()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "Номер;Владелец;Мероприятие;Баллы;E-mail;Статус;Выдан;Попыток;Код"
    );
    assert_eq!(lines.len(), 1 + 3);
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.contains("\"Соловьёва Анна\"") && l.contains("\"7 баллов\"")),
        "{text}"
    );
}

#[tokio::test]
async fn resend_sends_one_email_to_the_latest_address_and_is_audited() {
    let app = app(2).await;
    app.sandbox.move_participant(100501, seed::STAGE_GENERATE);
    app.wait_for_mail(1, Duration::from_secs(20)).await;
    app.sandbox.edit(|p| {
        p.emails
            .get_mut(&46)
            .unwrap()
            .push((999, "dmitry.new@example.org".into()))
    });
    let (c, csrf) = sign_in(&app).await;
    let r = act(&app, &c, &csrf, 100501, "resend", &[]).await;
    assert_eq!(r.status(), 303);
    let mails = app.wait_for_mail(2, Duration::from_secs(20)).await;
    assert_eq!(mails.len(), 2);
    assert_eq!(mails[1].to, vec!["dmitry.new@example.org".to_string()]);
    assert_eq!(app.stage_of(100501), seed::STAGE_SENT);
    let page = page_text(&c, format!("{}/admin/certificates/100501", app.address)).await;
    assert!(
        page.contains("staff: повторная отправка"),
        "audit entry shown"
    );
    assert!(
        page.contains("<td>письмо</td><td>успешно</td>"),
        "the job history reads in Russian"
    );
    let pdf = c
        .get(format!(
            "{}/admin/certificates/100501/certificate.pdf",
            app.address
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(pdf.headers()["x-certificate-matches-sent"], "true");
    assert!(pdf.bytes().await.unwrap().starts_with(b"%PDF"));
}

#[tokio::test]
async fn revoking_flips_the_public_verdict_and_unrevoking_restores_it() {
    let app = app(2).await;
    app.sandbox.move_participant(100500, seed::STAGE_GENERATE);
    app.wait_for_mail(1, Duration::from_secs(20)).await;
    let verdict = || async {
        let (_, v) = app.verify_api("S.100500.7").await;
        v["status"].as_str().unwrap().to_string()
    };
    assert_eq!(verdict().await, "authentic");
    let (c, csrf) = sign_in(&app).await;
    let r = act(&app, &c, &csrf, 100500, "revoke", &[("reason", "дубликат")]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(verdict().await, "not_authentic");
    let r = act(&app, &c, &csrf, 100500, "unrevoke", &[]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(verdict().await, "authentic");
}

#[tokio::test]
async fn metrics_need_the_token_and_count_what_happened() {
    let app = app(2).await;
    app.sandbox.move_participant(100500, seed::STAGE_GENERATE);
    app.wait_for_mail(1, Duration::from_secs(20)).await;
    let r = app
        .http
        .get(format!("{}/metrics", app.address))
        .bearer_auth("metrics-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("certportal_certificates_issued_total 1"),
        "{text}"
    );
    assert!(text.contains("certportal_queue_depth 0"), "{text}");
    assert!(!text.contains("metrics-secret"));
}

#[tokio::test]
async fn reissuing_runs_the_whole_pipeline_again_for_a_sent_certificate() {
    let app = app(2).await;
    app.sandbox.move_participant(100500, seed::STAGE_GENERATE);
    app.wait_for_mail(1, Duration::from_secs(20)).await;
    assert_eq!(app.stage_of(100500), seed::STAGE_SENT);
    // Staff corrected the surname in the CRM and issue again.
    app.sandbox.edit(|p| {
        if let Some(c) = p.item_mut(certportal::sandbox::CONTACT, 45) {
            c.insert("lastName".into(), "Иванова-Петрова".into());
        }
    });
    let (c, csrf) = sign_in(&app).await;
    let r = act(&app, &c, &csrf, 100500, "reissue", &[]).await;
    assert_eq!(r.status(), 303);
    let mails = app.wait_for_mail(2, Duration::from_secs(20)).await;
    assert_eq!(mails.len(), 2);
    let pdf = crate::helpers::parse_mail(&mails[1]).pdf;
    assert!(crate::helpers::pdf_text(&pdf).contains("Иванова-Петрова"));
    app.settle().await;
    assert_eq!(app.stage_of(100500), seed::STAGE_SENT);
    let record = app.store.certificate(100500).await.unwrap().unwrap();
    assert_eq!(record.snapshot.last_name, "Иванова-Петрова");
}
