//! The one place errors become HTTP: each module's error maps to a status and a message.
use crate::search::SearchError;
use crate::store::StoreError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("{0}")]
    BadRequest(String),
    #[error("not found")]
    NotFound,
    #[error("{0} not found")]
    NotFoundWhat(String),
    #[error("{0}")]
    Forbidden(String),
    /// 409: the request cannot be served by this node (a web node asked to crawl).
    #[error("{0}")]
    Conflict(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// 413: the body is larger than the route accepts.
    #[error("{0}")]
    TooLarge(String),
    /// 429 with `Retry-After` (whole seconds).
    #[error("too many requests from this address; retry in {0} s")]
    TooManyRequests(u64),
    /// 503: the request ran out of time (handler timeout, search budget); worth retrying.
    #[error("{0}")]
    Unavailable(String),
}

impl From<SearchError> for WebError {
    fn from(e: SearchError) -> Self {
        match e {
            SearchError::Query(msg) => WebError::BadRequest(format!(
                "cannot read the query ({msg}); quote words that contain : or other symbols"
            )),
            SearchError::TooComplex(msg) => WebError::BadRequest(msg),
            SearchError::OverBudget(budget) => WebError::Unavailable(format!(
                "the search took longer than its {} ms budget and was stopped; narrow it \
                 (fewer OR alternatives, a date range, a service or a category)",
                budget.as_millis()
            )),
            other => WebError::Internal(other.to_string()),
        }
    }
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => WebError::NotFoundWhat(what),
            StoreError::Invalid(msg) => WebError::BadRequest(msg),
            other => WebError::Internal(other.to_string()),
        }
    }
}

impl From<crate::auth::AuthError> for WebError {
    fn from(e: crate::auth::AuthError) -> Self {
        use crate::auth::AuthError;
        match e {
            AuthError::Store(s) => s.into(),
            AuthError::Invalid(m) => WebError::BadRequest(m),
            AuthError::SetupInvalid => WebError::NotFoundWhat(e.to_string()),
            AuthError::BadCredentials | AuthError::Locked(_) | AuthError::IpLocked(_) => {
                WebError::Forbidden(e.to_string())
            }
            AuthError::Hash(m) => WebError::Internal(m),
        }
    }
}

impl From<crate::status::StatusError> for WebError {
    fn from(e: crate::status::StatusError) -> Self {
        match e {
            crate::status::StatusError::Store(s) => s.into(),
            other => WebError::Internal(other.to_string()),
        }
    }
}

impl From<askama::Error> for WebError {
    fn from(e: askama::Error) -> Self {
        WebError::Internal(format!("template: {e}"))
    }
}

impl ResponseError for WebError {
    fn status_code(&self) -> StatusCode {
        match self {
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::NotFound | WebError::NotFoundWhat(_) => StatusCode::NOT_FOUND,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::Conflict(_) => StatusCode::CONFLICT,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            WebError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            WebError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            WebError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let WebError::Internal(msg) = self {
            tracing::error!(error = %msg, "request failed");
        }
        let message = match self {
            // Internal details go to the log, not to the client.
            WebError::Internal(_) => "internal error; see the server log".to_string(),
            other => other.to_string(),
        };
        let mut resp = HttpResponse::build(self.status_code());
        match self {
            WebError::TooManyRequests(secs) => {
                resp.insert_header((actix_web::http::header::RETRY_AFTER, secs.to_string()));
            }
            WebError::Unavailable(_) => {
                resp.insert_header((actix_web::http::header::RETRY_AFTER, "5"));
            }
            _ => {}
        }
        resp.json(serde_json::json!({ "error": message }))
    }
}
