//! User administration HTML (admins): accounts, unlock, end sessions, and the audit log.
//! Every POST checks the form's CSRF token; every change goes to the audit log.
use super::auth::{audit, authed, check_form_csrf};
use super::error::WebError;
use super::State;
use crate::status::render::jst;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use std::collections::HashMap;

type Form = web::Form<HashMap<String, String>>;

fn field<'a>(f: &'a HashMap<String, String>, k: &str) -> &'a str {
    f.get(k).map(|s| s.as_str()).unwrap_or("")
}

pub struct UserView {
    pub name: String,
    pub role: String,
    pub state: String,
}

pub struct AuditView {
    pub at: String,
    pub actor: String,
    pub ip: String,
    pub action: String,
    pub target: String,
    pub before: String,
    pub after: String,
}

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage<'a> {
    css: &'a str,
    csrf: &'a str,
    users: Vec<UserView>,
    audit: Vec<AuditView>,
}

pub async fn users_page(state: State, req: HttpRequest) -> Result<HttpResponse, WebError> {
    let a = authed(&req);
    let now = state.clock.now().timestamp_millis();
    let users = state
        .store
        .users()
        .await?
        .into_iter()
        .map(|u| UserView {
            state: match (
                u.password_hash.is_some(),
                u.locked_until.filter(|l| *l > now),
            ) {
                (false, _) => "setup pending".into(),
                (true, Some(l)) => format!("locked until {}", jst(l)),
                (true, None) => "active".into(),
            },
            name: u.name,
            role: u.role,
        })
        .collect();
    let audit = state
        .store
        .audit_entries(200)
        .await?
        .into_iter()
        .map(|e| AuditView {
            at: jst(e.at),
            actor: e.actor,
            ip: e.ip,
            action: e.action,
            target: e.target,
            before: e.before.unwrap_or_default(),
            after: e.after.unwrap_or_default(),
        })
        .collect();
    let body = UsersPage {
        css: super::css_name(),
        csrf: a.as_ref().map(|a| a.csrf.as_str()).unwrap_or(""),
        users,
        audit,
    }
    .render()?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body))
}

pub async fn unlock_user(
    state: State,
    req: HttpRequest,
    name: web::Path<String>,
    f: Form,
) -> Result<HttpResponse, WebError> {
    check_form_csrf(&req, field(&f, "csrf"))?;
    state
        .store
        .unlock_user(&name, state.clock.now().timestamp_millis())
        .await?;
    audit(
        &state,
        &req,
        "user_unlock",
        &format!("user:{name}"),
        None,
        None,
    )
    .await;
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/admin/users"))
        .finish())
}

pub async fn end_sessions(
    state: State,
    req: HttpRequest,
    name: web::Path<String>,
    f: Form,
) -> Result<HttpResponse, WebError> {
    check_form_csrf(&req, field(&f, "csrf"))?;
    let u = state
        .store
        .user_by_name(&name)
        .await?
        .ok_or_else(|| WebError::NotFoundWhat(format!("user {name:?}")))?;
    let n = state.store.delete_user_sessions(u.id).await?;
    audit(
        &state,
        &req,
        "user_end_sessions",
        &format!("user:{name}"),
        Some(format!("{n} sessions")),
        None,
    )
    .await;
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/admin/users"))
        .finish())
}
