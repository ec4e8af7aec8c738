//! Request metrics: the time each request takes to its response head, recorded in
//! `crate::metrics` by route pattern (never the raw path) and status class.
use actix_web::body::BoxBody;
use actix_web::dev::ServiceResponse;
use std::borrow::Cow;
use std::time::Instant;

/// The label of a request's route: the status documents by their fixed path (no route-table
/// walk on the hottest pages), other routes by their pattern, anything else `unmatched`.
/// `match_pattern` reads the route table, not the routing result, so this works before the
/// request is routed (and the request must not be cloned before routing: actix needs it
/// unshared to fill in the path parameters).
pub(super) fn route_label(req: &actix_web::HttpRequest) -> Cow<'static, str> {
    let path = req.path();
    if let Some(p) = super::STATUS_PATHS.iter().find(|p| **p == path) {
        return Cow::Borrowed(p);
    }
    match req.match_pattern() {
        Some(p) if !p.is_empty() => Cow::Owned(p),
        _ => Cow::Borrowed("unmatched"),
    }
}

/// Whether a route label is one of the fixed public status documents (not a pattern).
pub(super) fn is_fixed_document(route: &str) -> bool {
    super::STATUS_PATHS.contains(&route) && !route.contains('{')
}

/// What the access log needs of a request, taken before the request moves on. The fixed
/// public status documents go without: during a rush they are most of the traffic, and a log
/// line costs more than serving them.
pub(super) struct LogLine {
    method: actix_web::http::Method,
    uri: actix_web::http::Uri,
}

pub(super) fn log_line(req: &actix_web::HttpRequest) -> LogLine {
    LogLine {
        method: req.method().clone(),
        uri: req.uri().clone(),
    }
}

/// Records one answered request in the metrics and the access log (target `kizashi::http`,
/// structured fields, so `--log-format json` gives one object per request). An error (the
/// handler timeout) becomes its response after the middleware, with the error's status.
pub(super) fn record(
    route: &str,
    log: Option<LogLine>,
    result: &Result<ServiceResponse<BoxBody>, actix_web::Error>,
    start: Instant,
) {
    let status = match result {
        Ok(res) => res.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    let took = start.elapsed();
    crate::metrics::global().http_request(route, status.as_u16(), took);
    if let Some(l) = log {
        tracing::info!(
            target: "kizashi::http",
            method = %l.method,
            uri = %l.uri,
            route,
            status = status.as_u16(),
            ms = took.as_secs_f64() * 1000.0,
            "{} {} {}",
            l.method,
            l.uri,
            status.as_u16()
        );
    }
}
