//! Admin pages (admin role once accounts exist).
use super::error::WebError;
use super::i18n::{Labels, Lang};
use super::{css_name, State};
use crate::jobs::SourceStatus;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

#[derive(Template)]
#[template(path = "admin/sources.html")]
struct SourcesPage<'a> {
    t: &'a Labels,
    css: &'a str,
    path: &'a str,
    sources: Vec<SourceStatus>,
    csrf: String,
}

pub async fn sources_ja(state: State, req: HttpRequest) -> Result<HttpResponse, WebError> {
    sources(state, &req, Lang::Ja).await
}
pub async fn sources_en(state: State, req: HttpRequest) -> Result<HttpResponse, WebError> {
    sources(state, &req, Lang::En).await
}

fn csrf_of(req: &HttpRequest) -> String {
    super::auth::authed(req).map(|a| a.csrf).unwrap_or_default()
}

async fn sources(state: State, req: &HttpRequest, lang: Lang) -> Result<HttpResponse, WebError> {
    let page = SourcesPage {
        t: lang.labels(),
        css: css_name(),
        path: "/admin/sources",
        sources: crate::jobs::source_statuses(&state.store, state.clock.now()).await?,
        csrf: csrf_of(req),
    };
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(page.render()?))
}

#[derive(Debug, Deserialize)]
pub struct SourceForm {
    csrf: String,
    /// "on" or "off".
    crawl: String,
}

/// Turns a source's crawling on or off (admins; audited with before and after).
pub async fn source_form(
    state: State,
    req: HttpRequest,
    name: web::Path<String>,
    form: web::Form<SourceForm>,
) -> Result<HttpResponse, WebError> {
    super::auth::check_form_csrf(&req, &form.csrf)?;
    let enabled = match form.crawl.as_str() {
        "on" => true,
        "off" => false,
        other => {
            return Err(WebError::BadRequest(format!(
                "crawl: {other:?} is not on or off"
            )))
        }
    };
    let before = state.store.set_source_enabled(&name, enabled).await?;
    super::auth::audit(
        &state,
        &req,
        "source_update",
        &format!("source {name}"),
        Some(format!("enabled={before}")),
        Some(format!("enabled={enabled}")),
    )
    .await;
    let prefix = if req.path().starts_with("/en/") {
        "/en"
    } else {
        ""
    };
    Ok(HttpResponse::SeeOther()
        .insert_header(("Location", format!("{prefix}/admin/sources")))
        .finish())
}

pub struct ServiceRow {
    pub slug: String,
    pub name: String,
    pub watched: bool,
    pub position: i64,
}

#[derive(Template)]
#[template(path = "admin/services.html")]
struct ServicesPage<'a> {
    t: &'a Labels,
    css: &'a str,
    path: &'a str,
    services: Vec<ServiceRow>,
    csrf: String,
}

pub async fn services_ja(state: State, req: HttpRequest) -> Result<HttpResponse, WebError> {
    services(state, &req, Lang::Ja).await
}
pub async fn services_en(state: State, req: HttpRequest) -> Result<HttpResponse, WebError> {
    services(state, &req, Lang::En).await
}

/// Every service the dictionaries know, watched or not, in dashboard order.
async fn services(state: State, req: &HttpRequest, lang: Lang) -> Result<HttpResponse, WebError> {
    let rows = state.store.services().await?;
    let mut services: Vec<ServiceRow> = state
        .dicts
        .services
        .iter()
        .map(|s| {
            let row = rows.iter().find(|r| r.0 == s.slug);
            ServiceRow {
                slug: s.slug.clone(),
                name: if lang == Lang::Ja {
                    s.name_ja.clone()
                } else {
                    s.name_en.clone()
                },
                watched: row.is_some_and(|r| r.1),
                position: row.map_or(i64::MAX, |r| r.2),
            }
        })
        .collect();
    services.sort_by_key(|s| (!s.watched, s.position));
    let page = ServicesPage {
        t: lang.labels(),
        css: css_name(),
        path: "/admin/services",
        services,
        csrf: csrf_of(req),
    };
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(page.render()?))
}

#[derive(Debug, Deserialize)]
pub struct ServiceForm {
    csrf: String,
    /// "on" or "off".
    watched: String,
    position: String,
}

/// Watches or unwatches a service and sets its dashboard place (admins; audited).
pub async fn service_form(
    state: State,
    req: HttpRequest,
    slug: web::Path<String>,
    form: web::Form<ServiceForm>,
) -> Result<HttpResponse, WebError> {
    super::auth::check_form_csrf(&req, &form.csrf)?;
    if state.dicts.service(&slug).is_none() {
        return Err(WebError::NotFoundWhat(format!(
            "service {:?}",
            slug.as_str()
        )));
    }
    let watched = match form.watched.as_str() {
        "on" => true,
        "off" => false,
        other => {
            return Err(WebError::BadRequest(format!(
                "watched: {other:?} is not on or off"
            )))
        }
    };
    let position: i64 = form
        .position
        .trim()
        .parse()
        .ok()
        .filter(|p| (0..=1000).contains(p))
        .ok_or_else(|| {
            WebError::BadRequest(format!(
                "position: {:?} is not a whole number from 0 to 1000",
                form.position
            ))
        })?;
    let before = state
        .store
        .set_service(&slug, watched, position, state.clock.now())
        .await?;
    super::auth::audit(
        &state,
        &req,
        "service_update",
        &format!("service {slug}"),
        before.map(|(w, p)| format!("watched={w} position={p}")),
        Some(format!("watched={watched} position={position}")),
    )
    .await;
    let prefix = if req.path().starts_with("/en/") {
        "/en"
    } else {
        ""
    };
    Ok(HttpResponse::SeeOther()
        .insert_header(("Location", format!("{prefix}/admin/services")))
        .finish())
}
