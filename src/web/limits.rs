//! Request limits: body sizes (JSON and form payloads), a timeout on every handler, and
//! per-client rate limits on the APIs. Each answers in the app's error format (`{"error"}`)
//! with the proper status: 413, 503 (with `Retry-After`), 429 (with `Retry-After`).
//!
//! The search time and complexity budget lives with the queries, in `search`.
use super::error::WebError;
use crate::config::{LimitsSettings, RateQuota};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::{JsonPayloadError, UrlencodedError};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, ResponseError};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// JSON bodies everywhere but `/api/analyze`: incidents, updates, saved searches.
pub const JSON_LIMIT: usize = 256 * 1024;
/// `/api/analyze` takes up to 1,000 texts and 500,000 characters in all; escaped as `\u`
/// and four hex digits, a character takes six bytes, so 4 MiB holds the largest valid request.
pub const ANALYZE_JSON_LIMIT: usize = 4 * 1024 * 1024;
/// HTML form posts (sign-in, admin forms with incident text).
pub const FORM_LIMIT: usize = 256 * 1024;

fn too_large(limit: usize) -> actix_web::Error {
    WebError::TooLarge(format!(
        "request body too large: this endpoint accepts at most {limit} bytes"
    ))
    .into()
}

/// The JSON extractor's settings with the given size limit.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|e, _| match e {
            JsonPayloadError::Overflow { limit }
            | JsonPayloadError::OverflowKnownLength { limit, .. } => too_large(limit),
            other => WebError::BadRequest(format!("bad JSON body: {other}")).into(),
        })
}

/// The form extractor's settings.
pub fn form_config() -> web::FormConfig {
    web::FormConfig::default()
        .limit(FORM_LIMIT)
        .error_handler(|e, _| match e {
            UrlencodedError::Overflow { limit, .. } => too_large(limit),
            other => WebError::BadRequest(format!("bad form body: {other}")).into(),
        })
}

/// The handler timeout, as app data for `timeout`.
pub struct RequestTimeout(pub std::time::Duration);

/// Every handler gets `request_timeout` to produce its response head; past it the client gets
/// a 503 in the app's error format instead of a hung connection. (Streamed bodies, like
/// exports, continue after their head.) Work a handler hands to a spawned task or a blocking
/// thread finishes on its own; only the waiting stops.
pub async fn timeout(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let limit = req.app_data::<web::Data<RequestTimeout>>().map(|t| t.0);
    let Some(limit) = limit else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    // The request cannot be kept for the answer (actix routes it only while unshared), so a
    // timeout travels out as an error carrying its finished response, headers included.
    let method = req.method().clone();
    match tokio::time::timeout(limit, next.call(req)).await {
        Ok(res) => Ok(res?.map_into_boxed_body()),
        Err(_) => {
            tracing::warn!(%method, limit_ms = limit.as_millis() as u64, "request timed out");
            let err = WebError::Unavailable(format!(
                "the request took longer than {} s and was stopped; try again or narrow it",
                limit.as_secs_f64()
            ));
            let mut resp = err.error_response();
            for (name, value) in super::SECURITY_HEADERS {
                resp.headers_mut().insert(
                    actix_web::http::header::HeaderName::from_static(name),
                    actix_web::http::header::HeaderValue::from_static(value),
                );
            }
            Err(actix_web::error::InternalError::from_response("request timed out", resp).into())
        }
    }
}

/// Per-client rate limiters, shared by all HTTP workers.
pub struct RateLimits {
    api: Option<DefaultKeyedRateLimiter<IpAddr>>,
    status_api: Option<DefaultKeyedRateLimiter<IpAddr>>,
    trusted_proxies: Vec<IpAddr>,
    checks: AtomicU64,
}

/// Forgetting clients whose allowance is full again every this many checks keeps the
/// limiters' memory bounded by recent clients.
const PURGE_EVERY: u64 = 4096;

fn limiter(q: Option<RateQuota>) -> Option<DefaultKeyedRateLimiter<IpAddr>> {
    q.map(|q| RateLimiter::keyed(Quota::per_minute(q.per_minute).allow_burst(q.burst)))
}

/// Which limiter a path falls under: `/api/v2/*` (public status JSON, generous), the other
/// `/api/*`, or none (pages, health, status HTML and feeds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateClass {
    Api,
    StatusApi,
    Unlimited,
}

pub fn rate_class(path: &str) -> RateClass {
    match path.strip_prefix("/api/") {
        Some(rest) if rest.starts_with("v2/") => RateClass::StatusApi,
        Some(_) => RateClass::Api,
        None => RateClass::Unlimited,
    }
}

/// The key a client is limited by: its address, or for IPv6 its /64 (one host usually owns
/// a whole /64, so single addresses would be free to rotate).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        IpAddr::V6(v6) => IpAddr::V4(
            v6.to_ipv4_mapped()
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
        ),
        v4 => v4,
    }
}

impl RateLimits {
    pub fn new(limits: &LimitsSettings, trusted_proxies: &[IpAddr]) -> Self {
        Self {
            api: limiter(limits.api_rate),
            status_api: limiter(limits.status_api_rate),
            trusted_proxies: trusted_proxies.to_vec(),
            checks: AtomicU64::new(0),
        }
    }

    /// `Ok` when the request may go on, else the whole seconds until it may.
    fn check(&self, class: RateClass, req: &HttpRequest) -> Result<(), u64> {
        let limiter = match class {
            RateClass::Api => self.api.as_ref(),
            RateClass::StatusApi => self.status_api.as_ref(),
            RateClass::Unlimited => None,
        };
        let Some(limiter) = limiter else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % PURGE_EVERY == PURGE_EVERY - 1 {
            for l in [&self.api, &self.status_api].into_iter().flatten() {
                l.retain_recent();
                l.shrink_to_fit();
            }
        }
        let ip = super::auth::client_addr(req, &self.trusted_proxies)
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        limiter.check_key(&client_key(ip)).map_err(|not_until| {
            let wait = not_until.wait_time_from(limiter.clock().now());
            (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
        })
    }
}

/// The one middleware for limits, request metrics and the access log, inside the security
/// headers: it times and logs the request, answers 429 with
/// `Retry-After` once a client has used up its allowance on an API, and applies the handler
/// timeout. One middleware rather than three keeps the status pages' per-request overhead
/// to one boxed future.
pub async fn edge(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let start = std::time::Instant::now();
    let route = super::observe::route_label(req.request());
    // The pre-rendered status documents are a lookup in memory: they cannot hang, and during a
    // rush a timer per request is their largest cost here, so they go without one (and
    // without an access-log line).
    let prerendered = super::observe::is_fixed_document(&route);
    let log = (!prerendered).then(|| super::observe::log_line(req.request()));
    let class = rate_class(req.path());
    let limited = match class {
        RateClass::Unlimited => None,
        _ => req
            .app_data::<web::Data<RateLimits>>()
            .and_then(|limits| limits.check(class, req.request()).err()),
    };
    let result = match limited {
        Some(secs) => Ok(req.into_response(WebError::TooManyRequests(secs).error_response())),
        None if prerendered => serve_prerendered(req, next).await,
        None => timeout(req, next).await,
    };
    super::observe::record(&route, log, &result, start);
    result
}

/// A GET or HEAD of a fixed public status document is answered here, before routing: the
/// route table (a regex per parameterized route) and the extractors cost more than the
/// lookup itself. Anything else goes on to the router.
async fn serve_prerendered(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let get_or_head = matches!(*req.method(), Method::GET | Method::HEAD);
    let state = req.app_data::<web::Data<super::AppState>>().cloned();
    match state {
        Some(state) if get_or_head => {
            let (http, _payload) = req.into_parts();
            let resp = match super::status::respond(&http, &state).await {
                Ok(resp) => resp,
                Err(e) => e.error_response(),
            };
            Ok(ServiceResponse::new(http, resp))
        }
        _ => next.call(req).await.map(|r| r.map_into_boxed_body()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{test as atest, App, HttpResponse};

    #[test]
    fn classes_by_path() {
        assert_eq!(rate_class("/api/search"), RateClass::Api);
        assert_eq!(rate_class("/api/v1/incidents"), RateClass::Api);
        assert_eq!(rate_class("/api/v2/summary.json"), RateClass::StatusApi);
        assert_eq!(rate_class("/status"), RateClass::Unlimited);
        assert_eq!(rate_class("/apix"), RateClass::Unlimited);
        assert_eq!(rate_class("/metrics"), RateClass::Unlimited);
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(client_key(v4), v4);
    }

    /// A handler that never finishes gets a 503 in the error format once the limit passes.
    #[actix_web::test]
    async fn a_handler_past_the_timeout_gets_a_503() {
        let app = atest::init_service(
            App::new()
                .app_data(web::Data::new(RequestTimeout(
                    std::time::Duration::from_millis(50),
                )))
                .wrap(actix_web::middleware::from_fn(timeout))
                .route(
                    "/never",
                    web::get().to(|| async {
                        std::future::pending::<()>().await;
                        HttpResponse::Ok().finish()
                    }),
                ),
        )
        .await;
        let err =
            atest::try_call_service(&app, atest::TestRequest::get().uri("/never").to_request())
                .await
                .expect_err("the timeout answers as an error response");
        let res = err.error_response();
        assert_eq!(res.status().as_u16(), 503);
        assert!(res.headers().contains_key("retry-after"));
        assert!(res.headers().contains_key("content-security-policy"));
        let body: serde_json::Value =
            serde_json::from_slice(&actix_web::body::to_bytes(res.into_body()).await.unwrap())
                .unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("took longer"),
            "{body}"
        );
    }
}
