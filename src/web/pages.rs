//! HTML pages: one askama struct per page.
use super::chart::{daily_bars, BarChart, PALETTE};
use super::error::WebError;
use super::i18n::{Labels, Lang};
use super::{css_name, parse_search, parse_time_param, SearchParams, State};
use crate::aggregate::{buckets, floor, Interval};
use crate::search::Hit;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

fn html(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(body)
}

pub struct ServicePanel {
    pub slug: String,
    pub name: String,
    pub total: u64,
    pub chart: BarChart,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage<'a> {
    t: &'a Labels,
    css: &'a str,
    path: &'a str,
    from: String,
    to: String,
    panels: Vec<ServicePanel>,
}

#[derive(Debug, Deserialize)]
pub struct DashboardParams {
    from: Option<String>,
    to: Option<String>,
}

pub async fn dashboard_ja(
    state: State,
    p: web::Query<DashboardParams>,
) -> Result<HttpResponse, WebError> {
    dashboard(state, p.into_inner(), Lang::Ja).await
}
pub async fn dashboard_en(
    state: State,
    p: web::Query<DashboardParams>,
) -> Result<HttpResponse, WebError> {
    dashboard(state, p.into_inner(), Lang::En).await
}

const DAY: i64 = 86_400_000;

/// Mentions per JST day for each watched service; the last 30 days unless from/to are given.
async fn dashboard(state: State, p: DashboardParams, lang: Lang) -> Result<HttpResponse, WebError> {
    let t = lang.labels();
    let today = floor(state.clock.now().timestamp_millis(), Interval::Day);
    let to = parse_time_param("to", &p.to)?
        .map(|v| floor(v, Interval::Day) + DAY)
        .unwrap_or(today + DAY);
    let from = parse_time_param("from", &p.from)?.unwrap_or(to - 30 * DAY);
    if from >= to || (to - from) / DAY > 400 {
        return Err(WebError::BadRequest(
            "from must be before to, at most 400 days apart".into(),
        ));
    }
    let incidents = state.store.incidents_between(from, to).await?;
    let mut panels = Vec::new();
    for (i, slug) in state
        .store
        .watched_services()
        .await?
        .into_iter()
        .enumerate()
    {
        let name = state
            .dicts
            .service(&slug)
            .map(|s| {
                if lang == Lang::Ja {
                    s.name_ja.clone()
                } else {
                    s.name_en.clone()
                }
            })
            .unwrap_or_else(|| slug.clone());
        let times = state.store.service_mention_times(&slug, from, to).await?;
        let b = buckets(&times, Interval::Day, from, to).map_err(WebError::BadRequest)?;
        let unit = if lang == Lang::Ja { "件" } else { "mentions" };
        let mut chart = daily_bars(
            &format!("chart-{slug}"),
            &format!("{name} — {}", t.mentions_per_day),
            &b,
            PALETTE[i % PALETTE.len()],
            unit,
            t.date_axis,
            t.count_axis,
        );
        chart.annotate(from, to, &incidents, t.prefix);
        panels.push(ServicePanel {
            slug,
            name,
            total: b.iter().map(|b| b.mentions).sum(),
            chart,
        });
    }
    let date = |ms: i64| {
        crate::aggregate::jst_rfc3339(ms)
            .get(..10)
            .unwrap_or("")
            .to_string()
    };
    let page = DashboardPage {
        t,
        css: css_name(),
        path: "/",
        from: date(from),
        to: date(to - DAY),
        panels,
    };
    Ok(html(page.render()?))
}

pub struct PageLink {
    pub label: String,
    pub href: String,
}

#[derive(Template)]
#[template(path = "search.html")]
struct SearchPage<'a> {
    t: &'a Labels,
    css: &'a str,
    path: &'a str,
    q: String,
    service: String,
    services: Vec<(String, String)>,
    total: usize,
    hits: Vec<Hit>,
    error: Option<String>,
    prev: Option<PageLink>,
    next: Option<PageLink>,
    searched: bool,
}

pub async fn search_ja(
    state: State,
    p: web::Query<SearchParams>,
) -> Result<HttpResponse, WebError> {
    search_page(state, p.into_inner(), Lang::Ja).await
}
pub async fn search_en(
    state: State,
    p: web::Query<SearchParams>,
) -> Result<HttpResponse, WebError> {
    search_page(state, p.into_inner(), Lang::En).await
}

fn page_href(t: &Labels, p: &SearchParams, page: usize) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("q", &p.q),
        ("service", &p.service),
        ("kind", &p.kind),
        ("from", &p.from),
        ("to", &p.to),
        ("sort", &p.sort),
        ("per_page", &p.per_page),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            ser.append_pair(k, v);
        }
    }
    ser.append_pair("page", &page.to_string());
    format!("{}/search?{}", t.prefix, ser.finish())
}

async fn search_page(state: State, p: SearchParams, lang: Lang) -> Result<HttpResponse, WebError> {
    let t = lang.labels();
    let services = state
        .dicts
        .services
        .iter()
        .map(|s| {
            (
                s.slug.clone(),
                if lang == Lang::Ja {
                    s.name_ja.clone()
                } else {
                    s.name_en.clone()
                },
            )
        })
        .collect();
    let mut page = SearchPage {
        t,
        css: css_name(),
        path: "/search",
        q: p.q.clone().unwrap_or_default(),
        service: p.service.clone().unwrap_or_default(),
        services,
        total: 0,
        hits: Vec::new(),
        error: None,
        prev: None,
        next: None,
        searched: p.q.is_some() || p.service.is_some(),
    };
    let mut status = actix_web::http::StatusCode::OK;
    match parse_search(&state, &p) {
        Err(WebError::BadRequest(msg)) => {
            page.error = Some(msg);
            status = actix_web::http::StatusCode::BAD_REQUEST;
        }
        Err(e) => return Err(e),
        Ok(parsed) if page.searched => {
            match state.index.search(&state.store, &parsed.request).await {
                Ok(r) => {
                    page.total = r.total;
                    page.hits = r.hits;
                    if parsed.page > 1 {
                        page.prev = Some(PageLink {
                            label: t.prev.into(),
                            href: page_href(t, &p, parsed.page - 1),
                        });
                    }
                    let shown = parsed.page * parsed.per_page;
                    if shown < r.total && shown < super::MAX_DEPTH {
                        page.next = Some(PageLink {
                            label: t.next.into(),
                            href: page_href(t, &p, parsed.page + 1),
                        });
                    }
                }
                Err(e) => match WebError::from(e) {
                    WebError::BadRequest(msg) => {
                        page.error = Some(msg);
                        status = actix_web::http::StatusCode::BAD_REQUEST;
                    }
                    other => return Err(other),
                },
            }
        }
        Ok(_) => {}
    }
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(page.render()?))
}
