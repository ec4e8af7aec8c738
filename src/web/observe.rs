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

/// Records one answered request: an error (the handler timeout) becomes its response after
/// the middleware, with the error's status.
pub(super) fn record(
    route: &str,
    result: &Result<ServiceResponse<BoxBody>, actix_web::Error>,
    start: Instant,
) {
    let status = match result {
        Ok(res) => res.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    crate::metrics::global().http_request(route, status.as_u16(), start.elapsed());
}
