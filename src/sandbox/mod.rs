//! A Bitrix24 portal held in memory, for the tests and `certportal demo`. It answers the REST methods
//! certportal uses at `/rest/<user>/<secret>/<method>[.json]` with the documented envelopes and
//! errors, applies the cloud's leaky-bucket limit (2 req/s drain, 50 burst) when switched on, can
//! inject faults (5xx, an HTML body, delays), and POSTs `ONCRMDYNAMICITEMUPDATE`/`…ADD` to a handler
//! whenever an item changes, as a real portal's outbound webhook does.

mod pages;
mod php;
mod portal;
pub mod seed;

use std::collections::VecDeque;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Map, Value, json};

pub use php::{listify, query_to_json};
pub use portal::{Answer, ApiErr, CONTACT, Change, Portal};

use crate::mail::sink::SmtpSink;

#[derive(Debug, Clone)]
pub enum FaultKind {
    /// `500 INTERNAL_SERVER_ERROR`.
    ServerError,
    /// A 503 nginx-style HTML page instead of JSON.
    Html,
    /// Answer normally, after a pause.
    Delay(Duration),
    /// `503 QUERY_LIMIT_EXCEEDED` though the bucket is not full.
    Limit,
    /// `429 OPERATION_TIME_LIMIT`: the method's time budget is used up (API reference §6.2).
    OperatingLimit,
    /// A documented error envelope with this status and code (e.g. 403 `ACCESS_DENIED`).
    Refuse(u16, &'static str),
    /// A proxy's `413 Request Entity Too Large` HTML page.
    TooLarge,
}

#[derive(Debug, Clone)]
struct Fault {
    method: Option<String>,
    remaining: u32,
    kind: FaultKind,
}

#[derive(Debug, Clone)]
pub struct LoggedRequest {
    pub method: String,
    pub at: Instant,
    pub status: u16,
}

struct Limit {
    on: bool,
    rate: f64,
    capacity: f64,
    level: f64,
    at: Instant,
}

pub struct Inner {
    portal: Mutex<Portal>,
    secret: String,
    limit: Mutex<Limit>,
    /// What every answer reports as `time.operating` and how far away `operating_reset_at` is.
    operating: Mutex<(f64, Duration)>,
    faults: Mutex<Vec<Fault>>,
    log: Mutex<Vec<LoggedRequest>>,
    handler: Mutex<Option<(String, String)>>,
    events: tokio::sync::mpsc::UnboundedSender<Change>,
    pub mail: Mutex<Option<SmtpSink>>,
    pub participant_type: u32,
    pub event_type: u32,
}

#[derive(Clone)]
pub struct Sandbox {
    pub port: u16,
    inner: Arc<Inner>,
}

impl Sandbox {
    /// Starts on 127.0.0.1 (`port` 0 picks one) with the demo portal's types, stages and fields
    /// but no participants; `seed::demo` adds those.
    pub async fn start(port: u16) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let port = listener.local_addr()?.port();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut portal = Portal::default();
        seed::structure(&mut portal);
        let inner = Arc::new(Inner {
            portal: Mutex::new(portal),
            secret: format!("sandbox{:016x}", rand::random::<u64>()),
            limit: Mutex::new(Limit {
                on: false,
                rate: 2.0,
                capacity: 50.0,
                level: 0.0,
                at: Instant::now(),
            }),
            operating: Mutex::new((0.0, Duration::from_secs(600))),
            faults: Mutex::default(),
            log: Mutex::default(),
            handler: Mutex::default(),
            events: tx,
            mail: Mutex::default(),
            participant_type: seed::PARTICIPANT_TYPE,
            event_type: seed::EVENT_TYPE,
        });
        let data = web::Data::from(inner.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                .route("/rest/{user}/{secret}/{method}", web::to(rest))
                .configure(pages::routes)
        })
        .workers(2)
        .listen(listener)?
        .disable_signals()
        .run();
        tokio::spawn(server);
        tokio::spawn(deliver_events(inner.clone(), rx));
        Ok(Self { port, inner })
    }

    /// The incoming-webhook base URL certportal is configured with.
    pub fn webhook_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/rest/1/{}/",
            self.port, self.inner.secret
        )
    }

    pub fn portal(&self) -> MutexGuard<'_, Portal> {
        self.inner.portal.lock().expect("portal lock")
    }

    /// Runs `f` on the portal as a user would, then reports the changes it made to the handler.
    pub fn edit<T>(&self, f: impl FnOnce(&mut Portal) -> T) -> T {
        let (out, changes) = {
            let mut portal = self.portal();
            let out = f(&mut portal);
            (out, std::mem::take(&mut portal.changes))
        };
        for c in changes {
            let _ = self.inner.events.send(c);
        }
        out
    }

    /// Moves a participant to `stage` as a user dragging the card would.
    pub fn move_participant(&self, id: u64, stage: &str) -> bool {
        self.edit(|p| p.move_item(seed::PARTICIPANT_TYPE, id, stage))
    }

    pub fn set_event_handler(&self, url: &str, application_token: &str) {
        *self.inner.handler.lock().expect("lock") = Some((url.into(), application_token.into()));
    }

    pub fn set_rate_limit(&self, on: bool) {
        let mut l = self.inner.limit.lock().expect("lock");
        l.on = on;
        l.level = 0.0;
        l.at = Instant::now();
    }

    /// Every answer from now on reports `used` seconds of method time and a window reset `reset_in`.
    pub fn set_operating(&self, used: f64, reset_in: Duration) {
        *self.inner.operating.lock().expect("lock") = (used, reset_in);
    }

    /// The next `count` calls (of `method`, or of any method) fail with `kind`.
    pub fn inject(&self, method: Option<&str>, count: u32, kind: FaultKind) {
        self.inner.faults.lock().expect("lock").push(Fault {
            method: method.map(str::to_string),
            remaining: count,
            kind,
        });
    }

    pub fn clear_faults(&self) {
        self.inner.faults.lock().expect("lock").clear();
    }

    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.inner.log.lock().expect("lock").clone()
    }

    pub fn attach_mail(&self, sink: SmtpSink) {
        *self.inner.mail.lock().expect("lock") = Some(sink);
    }
}

fn envelope(inner: &Inner, answer: Answer, started: Instant) -> Value {
    let mut out = json!({"result": answer.result, "time": time_block(inner, started)});
    if let Some(t) = answer.total {
        out["total"] = json!(t);
    }
    if let Some(n) = answer.next {
        out["next"] = json!(n);
    }
    out
}

fn time_block(inner: &Inner, started: Instant) -> Value {
    let (operating, reset_in) = *inner.operating.lock().expect("lock");
    let now = chrono::Utc::now();
    let d = started.elapsed().as_secs_f64();
    json!({"start": now.timestamp_millis() as f64 / 1000.0 - d, "finish": now.timestamp_millis() as f64 / 1000.0,
        "duration": d, "processing": d, "date_start": now.to_rfc3339(), "date_finish": now.to_rfc3339(),
        "operating": operating, "operating_reset_at": now.timestamp() + reset_in.as_secs() as i64})
}

fn operating_limit() -> ApiErr {
    ApiErr {
        status: 429,
        code: "OPERATION_TIME_LIMIT".into(),
        description: "Method is blocked due to operation time limit.".into(),
    }
}

fn refusal(status: u16, code: &str) -> ApiErr {
    ApiErr {
        status,
        code: code.into(),
        description: format!("{code} (injected by the sandbox)"),
    }
}

fn error_response(e: &ApiErr) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(e.status).unwrap_or_default())
        .json(json!({"error": e.code, "error_description": e.description}))
}

async fn rest(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    body: web::Bytes,
    inner: web::Data<Inner>,
) -> HttpResponse {
    let started = Instant::now();
    let (_, secret, method) = path.into_inner();
    let method = method.trim_end_matches(".json").to_string();
    let respond = |status: u16, resp: HttpResponse| {
        inner.log.lock().expect("lock").push(LoggedRequest {
            method: method.clone(),
            at: started,
            status,
        });
        resp
    };
    if secret != inner.secret {
        let e = ApiErr {
            status: 401,
            code: "NO_AUTH_FOUND".into(),
            description: "Wrong authorization data".into(),
        };
        return respond(401, error_response(&e));
    }
    if !take_from_bucket(&inner) {
        let e = ApiErr {
            status: 503,
            code: "QUERY_LIMIT_EXCEEDED".into(),
            description: "Too many requests".into(),
        };
        return respond(503, error_response(&e));
    }
    if let Some(kind) = take_fault(&inner, &method) {
        match kind {
            FaultKind::ServerError => {
                let e = ApiErr {
                    status: 500,
                    code: "INTERNAL_SERVER_ERROR".into(),
                    description: "Internal server error".into(),
                };
                return respond(500, error_response(&e));
            }
            FaultKind::Html => {
                return respond(
                    503,
                    HttpResponse::ServiceUnavailable()
                        .content_type("text/html")
                        .body("<html><head><title>503 Service Temporarily Unavailable</title></head><body><center><h1>503</h1></center><hr><center>nginx</center></body></html>"),
                );
            }
            FaultKind::Limit => {
                let e = ApiErr {
                    status: 503,
                    code: "QUERY_LIMIT_EXCEEDED".into(),
                    description: "Too many requests".into(),
                };
                return respond(503, error_response(&e));
            }
            FaultKind::OperatingLimit => return respond(429, error_response(&operating_limit())),
            FaultKind::Refuse(status, code) => {
                return respond(status, error_response(&refusal(status, code)));
            }
            FaultKind::TooLarge => {
                return respond(
                    413,
                    HttpResponse::PayloadTooLarge()
                        .content_type("text/html")
                        .body("<html><head><title>413 Request Entity Too Large</title></head><body><center><h1>413 Request Entity Too Large</h1></center><hr><center>nginx</center></body></html>"),
                );
            }
            FaultKind::Delay(d) => tokio::time::sleep(d).await,
        }
    }
    let params = parse_params(&req, &body);
    let result = if method == "batch" {
        Ok(Answer::from(batch(&inner, &params)))
    } else {
        let out = {
            let mut portal = inner.portal.lock().expect("portal lock");
            let r = portal.call(&method, &params);
            let changes = std::mem::take(&mut portal.changes);
            (r, changes)
        };
        for c in out.1 {
            let _ = inner.events.send(c);
        }
        out.0
    };
    match result {
        Ok(answer) => respond(
            200,
            HttpResponse::Ok().json(envelope(&inner, answer, started)),
        ),
        Err(e) => respond(e.status, error_response(&e)),
    }
}

fn parse_params(req: &HttpRequest, body: &[u8]) -> Value {
    let is_json = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    let mut params = if is_json {
        serde_json::from_slice(body).unwrap_or(Value::Object(Map::new()))
    } else {
        listify(query_to_json(&String::from_utf8_lossy(body)))
    };
    if let (Value::Object(map), Value::Object(q)) =
        (&mut params, listify(query_to_json(req.query_string())))
    {
        for (k, v) in q {
            map.entry(k).or_insert(v);
        }
    }
    params
}

/// `batch`: up to 50 sub-calls as query strings, `$result[key][…]` references, per-call errors.
fn batch(inner: &Inner, params: &Value) -> Value {
    let halt = params.get("halt").and_then(crate::bitrix::model::as_u64) == Some(1);
    let cmds: Vec<(String, String)> = match params.get("cmd") {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v.as_str().unwrap_or_default().to_string()))
            .collect(),
        _ => Vec::new(),
    };
    let mut results = Map::new();
    let mut errors = Map::new();
    let mut totals = Map::new();
    let mut nexts = Map::new();
    let mut times = Map::new();
    if cmds.len() > 50 {
        errors.insert(
            "batch".into(),
            json!({"error": "ERROR_BATCH_LENGTH_EXCEEDED", "error_description": "Max batch length exceeded"}),
        );
    }
    let mut changes = Vec::new();
    for (key, cmd) in cmds.into_iter().take(50) {
        let started = Instant::now();
        let (method, query) = cmd.split_once('?').unwrap_or((cmd.as_str(), ""));
        let query = substitute(query, &results);
        let p = listify(query_to_json(&query));
        let fault = take_fault(inner, method);
        let r = if method == "batch" {
            Err(ApiErr {
                status: 405,
                code: "ERROR_BATCH_METHOD_NOT_ALLOWED".into(),
                description: "Method is not allowed for batch usage".into(),
            })
        } else if let Some(FaultKind::OperatingLimit) = fault {
            Err(operating_limit())
        } else if let Some(FaultKind::Refuse(status, code)) = fault {
            Err(refusal(status, code))
        } else if let Some(
            FaultKind::ServerError | FaultKind::Html | FaultKind::Limit | FaultKind::TooLarge,
        ) = fault
        {
            Err(ApiErr {
                status: 500,
                code: "INTERNAL_SERVER_ERROR".into(),
                description: "Internal server error".into(),
            })
        } else {
            let mut portal = inner.portal.lock().expect("portal lock");
            let r = portal.call(method, &p);
            changes.append(&mut portal.changes);
            r
        };
        times.insert(key.clone(), time_block(inner, started));
        match r {
            Ok(a) => {
                if let Some(t) = a.total {
                    totals.insert(key.clone(), json!(t));
                }
                if let Some(n) = a.next {
                    nexts.insert(key.clone(), json!(n));
                }
                results.insert(key, a.result);
            }
            Err(e) => {
                errors.insert(
                    key,
                    json!({"error": e.code, "error_description": e.description}),
                );
                if halt {
                    break;
                }
            }
        }
    }
    for c in changes {
        let _ = inner.events.send(c);
    }
    let group = |m: Map<String, Value>| {
        if m.is_empty() {
            json!([])
        } else {
            Value::Object(m)
        }
    };
    json!({"result": group(results), "result_error": group(errors), "result_total": group(totals),
        "result_next": group(nexts), "result_time": group(times)})
}

/// Replaces `$result[key][a][b]` with the value found in earlier results.
fn substitute(query: &str, results: &Map<String, Value>) -> String {
    let decoded: String = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| {
            let v = if let Some(path) = v.strip_prefix("$result") {
                let keys: Vec<&str> = path.split(['[', ']']).filter(|s| !s.is_empty()).collect();
                let mut node = Value::Object(results.clone());
                for k in keys {
                    node = match &node {
                        Value::Object(m) => m.get(k).cloned().unwrap_or(Value::Null),
                        Value::Array(a) => k
                            .parse::<usize>()
                            .ok()
                            .and_then(|i| a.get(i).cloned())
                            .unwrap_or(Value::Null),
                        _ => Value::Null,
                    };
                }
                crate::bitrix::model::as_text(&node).unwrap_or_default()
            } else {
                v.into_owned()
            };
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair(&k, &v)
                .finish()
        })
        .collect::<Vec<_>>()
        .join("&");
    decoded
}

fn take_from_bucket(inner: &Inner) -> bool {
    let mut l = inner.limit.lock().expect("lock");
    if !l.on {
        return true;
    }
    let now = Instant::now();
    l.level = (l.level - now.duration_since(l.at).as_secs_f64() * l.rate).max(0.0);
    l.at = now;
    if l.level + 1.0 > l.capacity {
        return false;
    }
    l.level += 1.0;
    true
}

fn take_fault(inner: &Inner, method: &str) -> Option<FaultKind> {
    let mut faults = inner.faults.lock().expect("lock");
    let i = faults
        .iter()
        .position(|f| f.remaining > 0 && f.method.as_deref().is_none_or(|m| m == method))?;
    faults[i].remaining -= 1;
    let kind = faults[i].kind.clone();
    if faults[i].remaining == 0 {
        faults.remove(i);
    }
    Some(kind)
}

/// Sends each change to the handler as a form-encoded outbound event, in order.
async fn deliver_events(inner: Arc<Inner>, mut rx: tokio::sync::mpsc::UnboundedReceiver<Change>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client builds");
    let mut pending: VecDeque<Change> = VecDeque::new();
    while let Some(change) = rx.recv().await {
        pending.push_back(change);
        while let Some(c) = pending.pop_front() {
            let handler = inner.handler.lock().expect("lock").clone();
            let Some((url, token)) = handler else {
                continue;
            };
            let form = [
                ("event", c.event.to_string()),
                ("event_handler_id", "5".into()),
                ("data[FIELDS][ID]", c.id.to_string()),
                ("data[FIELDS][ENTITY_TYPE_ID]", c.entity_type.to_string()),
                ("ts", chrono::Utc::now().timestamp().to_string()),
                ("auth[domain]", "sandbox.bitrix24.ru".into()),
                (
                    "auth[client_endpoint]",
                    "https://sandbox.bitrix24.ru/rest/".into(),
                ),
                (
                    "auth[server_endpoint]",
                    "https://oauth.bitrix24.tech/rest/".into(),
                ),
                ("auth[member_id]", "a223c6b3710f85df22e9377d6c4f7553".into()),
                ("auth[application_token]", token),
            ];
            // Like the real queue: no retries, a lost event stays lost.
            if let Err(e) = http.post(&url).form(&form).send().await {
                tracing::debug!(error = %e.without_url(), "sandbox event not delivered");
            }
        }
    }
}
