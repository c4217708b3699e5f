//! Public verification: every verdict, the pages, the JSON API and its protections.

use std::time::Duration;

use certportal::render::QrMatrix;
use certportal::sandbox::{FaultKind, seed};
use serde_json::Value;

use crate::helpers::{Options, page_text, quiet, spawn_app, spawn_app_with};

fn check<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or(&Value::Null)
}

async fn issued(id: u64) -> crate::helpers::TestApp {
    let app = spawn_app().await;
    app.sandbox.move_participant(id, seed::STAGE_GENERATE);
    app.wait_for_mail(1, Duration::from_secs(20)).await;
    assert_eq!(app.stage_of(id), seed::STAGE_SENT);
    app
}

#[tokio::test]
async fn an_issued_certificate_is_authentic_with_every_check_passed() {
    let app = issued(100500).await;
    let (status, v) = app.verify_api("S.100500.7").await;
    assert_eq!(status, 200);
    assert_eq!(v["status"], "authentic", "{v}");
    assert!(
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["result"] == "passed"),
        "{v}"
    );
    let c = &v["certificate"];
    assert_eq!(c["number"], 100500);
    assert_eq!(c["holder"], "Иванова А. С.");
    assert_eq!(
        c["event"],
        "Инженерная олимпиада школьников «Будущее Сибири»"
    );
    assert_eq!(
        (c["points"].as_u64(), c["points_text"].as_str()),
        (Some(7), Some("7 баллов"))
    );
    assert!(
        c["issued_at"].as_str().is_some_and(|d| d.ends_with('Z')),
        "{v}"
    );
    assert!(
        !v.to_string().contains("@example.org"),
        "e-mails are never shown"
    );
}

#[tokio::test]
async fn wrong_points_in_the_code_are_not_authentic() {
    let app = issued(100500).await;
    let (_, v) = app.verify_api("S.100500.10").await;
    assert_eq!(v["status"], "not_authentic");
    assert_eq!(check(&v, "points")["result"], "failed");
}

#[tokio::test]
async fn a_participant_without_a_certificate_is_not_authentic() {
    let app = spawn_app_with(quiet()).await;
    let (_, v) = app.verify_api("S.100500.7").await;
    assert_eq!(v["status"], "not_authentic", "{v}");
    assert_eq!(check(&v, "issued")["result"], "failed");
    app.sandbox
        .edit(|p| p.move_item(seed::PARTICIPANT_TYPE, 100501, seed::STAGE_PROBLEM));
    let (_, v) = app.verify_api("S.100501.7").await;
    assert_eq!(v["status"], "not_authentic");
    assert!(
        check(&v, "issued")["message"]
            .as_str()
            .unwrap()
            .contains("проблема"),
        "{v}"
    );
}

#[tokio::test]
async fn unknown_numbers_events_and_contacts_are_not_found() {
    let app = spawn_app_with(quiet()).await;
    for code in ["S.999999.7", "S.7.7", "S.45.7"] {
        let (status, v) = app.verify_api(code).await;
        assert_eq!(
            (status, v["status"].as_str()),
            (200, Some("not_found")),
            "{code}: {v}"
        );
        assert!(v["certificate"].is_null());
    }
}

#[tokio::test]
async fn a_certificate_issued_before_certportal_is_authentic_from_the_crm() {
    let app = spawn_app_with(quiet()).await;
    app.sandbox
        .edit(|p| p.move_item(seed::PARTICIPANT_TYPE, 100503, seed::STAGE_SENT));
    let (_, v) = app.verify_api("S.100503.10").await;
    assert_eq!(v["status"], "authentic", "{v}");
    assert_eq!(v["certificate"]["holder"], "Кузнецова М. А.");
    // The issue date is the move into «Выслан файл», in UTC.
    let moved = app
        .sandbox
        .portal()
        .item(seed::PARTICIPANT_TYPE, 100503)
        .unwrap()["movedTime"]
        .as_str()
        .unwrap()
        .to_string();
    let expected = chrono::DateTime::parse_from_rfc3339(&moved)
        .unwrap()
        .with_timezone(&chrono::Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(v["certificate"]["issued_at"], expected.as_str(), "{v}");
    assert!(expected.ends_with('Z'));
}

#[tokio::test]
async fn revocation_and_deletion_make_a_certificate_not_authentic() {
    let app = issued(100500).await;
    app.store
        .set_revoked(100500, Some("выдан по ошибке"))
        .await
        .unwrap();
    let (_, v) = app.verify_api("S.100500.7").await;
    assert_eq!(v["status"], "not_authentic");
    assert!(
        check(&v, "revoked")["message"]
            .as_str()
            .unwrap()
            .contains("выдан по ошибке")
    );
    app.store.set_revoked(100500, None).await.unwrap();
    app.state.verifier.forget(100500);
    app.sandbox.edit(|p| {
        p.items
            .get_mut(&seed::PARTICIPANT_TYPE)
            .unwrap()
            .remove(&100500)
    });
    let (_, v) = app.verify_api("S.100500.7").await;
    assert_eq!(v["status"], "not_authentic", "{v}");
    assert_eq!(check(&v, "revoked")["result"], "failed");
}

#[tokio::test]
async fn a_crm_that_cannot_be_reached_means_unavailable_never_fake() {
    let app = issued(100500).await;
    app.state.verifier.forget(100500);
    app.sandbox.inject(None, 1000, FaultKind::Html);
    let (_, v) = app.verify_api("S.100500.7").await;
    assert_eq!(v["status"], "unavailable", "{v}");
    assert_eq!(
        v["certificate"]["number"], 100500,
        "the registry's record is shown"
    );
    let page = page_text(&app.http, format!("{}/verify?code=S.100500.7", app.address)).await;
    assert!(
        page.contains("Проверить сейчас не удалось") && page.contains("не сверены"),
        "{page}"
    );
}

#[tokio::test]
async fn malformed_codes_get_a_400_with_a_reason() {
    let app = spawn_app_with(quiet()).await;
    for code in [
        "X.1.2",
        "S.01.2",
        "S.1",
        "hello",
        "",
        "S.1/2",
        "S.1.2/extra",
    ] {
        let (status, v) = app.verify_api(code).await;
        assert_eq!(status, 400, "{code}");
        assert_eq!(v["error"], "malformed_code");
        assert!(!v["message"].as_str().unwrap().is_empty());
    }
    let r = app
        .http
        .get(format!("{}/verify?code=S.01.2", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("без ведущих нулей"));
}

#[tokio::test]
async fn the_api_allows_cross_origin_reads() {
    let app = spawn_app_with(quiet()).await;
    let r = app
        .http
        .get(format!("{}/api/v1/certificates/S.999.1", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let r = app
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/v1/certificates/S.999.1", app.address),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn one_address_is_rate_limited_with_a_russian_message() {
    let app = spawn_app_with(Options {
        workers: 0,
        register_handler: false,
        extra: vec![
            ("VERIFY_BURST", "3".into()),
            ("VERIFY_RATE_PER_MINUTE", "1".into()),
        ],
        ..Options::default()
    })
    .await;
    for _ in 0..3 {
        assert_eq!(app.verify_api("S.999.1").await.0, 200);
    }
    let (status, v) = app.verify_api("S.999.1").await;
    assert_eq!(status, 429);
    assert!(v["message"].as_str().unwrap().contains("Слишком много"));
    let r = app
        .http
        .get(format!("{}/verify?code=S.999.1", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
}

#[tokio::test]
async fn pages_carry_security_headers() {
    let app = spawn_app_with(quiet()).await;
    let r = app
        .http
        .get(format!("{}/", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let body = r.text().await.unwrap();
    assert!(body.contains("accept=\"image/*\"") && body.contains("<label for=\"code\">"));
    let r = app
        .http
        .get(format!("{}/no/such/page", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("Страница не найдена"));
}

async fn upload(app: &crate::helpers::TestApp, name: &str, bytes: Vec<u8>) -> reqwest::Response {
    let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_string());
    let form = reqwest::multipart::Form::new().part("qr", part);
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/verify", app.address))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_uploaded_qr_photo_leads_to_the_result_page() {
    let app = issued(100500).await;
    let r = upload(&app, "qr.png", QrMatrix::encode("S.100500.7").to_png(5)).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/verify?code=S.100500.7");
    let page = page_text(&app.http, format!("{}/verify?code=S.100500.7", app.address)).await;
    assert!(
        page.contains("Сертификат подлинный") && page.contains("Иванова А. С."),
        "{page}"
    );
}

#[tokio::test]
async fn uploads_that_are_not_certificate_qr_codes_get_clear_messages() {
    let app = spawn_app_with(quiet()).await;
    let r = upload(&app, "notes.txt", b"hello, this is text".to_vec()).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("Это не изображение"));
    let r = upload(
        &app,
        "site.png",
        QrMatrix::encode("https://tpu.ru/").to_png(5),
    )
    .await;
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("не код сертификата") && body.contains("https://tpu.ru/"),
        "{body}"
    );
    let r = upload(&app, "big.jpg", vec![0xFF; 11 * 1024 * 1024]).await;
    assert_eq!(r.status(), 413);
}
