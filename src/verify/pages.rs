//! The public pages: a form for the code or a QR photo, and the result.

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use futures_util::StreamExt;
use serde::Deserialize;

use super::decode::{DecodeError, MAX_UPLOAD, decode_qr};
use super::{Check, CheckResult, Status, Verification};
use crate::domain::CertificateCode;
use crate::startup::AppState;
use crate::web::html;

#[derive(Template)]
#[template(path = "verify/index.html")]
struct IndexPage {
    error: Option<String>,
    code: String,
}

#[derive(Template)]
#[template(path = "verify/result.html")]
struct ResultPage {
    v: Verification,
    unchecked: bool,
    issued: Option<String>,
}

impl Check {
    pub fn result_class(&self) -> &'static str {
        match self.result {
            CheckResult::Passed => "passed",
            CheckResult::Failed => "failed",
            CheckResult::Unknown => "unknown",
        }
    }
    pub fn result_label(&self) -> &'static str {
        match self.result {
            CheckResult::Passed => "пройдена",
            CheckResult::Failed => "не пройдена",
            CheckResult::Unknown => "не выполнена",
        }
    }
}

fn index(status: StatusCode, error: Option<String>, code: &str) -> HttpResponse {
    html(
        status,
        IndexPage {
            error,
            code: code.to_string(),
        }
        .render(),
    )
}

pub async fn home() -> HttpResponse {
    index(StatusCode::OK, None, "")
}

#[derive(Deserialize)]
pub struct CodeQuery {
    code: Option<String>,
}

/// Russian date: "4 декабря 2026".
pub fn russian_date(rfc3339: &str) -> Option<String> {
    const MONTHS: [&str; 12] = [
        "января",
        "февраля",
        "марта",
        "апреля",
        "мая",
        "июня",
        "июля",
        "августа",
        "сентября",
        "октября",
        "ноября",
        "декабря",
    ];
    let d = chrono::DateTime::parse_from_rfc3339(rfc3339).ok()?;
    use chrono::Datelike;
    Some(format!(
        "{} {} {}",
        d.day(),
        MONTHS[d.month0() as usize],
        d.year()
    ))
}

pub async fn verify_get(
    req: HttpRequest,
    query: web::Query<CodeQuery>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let raw = query.code.clone().unwrap_or_default();
    if raw.trim().is_empty() {
        return index(StatusCode::OK, None, "");
    }
    if let Some(r) = super::api::limited(&req, &state, true) {
        return r;
    }
    let code = match CertificateCode::parse(&raw) {
        Ok(c) => c,
        Err(e) => return index(StatusCode::BAD_REQUEST, Some(e.to_string()), &raw),
    };
    let v = state.verifier.verify(code).await;
    let issued = v
        .certificate
        .as_ref()
        .and_then(|c| c.issued_at.as_deref())
        .and_then(russian_date);
    let unchecked = v.status == Status::Unavailable;
    html(
        StatusCode::OK,
        ResultPage {
            v,
            unchecked,
            issued,
        }
        .render(),
    )
}

/// `POST /verify`: multipart `qr` (an image) or `code`; on success, 303 to the shareable result.
pub async fn verify_post(
    req: HttpRequest,
    mut form: Multipart,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Some(r) = super::api::limited(&req, &state, true) {
        return r;
    }
    let mut code_field = String::new();
    let mut image: Vec<u8> = Vec::new();
    while let Some(field) = form.next().await {
        let mut field = match field {
            Ok(f) => f,
            Err(_) => {
                return index(
                    StatusCode::BAD_REQUEST,
                    Some("Форма пришла повреждённой. Попробуйте ещё раз.".into()),
                    "",
                );
            }
        };
        let name = field.name().unwrap_or_default().to_string();
        let mut buf = Vec::new();
        while let Some(chunk) = field.next().await {
            let Ok(chunk) = chunk else {
                return index(
                    StatusCode::BAD_REQUEST,
                    Some("Файл загрузился не полностью. Попробуйте ещё раз.".into()),
                    "",
                );
            };
            if buf.len() + chunk.len() > MAX_UPLOAD {
                return index(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Some(DecodeError::TooLarge.to_string()),
                    "",
                );
            }
            buf.extend_from_slice(&chunk);
        }
        match name.as_str() {
            "qr" => image = buf,
            "code" => code_field = String::from_utf8_lossy(&buf).into_owned(),
            _ => {}
        }
    }
    let text = if !image.is_empty() {
        match decode_qr(&image) {
            Ok(t) => t,
            Err(e) => {
                let status = if e == DecodeError::TooLarge {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                };
                return index(status, Some(e.to_string()), "");
            }
        }
    } else if !code_field.trim().is_empty() {
        code_field
    } else {
        return index(
            StatusCode::BAD_REQUEST,
            Some("Введите код или выберите фотографию QR-кода.".into()),
            "",
        );
    };
    match CertificateCode::parse(&text) {
        Ok(code) => HttpResponse::SeeOther()
            .insert_header(("Location", format!("/verify?code={code}")))
            .finish(),
        Err(e) if image.is_empty() => index(StatusCode::BAD_REQUEST, Some(e.to_string()), &text),
        Err(_) => {
            let shown: String = text.chars().take(120).collect();
            index(
                StatusCode::BAD_REQUEST,
                Some(format!(
                    "QR-код прочитан, но в нём не код сертификата ТПУ. В нём записано: «{shown}»."
                )),
                "",
            )
        }
    }
}
