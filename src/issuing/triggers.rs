//! The CRM's ways of telling us a participant may need a certificate. Each is only a hint: the
//! worker re-reads the item and acts only if it sits in «Сформировать документ».

use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::startup::AppState;

fn form_pairs(req: &HttpRequest, body: &[u8]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(req.query_string().as_bytes())
            .into_owned()
            .collect();
    let is_json = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if is_json {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
            flatten_json("", &v, &mut pairs);
        }
    } else {
        pairs.extend(url::form_urlencoded::parse(body).into_owned());
    }
    pairs
}

/// `{"auth": {"application_token": "x"}}` → `auth[application_token]=x`, as in the form encoding.
fn flatten_json(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}[{k}]")
        }
    };
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                flatten_json(&key(k), v, out);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten_json(&key(&i.to_string()), v, out);
            }
        }
        serde_json::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn secret_matches(expected: Option<&SecretString>, given: Option<&str>) -> bool {
    match (expected, given) {
        (Some(expected), Some(given)) => {
            bool::from(expected.expose_secret().as_bytes().ct_eq(given.as_bytes()))
        }
        _ => false,
    }
}

fn unauthorized(message: &str) -> HttpResponse {
    HttpResponse::Unauthorized().json(json!({"error": "unauthorized", "message": message}))
}

async fn queue(state: &AppState, id: u64) -> HttpResponse {
    let Some(issuer) = &state.issuer else {
        return HttpResponse::ServiceUnavailable()
            .json(json!({"error": "unavailable", "message": "issuing is not configured"}));
    };
    match issuer.hint(id).await {
        Ok(queued) => HttpResponse::Ok().json(json!({
            "status": if queued { "queued" } else { "already_queued" }, "id": id
        })),
        Err(e) => {
            tracing::error!(error = ?e, participant = id, "cannot queue a participant");
            HttpResponse::ServiceUnavailable()
                .json(json!({"error": "unavailable", "message": "the queue is unavailable"}))
        }
    }
}

/// `POST /bitrix/events`: outbound events (`ONCRMDYNAMICITEMUPDATE`/`…ADD`), form-encoded.
pub async fn events(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    let pairs = form_pairs(&req, &body);
    if !secret_matches(
        state.settings.bitrix.app_token.as_ref(),
        get(&pairs, "auth[application_token]"),
    ) {
        tracing::warn!("event with a wrong or missing application_token refused");
        return unauthorized("wrong or missing auth[application_token]");
    }
    let event = get(&pairs, "event")
        .unwrap_or_default()
        .to_ascii_uppercase();
    // Per-type event names (`ONCRMDYNAMICITEMUPDATE_1040`) carry the type when the field does not.
    let entity_type = get(&pairs, "data[FIELDS][ENTITY_TYPE_ID]")
        .and_then(|v| v.trim().parse::<u32>().ok())
        .or_else(|| event.rsplit_once('_').and_then(|(_, t)| t.parse().ok()));
    let id = get(&pairs, "data[FIELDS][ID]").and_then(|v| v.trim().parse::<u64>().ok());
    let ours = state.settings.bitrix.participant_type_id;
    let relevant =
        event.starts_with("ONCRMDYNAMICITEMUPDATE") || event.starts_with("ONCRMDYNAMICITEMADD");
    match (relevant, entity_type, id) {
        (true, Some(t), Some(id)) if Some(t) == ours && id > 0 => queue(&state, id).await,
        _ => HttpResponse::Ok().json(json!({"status": "ignored"})),
    }
}

/// `GET|POST /bitrix/robot?key=…&id=…`: the stage automation's webhook robot.
pub async fn robot(req: HttpRequest, body: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    let pairs = form_pairs(&req, &body);
    if !secret_matches(state.settings.bitrix.robot_key.as_ref(), get(&pairs, "key")) {
        tracing::warn!("robot call with a wrong or missing key refused");
        return unauthorized("wrong or missing key");
    }
    let ours = state.settings.bitrix.participant_type_id;
    let from_document = get(&pairs, "document_id[2]").and_then(|d| {
        let (ty, id) = d.strip_prefix("DYNAMIC_")?.split_once('_')?;
        let ty: u32 = ty.parse().ok()?;
        (Some(ty) == ours).then(|| id.parse::<u64>().ok()).flatten()
    });
    let id = get(&pairs, "id")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or(from_document)
        .filter(|id| *id > 0);
    match id {
        Some(id) => queue(&state, id).await,
        None => HttpResponse::BadRequest().json(json!({
            "error": "bad_request",
            "message": "no participant id: pass id=<item id> or document_id[2]=DYNAMIC_<type>_<id>"
        })),
    }
}
