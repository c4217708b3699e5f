//! `/admin/certificates`: the registry with search, filters, sorting, keyset pages and CSV export.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::auth::{Staff, StaffExport};
use super::html;
use crate::startup::AppState;
use crate::store::{RegistryFilter, RegistryRow, RegistrySort};
use crate::web::format_ms;

pub const PAGE_SIZE: i64 = 50;

#[derive(Deserialize, Default, Clone)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    event: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    sort: String,
    #[serde(default)]
    after: String,
}

fn day_ms(s: &str, end: bool) -> Option<i64> {
    let d = chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()?;
    let d = if end { d.succ_opt()? } else { d };
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

impl ListQuery {
    fn filter(&self) -> RegistryFilter {
        RegistryFilter {
            q: Some(self.q.clone()).filter(|q| !q.trim().is_empty()),
            status: Some(self.status.clone()).filter(|s| !s.is_empty()),
            event_id: self.event.parse().ok(),
            from_ms: day_ms(&self.from, false),
            to_ms: day_ms(&self.to, true),
        }
    }

    /// The query string of this selection without the page cursor.
    fn selection(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("q", &self.q)
            .append_pair("status", &self.status)
            .append_pair("event", &self.event)
            .append_pair("from", &self.from)
            .append_pair("to", &self.to)
            .append_pair("sort", &self.sort)
            .finish()
    }
}

pub fn status_label(s: &str) -> &'static str {
    match s {
        "queued" => "в очереди",
        "sending" => "отправляется",
        "sent" => "выслан",
        "problem" => "проблема",
        "failed" => "ошибка",
        "revoked" => "аннулирован",
        _ => "—",
    }
}

pub struct Row {
    pub number: i64,
    pub holder: String,
    pub event: String,
    pub points: String,
    pub email: String,
    pub status: String,
    pub status_label: &'static str,
    pub issued_at: String,
    pub attempts: i64,
}

impl From<&RegistryRow> for Row {
    fn from(r: &RegistryRow) -> Self {
        let rec = &r.record;
        let status = if rec.is_revoked() {
            "revoked"
        } else {
            rec.status.as_str()
        };
        Row {
            number: rec.snapshot.number,
            holder: rec.holder_full(),
            event: rec.snapshot.event_title.clone(),
            points: rec.snapshot.points_text.clone(),
            email: rec.snapshot.email.clone().unwrap_or_default(),
            status: status.to_string(),
            status_label: status_label(status),
            issued_at: format_ms(rec.issued_at),
            attempts: r.attempts,
        }
    }
}

#[derive(Template)]
#[template(path = "admin/certificates.html")]
struct ListPage {
    login: String,
    csrf: String,
    q: ListQuery,
    rows: Vec<Row>,
    counts: Vec<(String, &'static str, i64)>,
    total: i64,
    events: Vec<(i64, String)>,
    next: Option<String>,
    selection: String,
    sorts: Vec<(&'static str, &'static str)>,
    statuses: Vec<(&'static str, &'static str)>,
}

pub async fn home() -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header(("Location", "/admin/certificates"))
        .finish()
}

pub async fn list(
    Staff(session): Staff,
    q: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let q = q.into_inner();
    let filter = q.filter();
    let sort = RegistrySort::parse(&q.sort);
    let after = Some(q.after.as_str()).filter(|a| !a.is_empty());
    let (page, counts, events) = match tokio::try_join!(
        state.store.registry_page(&filter, sort, after, PAGE_SIZE),
        state.store.registry_counts(&filter),
        state.store.registry_events(),
    ) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = ?e, "registry listing failed");
            return crate::web::error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Реестр недоступен",
                "База данных не отвечает. Попробуйте через минуту.",
            );
        }
    };
    let total = counts.iter().map(|(_, n)| n).sum();
    let statuses = vec![
        ("", "все"),
        ("sent", "выслан"),
        ("queued", "в очереди"),
        ("sending", "отправляется"),
        ("problem", "проблема"),
        ("failed", "ошибка"),
        ("revoked", "аннулирован"),
    ];
    let page_view = ListPage {
        login: session.login,
        csrf: session.csrf,
        selection: q.selection(),
        rows: page.rows.iter().map(Row::from).collect(),
        counts: counts
            .into_iter()
            .map(|(s, n)| {
                let l = status_label(&s);
                (s, l, n)
            })
            .collect(),
        total,
        events,
        next: page.next,
        sorts: vec![
            ("number_desc", "номер ↓"),
            ("number_asc", "номер ↑"),
            ("issued_desc", "дата выдачи ↓"),
        ],
        statuses,
        q: ListQuery {
            sort: sort.as_str().into(),
            ..q
        },
    };
    html(StatusCode::OK, page_view.render())
}

fn csv_field(s: &str) -> String {
    // Quote everything; a leading formula character is defused for spreadsheet safety.
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The same selection as CSV, UTF-8 with a BOM so Excel reads Cyrillic.
pub async fn csv(
    _: StaffExport,
    q: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let filter = q.filter();
    let sort = RegistrySort::parse(&q.sort);
    let mut out = String::from(
        "\u{feff}Номер;Владелец;Мероприятие;Баллы;E-mail;Статус;Выдан;Попыток;Код\r\n",
    );
    let mut after: Option<String> = None;
    loop {
        let page = match state
            .store
            .registry_page(&filter, sort, after.as_deref(), 1000)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = ?e, "CSV export failed");
                return HttpResponse::ServiceUnavailable().json(
                    serde_json::json!({"error": "unavailable", "message": "database unavailable"}),
                );
            }
        };
        for r in &page.rows {
            let row = Row::from(r);
            let fields = [
                row.number.to_string(),
                row.holder,
                row.event,
                row.points,
                row.email,
                row.status_label.to_string(),
                row.issued_at,
                row.attempts.to_string(),
                r.record.snapshot.code.clone(),
            ];
            out.push_str(
                &fields
                    .iter()
                    .map(|f| csv_field(f))
                    .collect::<Vec<_>>()
                    .join(";"),
            );
            out.push_str("\r\n");
        }
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            "attachment; filename=\"certificates.csv\"",
        ))
        .body(out)
}
