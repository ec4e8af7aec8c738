//! Request metrics: the time each request takes to its response head, recorded in
//! `crate::metrics` by route pattern (never the raw path) and status class.
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use std::borrow::Cow;
use std::time::Instant;

/// The label of a request's route: the status documents by their fixed path (no route-table
/// walk on the hottest pages), other routes by their pattern, anything else `unmatched`.
/// `match_pattern` reads the route table, not the routing result, so this works before the
/// request is routed (and the request must not be cloned before routing: actix needs it
/// unshared to fill in the path parameters).
fn route_label(req: &actix_web::HttpRequest) -> Cow<'static, str> {
    let path = req.path();
    if let Some(p) = super::STATUS_PATHS.iter().find(|p| **p == path) {
        return Cow::Borrowed(p);
    }
    match req.match_pattern() {
        Some(p) if !p.is_empty() => Cow::Owned(p),
        _ => Cow::Borrowed("unmatched"),
    }
}

pub async fn http_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let start = Instant::now();
    let route = route_label(req.request());
    let result = next.call(req).await;
    // An error (the handler timeout) becomes its response after the middleware.
    let status = match &result {
        Ok(res) => res.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    crate::metrics::global().http_request(&route, status.as_u16(), start.elapsed());
    Ok(result?.map_into_boxed_body())
}
