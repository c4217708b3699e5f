//! Pieces shared by the HTML pages: the stylesheet and the error page.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder};
use askama::Template;

pub async fn style_css() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header(("Cache-Control", "public, max-age=3600"))
        .body(include_str!("../static/style.css"))
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
}

/// A page saying what went wrong, in Russian; plain text if even the template fails.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    let body = ErrorPage { title, message }
        .render()
        .unwrap_or_else(|_| format!("{title}\n\n{message}"));
    HttpResponseBuilder::new(status)
        .content_type("text/html; charset=utf-8")
        .body(body)
}

pub async fn not_found() -> HttpResponse {
    error_page(
        StatusCode::NOT_FOUND,
        "Страница не найдена",
        "Такой страницы нет. Проверьте адрес или начните с главной страницы.",
    )
}
