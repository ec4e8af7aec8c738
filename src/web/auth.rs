//! Sign-in over HTTP: the access guard (middleware), session cookies, CSRF, client address,
//! and the login / setup / logout / account pages. Policy lives in `crate::auth`.
use super::error::WebError;
use super::State;
use crate::auth::{self, AuthError, Authed, Role};
use crate::store::AuditEntry;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use std::net::IpAddr;

pub const SESSION_COOKIE: &str = "kizashi_session";
const FORM_CSRF_COOKIE: &str = "kizashi_form_csrf";

/// Who may reach a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    Role(Role),
}

/// The one table of which paths need which role. Status pages, health, static assets and
/// the sign-in pages are public; writes need an operator; user administration an admin;
/// everything else (dashboard, search, their APIs) a viewer.
pub fn required_access(method: &Method, path: &str, public_dashboard: bool) -> Access {
    let public = path == "/healthz"
        || path == "/readyz"
        || path == "/metrics"
        || path.starts_with("/static/")
        || path == "/status"
        || path.starts_with("/status/")
        || path.starts_with("/status.")
        || path == "/en/status"
        || path.starts_with("/en/status/")
        || path.starts_with("/api/v2/")
        || path == "/login"
        || path.starts_with("/setup/")
        || path == "/logout";
    if public {
        return Access::Public;
    }
    // Admins own the structure: users, sources and the status page's components.
    let structure_write = method != Method::GET
        && (path.starts_with("/api/v1/components/")
            || path.starts_with("/admin/status/components/"));
    if path.starts_with("/admin/users")
        || path.starts_with("/admin/audit")
        || path.starts_with("/admin/sources")
        || path.starts_with("/en/admin/sources")
        || path.starts_with("/admin/services")
        || path.starts_with("/en/admin/services")
        || structure_write
    {
        return Access::Role(Role::Admin);
    }
    let writes = path.starts_with("/admin/")
        || path.starts_with("/api/v1/")
        || (method != Method::GET
            && (path.starts_with("/alerts/") || path.starts_with("/en/alerts/")))
        || (path == "/api/crawl" && method != Method::GET);
    if writes {
        return Access::Role(Role::Operator);
    }
    if path.starts_with("/account") {
        return Access::Role(Role::Viewer);
    }
    if public_dashboard {
        Access::Public
    } else {
        Access::Role(Role::Viewer)
    }
}

/// Paths whose POSTs are HTML forms: their handlers check the `csrf` form field. Every other
/// state-changing request must carry the `X-CSRF-Token` header.
fn form_path(path: &str) -> bool {
    path.starts_with("/admin/")
        || path.starts_with("/en/admin/")
        || path.starts_with("/account/")
        || path == "/saved-searches"
        || path.starts_with("/alerts/")
        || path.starts_with("/en/alerts/")
}

/// The client address: the TCP peer, or, when the peer is a trusted proxy, the nearest
/// untrusted address in X-Forwarded-For.
pub fn client_ip(req: &HttpRequest, trusted: &[IpAddr]) -> String {
    client_addr(req, trusted).map_or_else(|| "unknown".into(), |ip| ip.to_string())
}

/// `client_ip` as an address (None without a TCP peer); the rate limiter keys on it.
pub fn client_addr(req: &HttpRequest, trusted: &[IpAddr]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in forwarded.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => continue,
            Ok(ip) => return Some(ip),
            Err(_) => break,
        }
    }
    Some(peer)
}

async fn accounts_exist(state: &State) -> Result<bool, WebError> {
    use std::sync::atomic::Ordering;
    if state.accounts_exist.load(Ordering::Relaxed) {
        return Ok(true);
    }
    let exist = state.store.count_users().await? > 0;
    if exist {
        state.accounts_exist.store(true, Ordering::Relaxed);
    }
    Ok(exist)
}

async fn session_of(state: &State, req: &HttpRequest) -> Result<Option<Authed>, WebError> {
    match req.cookie(SESSION_COOKIE) {
        Some(c) => Ok(auth::session(&state.store, c.value(), state.clock.now()).await?),
        None => Ok(None),
    }
}

fn deny(status: StatusCode, msg: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "error": msg }))
}

/// The access guard, in front of every route.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<State>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let access = required_access(req.method(), req.path(), state.settings.public_dashboard);
    let Access::Role(needed) = access else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    if !accounts_exist(&state).await? {
        // No accounts yet: the skeleton's open mode (a fresh install on localhost).
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let authed = match &bearer {
        Some(token) => {
            let a = auth::token_auth(&state.store, token, state.clock.now())
                .await
                .map_err(WebError::from)?;
            let Some(a) = a else {
                return Ok(req.into_response(deny(
                    StatusCode::UNAUTHORIZED,
                    "unknown or revoked API token",
                )));
            };
            // Tokens are for the APIs, not for pages or forms.
            let read = matches!(*req.method(), Method::GET | Method::HEAD);
            let allowed = req.path().starts_with("/api/")
                && (read || (a.user.role >= Role::Operator && req.path().starts_with("/api/v1/")));
            if !allowed {
                return Ok(req.into_response(deny(
                    StatusCode::FORBIDDEN,
                    "this API token's scope does not allow this request",
                )));
            }
            Some(a)
        }
        None => session_of(&state, req.request()).await?,
    };
    let Some(authed) = authed else {
        let wants_html = req.method() == Method::GET && !req.path().starts_with("/api/");
        let resp = if wants_html {
            HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/login"))
                .finish()
        } else {
            deny(
                StatusCode::UNAUTHORIZED,
                "sign in first (POST /login), then send the session cookie",
            )
        };
        return Ok(req.into_response(resp));
    };
    if authed.user.role < needed {
        let msg = format!(
            "the {} role cannot do this; it needs {}",
            authed.user.role.as_str(),
            needed.as_str()
        );
        return Ok(req.into_response(deny(StatusCode::FORBIDDEN, &msg)));
    }
    let safe = matches!(*req.method(), Method::GET | Method::HEAD);
    // A bearer token is not sent by browsers on their own, so it needs no CSRF token.
    if !safe && !form_path(req.path()) && authed.token.is_none() {
        let token = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !auth::ct_eq(token, &authed.csrf) {
            return Ok(req.into_response(deny(
                StatusCode::FORBIDDEN,
                "missing or wrong X-CSRF-Token header (the token is shown on /account)",
            )));
        }
    }
    req.extensions_mut().insert(authed);
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// The signed-in user of this request, if any (set by the guard).
pub fn authed(req: &HttpRequest) -> Option<Authed> {
    req.extensions().get::<Authed>().cloned()
}

/// Checks a form's `csrf` field against the session's token.
pub fn check_form_csrf(req: &HttpRequest, field: &str) -> Result<Option<Authed>, WebError> {
    match authed(req) {
        Some(a) if auth::ct_eq(field, &a.csrf) => Ok(Some(a)),
        Some(_) => Err(WebError::Forbidden(
            "missing or wrong CSRF token; reload the page and try again".into(),
        )),
        // Open mode (no accounts): nothing to protect a session from.
        None => Ok(None),
    }
}

pub fn actor(req: &HttpRequest) -> String {
    match authed(req) {
        Some(Authed {
            user,
            token: Some((name, _)),
            ..
        }) => format!("{} (token {name})", user.name),
        Some(a) => a.user.name,
        None => "(no accounts)".into(),
    }
}

pub async fn audit(
    state: &State,
    req: &HttpRequest,
    action: &str,
    target: &str,
    before: Option<String>,
    after: Option<String>,
) {
    let e = AuditEntry {
        at: state.clock.now().timestamp_millis(),
        actor: actor(req),
        ip: client_ip(req, &state.settings.trusted_proxies),
        action: action.into(),
        target: target.into(),
        before,
        after,
    };
    auth::audit(&state.store, e).await;
}

fn cookie<'a>(state: &State, name: &'a str, value: String, path: &'a str) -> Cookie<'a> {
    Cookie::build(name, value)
        .path(path)
        .http_only(true)
        .secure(state.settings.cookie_secure)
        .same_site(SameSite::Strict)
        .finish()
}

fn removal<'a>(state: &State, name: &'a str) -> Cookie<'a> {
    let mut c = cookie(state, name, String::new(), "/");
    c.make_removal();
    c
}

fn html(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

/// A double-submit token for forms shown before sign-in (login, setup): the same random value
/// in a SameSite=Strict cookie and in the form.
fn pre_session_csrf(state: &State, req: &HttpRequest) -> (String, Option<Cookie<'static>>) {
    match req.cookie(FORM_CSRF_COOKIE) {
        Some(c) if c.value().len() >= 32 => (c.value().to_string(), None),
        _ => {
            let t = auth::random_token();
            let c = cookie(state, FORM_CSRF_COOKIE, t.clone(), "/");
            (t, Some(c.into_owned()))
        }
    }
}

fn check_pre_session_csrf(req: &HttpRequest, field: &str) -> Result<(), WebError> {
    match req.cookie(FORM_CSRF_COOKIE) {
        Some(c) if auth::ct_eq(c.value(), field) && !field.is_empty() => Ok(()),
        _ => Err(WebError::Forbidden(
            "missing or wrong CSRF token; reload the page and try again".into(),
        )),
    }
}

#[derive(Template)]
#[template(path = "auth/login.html")]
struct LoginPage<'a> {
    css: &'a str,
    csrf: &'a str,
    name: &'a str,
    error: Option<String>,
}

pub async fn login_form(state: State, req: HttpRequest) -> Result<HttpResponse, WebError> {
    let (csrf, set) = pre_session_csrf(&state, &req);
    let body = LoginPage {
        css: super::css_name(),
        csrf: &csrf,
        name: "",
        error: None,
    }
    .render()?;
    let mut resp = html(StatusCode::OK, body);
    if let Some(c) = set {
        resp.add_cookie(&c)
            .map_err(|e| WebError::Internal(e.to_string()))?;
    }
    Ok(resp)
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf: String,
}

pub async fn login(
    state: State,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, WebError> {
    check_pre_session_csrf(&req, &form.csrf)?;
    let ip = client_ip(&req, &state.settings.trusted_proxies);
    let now = state.clock.now();
    match auth::login(
        &state.store,
        &form.name,
        &form.password,
        &form.code,
        &ip,
        now,
    )
    .await
    {
        Ok(s) => {
            // Rotation: whatever session this browser had ends; the new id is fresh.
            if let Some(old) = req.cookie(SESSION_COOKIE) {
                auth::logout(&state.store, old.value()).await?;
            }
            let e = AuditEntry {
                at: now.timestamp_millis(),
                actor: s.user.name.clone(),
                ip,
                action: "sign_in".into(),
                target: format!("user:{}", s.user.name),
                before: None,
                after: None,
            };
            auth::audit(&state.store, e).await;
            let to = if s.user.role >= Role::Operator {
                "/admin/status"
            } else {
                "/"
            };
            let c = cookie(&state, SESSION_COOKIE, s.id, "/");
            Ok(HttpResponse::SeeOther()
                .insert_header((header::LOCATION, to))
                .cookie(c)
                .finish())
        }
        Err(err) => {
            let status = match &err {
                AuthError::BadCredentials => StatusCode::UNAUTHORIZED,
                AuthError::Locked(_) | AuthError::IpLocked(_) => StatusCode::TOO_MANY_REQUESTS,
                other => return Err(WebError::Internal(other.to_string())),
            };
            let e = AuditEntry {
                at: now.timestamp_millis(),
                actor: form.name.chars().take(64).collect(),
                ip,
                action: "sign_in_failed".into(),
                target: format!("user:{}", form.name.chars().take(64).collect::<String>()),
                before: None,
                after: Some(err.to_string()),
            };
            auth::audit(&state.store, e).await;
            let body = LoginPage {
                css: super::css_name(),
                csrf: &form.csrf,
                name: &form.name,
                error: Some(err.to_string()),
            }
            .render()?;
            Ok(html(status, body))
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Ends this browser's session.
pub async fn logout(
    state: State,
    req: HttpRequest,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, WebError> {
    if let Some(c) = req.cookie(SESSION_COOKIE) {
        if let Some(a) = auth::session(&state.store, c.value(), state.clock.now()).await? {
            if !auth::ct_eq(&form.csrf, &a.csrf) {
                return Err(WebError::Forbidden("missing or wrong CSRF token".into()));
            }
            auth::logout(&state.store, c.value()).await?;
        }
    }
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/login"))
        .cookie(removal(&state, SESSION_COOKIE))
        .finish())
}

/// Ends every session of the signed-in user, on every device.
pub async fn logout_everywhere(
    state: State,
    req: HttpRequest,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, WebError> {
    let Some(a) = check_form_csrf(&req, &form.csrf)? else {
        return Err(WebError::BadRequest("no accounts exist yet".into()));
    };
    let n = auth::logout_everywhere(&state.store, a.user.id).await?;
    audit(
        &state,
        &req,
        "sign_out_everywhere",
        &format!("user:{}", a.user.name),
        Some(format!("{n} sessions")),
        None,
    )
    .await;
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/login"))
        .cookie(removal(&state, SESSION_COOKIE))
        .finish())
}

#[derive(Template)]
#[template(path = "auth/account.html")]
struct AccountPage<'a> {
    css: &'a str,
    name: &'a str,
    role: &'a str,
    csrf: &'a str,
}

pub async fn account(req: HttpRequest) -> Result<HttpResponse, WebError> {
    let Some(a) = authed(&req) else {
        return Err(WebError::BadRequest("no accounts exist yet".into()));
    };
    let body = AccountPage {
        css: super::css_name(),
        name: &a.user.name,
        role: a.user.role.as_str(),
        csrf: &a.csrf,
    }
    .render()?;
    Ok(html(StatusCode::OK, body))
}

#[derive(Template)]
#[template(path = "auth/setup.html")]
struct SetupPage<'a> {
    css: &'a str,
    csrf: &'a str,
    token: &'a str,
    name: &'a str,
    role: &'a str,
    secret: Option<String>,
    qr: Option<String>,
    min_chars: usize,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "auth/setup_done.html")]
struct SetupDonePage<'a> {
    css: &'a str,
    name: &'a str,
    codes: Vec<String>,
}

async fn setup_page(
    state: &State,
    req: &HttpRequest,
    token: &str,
    error: Option<String>,
    status: StatusCode,
) -> Result<HttpResponse, WebError> {
    let info = match auth::setup_info(&state.store, token, state.clock.now()).await {
        Ok(i) => i,
        Err(AuthError::SetupInvalid) => {
            return Err(WebError::NotFoundWhat(AuthError::SetupInvalid.to_string()))
        }
        Err(e) => return Err(WebError::Internal(e.to_string())),
    };
    let (csrf, set) = pre_session_csrf(state, req);
    let qr = info
        .otpauth_url
        .as_deref()
        .map(auth::qr_data_url)
        .transpose()
        .map_err(|e| WebError::Internal(e.to_string()))?;
    let body = SetupPage {
        css: super::css_name(),
        csrf: &csrf,
        token,
        name: &info.user.name,
        role: info.user.role.as_str(),
        secret: info.totp_secret,
        qr,
        min_chars: auth::MIN_PASSWORD_CHARS,
        error,
    }
    .render()?;
    let mut resp = html(status, body);
    if let Some(c) = set {
        resp.add_cookie(&c)
            .map_err(|e| WebError::Internal(e.to_string()))?;
    }
    Ok(resp)
}

pub async fn setup_form(
    state: State,
    req: HttpRequest,
    token: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    setup_page(&state, &req, &token, None, StatusCode::OK).await
}

#[derive(Debug, Deserialize)]
pub struct SetupForm {
    password: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf: String,
}

pub async fn setup(
    state: State,
    req: HttpRequest,
    token: web::Path<String>,
    form: web::Form<SetupForm>,
) -> Result<HttpResponse, WebError> {
    check_pre_session_csrf(&req, &form.csrf)?;
    let now = state.clock.now();
    let info = auth::setup_info(&state.store, &token, now)
        .await
        .map_err(|e| WebError::NotFoundWhat(e.to_string()))?;
    match auth::finish_setup(&state.store, &token, &form.password, &form.code, now).await {
        Ok(codes) => {
            let e = AuditEntry {
                at: now.timestamp_millis(),
                actor: info.user.name.clone(),
                ip: client_ip(&req, &state.settings.trusted_proxies),
                action: "user_setup".into(),
                target: format!("user:{}", info.user.name),
                before: None,
                after: Some(format!(
                    "password set{}",
                    if codes.is_empty() {
                        ""
                    } else {
                        ", TOTP enrolled"
                    }
                )),
            };
            auth::audit(&state.store, e).await;
            state
                .accounts_exist
                .store(true, std::sync::atomic::Ordering::Relaxed);
            let body = SetupDonePage {
                css: super::css_name(),
                name: &info.user.name,
                codes,
            }
            .render()?;
            Ok(html(StatusCode::OK, body))
        }
        Err(AuthError::Invalid(msg)) => {
            setup_page(&state, &req, &token, Some(msg), StatusCode::BAD_REQUEST).await
        }
        Err(AuthError::Store(crate::store::StoreError::Invalid(msg))) => {
            Err(WebError::BadRequest(msg))
        }
        Err(e) => Err(WebError::Internal(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_table() {
        let get = Method::GET;
        let post = Method::POST;
        let rows = [
            (&get, "/status", false, Access::Public),
            (&get, "/en/status/incidents/3", false, Access::Public),
            (&get, "/api/v2/summary.json", false, Access::Public),
            (&get, "/status.atom", false, Access::Public),
            (&post, "/login", false, Access::Public),
            (&get, "/", false, Access::Role(Role::Viewer)),
            (&get, "/", true, Access::Public),
            (&get, "/api/search", false, Access::Role(Role::Viewer)),
            (&get, "/statusx", false, Access::Role(Role::Viewer)),
            (
                &post,
                "/api/v1/incidents",
                true,
                Access::Role(Role::Operator),
            ),
            (&post, "/api/crawl", true, Access::Role(Role::Operator)),
            (&get, "/admin/status", false, Access::Role(Role::Operator)),
            (&get, "/admin/users", false, Access::Role(Role::Admin)),
            (&get, "/admin/sources", true, Access::Role(Role::Admin)),
            (&post, "/admin/sources/nhk", true, Access::Role(Role::Admin)),
            (&get, "/admin/services", true, Access::Role(Role::Admin)),
            (
                &post,
                "/en/admin/services/paypay",
                true,
                Access::Role(Role::Admin),
            ),
            (
                &Method::PUT,
                "/api/v1/components/api",
                true,
                Access::Role(Role::Admin),
            ),
            (
                &post,
                "/admin/status/components/api",
                true,
                Access::Role(Role::Admin),
            ),
            (
                &post,
                "/api/v1/incidents/3/updates",
                true,
                Access::Role(Role::Operator),
            ),
            (
                &post,
                "/api/v1/maintenances",
                true,
                Access::Role(Role::Operator),
            ),
            (&get, "/account", true, Access::Role(Role::Viewer)),
        ];
        for (m, path, open, want) in rows {
            assert_eq!(required_access(m, path, open), want, "{m} {path} {open}");
        }
    }
}
