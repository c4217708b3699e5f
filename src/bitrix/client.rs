//! JSON-over-POST client for a Bitrix24 incoming webhook (`https://<portal>/rest/<user>/<secret>/`).
//! It paces itself with a leaky bucket, parses the documented envelopes defensively (an overloaded
//! portal may answer HTML), and retries what is safe to retry. The webhook URL holds a secret and is
//! never logged: reqwest errors are stripped of their URL.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::limiter::LeakyBucket;
use super::operating::OperatingLimits;

/// A method blocked for longer than this fails at once (the job is postponed, a visitor is told to
/// come back) instead of holding a worker or a page.
const MAX_INLINE_WAIT: Duration = Duration::from_secs(7);

#[derive(Debug, Clone, thiserror::Error)]
pub enum BitrixError {
    /// The portal answered with a documented error envelope.
    #[error("Bitrix24 {method}: HTTP {status} {code}: {description}")]
    Api {
        method: String,
        status: u16,
        code: String,
        description: String,
    },
    #[error("Bitrix24 {method}: {message}")]
    Transport { method: String, message: String },
    /// A body that is not the JSON envelope (e.g. an nginx HTML page under load).
    #[error("Bitrix24 {method}: unexpected HTTP {status} answer: {snippet}")]
    Unexpected {
        method: String,
        status: u16,
        snippet: String,
    },
    /// The portal's operating-time limit blocks this method until `until` (API reference §6.2).
    #[error("Bitrix24 {method}: OPERATION_TIME_LIMIT: the method's time limit is used up until {}", utc_time(*until))]
    Blocked { method: String, until: SystemTime },
}

fn utc_time(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%H:%M:%S UTC")
        .to_string()
}

impl BitrixError {
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            Self::Blocked { .. } => Some("OPERATION_TIME_LIMIT"),
            _ => None,
        }
    }

    /// Worth trying again later: limits, server faults, network trouble.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Api { status, code, .. } => {
                *status >= 500
                    || *status == 429
                    || matches!(
                        code.as_str(),
                        "QUERY_LIMIT_EXCEEDED"
                            | "OPERATION_TIME_LIMIT"
                            | "INTERNAL_SERVER_ERROR"
                            | "ERROR_UNEXPECTED_ANSWER"
                    )
            }
            Self::Transport { .. } | Self::Blocked { .. } => true,
            Self::Unexpected { status, .. } => *status >= 500 || *status == 429 || *status == 200,
        }
    }

    /// Our access to the portal is broken (webhook revoked or lacking rights, portal moved or
    /// closed): the item is fine, and work must wait until an administrator fixes the setup.
    pub fn is_access_problem(&self) -> bool {
        match self {
            Self::Api { status, code, .. } => {
                *status == 401
                    || matches!(
                        code.as_str(),
                        "NO_AUTH_FOUND"
                            | "expired_token"
                            | "INVALID_CREDENTIALS"
                            | "insufficient_scope"
                            | "user_access_error"
                            | "ACCESS_DENIED"
                            | "PORTAL_DELETED"
                            | "OVERLOAD_LIMIT"
                    )
            }
            Self::Unexpected { status, .. } => {
                (300..400).contains(status) || matches!(status, 401 | 403)
            }
            _ => false,
        }
    }

    /// Worth waiting for rather than reporting as the participant's problem: a transient fault, or
    /// an access problem someone will fix. (Only transient faults are retried on the spot.)
    pub fn is_temporary(&self) -> bool {
        self.is_transient() || self.is_access_problem()
    }

    /// The request was refused before the portal acted on it, so repeating it is always safe.
    fn was_refused(&self) -> bool {
        matches!(
            self.code(),
            Some("QUERY_LIMIT_EXCEEDED" | "OPERATION_TIME_LIMIT")
        )
    }

    /// When a blocked method may be called again: work that needs it should wait until then.
    pub fn retry_at(&self) -> Option<SystemTime> {
        match self {
            Self::Blocked { until, .. } => Some(*until),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self.code(), Some("NOT_FOUND" | "OWNER_NOT_FOUND"))
    }
}

/// Whether a call may be repeated after a timeout or server fault (the portal may have applied it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotent {
    Yes,
    No,
}

/// Counters for `/metrics` and the benchmarks.
#[derive(Debug, Default)]
pub struct BitrixStats {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub limit_hits: AtomicU64,
    pub latency_micros: AtomicU64,
}

#[derive(Clone)]
pub struct BitrixClient {
    http: reqwest::Client,
    base: Arc<SecretString>,
    limiter: Arc<LeakyBucket>,
    operating: Arc<OperatingLimits>,
    stats: Arc<BitrixStats>,
    max_retries: u32,
    max_inline_wait: Duration,
}

impl std::fmt::Debug for BitrixClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BitrixClient { base: <redacted> }")
    }
}

impl BitrixClient {
    pub fn new(
        webhook_url: &SecretString,
        rate: f64,
        burst: u32,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut base = webhook_url.expose_secret().trim().to_string();
        if !base.ends_with('/') {
            base.push('/');
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("certportal/", env!("CARGO_PKG_VERSION")))
            // A 302 means the portal moved; following it blindly could leak the secret elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            http,
            base: Arc::new(SecretString::from(base)),
            limiter: Arc::new(LeakyBucket::new(rate, burst)),
            operating: Arc::default(),
            stats: Arc::new(BitrixStats::default()),
            max_retries: 4,
            max_inline_wait: MAX_INLINE_WAIT,
        })
    }

    /// The same client (limits, budget, counters shared) that never sleeps for a blocked method:
    /// for a visitor waiting on a page.
    pub fn impatient(&self) -> Self {
        Self {
            max_inline_wait: Duration::ZERO,
            ..self.clone()
        }
    }

    /// Records that the portal refused `method` for its time limit (e.g. inside a `batch`) and
    /// returns the error that makes work wait for the window.
    pub fn blocked(&self, method: &str) -> BitrixError {
        self.stats.limit_hits.fetch_add(1, Ordering::Relaxed);
        BitrixError::Blocked {
            method: method.to_string(),
            until: self.operating.block(method),
        }
    }

    pub fn stats(&self) -> &BitrixStats {
        &self.stats
    }

    /// Calls `method` and returns the whole envelope (`result`, `total`, `next`, `time`).
    pub async fn call(
        &self,
        method: &str,
        params: &Value,
        idempotent: Idempotent,
    ) -> Result<Value, BitrixError> {
        let mut attempt = 0;
        loop {
            if let Some(until) = self.operating.blocked_until_call(method, params) {
                let wait = until.duration_since(SystemTime::now()).unwrap_or_default();
                if wait > self.max_inline_wait {
                    return Err(BitrixError::Blocked {
                        method: method.to_string(),
                        until,
                    });
                }
                tokio::time::sleep(wait).await;
            }
            self.limiter.acquire().await;
            let result = self.call_once(method, params).await;
            let err = match result {
                Ok(v) => {
                    if method == "batch" {
                        self.operating.observe_batch(params, &v);
                    } else {
                        self.operating.observe(method, &v["time"]);
                    }
                    return Ok(v);
                }
                Err(e) => e,
            };
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            if err.code() == Some("OPERATION_TIME_LIMIT") {
                self.stats.limit_hits.fetch_add(1, Ordering::Relaxed);
                let until = self.operating.block(method);
                tracing::warn!(method, error = %err, "method blocked by the operating-time limit");
                if attempt >= self.max_retries {
                    return Err(BitrixError::Blocked {
                        method: method.to_string(),
                        until,
                    });
                }
                // The top of the loop waits for the window, or gives up if it is far away.
                attempt += 1;
                continue;
            }
            let retry = err.is_transient()
                && attempt < self.max_retries
                && (idempotent == Idempotent::Yes || err.was_refused());
            if !retry {
                return Err(err);
            }
            let delay = match err.code() {
                Some("QUERY_LIMIT_EXCEEDED") => {
                    self.stats.limit_hits.fetch_add(1, Ordering::Relaxed);
                    let pause = Duration::from_millis(1000).mul_f64(1.5f64.powi(attempt as i32));
                    self.limiter.back_off(pause);
                    jitter(pause)
                }
                _ => jitter(Duration::from_millis(500) * 2u32.pow(attempt)),
            };
            tracing::warn!(method, attempt, error = %err, "Bitrix24 call failed; retrying in {delay:?}");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// `call` for methods whose interesting part is `result`.
    pub async fn result(
        &self,
        method: &str,
        params: &Value,
        idempotent: Idempotent,
    ) -> Result<Value, BitrixError> {
        let mut envelope = self.call(method, params, idempotent).await?;
        Ok(envelope
            .get_mut("result")
            .map(Value::take)
            .unwrap_or(Value::Null))
    }

    async fn call_once(&self, method: &str, params: &Value) -> Result<Value, BitrixError> {
        let started = Instant::now();
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let url = format!("{}{}", self.base.expose_secret(), method);
        let response = self
            .http
            .post(url)
            .header("Accept", "application/json")
            .json(params)
            .send()
            .await
            .map_err(|e| BitrixError::Transport {
                method: method.to_string(),
                message: e.without_url().to_string(),
            })?;
        let status = response.status().as_u16();
        if response.status().is_redirection() {
            // The portal moved (API reference §1.3). The new address carries the secret too: name
            // only its host, so an administrator can fix BITRIX_WEBHOOK_URL.
            let host = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url::Url::parse(l).ok())
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_else(|| "?".into());
            return Err(BitrixError::Unexpected {
                method: method.to_string(),
                status,
                snippet: format!("the portal redirects to {host}; update BITRIX_WEBHOOK_URL"),
            });
        }
        let body = response.bytes().await.map_err(|e| BitrixError::Transport {
            method: method.to_string(),
            message: e.without_url().to_string(),
        })?;
        self.stats
            .latency_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        parse_envelope(method, status, &body)
    }
}

fn jitter(d: Duration) -> Duration {
    let factor = rand::rng().random_range(0.9..1.1);
    d.mul_f64(factor)
}

/// Reads the documented envelopes: `{"result": …}` on success, `{"error", "error_description"}` on
/// failure (any status), anything else is `Unexpected`.
pub fn parse_envelope(method: &str, status: u16, body: &[u8]) -> Result<Value, BitrixError> {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    match parsed {
        Some(v) if v.get("error").is_some() => {
            let code = match &v["error"] {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            Err(BitrixError::Api {
                method: method.to_string(),
                status,
                code,
                description: v
                    .get("error_description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            })
        }
        Some(v) if (200..300).contains(&status) && v.get("result").is_some() => Ok(v),
        _ => Err(BitrixError::Unexpected {
            method: method.to_string(),
            status,
            snippet: String::from_utf8_lossy(&body[..body.len().min(120)])
                .chars()
                .filter(|c| !c.is_control())
                .collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_envelopes_are_read() {
        let ok = parse_envelope("m", 200, br#"{"result":{"item":{"id":1}},"time":{}}"#).unwrap();
        assert_eq!(ok["result"]["item"]["id"], 1);
        let err = parse_envelope(
            "m",
            503,
            br#"{"error":"QUERY_LIMIT_EXCEEDED","error_description":"Too many requests"}"#,
        )
        .unwrap_err();
        assert_eq!(err.code(), Some("QUERY_LIMIT_EXCEEDED"));
        assert!(err.is_transient() && err.was_refused());
        let err = parse_envelope(
            "m",
            400,
            br#"{"error":"NOT_FOUND","error_description":"x"}"#,
        )
        .unwrap_err();
        assert!(err.is_not_found() && !err.is_transient());
        let err =
            parse_envelope("m", 400, br#"{"error":100,"error_description":"x"}"#).unwrap_err();
        assert_eq!(err.code(), Some("100"));
    }

    #[test]
    fn a_revoked_webhook_is_waited_for_not_blamed_on_the_item() {
        let err = parse_envelope(
            "crm.item.get",
            401,
            br#"{"error":"NO_AUTH_FOUND","error_description":"Wrong authorization data"}"#,
        )
        .unwrap_err();
        assert!(err.is_access_problem() && err.is_temporary() && !err.is_transient());
        let err = parse_envelope(
            "crm.item.get",
            403,
            br#"{"error":"insufficient_scope","error_description":""}"#,
        )
        .unwrap_err();
        assert!(err.is_temporary());
        let err = parse_envelope(
            "crm.item.update",
            400,
            br#"{"error":"INVALID_ARG_VALUE","error_description":"x"}"#,
        )
        .unwrap_err();
        assert!(!err.is_temporary());
    }

    #[test]
    fn an_html_page_under_load_is_a_transient_error() {
        let err =
            parse_envelope("batch", 503, b"<html><body>502 Bad Gateway</body></html>").unwrap_err();
        assert!(matches!(err, BitrixError::Unexpected { status: 503, .. }));
        assert!(err.is_transient());
    }
}
