//! HTML pages: one askama struct per page.
use super::chart::{daily_bars, BarChart, PALETTE};
use super::error::WebError;
use super::i18n::{Labels, Lang};
use super::{css_name, parse_search, SearchParams, State};
use crate::aggregate::{buckets, floor, Interval};
use crate::search::Hit;
use actix_web::{web, HttpResponse};
use askama::Template;

const DAY: i64 = 86_400_000;

/// A facet value, its count, and the link that adds it as a filter.
type FacetEntry = (String, u64, String);

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
    /// (facet title, [(value, count, link that adds the filter)])
    facets: Vec<(String, Vec<FacetEntry>)>,
    export_csv: String,
    export_jsonl: String,
    /// The current query string, for 「この検索を保存」.
    save_query: String,
    /// The session's CSRF token for the form (empty in open mode).
    csrf: String,
    /// Saved searches: (name, link).
    saved: Vec<(String, String)>,
    /// Matching items per JST day over the last 30 days.
    volume: Option<BarChart>,
}

/// The search page's 「この検索を保存」 form: saves, then shows the saved search.
pub async fn save_search_form(
    state: State,
    req: actix_web::HttpRequest,
    form: web::Form<super::api::SavedSearchForm>,
) -> Result<HttpResponse, WebError> {
    super::auth::check_form_csrf(&req, &form.csrf)?;
    let (name, query) = super::api::validate_saved(&state, &form)?;
    state
        .store
        .save_search(&name, &query, state.clock.now())
        .await?;
    Ok(HttpResponse::SeeOther()
        .insert_header(("Location", format!("/search?{query}")))
        .finish())
}

pub async fn search_ja(
    state: State,
    req: actix_web::HttpRequest,
    p: web::Query<SearchParams>,
) -> Result<HttpResponse, WebError> {
    search_page(state, &req, p.into_inner(), Lang::Ja).await
}
pub async fn search_en(
    state: State,
    req: actix_web::HttpRequest,
    p: web::Query<SearchParams>,
) -> Result<HttpResponse, WebError> {
    search_page(state, &req, p.into_inner(), Lang::En).await
}

fn page_href(t: &Labels, p: &SearchParams, page: usize) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("q", &p.q),
        ("service", &p.service),
        ("kind", &p.kind),
        ("category", &p.category),
        ("sentiment", &p.sentiment),
        ("source", &p.source),
        ("range", &p.range),
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

async fn search_page(
    state: State,
    req: &actix_web::HttpRequest,
    p: SearchParams,
    lang: Lang,
) -> Result<HttpResponse, WebError> {
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
        searched: p.q.is_some()
            || p.service.is_some()
            || p.category.is_some()
            || p.sentiment.is_some(),
        facets: Vec::new(),
        export_csv: String::new(),
        export_jsonl: String::new(),
        save_query: String::new(),
        csrf: super::auth::authed(req).map(|a| a.csrf).unwrap_or_default(),
        saved: state
            .store
            .saved_searches()
            .await?
            .into_iter()
            .map(|(_, name, query)| (name, format!("{}/search?{query}", t.prefix)))
            .collect(),
        volume: None,
    };
    let mut status = actix_web::http::StatusCode::OK;
    match parse_search(&state, &p) {
        Err(WebError::BadRequest(msg)) => {
            page.error = Some(msg);
            status = actix_web::http::StatusCode::BAD_REQUEST;
        }
        Err(e) => return Err(e),
        Ok(mut parsed) if page.searched => {
            // The page shows why each item was labeled, on demand (a <details> element).
            parsed.request.with_evidence = true;
            match state.index.search(&state.store, &parsed.request).await {
                Ok(r) => {
                    page.total = r.total;
                    let query_string = page_href(t, &p, 1);
                    let query_string = query_string
                        .split_once('?')
                        .map(|(_, q)| q)
                        .unwrap_or("")
                        .to_string();
                    page.export_csv = format!("/api/search.csv?{query_string}");
                    page.export_jsonl = format!("/api/search.jsonl?{query_string}");
                    page.save_query = query_string
                        .trim_end_matches("page=1")
                        .trim_end_matches('&')
                        .to_string();
                    // 30 days ending at the newest match (or today), within the query's range.
                    if let Ok(times) = state.index.matching_times(&parsed.request) {
                        let now = state.clock.now().timestamp_millis();
                        let newest = times
                            .iter()
                            .copied()
                            .filter(|t| *t <= now)
                            .max()
                            .unwrap_or(now);
                        let to = floor(newest, Interval::Day) + DAY;
                        let to = parsed
                            .request
                            .to
                            .map_or(to, |x| x.min(to).max(floor(x - 1, Interval::Day) + DAY));
                        let from = to - 30 * DAY;
                        if let Ok(b) = buckets(&times, Interval::Day, from, to) {
                            let unit = if lang == Lang::Ja { "件" } else { "items" };
                            page.volume = Some(daily_bars(
                                "volume",
                                t.mentions_per_day,
                                &b,
                                PALETTE[0],
                                unit,
                                t.date_axis,
                                t.count_axis,
                            ));
                        }
                    }
                    for (name, values) in r.facets.clone().unwrap_or_default() {
                        let title = t.facet_title(&name).to_string();
                        let mut entries: Vec<FacetEntry> = values
                            .into_iter()
                            .map(|(value, n)| {
                                let mut with = SearchParams {
                                    page: None,
                                    ..p.clone()
                                };
                                match name.as_str() {
                                    "service" => with.service = Some(value.clone()),
                                    "category" => with.category = Some(value.clone()),
                                    "sentiment" => with.sentiment = Some(value.clone()),
                                    "source" => with.source = Some(value.clone()),
                                    _ => with.kind = Some(value.clone()),
                                }
                                (value, n, page_href(t, &with, 1))
                            })
                            .collect();
                        entries.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                        entries.truncate(12);
                        if !entries.is_empty() {
                            page.facets.push((title, entries));
                        }
                    }
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
                    WebError::Unavailable(msg) => {
                        page.error = Some(msg);
                        status = actix_web::http::StatusCode::SERVICE_UNAVAILABLE;
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
