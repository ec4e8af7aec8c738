//! crawl: fetching sources and turning their bytes into `RawItem`s.
//!
//! One guarded HTTP client for the whole process — crawling and, later, outgoing webhooks:
//! connect/read timeouts and a total time limit, a body cap that also holds after
//! decompression, a bounded number of redirects, a per-host rate limit, an identifying
//! User-Agent, conditional GET, and no connection to private, loopback or link-local addresses
//! unless allowed — checked on the resolved address at connect time, redirects included.
pub mod article;
pub mod charset;
pub mod feed;
pub mod social;

pub use charset::CharsetDecision;
pub use feed::{parse_feed, Parsed, SourceCtx};

use crate::config::{CrawlSettings, Credentials, SourceKind};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CrawlError {
    #[error("request failed: {0}")]
    Http(String),
    #[error("server answered {status}")]
    Status {
        status: u16,
        /// From Retry-After, when the server sent one.
        retry_after: Option<Duration>,
    },
    #[error("response larger than {0} bytes")]
    TooLarge(u64),
    #[error("cannot parse the document: {0}")]
    Parse(String),
    #[error("not a feed: {0}")]
    NotAFeed(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("refused: {0} is a private, loopback or link-local address (set crawl.allow_private_networks to allow)")]
    PrivateAddress(String),
    #[error("the fetch took longer than {0:?}")]
    Timeout(Duration),
}

impl CrawlError {
    /// How long the server asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CrawlError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Whether an address is one a crawler must not reach by default.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])) // carrier-grade NAT
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19)) // benchmarking
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local
                || (seg[0] & 0xffc0) == 0xfe80 // link local
        }
    }
}

/// DNS resolution that drops private addresses, so a public hostname that resolves to
/// 127.0.0.1 is refused at connect time too.
struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| !is_private(a.ip()))
                .collect();
            if public.is_empty() {
                let shown = addrs
                    .first()
                    .map(|a| a.ip().to_string())
                    .unwrap_or_default();
                return Err(Box::new(CrawlError::PrivateAddress(format!("{host} ({shown})"))) as _);
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The result of fetching one URL.
#[derive(Debug)]
pub enum Fetched {
    NotModified,
    Body {
        bytes: Vec<u8>,
        content_type: Option<String>,
        etag: Option<String>,
        last_modified: Option<String>,
    },
}

pub struct HttpClient {
    client: reqwest::Client,
    max_body: u64,
    total_timeout: Duration,
    allow_private: bool,
    per_host: DefaultKeyedRateLimiter<String>,
    /// Bluesky access tokens by (service, identifier); refreshed when refused.
    sessions: tokio::sync::Mutex<std::collections::HashMap<String, String>>,
    /// robots.txt per origin, with the time it was fetched (kept for a day).
    robots:
        tokio::sync::Mutex<std::collections::HashMap<String, (RobotsRules, std::time::Instant)>>,
}

/// What an origin's robots.txt allows us (RFC 9309: a missing file allows everything, an
/// unreachable one — 5xx or no answer — allows nothing for now).
#[derive(Clone)]
enum RobotsRules {
    AllowAll,
    DisallowAll,
    Rules(Arc<texting_robots::Robot>),
}

/// The robots.txt product token we match.
const ROBOTS_AGENT: &str = "kizashi";
const ROBOTS_TTL: Duration = Duration::from_secs(24 * 3600);
const ROBOTS_RETRY: Duration = Duration::from_secs(10 * 60);

/// What to fetch for one source.
pub struct SourceRequest<'a> {
    pub kind: SourceKind,
    pub url: &'a str,
    pub query: Option<&'a str>,
    pub credentials: Option<&'a Credentials>,
    pub etag: Option<&'a str>,
    pub last_modified: Option<&'a str>,
}

const MAX_REDIRECTS: usize = 5;

impl HttpClient {
    pub fn new(settings: &CrawlSettings) -> Result<Self, CrawlError> {
        let user_agent = format!(
            "kizashi/{} (+{})",
            env!("CARGO_PKG_VERSION"),
            settings.contact_url
        );
        let allow_private = settings.allow_private_networks;
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            let literal = attempt
                .url()
                .host_str()
                .and_then(|h| h.trim_matches(['[', ']']).parse::<IpAddr>().ok());
            match literal {
                Some(ip) if !allow_private && is_private(ip) => {
                    attempt.error(CrawlError::PrivateAddress(ip.to_string()))
                }
                _ => attempt.follow(),
            }
        });
        let mut builder = reqwest::Client::builder()
            .user_agent(user_agent)
            .connect_timeout(Duration::from_secs(10).min(settings.timeout))
            .read_timeout(settings.timeout)
            .redirect(redirect);
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(GuardedResolver));
        }
        let client = builder
            .build()
            .map_err(|e| CrawlError::Client(e.to_string()))?;
        let period = settings.per_host_interval.max(Duration::from_millis(1));
        let quota = Quota::with_period(period)
            .ok_or_else(|| CrawlError::Client("per-host interval must be positive".into()))?
            .allow_burst(NonZeroU32::MIN);
        Ok(Self {
            client,
            max_body: settings.max_body_bytes,
            total_timeout: settings.timeout * 2,
            allow_private,
            per_host: RateLimiter::keyed(quota),
            sessions: Default::default(),
            robots: Default::default(),
        })
    }

    /// Whether robots.txt of `url`'s origin lets us fetch it (fetched once a day per origin).
    pub async fn robots_allowed(&self, url: &str) -> bool {
        let Ok(parsed) = url::Url::parse(url) else {
            return false;
        };
        let origin = parsed.origin().ascii_serialization();
        let cached = self
            .robots
            .lock()
            .await
            .get(&origin)
            .filter(|(r, at)| {
                // An unreachable robots.txt is retried soon; a fetched one is kept for a day.
                let ttl = if matches!(r, RobotsRules::DisallowAll) {
                    ROBOTS_RETRY
                } else {
                    ROBOTS_TTL
                };
                at.elapsed() < ttl
            })
            .map(|(r, _)| r.clone());
        let rules = match cached {
            Some(r) => r,
            None => {
                let rules = match self
                    .fetch(&format!("{origin}/robots.txt"), None, None)
                    .await
                {
                    Ok(Fetched::Body { bytes, .. }) => {
                        match texting_robots::Robot::new(ROBOTS_AGENT, &bytes) {
                            Ok(robot) => RobotsRules::Rules(Arc::new(robot)),
                            Err(_) => RobotsRules::AllowAll,
                        }
                    }
                    Ok(Fetched::NotModified) => RobotsRules::AllowAll,
                    Err(CrawlError::Status { status, .. }) if (400..500).contains(&status) => {
                        RobotsRules::AllowAll
                    }
                    Err(_) => RobotsRules::DisallowAll,
                };
                self.robots
                    .lock()
                    .await
                    .insert(origin, (rules.clone(), std::time::Instant::now()));
                rules
            }
        };
        match rules {
            RobotsRules::AllowAll => true,
            RobotsRules::DisallowAll => false,
            RobotsRules::Rules(robot) => robot.allowed(url),
        }
    }

    /// Fetches an article page and extracts its main text, if robots.txt allows it.
    pub async fn fetch_article(&self, url: &str) -> Result<Option<article::Article>, CrawlError> {
        if !self.robots_allowed(url).await {
            return Ok(None);
        }
        match self.fetch(url, None, None).await? {
            Fetched::Body {
                bytes,
                content_type,
                ..
            } => Ok(Some(article::extract(&bytes, content_type.as_deref()))),
            Fetched::NotModified => Ok(None),
        }
    }

    /// Fetches a source the way its kind requires.
    pub async fn fetch_source(&self, r: &SourceRequest<'_>) -> Result<Fetched, CrawlError> {
        let query = || {
            r.query
                .ok_or_else(|| CrawlError::Client("this source kind needs a query".into()))
        };
        match r.kind {
            SourceKind::Feed => self.fetch(r.url, r.etag, r.last_modified).await,
            SourceKind::Misskey => {
                let body = serde_json::json!({ "query": query()?, "limit": 100 });
                self.post_json(r.url, &body, None).await
            }
            SourceKind::Bluesky => {
                let creds = r
                    .credentials
                    .ok_or_else(|| CrawlError::Client("bluesky needs credentials".into()))?;
                let base = r.url.trim_end_matches('/');
                let search = format!(
                    "{base}/xrpc/app.bsky.feed.searchPosts?{}",
                    url::form_urlencoded::Serializer::new(String::new())
                        .append_pair("q", query()?)
                        .append_pair("limit", "100")
                        .append_pair("sort", "latest")
                        .finish()
                );
                let key = format!("{base} {}", creds.identifier);
                for attempt in 0..2 {
                    // Bound first: the lock must not be held while signing in.
                    let cached = self.sessions.lock().await.get(&key).cloned();
                    let token = match cached {
                        Some(t) if attempt == 0 => t,
                        _ => self.bluesky_session(base, creds, &key).await?,
                    };
                    match self.get_bearer(&search, &token).await {
                        Err(CrawlError::Status { status: 401, .. }) if attempt == 0 => {
                            self.sessions.lock().await.remove(&key);
                        }
                        other => return other,
                    }
                }
                Err(CrawlError::Status {
                    status: 401,
                    retry_after: None,
                })
            }
        }
    }

    /// Signs in with an app password (com.atproto.server.createSession) and caches the token.
    async fn bluesky_session(
        &self,
        base: &str,
        creds: &Credentials,
        key: &str,
    ) -> Result<String, CrawlError> {
        let body =
            serde_json::json!({ "identifier": creds.identifier, "password": creds.password });
        let url = format!("{base}/xrpc/com.atproto.server.createSession");
        let bytes = match self.post_json(&url, &body, None).await {
            Ok(Fetched::Body { bytes, .. }) => bytes,
            Ok(Fetched::NotModified) => {
                return Err(CrawlError::Parse("empty sign-in answer".into()))
            }
            Err(CrawlError::Status { status, .. }) => {
                return Err(CrawlError::Http(format!(
                    "bluesky sign-in for {} refused ({status})",
                    creds.identifier
                )))
            }
            Err(e) => return Err(e),
        };
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| CrawlError::Parse(format!("sign-in answer: {e}")))?;
        let token = v
            .get("accessJwt")
            .and_then(|t| t.as_str())
            .ok_or_else(|| CrawlError::Parse("sign-in answer without accessJwt".into()))?
            .to_string();
        self.sessions
            .lock()
            .await
            .insert(key.to_string(), token.clone());
        Ok(token)
    }

    /// GETs `url` politely (waiting for the host's rate limit), sending the validators of the
    /// last fetch so unchanged documents cost a 304. The whole fetch, body included, is bounded
    /// in time, so a slow-drip server cannot hold a worker.
    pub async fn fetch(
        &self,
        url: &str,
        etag: Option<&str>,
        last_modified: Option<&str>,
    ) -> Result<Fetched, CrawlError> {
        self.send(url, |c| {
            let mut req = c.get(url).header(
                reqwest::header::ACCEPT,
                "application/rss+xml, application/atom+xml, application/feed+json, application/json;q=0.9, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5",
            );
            if let Some(e) = etag {
                req = req.header(reqwest::header::IF_NONE_MATCH, e);
            }
            if let Some(lm) = last_modified {
                req = req.header(reqwest::header::IF_MODIFIED_SINCE, lm);
            }
            req
        })
        .await
    }

    /// POSTs a JSON body (Misskey search, Bluesky sign-in) under the same guards.
    pub async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
        bearer: Option<&str>,
    ) -> Result<Fetched, CrawlError> {
        self.send(url, |c| {
            let req = c.post(url).json(body);
            match bearer {
                Some(t) => req.bearer_auth(t),
                None => req,
            }
        })
        .await
    }

    /// GET with a bearer token (Bluesky search).
    pub async fn get_bearer(&self, url: &str, bearer: &str) -> Result<Fetched, CrawlError> {
        self.send(url, |c| c.get(url).bearer_auth(bearer)).await
    }

    /// POSTs a body with extra headers and answers the status code (webhook deliveries): the
    /// same address check, per-host rate and time limit as every other request.
    pub async fn post_status(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: String,
    ) -> Result<u16, CrawlError> {
        self.check_target(url).await?;
        let mut req = self.client.post(url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        match tokio::time::timeout(self.total_timeout, req.body(body).send()).await {
            Ok(Ok(resp)) => Ok(resp.status().as_u16()),
            Ok(Err(e)) => Err(CrawlError::Http(describe(&e))),
            Err(_) => Err(CrawlError::Timeout(self.total_timeout)),
        }
    }

    /// Refuses private literal addresses (names are checked by the resolver) and waits for
    /// the host's turn.
    async fn check_target(&self, url: &str) -> Result<(), CrawlError> {
        let parsed =
            url::Url::parse(url).map_err(|e| CrawlError::Http(format!("bad URL {url:?}: {e}")))?;
        let host = parsed.host_str().unwrap_or("").to_ascii_lowercase();
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
            if !self.allow_private && is_private(ip) {
                return Err(CrawlError::PrivateAddress(ip.to_string()));
            }
        }
        self.per_host.until_key_ready(&host).await;
        Ok(())
    }

    /// Every request goes through here: address check, per-host rate, total time limit.
    async fn send(
        &self,
        url: &str,
        build: impl FnOnce(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Fetched, CrawlError> {
        self.check_target(url).await?;
        let req = build(&self.client);
        match tokio::time::timeout(self.total_timeout, self.read(req)).await {
            Ok(r) => r,
            Err(_) => {
                crate::metrics::global().fetch_failed();
                Err(CrawlError::Timeout(self.total_timeout))
            }
        }
    }

    async fn read(&self, req: reqwest::RequestBuilder) -> Result<Fetched, CrawlError> {
        let mut resp = req.send().await.map_err(|e| {
            crate::metrics::global().fetch_failed();
            CrawlError::Http(describe(&e))
        })?;
        let status = resp.status();
        crate::metrics::global().fetch_status(status.as_u16());
        if status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(Fetched::NotModified);
        }
        let header = |name: reqwest::header::HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        if !status.is_success() {
            let retry_after =
                header(reqwest::header::RETRY_AFTER).and_then(|v| parse_retry_after(&v));
            return Err(CrawlError::Status {
                status: status.as_u16(),
                retry_after,
            });
        }
        let content_type = header(reqwest::header::CONTENT_TYPE);
        let etag = header(reqwest::header::ETAG);
        let last_modified = header(reqwest::header::LAST_MODIFIED);
        if resp.content_length().is_some_and(|n| n > self.max_body) {
            return Err(CrawlError::TooLarge(self.max_body));
        }
        // reqwest decodes gzip/brotli before we see the chunks, so the cap holds after
        // decompression too.
        let mut bytes = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| CrawlError::Http(describe(&e)))?
        {
            if bytes.len() as u64 + chunk.len() as u64 > self.max_body {
                return Err(CrawlError::TooLarge(self.max_body));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Fetched::Body {
            bytes,
            content_type,
            etag,
            last_modified,
        })
    }
}

/// reqwest's errors hide their cause (our resolver's refusal among them); show the chain.
fn describe(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// Retry-After as seconds or an HTTP date (relative to the date's own clock is impossible
/// here, so a date is read against the system clock at the edge).
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(7 * 86_400)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = (at.timestamp() - chrono::Utc::now().timestamp()).clamp(0, 7 * 86_400);
    Some(Duration::from_secs(secs as u64))
}

/// Google News RSS links are redirects through news.google.com; when the item's HTML carries
/// the publisher's link, that one is the item's real URL.
pub fn unwrap_google_news(url: &str, html: &str) -> Option<String> {
    let host = url::Url::parse(url).ok()?.host_str()?.to_string();
    if host != "news.google.com" {
        return None;
    }
    let doc = scraper::Html::parse_fragment(html);
    let sel = scraper::Selector::parse("a[href]").ok()?;
    doc.select(&sel)
        .filter_map(|a| a.value().attr("href"))
        .find(|h| {
            url::Url::parse(h)
                .ok()
                .and_then(|u| u.host_str().map(|h| h != "news.google.com"))
                .unwrap_or(false)
        })
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_address_table() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "133.242.0.1", "2001:4860:4860::8888"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn retry_after_in_seconds() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn google_news_links_unwrap_when_the_publisher_link_is_present() {
        let html = r#"<a href="https://www.example.co.jp/news/7pay">7payで不正利用</a>&nbsp;<font>Example</font>"#;
        assert_eq!(
            unwrap_google_news("https://news.google.com/rss/articles/CBMi?oc=5", html).as_deref(),
            Some("https://www.example.co.jp/news/7pay")
        );
        assert_eq!(unwrap_google_news("https://example.jp/a", html), None);
        assert_eq!(
            unwrap_google_news("https://news.google.com/rss/articles/x", "no link"),
            None
        );
    }
}
