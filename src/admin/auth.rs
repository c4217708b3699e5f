//! Console sign-in: argon2id passwords, a session cookie (HttpOnly, SameSite=Strict, Secure under
//! https), a CSRF token on every form, and a growing delay after failed attempts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use askama::Template;
use secrecy::SecretString;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::html;
use crate::startup::AppState;
use crate::store::{Session, random_token};

pub const SESSION_COOKIE: &str = "certportal_session";
const LOGIN_CSRF_COOKIE: &str = "certportal_login_csrf";
const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;

/// Failed sign-ins per login: each one doubles the wait before the next answer.
#[derive(Default)]
pub struct LoginThrottle {
    fails: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginThrottle {
    fn delay(&self, login: &str) -> Duration {
        let fails = self.fails.lock().expect("throttle lock");
        match fails.get(login) {
            Some((n, at)) if at.elapsed() < Duration::from_secs(900) => {
                Duration::from_millis(250u64.saturating_mul(1 << (*n).min(5)))
                    .min(Duration::from_secs(8))
            }
            _ => Duration::ZERO,
        }
    }
    fn failed(&self, login: &str) {
        let mut fails = self.fails.lock().expect("throttle lock");
        if fails.len() > 10_000 {
            fails.retain(|_, (_, at)| at.elapsed() < Duration::from_secs(900));
        }
        let e = fails
            .entry(login.to_string())
            .or_insert((0, Instant::now()));
        e.0 += 1;
        e.1 = Instant::now();
    }
    fn succeeded(&self, login: &str) {
        self.fails.lock().expect("throttle lock").remove(login);
    }
}

/// The signed-in staff member, if the request carries a live session.
pub async fn current(req: &HttpRequest, state: &AppState) -> Option<Session> {
    let token = req.cookie(SESSION_COOKIE)?.value().to_string();
    match state.store.session(&token).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = ?e, "session lookup failed");
            None
        }
    }
}

/// A console page's signed-in staff member; anonymous visitors are sent to the sign-in page.
pub struct Staff(pub Session);

/// The same for exports read by programs: anonymous requests get a 401 JSON error.
pub struct StaffExport(pub Session);

async fn session_of(req: &HttpRequest) -> Option<Session> {
    let state = req.app_data::<web::Data<AppState>>()?;
    current(req, state).await
}

type Extracted<T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, actix_web::Error>>>>;

/// The session wrapped as `wrap`, or the answer `refuse` gives an anonymous request.
fn extract<T: 'static>(
    req: &HttpRequest,
    wrap: fn(Session) -> T,
    refuse: fn(&HttpRequest) -> HttpResponse,
) -> Extracted<T> {
    let req = req.clone();
    Box::pin(async move {
        match session_of(&req).await {
            Some(s) => Ok(wrap(s)),
            None => Err(actix_web::error::InternalError::from_response(
                "no console session",
                refuse(&req),
            )
            .into()),
        }
    })
}

impl FromRequest for Staff {
    type Error = actix_web::Error;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        extract(req, Staff, to_login)
    }
}

impl FromRequest for StaffExport {
    type Error = actix_web::Error;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        extract(req, StaffExport, |_| unauthorized_json())
    }
}

pub fn to_login(req: &HttpRequest) -> HttpResponse {
    let next = req.uri().path_and_query().map_or("/admin", |p| p.as_str());
    let next = url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>();
    HttpResponse::SeeOther()
        .insert_header(("Location", format!("/admin/login?next={next}")))
        .finish()
}

pub fn csrf_ok(session: &Session, given: &str) -> bool {
    !given.is_empty() && bool::from(session.csrf.as_bytes().ct_eq(given.as_bytes()))
}

/// The session behind a state-changing form, or the answer to give instead: sign in, or 403 when
/// the form's CSRF token is missing or wrong.
pub async fn form_session(
    req: &HttpRequest,
    state: &AppState,
    csrf: &str,
) -> Result<Session, HttpResponse> {
    let Some(session) = current(req, state).await else {
        return Err(to_login(req));
    };
    if csrf_ok(&session, csrf) {
        Ok(session)
    } else {
        Err(forbidden())
    }
}

pub fn forbidden() -> HttpResponse {
    crate::web::error_page(
        StatusCode::FORBIDDEN,
        "Действие отклонено",
        "Форма устарела или открыта не из консоли. Обновите страницу и повторите действие.",
    )
}

fn secure(state: &AppState) -> bool {
    state
        .settings
        .public_base_url
        .as_ref()
        .is_some_and(|u| u.scheme() == "https")
}

#[derive(Template)]
#[template(path = "admin/login.html")]
struct LoginPage {
    error: Option<String>,
    login: String,
    next: String,
    csrf: String,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Only local console paths are followed after sign-in.
fn safe_next(next: Option<&str>) -> String {
    next.filter(|n| n.starts_with("/admin") && !n.starts_with("//"))
        .unwrap_or("/admin/certificates")
        .to_string()
}

pub async fn login_form(q: web::Query<NextQuery>, state: web::Data<AppState>) -> HttpResponse {
    let csrf = random_token();
    let page = LoginPage {
        error: None,
        login: String::new(),
        next: safe_next(q.next.as_deref()),
        csrf: csrf.clone(),
    };
    let mut r = html(StatusCode::OK, page.render());
    let _ = r.add_cookie(&login_csrf_cookie(&state, csrf));
    r
}

fn login_csrf_cookie(state: &AppState, value: String) -> Cookie<'static> {
    Cookie::build(LOGIN_CSRF_COOKIE, value)
        .path("/admin")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure(state))
        .finish()
}

#[derive(Deserialize)]
pub struct LoginForm {
    login: String,
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: String,
}

pub async fn login(
    req: HttpRequest,
    form: web::Form<LoginForm>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let form = form.into_inner();
    let cookie_csrf = req
        .cookie(LOGIN_CSRF_COOKIE)
        .map(|c| c.value().to_string())
        .unwrap_or_default();
    if form.csrf.is_empty() || !bool::from(cookie_csrf.as_bytes().ct_eq(form.csrf.as_bytes())) {
        return forbidden();
    }
    let login = form.login.trim().to_string();
    let wait = state.login_throttle.delay(&login);
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    let password = SecretString::from(form.password);
    let admin = match state.store.check_admin(&login, &password).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = ?e, "sign-in check failed");
            None
        }
    };
    let Some(admin) = admin else {
        state.login_throttle.failed(&login);
        tracing::warn!(login = %login, "failed console sign-in");
        let csrf = random_token();
        let page = LoginPage {
            error: Some("Неверный логин или пароль.".into()),
            login,
            next: safe_next(Some(&form.next)),
            csrf: csrf.clone(),
        };
        let mut r = html(StatusCode::UNAUTHORIZED, page.render());
        let _ = r.add_cookie(&login_csrf_cookie(&state, csrf));
        return r;
    };
    state.login_throttle.succeeded(&login);
    let token = match state.store.create_session(admin.id, SESSION_TTL_MS).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = ?e, "cannot open a session");
            return crate::web::error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Вход временно недоступен",
                "Попробуйте через минуту.",
            );
        }
    };
    let _ = state.store.audit(&admin.login, "login", "", "").await;
    let cookie = Cookie::build(SESSION_COOKIE, token)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure(&state))
        .max_age(actix_web::cookie::time::Duration::hours(12))
        .finish();
    HttpResponse::SeeOther()
        .insert_header(("Location", safe_next(Some(&form.next))))
        .cookie(cookie)
        .finish()
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    req: HttpRequest,
    form: web::Form<CsrfForm>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Err(answer) = form_session(&req, &state, &form.csrf).await {
        return answer;
    }
    if let Some(c) = req.cookie(SESSION_COOKIE) {
        let _ = state.store.end_session(c.value()).await;
    }
    let mut gone = Cookie::build(SESSION_COOKIE, "").path("/").finish();
    gone.make_removal();
    HttpResponse::SeeOther()
        .insert_header(("Location", "/admin/login"))
        .cookie(gone)
        .finish()
}

/// Used by handlers that answer machines (CSV): 401 instead of a redirect.
pub fn unauthorized_json() -> HttpResponse {
    HttpResponse::Unauthorized()
        .json(serde_json::json!({"error": "unauthorized", "message": "sign in first"}))
}
