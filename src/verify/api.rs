//! `GET /api/v1/certificates/{code}`: the verification as JSON, for the office's mobile app.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::domain::CertificateCode;
use crate::startup::AppState;

const CORS: [(&str, &str); 3] = [
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "GET, OPTIONS"),
    ("Access-Control-Max-Age", "86400"),
];

fn with_cors(mut b: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    for h in CORS {
        b.insert_header(h);
    }
    b
}

/// The answer for a client over its per-address limit (a page or JSON), if it is.
pub fn limited(req: &HttpRequest, state: &AppState, page: bool) -> Option<HttpResponse> {
    let ip = if state.settings.trust_forwarded {
        req.connection_info()
            .realip_remote_addr()
            .and_then(|a| a.parse().ok())
    } else {
        req.peer_addr().map(|a| a.ip())
    }?;
    if state.verify_limiter.allow(ip) {
        return None;
    }
    let message = "Слишком много проверок с вашего адреса. Подождите минуту и попробуйте снова.";
    Some(if page {
        let mut r = crate::web::error_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Слишком много запросов",
            message,
        );
        r.headers_mut().insert(
            actix_web::http::header::RETRY_AFTER,
            actix_web::http::header::HeaderValue::from_static("60"),
        );
        r
    } else {
        with_cors(HttpResponse::TooManyRequests())
            .insert_header(("Retry-After", "60"))
            .json(json!({"error": "rate_limited", "message": message}))
    })
}

pub async fn certificate(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Some(r) = limited(&req, &state, false) {
        return r;
    }
    let code = match CertificateCode::parse(&path) {
        Ok(c) => c,
        Err(e) => {
            return with_cors(HttpResponse::BadRequest())
                .json(json!({"error": "malformed_code", "message": e.to_string()}));
        }
    };
    let v = state.verifier.verify(code).await;
    with_cors(HttpResponse::Ok())
        .insert_header(("Cache-Control", "no-store"))
        .json(v)
}

pub async fn preflight() -> HttpResponse {
    with_cors(HttpResponse::NoContent())
        .insert_header(("Access-Control-Allow-Headers", "Content-Type"))
        .finish()
}
