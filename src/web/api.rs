//! JSON API handlers.
use super::error::WebError;
use super::{parse_search, parse_service, parse_time_param, SearchParams, State};
use crate::aggregate::{buckets, default_window, Interval};
use crate::search::SearchRequest;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

pub async fn healthz(state: State) -> Result<HttpResponse, WebError> {
    let last = state.store.last_change().await?;
    let applied = state.index.applied_seq();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "status": "ok",
        "index": { "applied_seq": applied, "db_seq": last, "lag": (last - applied).max(0) },
    })))
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
    // Without a query the database answers (the source of truth); a query needs the index.
    let times = match (&service, q.trim().is_empty()) {
        (Some(s), true) => {
            state
                .store
                .service_mention_times(s, i64::MIN, i64::MAX)
                .await?
        }
        _ => state.index.matching_times(&SearchRequest {
            q,
            service: service.clone(),
            ..SearchRequest::default()
        })?,
    };
    let span = times.iter().min().copied().zip(times.iter().max().copied());
    let (dfrom, dto) = default_window(span, interval, state.clock.now());
    let (from, to) = (from.unwrap_or(dfrom), to.unwrap_or(dto));
    if from >= to {
        return Err(WebError::BadRequest("from must be before to".into()));
    }
    let buckets = buckets(&times, interval, from, to).map_err(WebError::BadRequest)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "buckets": buckets })))
}

#[derive(Debug, Deserialize)]
pub struct AnalyzeRequest {
    texts: Vec<String>,
}

pub const MAX_ANALYZE_TEXTS: usize = 1_000;
pub const MAX_ANALYZE_CHARS: usize = 20_000;

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
    let mut results = Vec::with_capacity(texts.len());
    for text in texts {
        let analysis = state
            .pipeline
            .analyze_text(&text)
            .map_err(|e| WebError::Internal(e.to_string()))?;
        let mut v =
            serde_json::to_value(&analysis).map_err(|e| WebError::Internal(e.to_string()))?;
        v["text"] = serde_json::Value::String(text);
        results.push(v);
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({ "results": results })))
}

/// Crawls every source now and answers with the per-source summary.
pub async fn crawl_now(state: State) -> Result<HttpResponse, WebError> {
    let state = state.into_inner();
    let summary = crate::jobs::crawl_all(&state).await?;
    Ok(HttpResponse::Ok().json(summary))
}
