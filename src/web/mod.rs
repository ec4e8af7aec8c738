//! web: the only module that knows actix-web and askama (the status pages' templates are
//! rendered by `status`, off the request path). Routes are grouped public / viewer / operator /
//! admin; `auth::required_access` is the one table of who may reach which path, and until an
//! account exists every group is open.
mod admin;
mod alerts;
mod api;
pub mod auth;
mod chart;
mod dashboard;
pub mod error;
mod i18n;
pub mod limits;
mod observe;
mod pages;
mod status;
mod status_admin;
mod users_admin;

use crate::app::AppState;
use crate::domain::Slug;
use crate::search::{SearchRequest, SortBy};
use actix_web::{web, App, HttpResponse, HttpServer};
use error::WebError;
use serde::Deserialize;
use std::net::TcpListener;
use std::sync::{Arc, OnceLock};

pub use i18n::Lang;

type State = web::Data<AppState>;

pub fn server(
    listener: TcpListener,
    state: Arc<AppState>,
) -> std::io::Result<actix_web::dev::Server> {
    let limits = &state.settings.limits;
    let rates = web::Data::new(limits::RateLimits::new(
        limits,
        &state.settings.trusted_proxies,
    ));
    let request_timeout = web::Data::new(limits::RequestTimeout(limits.request_timeout));
    let data = web::Data::from(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(rates.clone())
            .app_data(request_timeout.clone())
            .app_data(web::QueryConfig::default().error_handler(|e, _| {
                WebError::BadRequest(format!("bad query string: {e}")).into()
            }))
            .app_data(limits::json_config(limits::JSON_LIMIT))
            .app_data(limits::form_config())
            // Access log, metrics, rate limit and the timeout around the guard and handlers;
            // 429s get the security headers.
            .wrap(actix_web::middleware::from_fn(limits::edge))
            .wrap(security_headers())
            // Status documents are public and pre-compressed: registered first, outside the
            // scope that carries the access guard and Compress.
            .configure(status_routes)
            .service(
                web::scope("")
                    .wrap(actix_web::middleware::from_fn(auth::guard))
                    .wrap(actix_web::middleware::Compress::default())
                    .configure(public_routes)
                    .configure(viewer_routes)
                    .configure(operator_routes)
                    .configure(account_routes)
                    .configure(admin_routes),
            )
    })
    .listen(listener)?
    .run();
    Ok(server)
}

/// A worker node's listener: health, readiness and metrics only (no pages, no API).
pub fn health_server(
    listener: TcpListener,
    state: Arc<AppState>,
) -> std::io::Result<actix_web::dev::Server> {
    let data = web::Data::from(state);
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .wrap(security_headers())
            .route("/healthz", web::get().to(api::healthz))
            .route("/readyz", web::get().to(api::readyz))
            .route("/metrics", web::get().to(api::metrics))
    })
    .workers(1)
    .listen(listener)?
    .run())
}

/// Sent on every response. The pages use no inline script or style; the TOTP QR code is a
/// data: image.
fn security_headers() -> actix_web::middleware::DefaultHeaders {
    SECURITY_HEADERS
        .iter()
        .fold(actix_web::middleware::DefaultHeaders::new(), |h, kv| {
            h.add(*kv)
        })
}

/// The security headers (lower-case names), also added to answers that bypass the
/// middleware (a timed-out request).
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
         object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "same-origin"),
    ("x-content-type-options", "nosniff"),
];

/// Paths of the public status documents; each is served from the pre-rendered set.
pub const STATUS_PATHS: &[&str] = &[
    "/status",
    "/en/status",
    "/status/history",
    "/en/status/history",
    "/status/incidents/{id}",
    "/en/status/incidents/{id}",
    "/status.atom",
    "/status.rss",
    "/api/v2/summary.json",
    "/api/v2/status.json",
    "/api/v2/components.json",
    "/api/v2/incidents.json",
    "/api/v2/incidents/unresolved.json",
    "/api/v2/scheduled-maintenances.json",
    "/api/v2/scheduled-maintenances/upcoming.json",
    "/api/v2/scheduled-maintenances/active.json",
];

/// The public status documents (pre-rendered, pre-compressed).
fn status_routes(cfg: &mut web::ServiceConfig) {
    for path in STATUS_PATHS {
        cfg.route(path, web::get().to(status::public))
            .route(path, web::head().to(status::public));
    }
}

/// Open to anyone, always: health, static assets and the sign-in pages.
fn public_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(api::healthz))
        .route("/readyz", web::get().to(api::readyz))
        .route("/metrics", web::get().to(api::metrics))
        .route("/static/{name}", web::get().to(static_file));
    cfg.route("/login", web::get().to(auth::login_form))
        .route("/login", web::post().to(auth::login))
        .route("/logout", web::post().to(auth::logout))
        .route("/setup/{token}", web::get().to(auth::setup_form))
        .route("/setup/{token}", web::post().to(auth::setup));
}

/// Signed-in pages for every role.
fn account_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/account", web::get().to(auth::account)).route(
        "/account/sign-out-everywhere",
        web::post().to(auth::logout_everywhere),
    );
}

/// User administration and the audit log (admin role).
fn admin_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/users", web::get().to(users_admin::users_page))
        .route(
            "/admin/users/{name}/unlock",
            web::post().to(users_admin::unlock_user),
        )
        .route(
            "/admin/users/{name}/end-sessions",
            web::post().to(users_admin::end_sessions),
        )
        .route("/admin/sources", web::get().to(admin::sources_ja))
        .route("/en/admin/sources", web::get().to(admin::sources_en))
        .route("/admin/sources/{name}", web::post().to(admin::source_form))
        .route(
            "/en/admin/sources/{name}",
            web::post().to(admin::source_form),
        )
        .route("/admin/services", web::get().to(admin::services_ja))
        .route("/en/admin/services", web::get().to(admin::services_en))
        .route(
            "/admin/services/{slug}",
            web::post().to(admin::service_form),
        )
        .route(
            "/en/admin/services/{slug}",
            web::post().to(admin::service_form),
        );
}

/// Read-only product pages and API (viewer role once accounts exist).
fn viewer_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(dashboard::dashboard_ja))
        .route("/en", web::get().to(dashboard::dashboard_en))
        .route("/en/", web::get().to(dashboard::dashboard_en))
        .route("/services/{slug}", web::get().to(dashboard::service_ja))
        .route("/en/services/{slug}", web::get().to(dashboard::service_en))
        .route("/search", web::get().to(pages::search_ja))
        .route("/en/search", web::get().to(pages::search_en))
        .route("/api/search", web::get().to(api::search))
        .route("/api/search.csv", web::get().to(api::export_csv))
        .route("/api/search.jsonl", web::get().to(api::export_jsonl))
        .route("/api/timeseries", web::get().to(api::timeseries))
        .route("/api/alerts", web::get().to(alerts::api_list))
        .route("/alerts", web::get().to(alerts::page_ja))
        .route("/en/alerts", web::get().to(alerts::page_en))
        .route("/alerts.atom", web::get().to(alerts::atom))
        .route("/alerts/{id}", web::get().to(alerts::one_ja))
        .route("/en/alerts/{id}", web::get().to(alerts::one_en))
        .service(
            web::resource("/api/analyze")
                .app_data(limits::json_config(limits::ANALYZE_JSON_LIMIT))
                .route(web::post().to(api::analyze)),
        )
        .route("/api/saved-searches", web::get().to(api::saved_searches))
        .route(
            "/api/saved-searches",
            web::post().to(api::create_saved_search),
        )
        .route(
            "/api/saved-searches/{id}",
            web::delete().to(api::delete_saved_search),
        )
        .route("/saved-searches", web::post().to(pages::save_search_form));
}

/// Actions that change what the system does (operator role once accounts exist).
fn operator_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/crawl", web::post().to(api::crawl_now))
        .route("/api/v1/alerts/{id}", web::post().to(alerts::api_set_state))
        .route("/alerts/{id}/state", web::post().to(alerts::form_set_state))
        .route(
            "/en/alerts/{id}/state",
            web::post().to(alerts::form_set_state),
        )
        .route("/api/v1/incidents", web::post().to(status::create_incident))
        .route(
            "/api/v1/incidents/{id}",
            web::patch().to(status::patch_incident),
        )
        .route(
            "/api/v1/incidents/{id}/updates",
            web::post().to(status::add_update),
        )
        .route(
            "/api/v1/components/{id}",
            web::put().to(status::put_component),
        )
        .route(
            "/api/v1/maintenances",
            web::post().to(status::create_maintenance),
        )
        .route(
            "/api/v1/maintenances/{id}/complete",
            web::post().to(status::complete_maintenance),
        )
        .route("/admin/status", web::get().to(status_admin::status_page))
        .route(
            "/admin/status/incidents",
            web::post().to(status_admin::post_incident),
        )
        .route(
            "/admin/status/incidents/{id}/updates",
            web::post().to(status_admin::post_update),
        )
        .route(
            "/admin/status/components/{id}",
            web::post().to(status_admin::post_component),
        )
        .route(
            "/admin/status/maintenances",
            web::post().to(status_admin::post_maintenance),
        );
}

const CSS: &str = include_str!("../../static/css/app.css");

pub fn css() -> &'static str {
    CSS
}

/// The stylesheet's cache-busting name, `app.<hash>.css`.
pub fn css_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        use sha2::Digest;
        let h = sha2::Sha256::digest(CSS.as_bytes());
        format!("app.{:x}.css", h)[..16].to_string() + ".css"
    })
}

async fn static_file(name: web::Path<String>) -> HttpResponse {
    if name.as_str() == css_name() {
        HttpResponse::Ok()
            .content_type("text/css; charset=utf-8")
            .insert_header(("Cache-Control", "public, max-age=31536000, immutable"))
            .body(CSS)
    } else {
        HttpResponse::NotFound().finish()
    }
}

/// Query parameters shared by the search API and page; parsed into types here, at the edge.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct SearchParams {
    pub q: Option<String>,
    pub service: Option<String>,
    pub kind: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub page: Option<String>,
    pub per_page: Option<String>,
    pub sort: Option<String>,
    /// `true`/`1`: each hit carries the analysis evidence.
    pub evidence: Option<String>,
    pub category: Option<String>,
    pub sentiment: Option<String>,
    pub source: Option<String>,
    /// Relative window ending now: `24h`, `7d` or `30d` (instead of from/to).
    pub range: Option<String>,
}

pub const MAX_PER_PAGE: usize = 100;
/// Deepest result reachable by paging; deeper pages cost too much to rank.
pub const MAX_DEPTH: usize = 10_000;

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Checks a service slug against the dictionaries.
fn parse_service(state: &AppState, v: &Option<String>) -> Result<Option<String>, WebError> {
    match non_empty(v) {
        None => Ok(None),
        Some(s) => {
            let slug = Slug::parse(s).map_err(|e| WebError::BadRequest(format!("service: {e}")))?;
            if state.dicts.service(slug.as_str()).is_none() {
                return Err(WebError::BadRequest(format!(
                    "service: unknown service {s:?} (known: {})",
                    state
                        .dicts
                        .services
                        .iter()
                        .map(|s| s.slug.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            Ok(Some(slug.to_string()))
        }
    }
}

/// Checks a category slug against the dictionaries.
fn parse_category(state: &AppState, v: &Option<String>) -> Result<Option<String>, WebError> {
    match non_empty(v) {
        None => Ok(None),
        Some(c) if state.dicts.category(c).is_some() => Ok(Some(c.to_string())),
        Some(c) => Err(WebError::BadRequest(format!(
            "category: unknown category {c:?} (known: {})",
            state
                .dicts
                .categories
                .iter()
                .map(|c| c.slug.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// `news` or `social`.
fn parse_kind(v: &Option<String>) -> Result<Option<String>, WebError> {
    non_empty(v)
        .map(|k| {
            crate::domain::ItemKind::parse(k)
                .map(|k| k.as_str().to_string())
                .map_err(|e| WebError::BadRequest(format!("kind: {e}")))
        })
        .transpose()
}

fn parse_time_param(name: &str, v: &Option<String>) -> Result<Option<i64>, WebError> {
    non_empty(v)
        .map(|s| {
            crate::aggregate::parse_time(s)
                .map_err(|e| WebError::BadRequest(format!("{name}: {e}")))
        })
        .transpose()
}

/// Parsed search parameters: the request plus the page numbers for rendering links.
pub struct ParsedSearch {
    pub request: SearchRequest,
    pub page: usize,
    pub per_page: usize,
}

/// A saved search's stored query string as a search request (None when it no longer parses).
pub fn saved_search_request(state: &AppState, query: &str) -> Option<SearchRequest> {
    let params = serde_urlencoded::from_str::<SearchParams>(query).ok()?;
    parse_search(state, &params).ok().map(|p| p.request)
}

pub fn parse_search(state: &AppState, p: &SearchParams) -> Result<ParsedSearch, WebError> {
    let number = |name: &str, v: &Option<String>, default: usize| -> Result<usize, WebError> {
        match non_empty(v) {
            None => Ok(default),
            Some(s) => s.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                WebError::BadRequest(format!("{name}: {s:?} is not a whole number ≥ 1"))
            }),
        }
    };
    let page = number("page", &p.page, 1)?;
    let per_page = number("per_page", &p.per_page, 20)?;
    if per_page > MAX_PER_PAGE {
        return Err(WebError::BadRequest(format!(
            "per_page: at most {MAX_PER_PAGE}"
        )));
    }
    let offset = (page - 1).saturating_mul(per_page);
    if offset.saturating_add(per_page) > MAX_DEPTH {
        return Err(WebError::BadRequest(format!(
            "page: results beyond the first {MAX_DEPTH} cannot be paged; narrow the query"
        )));
    }
    let kind = parse_kind(&p.kind)?;
    let sort = match non_empty(&p.sort) {
        None | Some("relevance") => SortBy::Relevance,
        Some("newest") => SortBy::Newest,
        Some(other) => {
            return Err(WebError::BadRequest(format!(
                "sort: {other:?} is not relevance or newest"
            )))
        }
    };
    let mut from = parse_time_param("from", &p.from)?;
    let to = parse_time_param("to", &p.to)?;
    if let Some(range) = non_empty(&p.range) {
        let hours = match range {
            "24h" => 24,
            "7d" => 7 * 24,
            "30d" => 30 * 24,
            other => {
                return Err(WebError::BadRequest(format!(
                    "range: {other:?} is not 24h, 7d or 30d"
                )))
            }
        };
        if from.is_some() || to.is_some() {
            return Err(WebError::BadRequest(
                "range: give either range or from/to".into(),
            ));
        }
        from = Some(state.clock.now().timestamp_millis() - hours * 3_600_000);
    }
    let category = parse_category(state, &p.category)?;
    let sentiment = non_empty(&p.sentiment)
        .map(|s| crate::domain::SentimentLabel::parse(s).map(|l| l.as_str().to_string()))
        .transpose()
        .map_err(|e| WebError::BadRequest(format!("sentiment: {e}")))?;
    let source = non_empty(&p.source).map(String::from);
    if source.as_deref().is_some_and(|s| s.chars().count() > 100) {
        return Err(WebError::BadRequest(
            "source: at most 100 characters".into(),
        ));
    }
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            return Err(WebError::BadRequest("from must be before to".into()));
        }
    }
    let q = p.q.clone().unwrap_or_default();
    if q.chars().count() > 500 {
        return Err(WebError::BadRequest("q: at most 500 characters".into()));
    }
    Ok(ParsedSearch {
        request: SearchRequest {
            q,
            service: parse_service(state, &p.service)?,
            kind,
            from,
            to,
            offset,
            limit: per_page,
            sort,
            with_evidence: matches!(non_empty(&p.evidence), Some("1" | "true" | "yes")),
            category,
            sentiment,
            source,
            with_facets: true,
        },
        page,
        per_page,
    })
}
