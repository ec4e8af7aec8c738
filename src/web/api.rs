//! JSON API handlers.
use super::error::WebError;
use super::{
    parse_category, parse_kind, parse_search, parse_service, parse_time_param, SearchParams, State,
};
use crate::aggregate::{bucket_stats, default_window, Interval};
use crate::search::SearchRequest;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

pub async fn healthz(state: State) -> Result<HttpResponse, WebError> {
    let last = state.store.last_change().await?;
    let applied = state.index.applied_seq();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "status": "ok",
        "index": {
            "applied_seq": applied,
            "db_seq": last,
            "lag": (last - applied).max(0),
            // A reindex in progress: `{generation, items_done, items_total}`, else null.
            "rebuild": state.index.rebuild_progress(),
        },
    })))
}

/// Prometheus text exposition: items, index lag (changes and seconds), per-source crawl state
/// (failures, last fetch time, last status), open alerts, and the process counters of
/// `crate::metrics` (fetches by status, items ingested, stage errors, HTTP latency).
pub async fn metrics(state: State) -> Result<HttpResponse, WebError> {
    use std::fmt::Write;
    let now = state.clock.now().timestamp_millis();
    let last = state.store.last_change().await?;
    let applied = state.index.applied_seq();
    let lag_secs = match state.store.oldest_change_after(applied).await? {
        Some(at) => (now - at).max(0) as f64 / 1000.0,
        None => 0.0,
    };
    let label = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP kizashi_items Items stored.\n# TYPE kizashi_items gauge"
    );
    let _ = writeln!(out, "kizashi_items {}", state.store.item_count().await?);
    let _ = writeln!(out, "# HELP kizashi_index_lag_changes Committed changes the search index has not applied.\n# TYPE kizashi_index_lag_changes gauge");
    let _ = writeln!(out, "kizashi_index_lag_changes {}", (last - applied).max(0));
    let _ = writeln!(out, "# HELP kizashi_index_lag_seconds Age of the oldest change the index has not applied.\n# TYPE kizashi_index_lag_seconds gauge");
    let _ = writeln!(out, "kizashi_index_lag_seconds {lag_secs}");
    let _ = writeln!(out, "# HELP kizashi_source_failures Consecutive failed fetches per source.\n# TYPE kizashi_source_failures gauge");
    let sources = state.store.sources().await?;
    for s in &sources {
        let _ = writeln!(
            out,
            "kizashi_source_failures{{source=\"{}\"}} {}",
            label(&s.name),
            s.failures
        );
    }
    let _ = writeln!(out, "# HELP kizashi_source_last_fetch_seconds Time of the last fetch per source (Unix seconds).\n# TYPE kizashi_source_last_fetch_seconds gauge");
    for s in &sources {
        if let Some(t) = s.last_fetch_at {
            let _ = writeln!(
                out,
                "kizashi_source_last_fetch_seconds{{source=\"{}\",status=\"{}\"}} {}",
                label(&s.name),
                label(s.last_status.as_deref().unwrap_or("")),
                t / 1000
            );
        }
    }
    crate::metrics::render_open_alerts(&mut out, open_alerts(&state).await?);
    crate::metrics::global().render(&mut out);
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(out))
}

/// The `kizashi_open_alerts` gauge: alerts in state `open` (not yet acknowledged or resolved).
async fn open_alerts(state: &State) -> Result<Option<u64>, WebError> {
    Ok(Some(state.store.open_alert_count().await?.max(0) as u64))
}

/// Ready when the search index has applied every committed change.
pub async fn readyz(state: State) -> Result<HttpResponse, WebError> {
    let last = state.store.last_change().await?;
    let applied = state.index.applied_seq();
    let body =
        serde_json::json!({ "ready": applied >= last, "index_lag": (last - applied).max(0) });
    Ok(if applied >= last {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    })
}

pub async fn search(
    state: State,
    params: web::Query<SearchParams>,
) -> Result<HttpResponse, WebError> {
    let parsed = parse_search(&state, &params)?;
    let results = state.index.search(&state.store, &parsed.request).await?;
    Ok(HttpResponse::Ok().json(results))
}

#[derive(Debug, Deserialize)]
pub struct TimeseriesParams {
    service: Option<String>,
    category: Option<String>,
    kind: Option<String>,
    q: Option<String>,
    interval: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

pub async fn timeseries(
    state: State,
    p: web::Query<TimeseriesParams>,
) -> Result<HttpResponse, WebError> {
    let service = parse_service(&state, &p.service)?;
    let interval = match p
        .interval
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => Interval::Day,
        Some(s) => {
            Interval::parse(s).map_err(|e| WebError::BadRequest(format!("interval: {e}")))?
        }
    };
    let from = parse_time_param("from", &p.from)?;
    let to = parse_time_param("to", &p.to)?;
    let q = p.q.clone().unwrap_or_default();
    let category = parse_category(&state, &p.category)?;
    let kind = parse_kind(&p.kind)?;
    if q.trim().is_empty() {
        // Without a text query the hourly rollups answer (kept with every item write).
        let span = state.store.rollup_span(service.as_deref()).await?;
        let (dfrom, dto) = default_window(span, interval, state.clock.now());
        let (from, to) = (from.unwrap_or(dfrom), to.unwrap_or(dto));
        if from >= to {
            return Err(WebError::BadRequest("from must be before to".into()));
        }
        let buckets = rollup_buckets(
            &state,
            service.as_deref(),
            category.as_deref(),
            kind.as_deref(),
            interval,
            from,
            to,
        )
        .await?;
        return Ok(HttpResponse::Ok().json(serde_json::json!({ "buckets": buckets })));
    }
    // The database counts (the source of truth); a text query narrows through the index.
    let ids = {
        Some(state.index.matching_ids(&SearchRequest {
            q,
            ..SearchRequest::default()
        })?)
    };
    let mentions = state
        .store
        .mentions(
            service.as_deref(),
            category.as_deref(),
            kind.as_deref(),
            ids.as_deref(),
        )
        .await?;
    let span = mentions
        .iter()
        .map(|m| m.at)
        .min()
        .zip(mentions.iter().map(|m| m.at).max());
    let (dfrom, dto) = default_window(span, interval, state.clock.now());
    let (from, to) = (from.unwrap_or(dfrom), to.unwrap_or(dto));
    if from >= to {
        return Err(WebError::BadRequest("from must be before to".into()));
    }
    let buckets = bucket_stats(&mentions, interval, from, to).map_err(WebError::BadRequest)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "buckets": buckets })))
}

/// Time-series buckets from the hourly rollups (whole hours) and distinct social authors.
pub async fn rollup_buckets(
    state: &State,
    service: Option<&str>,
    category: Option<&str>,
    kind: Option<&str>,
    interval: Interval,
    from: i64,
    to: i64,
) -> Result<Vec<crate::aggregate::BucketStats>, WebError> {
    let (hfrom, hto) = (
        crate::aggregate::floor(from, Interval::Hour),
        crate::aggregate::ceil(to, Interval::Hour),
    );
    // Refuse an over-wide range before reading anything.
    crate::aggregate::buckets(&[], interval, from, to).map_err(WebError::BadRequest)?;
    let rows = state
        .store
        .rollup_rows_by(service, category, kind, hfrom, hto, interval.millis())
        .await?;
    let authors = if kind.is_some_and(|k| k != "social") {
        Vec::new()
    } else {
        state
            .store
            .social_authors(service, category, hfrom, hto, interval)
            .await?
    };
    let rows: Vec<crate::aggregate::RollupTuple> = rows
        .iter()
        .map(|r| (r.hour, r.kind.as_str(), r.label.as_str(), r.n, r.score_sum))
        .collect();
    crate::aggregate::rollup_stats(&rows, &authors, interval, from, to)
        .map_err(WebError::BadRequest)
}

/// Most items one export streams.
pub const MAX_EXPORT: usize = 100_000;

/// A row of an export: news items as title, snippet and URL (not their full text); social
/// posts with their text, which is the post itself.
fn export_rows(hit: &crate::search::Hit, body_text: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "id": hit.id,
        "published_at": hit.published_at,
        "source": hit.source,
        "kind": hit.kind,
        "services": hit.services.join(" "),
        "sentiment": hit.sentiment.label,
        "score": hit.sentiment.score,
        "title": hit.title,
        "text": body_text.unwrap_or(""),
        "url": hit.url,
    })
}

/// Cells a spreadsheet would run as formulas are neutralized with a leading apostrophe.
pub fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[derive(Clone, Copy)]
enum ExportFormat {
    Csv,
    Jsonl,
}

/// Streams every result of a query, newest first, page by page (a cursor through the
/// results, so memory stays flat however large the export).
fn export(
    state: State,
    params: SearchParams,
    format: ExportFormat,
) -> Result<HttpResponse, WebError> {
    let mut parsed = parse_search(&state, &params)?;
    parsed.request.sort = crate::search::SortBy::Newest;
    parsed.request.with_facets = false;
    let page = 500;
    let state = state.into_inner();
    let stream = futures_util::stream::unfold((0usize, true), move |(offset, first)| {
        let state = state.clone();
        let mut req = parsed.request.clone();
        async move {
            if offset >= MAX_EXPORT {
                return None;
            }
            req.offset = offset;
            req.limit = page;
            let results = match state.index.search(&state.store, &req).await {
                Ok(r) => r,
                Err(e) => {
                    // The status line is already sent: say so in the file itself.
                    tracing::error!(error = %e, "export stopped");
                    let marker = match format {
                        ExportFormat::Jsonl => format!(
                            "{}\n",
                            serde_json::json!({ "error": format!("export stopped: {e}") })
                        ),
                        ExportFormat::Csv => format!("# export stopped: {e}\r\n"),
                    };
                    return Some((Ok(web::Bytes::from(marker)), (MAX_EXPORT, false)));
                }
            };
            if results.hits.is_empty() && !first {
                return None;
            }
            let mut chunk = String::new();
            if first {
                if matches!(format, ExportFormat::Csv) {
                    chunk.push('\u{feff}');
                    chunk.push_str(
                        "id,published_at,source,kind,services,sentiment,score,title,text,url\r\n",
                    );
                }
                if results.hits.is_empty() {
                    return Some((
                        Ok::<_, actix_web::Error>(web::Bytes::from(chunk)),
                        (MAX_EXPORT, false),
                    ));
                }
            }
            let ids: Vec<i64> = results.hits.iter().map(|h| h.id).collect();
            let bodies: std::collections::HashMap<i64, String> = match state.store.items(&ids).await
            {
                Ok(items) => items.into_iter().map(|i| (i.id, i.body)).collect(),
                Err(_) => Default::default(),
            };
            for hit in &results.hits {
                // News: the snippet stands in for the article; social: the post itself.
                let text = if hit.kind == "news" {
                    Some(html_to_plain(&hit.snippet))
                } else {
                    bodies.get(&hit.id).cloned()
                };
                let row = export_rows(hit, text.as_deref());
                match format {
                    ExportFormat::Jsonl => {
                        chunk.push_str(&row.to_string());
                        chunk.push('\n');
                    }
                    ExportFormat::Csv => {
                        let cols = [
                            "id",
                            "published_at",
                            "source",
                            "kind",
                            "services",
                            "sentiment",
                            "score",
                            "title",
                            "text",
                            "url",
                        ];
                        let line: Vec<String> = cols
                            .iter()
                            .map(|c| match &row[*c] {
                                serde_json::Value::String(s) => csv_cell(s),
                                other => other.to_string(),
                            })
                            .collect();
                        chunk.push_str(&line.join(","));
                        chunk.push_str("\r\n");
                    }
                }
            }
            let next = offset + results.hits.len();
            let done = results.hits.len() < page;
            Some((
                Ok(web::Bytes::from(chunk)),
                (if done { MAX_EXPORT } else { next }, false),
            ))
        }
    });
    let (ct, ext) = match format {
        ExportFormat::Csv => ("text/csv; charset=utf-8", "csv"),
        ExportFormat::Jsonl => ("application/x-ndjson; charset=utf-8", "jsonl"),
    };
    Ok(HttpResponse::Ok()
        .content_type(ct)
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"kizashi-search.{ext}\""),
        ))
        .streaming(stream))
}

/// A snippet's text without its highlight markup and entities.
fn html_to_plain(snippet: &str) -> String {
    html_escape::decode_html_entities(&snippet.replace("<b>", "").replace("</b>", "")).into_owned()
}

pub async fn export_csv(
    state: State,
    params: web::Query<SearchParams>,
) -> Result<HttpResponse, WebError> {
    export(state, params.into_inner(), ExportFormat::Csv)
}

pub async fn export_jsonl(
    state: State,
    params: web::Query<SearchParams>,
) -> Result<HttpResponse, WebError> {
    export(state, params.into_inner(), ExportFormat::Jsonl)
}

#[derive(Debug, Deserialize)]
pub struct SavedSearchForm {
    /// The session's CSRF token (HTML form); JSON clients send the X-CSRF-Token header.
    #[serde(default)]
    pub csrf: String,
    pub name: String,
    /// The search's query string, e.g. `q=不正利用&service=7pay`.
    pub query: String,
}

/// Checks a saved search: a name, and a query string the search API accepts.
pub fn validate_saved(
    state: &crate::app::AppState,
    form: &SavedSearchForm,
) -> Result<(String, String), WebError> {
    let name = form.name.trim();
    if name.is_empty() || name.chars().count() > 80 {
        return Err(WebError::BadRequest("name: 1 to 80 characters".into()));
    }
    let query = form.query.trim().trim_start_matches('?');
    let params: SearchParams = serde_urlencoded::from_str(query)
        .map_err(|e| WebError::BadRequest(format!("query: not a search query string ({e})")))?;
    parse_search(state, &params)?;
    Ok((name.to_string(), query.to_string()))
}

pub async fn saved_searches(state: State) -> Result<HttpResponse, WebError> {
    let rows: Vec<serde_json::Value> = state
        .store
        .saved_searches()
        .await?
        .into_iter()
        .map(|(id, name, query)| serde_json::json!({ "id": id, "name": name, "query": query, "url": format!("/search?{query}") }))
        .collect();
    Ok(HttpResponse::Ok().json(rows))
}

pub async fn create_saved_search(
    state: State,
    body: web::Json<SavedSearchForm>,
) -> Result<HttpResponse, WebError> {
    let (name, query) = validate_saved(&state, &body)?;
    let id = state
        .store
        .save_search(&name, &query, state.clock.now())
        .await?;
    Ok(HttpResponse::Created().json(serde_json::json!({ "id": id, "name": name, "query": query })))
}

pub async fn delete_saved_search(
    state: State,
    id: web::Path<i64>,
) -> Result<HttpResponse, WebError> {
    if state.store.delete_saved_search(id.into_inner()).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(WebError::NotFound)
    }
}

#[derive(Debug, Deserialize)]
pub struct AnalyzeRequest {
    texts: Vec<String>,
}

pub const MAX_ANALYZE_TEXTS: usize = 1_000;
pub const MAX_ANALYZE_CHARS: usize = 20_000;
pub const MAX_ANALYZE_TOTAL_CHARS: usize = 500_000;

/// `POST /api/analyze {"texts": [...]}` → `{"results": [...]}` in the `kizashi analyze` shape.
pub async fn analyze(
    state: State,
    body: web::Json<AnalyzeRequest>,
) -> Result<HttpResponse, WebError> {
    let texts = body.into_inner().texts;
    if texts.len() > MAX_ANALYZE_TEXTS {
        return Err(WebError::BadRequest(format!(
            "texts: at most {MAX_ANALYZE_TEXTS} per request"
        )));
    }
    if let Some(i) = texts
        .iter()
        .position(|t| t.chars().count() > MAX_ANALYZE_CHARS)
    {
        return Err(WebError::BadRequest(format!(
            "texts[{i}]: at most {MAX_ANALYZE_CHARS} characters"
        )));
    }
    let total: usize = texts.iter().map(|t| t.chars().count()).sum();
    if total > MAX_ANALYZE_TOTAL_CHARS {
        return Err(WebError::BadRequest(format!(
            "texts: at most {MAX_ANALYZE_TOTAL_CHARS} characters in all per request"
        )));
    }
    // Analysis is CPU work: off the HTTP worker, so other requests keep being served.
    let state = state.into_inner();
    let results = web::block(move || -> Result<Vec<serde_json::Value>, String> {
        let mut results = Vec::with_capacity(texts.len());
        for text in texts {
            let analysis = state
                .pipeline
                .analyze_text(&text)
                .map_err(|e| e.to_string())?;
            let mut v = serde_json::to_value(&analysis).map_err(|e| e.to_string())?;
            v["text"] = serde_json::Value::String(text);
            results.push(v);
        }
        Ok(results)
    })
    .await
    .map_err(|e| WebError::Internal(e.to_string()))?
    .map_err(WebError::Internal)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "results": results })))
}

/// Crawls every source now and answers with the per-source summary. The crawl runs as its
/// own task: a client that gives up, or the request timeout, does not cut it short.
pub async fn crawl_now(state: State) -> Result<HttpResponse, WebError> {
    if !state.role.runs_jobs() {
        return Err(WebError::Conflict(
            "this node serves the web only (serve --role web); the worker node crawls".into(),
        ));
    }
    let state = state.into_inner();
    let summary = tokio::spawn(async move { crate::jobs::crawl_all(&state).await })
        .await
        .map_err(|e| WebError::Internal(format!("crawl task: {e}")))??;
    Ok(HttpResponse::Ok().json(summary))
}
