//! `/admin/certificates/{number}`: everything printed, the delivery history, the QR and PDF, and the
//! actions (re-send, re-issue, revoke, un-revoke), each written to the audit log.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::auth::{Staff, form_session};
use super::html;
use super::registry::status_label;
use crate::domain::{CertificateCode, Points};
use crate::render::{CertificateData, QrMatrix, Rendered};
use crate::startup::AppState;
use crate::store::{AuditEntry, CertificateRecord, JobKind};
use crate::web::{error_page, format_ms};

struct EventRow {
    at: String,
    step: String,
    outcome: String,
    message: String,
}

/// The job history's step names, as staff read them.
fn step_label(step: &str) -> String {
    match step {
        "read" => "чтение из CRM",
        "mail" => "письмо",
        "crm" => "запись в CRM",
        "retry" => "повтор",
        "problem" => "проблема",
        other => other,
    }
    .to_string()
}

fn outcome_label(outcome: &str) -> String {
    match outcome {
        "ok" => "успешно",
        "error" => "ошибка",
        "ignored" => "пропущено",
        "postponed" => "отложено",
        "resumed" => "продолжено",
        "problem" => "проблема",
        other => other,
    }
    .to_string()
}

#[derive(Template)]
#[template(path = "admin/certificate.html")]
struct DetailPage {
    login: String,
    csrf: String,
    r: CertificateRecord,
    status: String,
    status_label: &'static str,
    issued_at: String,
    revoked_at: String,
    events: Vec<EventRow>,
    audit: Vec<AuditEntry>,
    notice: Option<String>,
}

impl AuditEntry {
    pub fn at_text(&self) -> String {
        format_ms(Some(self.at))
    }

    /// The action as staff read it (the log keeps the stable code).
    pub fn action_text(&self) -> &str {
        match self.action.as_str() {
            "resend" => "повторная отправка",
            "reissue" => "повторная выдача",
            "revoke" => "аннулирование",
            "unrevoke" => "отмена аннулирования",
            other => other,
        }
    }
}

fn not_found(number: i64) -> HttpResponse {
    error_page(
        StatusCode::NOT_FOUND,
        "Сертификат не найден",
        &format!("В реестре нет сертификата №{number}."),
    )
}

async fn load(state: &AppState, number: i64) -> Result<Option<CertificateRecord>, HttpResponse> {
    state.store.certificate(number).await.map_err(|e| {
        tracing::error!(error = ?e, "certificate lookup failed");
        error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Реестр недоступен",
            "База данных не отвечает.",
        )
    })
}

#[derive(Deserialize)]
pub struct Notice {
    done: Option<String>,
}

pub async fn show(
    Staff(session): Staff,
    path: web::Path<i64>,
    q: web::Query<Notice>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let number = path.into_inner();
    let r = match load(&state, number).await {
        Ok(Some(r)) => r,
        Ok(None) => return not_found(number),
        Err(resp) => return resp,
    };
    let events = state.store.job_events(number).await.unwrap_or_default();
    let audit = state
        .store
        .audit_for(&number.to_string())
        .await
        .unwrap_or_default();
    let status = if r.is_revoked() {
        "revoked"
    } else {
        r.status.as_str()
    };
    let notice = q.done.as_deref().map(|d| {
        match d {
            "resend" => "Повторная отправка поставлена в очередь.",
            "reissue" => "Повторная выдача поставлена в очередь.",
            "revoke" => "Сертификат аннулирован.",
            "unrevoke" => "Аннулирование отменено.",
            _ => "Готово.",
        }
        .to_string()
    });
    let page = DetailPage {
        login: session.login,
        csrf: session.csrf,
        status: status.into(),
        status_label: status_label(status),
        issued_at: format_ms(r.issued_at),
        revoked_at: format_ms(r.revoked_at),
        events: events
            .into_iter()
            .map(|e| EventRow {
                at: format_ms(Some(e.at)),
                step: step_label(&e.step),
                outcome: outcome_label(&e.outcome),
                message: e.message,
            })
            .collect(),
        audit,
        notice,
        r,
    };
    html(StatusCode::OK, page.render())
}

pub async fn qr(_: Staff, path: web::Path<i64>, state: web::Data<AppState>) -> HttpResponse {
    let number = path.into_inner();
    match load(&state, number).await {
        Ok(Some(r)) => match CertificateCode::parse(&r.snapshot.code) {
            Ok(code) => HttpResponse::Ok()
                .content_type("image/png")
                .body(QrMatrix::encode(&code.to_string()).to_png(6)),
            Err(_) => not_found(number),
        },
        Ok(None) => not_found(number),
        Err(resp) => resp,
    }
}

/// Re-renders the certificate from what was recorded; it must hash to what was sent.
fn rerender(state: &AppState, r: &CertificateRecord) -> Option<Rendered> {
    let s = &r.snapshot;
    let points = Points::parse(&s.points_text).ok()?;
    let data = CertificateData::new(
        s.number as u64,
        &s.last_name,
        &s.first_name,
        &s.second_name,
        &s.event_title,
        points,
    );
    state.renderer.render(&s.template, &data).ok()
}

pub async fn pdf(_: Staff, path: web::Path<i64>, state: web::Data<AppState>) -> HttpResponse {
    let number = path.into_inner();
    let r = match load(&state, number).await {
        Ok(Some(r)) if !r.snapshot.code.is_empty() => r,
        Ok(_) => return not_found(number),
        Err(resp) => return resp,
    };
    let Some(rendered) = rerender(&state, &r) else {
        return error_page(
            StatusCode::CONFLICT,
            "PDF не сформирован",
            "Шаблон этого сертификата больше недоступен.",
        );
    };
    let matches = rendered.sha256 == r.snapshot.pdf_sha256;
    if !matches {
        tracing::warn!(number, "re-rendered PDF differs from the one sent");
    }
    let name = format!("Сертификат-{number}.pdf");
    let encoded = url::form_urlencoded::byte_serialize(name.as_bytes())
        .collect::<String>()
        .replace('+', "%20");
    HttpResponse::Ok()
        .content_type("application/pdf")
        .insert_header((
            "Content-Disposition",
            format!(
                "attachment; filename=\"certificate-{number}.pdf\"; filename*=UTF-8''{encoded}"
            ),
        ))
        .insert_header(("X-Certificate-Sha256", rendered.sha256))
        .insert_header((
            "X-Certificate-Matches-Sent",
            if matches { "true" } else { "false" },
        ))
        .body(rendered.pdf)
}

#[derive(Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    reason: String,
}

pub async fn act(
    req: HttpRequest,
    path: web::Path<(i64, String)>,
    form: web::Form<ActionForm>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let session = match form_session(&req, &state, &form.csrf).await {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let (number, action) = path.into_inner();
    let r = match load(&state, number).await {
        Ok(Some(r)) => r,
        Ok(None) => return not_found(number),
        Err(resp) => return resp,
    };
    if form.confirm != "yes" {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Нужно подтверждение",
            "Отметьте «Подтверждаю» рядом с кнопкой действия.",
        );
    }
    let result = match action.as_str() {
        "resend" | "reissue" => {
            let kind = if action == "resend" {
                JobKind::Resend
            } else {
                JobKind::Reissue
            };
            match state.store.enqueue(number, kind).await {
                Ok(true) => {
                    if let Some(i) = &state.issuer {
                        i.wake.notify_one();
                    }
                    Ok(String::new())
                }
                Ok(false) => Err("Такое действие уже ждёт в очереди.".to_string()),
                Err(e) => Err(format!("{e:#}")),
            }
        }
        "revoke" => {
            let reason = form.reason.trim();
            if reason.is_empty() {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "Укажите причину",
                    "Аннулирование требует причины: она будет видна при проверке сертификата.",
                );
            }
            state
                .store
                .set_revoked(number, Some(reason))
                .await
                .map(|_| reason.to_string())
                .map_err(|e| format!("{e:#}"))
        }
        "unrevoke" if r.is_revoked() => state
            .store
            .set_revoked(number, None)
            .await
            .map(|_| String::new())
            .map_err(|e| format!("{e:#}")),
        "unrevoke" => Err("Сертификат не аннулирован.".to_string()),
        _ => {
            return error_page(
                StatusCode::NOT_FOUND,
                "Нет такого действия",
                "Действие не распознано.",
            );
        }
    };
    match result {
        Ok(details) => {
            let _ = state
                .store
                .audit(&session.login, &action, &number.to_string(), &details)
                .await;
            state.verifier.forget(number as u64);
            HttpResponse::SeeOther()
                .insert_header((
                    "Location",
                    format!("/admin/certificates/{number}?done={action}"),
                ))
                .finish()
        }
        Err(message) => error_page(StatusCode::CONFLICT, "Действие не выполнено", &message),
    }
}
