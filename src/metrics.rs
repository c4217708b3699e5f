//! `GET /metrics`: Prometheus text, behind `METRICS_TOKEN` when it is set.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use crate::startup::AppState;

pub async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(token) = &state.settings.metrics_token {
        let given = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !bool::from(token.expose_secret().as_bytes().ct_eq(given.as_bytes())) {
            return HttpResponse::Unauthorized()
                .insert_header(("WWW-Authenticate", "Bearer"))
                .json(serde_json::json!({"error": "unauthorized", "message": "bearer token required"}));
        }
    }
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in lines {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    if let Some(i) = &state.issuer {
        let s = &i.stats;
        metric(
            "certportal_certificates_issued_total",
            "counter",
            "Certificates e-mailed by this instance.",
            &[(String::new(), s.issued.load(Ordering::Relaxed) as f64)],
        );
        metric(
            "certportal_problems_total",
            "counter",
            "Participants moved to the problem stage.",
            &[(String::new(), s.problems.load(Ordering::Relaxed) as f64)],
        );
        metric(
            "certportal_failures_total",
            "counter",
            "Jobs that exhausted their retries.",
            &[(String::new(), s.failures.load(Ordering::Relaxed) as f64)],
        );
        metric(
            "certportal_retries_total",
            "counter",
            "Job retries after transient errors.",
            &[(String::new(), s.retries.load(Ordering::Relaxed) as f64)],
        );
        let b = i.crm.client.stats();
        let requests = b.requests.load(Ordering::Relaxed);
        metric(
            "certportal_bitrix_requests_total",
            "counter",
            "Bitrix24 REST requests sent.",
            &[(String::new(), requests as f64)],
        );
        metric(
            "certportal_bitrix_errors_total",
            "counter",
            "Bitrix24 REST requests that failed.",
            &[(String::new(), b.errors.load(Ordering::Relaxed) as f64)],
        );
        metric(
            "certportal_bitrix_limit_hits_total",
            "counter",
            "QUERY_LIMIT_EXCEEDED and OPERATION_TIME_LIMIT answers.",
            &[(String::new(), b.limit_hits.load(Ordering::Relaxed) as f64)],
        );
        metric(
            "certportal_bitrix_request_seconds_total",
            "counter",
            "Time spent in Bitrix24 requests (divide by the request count for the mean latency).",
            &[(
                String::new(),
                b.latency_micros.load(Ordering::Relaxed) as f64 / 1e6,
            )],
        );
    }
    let depth = state.store.pending_job_count().await.unwrap_or(-1);
    metric(
        "certportal_queue_depth",
        "gauge",
        "Jobs waiting or running.",
        &[(String::new(), depth as f64)],
    );
    let v = &state.verifier.stats;
    metric(
        "certportal_verifications_total",
        "counter",
        "Verifications by verdict.",
        &[
            (
                "{verdict=\"authentic\"}".into(),
                v.authentic.load(Ordering::Relaxed) as f64,
            ),
            (
                "{verdict=\"not_authentic\"}".into(),
                v.not_authentic.load(Ordering::Relaxed) as f64,
            ),
            (
                "{verdict=\"not_found\"}".into(),
                v.not_found.load(Ordering::Relaxed) as f64,
            ),
            (
                "{verdict=\"unavailable\"}".into(),
                v.unavailable.load(Ordering::Relaxed) as f64,
            ),
        ],
    );
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(out)
}
