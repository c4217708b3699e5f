//! The sandbox's own pages for the demo: participants with a stage switch, and the mailbox.

use actix_web::{HttpResponse, web};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;
use serde_json::Value;

use super::{Inner, seed};
use crate::bitrix::model::{as_text, as_u64};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(portal_page))
        .route("/sandbox", web::get().to(portal_page))
        .route("/sandbox/move", web::post().to(move_participant))
        .route("/sandbox/mail", web::get().to(mail_page))
        .route("/sandbox/mail/{n}", web::get().to(mail_file))
        .route("/static/style.css", web::get().to(crate::web::style_css))
        .route("/favicon.ico", web::get().to(crate::web::favicon));
}

struct Row {
    id: u64,
    name: String,
    email: String,
    stage: String,
    achievement: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "sandbox/portal.html")]
struct PortalPage {
    rows: Vec<Row>,
    stages: Vec<(String, String)>,
    comments: Vec<(u64, String)>,
}

async fn portal_page(inner: web::Data<Inner>) -> PortalPage {
    let p = inner.portal.lock().expect("portal lock");
    let stages: Vec<(String, String)> = p
        .statuses
        .iter()
        .filter_map(|s| Some((as_text(&s["STATUS_ID"])?, as_text(&s["NAME"])?)))
        .collect();
    let stage_name = |id: &str| {
        stages
            .iter()
            .find(|(s, _)| s == id)
            .map_or(id.to_string(), |(_, n)| n.clone())
    };
    let rows = p
        .items
        .get(&seed::PARTICIPANT_TYPE)
        .into_iter()
        .flat_map(|m| m.values())
        .map(|item| {
            let contact = item.get("contactId").and_then(as_u64).unwrap_or(0);
            let c = p.item(super::CONTACT, contact);
            let name = c.map_or(String::new(), |c| {
                format!(
                    "{} {} {}",
                    c.get("lastName").and_then(as_text).unwrap_or_default(),
                    c.get("name").and_then(as_text).unwrap_or_default(),
                    c.get("secondName").and_then(as_text).unwrap_or_default()
                )
            });
            let email = p
                .emails
                .get(&contact)
                .map(|e| {
                    e.iter()
                        .map(|(_, v)| v.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            Row {
                id: item.get("id").and_then(as_u64).unwrap_or(0),
                name,
                email,
                stage: stage_name(item.get("stageId").and_then(Value::as_str).unwrap_or("")),
                achievement: item
                    .get("UF_CRM_20_ACHIEVEMENT")
                    .and_then(as_text)
                    .unwrap_or_default(),
            }
        })
        .collect();
    let comments = p
        .comments
        .iter()
        .rev()
        .map(|(_, id, text)| (*id, text.clone()))
        .collect();
    PortalPage {
        rows,
        stages,
        comments,
    }
}

#[derive(Deserialize)]
struct MoveForm {
    id: Option<u64>,
    stage: String,
}

async fn move_participant(form: web::Form<MoveForm>, inner: web::Data<Inner>) -> HttpResponse {
    let sandbox = super::Sandbox {
        port: 0,
        inner: inner.into_inner(),
    };
    let ids: Vec<u64> = match form.id {
        Some(id) => vec![id],
        None => sandbox
            .portal()
            .items
            .get(&seed::PARTICIPANT_TYPE)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default(),
    };
    for id in ids {
        sandbox.move_participant(id, &form.stage);
    }
    HttpResponse::SeeOther()
        .insert_header(("Location", "/sandbox"))
        .finish()
}

struct MailRow {
    n: usize,
    to: String,
    subject: String,
    at: String,
    size_kb: usize,
}

#[derive(Template, WebTemplate)]
#[template(path = "sandbox/mail.html")]
struct MailPage {
    mails: Vec<MailRow>,
}

async fn mail_page(inner: web::Data<Inner>) -> MailPage {
    let sink = inner.mail.lock().expect("lock").clone();
    let mails = sink
        .map(|s| s.messages())
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .rev()
        .map(|(i, m)| MailRow {
            n: i + 1,
            to: m.to.join(", "),
            subject: header_value(&m.data, "Subject"),
            at: m.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            size_kb: m.data.len() / 1024,
        })
        .collect();
    MailPage { mails }
}

async fn mail_file(path: web::Path<String>, inner: web::Data<Inner>) -> HttpResponse {
    let n: usize = path.trim_end_matches(".eml").parse().unwrap_or(0);
    let sink = inner.mail.lock().expect("lock").clone();
    match sink.and_then(|s| s.messages().into_iter().nth(n.wrapping_sub(1))) {
        Some(m) => HttpResponse::Ok()
            .content_type("message/rfc822")
            .insert_header((
                "Content-Disposition",
                format!("attachment; filename=\"{n}.eml\""),
            ))
            .body(m.data),
        None => HttpResponse::NotFound().body("no such message"),
    }
}

/// A header's raw value, with RFC 2047 encoded words decoded when they are base64 UTF-8.
fn header_value(data: &[u8], name: &str) -> String {
    let text = String::from_utf8_lossy(data);
    let mut value = String::new();
    let mut in_header = false;
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if in_header && line.starts_with([' ', '\t']) {
            value.push_str(line.trim());
            continue;
        }
        in_header = line
            .split_once(':')
            .is_some_and(|(k, _)| k.eq_ignore_ascii_case(name));
        if in_header {
            value = line
                .split_once(':')
                .map_or("", |(_, v)| v.trim())
                .to_string();
        }
    }
    decode_words(&value)
}

fn decode_words(v: &str) -> String {
    use base64::Engine;
    v.split_whitespace()
        .map(|w| {
            let inner = w
                .strip_prefix("=?utf-8?b?")
                .or_else(|| w.strip_prefix("=?UTF-8?B?"))
                .and_then(|r| r.strip_suffix("?="));
            match inner {
                Some(b64) => base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .unwrap_or_else(|| w.to_string()),
                None => format!(" {w} "),
            }
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
