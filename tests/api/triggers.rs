//! The webhook endpoints: who may call them and what they queue.

use certportal::sandbox::seed;

use crate::helpers::{APP_TOKEN, ROBOT_KEY, quiet, spawn_app_with};

#[tokio::test]
async fn an_event_with_a_wrong_token_is_refused_and_queues_nothing() {
    let app = spawn_app_with(quiet()).await;
    let ty = seed::PARTICIPANT_TYPE.to_string();
    for token in [Some("wrong"), None] {
        let mut form = vec![
            ("event", "ONCRMDYNAMICITEMUPDATE"),
            ("data[FIELDS][ID]", "100500"),
            ("data[FIELDS][ENTITY_TYPE_ID]", ty.as_str()),
        ];
        if let Some(t) = token {
            form.push(("auth[application_token]", t));
        }
        let r = app.post_event(&form).await;
        assert_eq!(r.status(), 401);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized");
    }
    assert_eq!(app.store.pending_job_count().await.unwrap(), 0);
}

#[tokio::test]
async fn an_event_for_another_entity_type_is_acknowledged_and_ignored() {
    let app = spawn_app_with(quiet()).await;
    let r = app
        .post_event(&[
            ("event", "ONCRMDYNAMICITEMUPDATE"),
            ("data[FIELDS][ID]", "7"),
            ("data[FIELDS][ENTITY_TYPE_ID]", "1038"),
            ("auth[application_token]", APP_TOKEN),
        ])
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["status"],
        "ignored"
    );
    assert_eq!(app.store.pending_job_count().await.unwrap(), 0);
}

#[tokio::test]
async fn a_valid_event_queues_one_job_for_its_participant() {
    let app = spawn_app_with(quiet()).await;
    let first = app.post_update_event(100500).await;
    assert_eq!(
        first.json::<serde_json::Value>().await.unwrap()["status"],
        "queued"
    );
    let second = app.post_update_event(100500).await;
    assert_eq!(
        second.json::<serde_json::Value>().await.unwrap()["status"],
        "already_queued"
    );
    assert_eq!(app.store.pending_job_count().await.unwrap(), 1);
}

#[tokio::test]
async fn a_per_type_event_name_carries_the_entity_type() {
    let app = spawn_app_with(quiet()).await;
    let event = format!("ONCRMDYNAMICITEMUPDATE_{}", seed::PARTICIPANT_TYPE);
    let r = app
        .post_event(&[
            ("event", event.as_str()),
            ("data[FIELDS][ID]", "100500"),
            ("auth[application_token]", APP_TOKEN),
        ])
        .await;
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["status"],
        "queued"
    );
}

#[tokio::test]
async fn the_robot_needs_its_key_and_accepts_both_id_forms() {
    let app = spawn_app_with(quiet()).await;
    let url = format!("{}/bitrix/robot", app.address);
    let r = app
        .http
        .get(&url)
        .query(&[("key", "nope"), ("id", "100500")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .http
        .get(&url)
        .query(&[("key", ROBOT_KEY), ("id", "100500")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc = format!("DYNAMIC_{}_100501", seed::PARTICIPANT_TYPE);
    let r = app
        .http
        .post(format!("{url}?key={ROBOT_KEY}"))
        .form(&[
            ("document_id[0]", "crm"),
            (
                "document_id[1]",
                "Bitrix\\Crm\\Integration\\BizProc\\Document\\Dynamic",
            ),
            ("document_id[2]", doc.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .http
        .get(&url)
        .query(&[("key", ROBOT_KEY), ("id", "{{ID}}")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(app.store.pending_job_count().await.unwrap(), 2);
}

#[tokio::test]
async fn health_answers_and_readiness_checks_database_and_portal() {
    let app = spawn_app_with(quiet()).await;
    let r = app
        .http
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .http
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["bitrix24"],
        true
    );
    app.sandbox
        .inject(None, 10, certportal::sandbox::FaultKind::Html);
    let r = app
        .http
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
}

#[tokio::test]
async fn a_stage_name_that_matches_nothing_stops_start_up_with_its_variable() {
    let sandbox = certportal::sandbox::Sandbox::start(0).await.unwrap();
    let vars = [
        ("BITRIX_WEBHOOK_URL", sandbox.webhook_url()),
        (
            "BITRIX_PARTICIPANT_TYPE_ID",
            seed::PARTICIPANT_TYPE.to_string(),
        ),
        ("BITRIX_EVENT_TYPE_ID", seed::EVENT_TYPE.to_string()),
        ("SMTP_URL", "smtp://127.0.0.1:25".to_string()),
        ("MAIL_FROM", "a@b.example".to_string()),
        ("BITRIX_STAGE_SENT", "Отправлено давно".to_string()),
    ];
    let settings = certportal::config::Settings::load(&certportal::config::Source::from_map(
        vars.into_iter().map(|(k, v)| (k.to_string(), v)),
    ))
    .unwrap();
    let (url, _dir) = crate::helpers::fresh_database(crate::helpers::Db::Sqlite).await;
    let store = certportal::store::Store::connect(&url).await.unwrap();
    let renderer = std::sync::Arc::new(certportal::render::Renderer::new(None).unwrap());
    let err = certportal::startup::build_issuer(&settings, store, renderer)
        .await
        .err()
        .expect("start-up must fail");
    let text = format!("{err:#}");
    assert!(
        text.contains("BITRIX_STAGE_SENT") && text.contains("Отправлено давно"),
        "{text}"
    );
}
