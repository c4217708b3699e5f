//! `/admin/queue`: jobs waiting, running and failed, with their errors; "retry now".

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::auth::{Staff, form_session};
use super::html;
use crate::startup::AppState;
use crate::store::{Job, JobState};
use crate::web::{error_page, format_ms};

#[derive(Template)]
#[template(path = "admin/queue.html")]
struct QueuePage {
    login: String,
    csrf: String,
    jobs: Vec<Job>,
}

impl Job {
    pub fn run_at_text(&self) -> String {
        format_ms(Some(self.run_at))
    }
    pub fn updated_text(&self) -> String {
        format_ms(Some(self.updated_at))
    }
    pub fn state_label(&self) -> &'static str {
        match self.state {
            JobState::Queued => "ждёт",
            JobState::Running => "выполняется",
            JobState::Failed => "ошибка",
            JobState::Problem => "проблема",
            JobState::Done => "готово",
            JobState::Ignored => "пропущено",
        }
    }
    pub fn kind_label(&self) -> &'static str {
        match self.kind {
            crate::store::JobKind::Issue => "выдача",
            crate::store::JobKind::Resend => "повторная отправка",
            crate::store::JobKind::Reissue => "повторная выдача",
        }
    }
    pub fn retryable(&self) -> bool {
        matches!(self.state, JobState::Queued | JobState::Failed)
    }
    pub fn error_text(&self) -> String {
        self.last_error.clone().unwrap_or_default()
    }
}

pub async fn show(Staff(session): Staff, state: web::Data<AppState>) -> HttpResponse {
    let jobs = match state
        .store
        .jobs_in_states(
            &[JobState::Running, JobState::Queued, JobState::Failed],
            500,
        )
        .await
    {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(error = ?e, "queue listing failed");
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Очередь недоступна",
                "База данных не отвечает.",
            );
        }
    };
    html(
        StatusCode::OK,
        QueuePage {
            login: session.login,
            csrf: session.csrf,
            jobs,
        }
        .render(),
    )
}

#[derive(Deserialize)]
pub struct RetryForm {
    #[serde(default)]
    csrf: String,
}

pub async fn retry(
    req: HttpRequest,
    path: web::Path<i64>,
    form: web::Form<RetryForm>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let session = match form_session(&req, &state, &form.csrf).await {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let id = path.into_inner();
    match state.store.retry_now(id).await {
        Ok(true) => {
            let _ = state
                .store
                .audit(&session.login, "queue.retry", &format!("job:{id}"), "")
                .await;
            if let Some(i) = &state.issuer {
                i.wake.notify_one();
            }
            HttpResponse::SeeOther()
                .insert_header(("Location", "/admin/queue"))
                .finish()
        }
        Ok(false) => error_page(
            StatusCode::CONFLICT,
            "Задание нельзя повторить",
            "Задание уже выполняется или завершено.",
        ),
        Err(e) => {
            tracing::error!(error = ?e, "retry failed");
            error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Очередь недоступна",
                "База данных не отвечает.",
            )
        }
    }
}
