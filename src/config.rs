//! Configuration: built-in defaults < kizashi.toml < environment (`KIZASHI_KEY`,
//! `KIZASHI_SECTION__KEY`). Parsed and validated once at start; a bad value gives a one-line
//! error naming the key and the reason.
use crate::domain::{ItemKind, Slug};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("config file {path}: {reason}")]
    Syntax { path: String, reason: String },
    #[error("config key `{key}`: {reason}")]
    Key { key: String, reason: String },
}

fn key_err(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.into(),
        reason: reason.into(),
    }
}

/// The file's shape, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    #[serde(default = "default_bind")]
    bind: String,
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    #[serde(default)]
    database_url: Option<String>,
    #[serde(default)]
    dictionaries_dir: Option<PathBuf>,
    #[serde(default)]
    crawl: RawCrawl,
    #[serde(default)]
    sources: Vec<RawSource>,
    #[serde(default = "default_services")]
    services: Vec<String>,
    #[serde(default)]
    status: RawStatus,
    #[serde(default = "default_true")]
    cookie_secure: bool,
    #[serde(default)]
    public_dashboard: bool,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default)]
    webhooks: Vec<RawWebhook>,
    #[serde(default)]
    alerts: RawAlerts,
    #[serde(default)]
    limits: RawLimits,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAlerts {
    enabled: bool,
    check_every_secs: u64,
    min_count: u64,
    max_p: f64,
    baseline_weeks: usize,
    floor_rate: f64,
    cooldown_hours: i64,
    resolve_after_hours: i64,
    share_window_hours: usize,
    share_min_count: u64,
    share_min_rise: f64,
}

impl Default for RawAlerts {
    fn default() -> Self {
        let p = crate::spikes::SpikeParams::default();
        Self {
            enabled: true,
            check_every_secs: 600,
            min_count: p.min_count,
            max_p: p.max_p,
            baseline_weeks: p.baseline_weeks,
            floor_rate: p.floor_rate,
            cooldown_hours: p.cooldown_hours,
            resolve_after_hours: p.resolve_after_hours,
            share_window_hours: p.share_window_hours,
            share_min_count: p.share_min_count,
            share_min_rise: p.share_min_rise,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default = "default_request_timeout")]
    request_timeout_secs: u64,
    #[serde(default = "default_search_budget")]
    search_budget_ms: u64,
    #[serde(default = "default_api_per_minute")]
    api_per_minute: u32,
    #[serde(default = "default_api_burst")]
    api_burst: u32,
    #[serde(default = "default_status_api_per_minute")]
    status_api_per_minute: u32,
    #[serde(default = "default_status_api_burst")]
    status_api_burst: u32,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            request_timeout_secs: default_request_timeout(),
            search_budget_ms: default_search_budget(),
            api_per_minute: default_api_per_minute(),
            api_burst: default_api_burst(),
            status_api_per_minute: default_status_api_per_minute(),
            status_api_burst: default_status_api_burst(),
        }
    }
}

fn default_request_timeout() -> u64 {
    30
}
fn default_search_budget() -> u64 {
    3_000
}
fn default_api_per_minute() -> u32 {
    600
}
fn default_api_burst() -> u32 {
    60
}
fn default_status_api_per_minute() -> u32 {
    6_000
}
fn default_status_api_burst() -> u32 {
    600
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: String,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default = "default_webhook_format")]
    format: String,
    #[serde(default = "default_webhook_events")]
    events: Vec<String>,
}

fn default_webhook_format() -> String {
    "json".into()
}

fn default_webhook_events() -> Vec<String> {
    vec!["incident".into(), "alert".into()]
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatus {
    #[serde(default = "default_status_name")]
    name: String,
    #[serde(default = "default_public_url")]
    public_url: String,
    #[serde(default = "default_max_age")]
    max_age_secs: u32,
    #[serde(default = "default_swr")]
    stale_while_revalidate_secs: u32,
}

impl Default for RawStatus {
    fn default() -> Self {
        Self {
            name: default_status_name(),
            public_url: default_public_url(),
            max_age_secs: default_max_age(),
            stale_while_revalidate_secs: default_swr(),
        }
    }
}

fn default_status_name() -> String {
    "kizashi".into()
}
fn default_public_url() -> String {
    "http://127.0.0.1:8080".into()
}
fn default_max_age() -> u32 {
    10
}
fn default_swr() -> u32 {
    60
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCrawl {
    #[serde(default = "default_contact")]
    contact_url: String,
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
    #[serde(default = "default_max_body")]
    max_body_bytes: u64,
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    #[serde(default)]
    allow_private_networks: bool,
    #[serde(default = "default_per_host_ms")]
    per_host_interval_ms: u64,
    #[serde(default = "default_stale_hours")]
    stale_after_hours: u64,
    #[serde(default = "default_backoff_secs")]
    backoff_base_secs: u64,
}

impl Default for RawCrawl {
    fn default() -> Self {
        Self {
            contact_url: default_contact(),
            timeout_secs: default_timeout(),
            max_body_bytes: default_max_body(),
            concurrency: default_concurrency(),
            allow_private_networks: false,
            per_host_interval_ms: default_per_host_ms(),
            stale_after_hours: default_stale_hours(),
            backoff_base_secs: default_backoff_secs(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: String,
    #[serde(default = "default_source_kind")]
    kind: String,
    url: String,
    #[serde(default = "default_schedule")]
    schedule: String,
    #[serde(default = "default_item_kind")]
    item_kind: String,
    #[serde(default = "default_timezone")]
    timezone: String,
    #[serde(default)]
    retention_days: Option<u32>,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    fetch_article: bool,
    #[serde(default)]
    verify_deletions_days: Option<u32>,
    #[serde(default)]
    identifier: Option<String>,
    #[serde(default)]
    app_password: Option<String>,
    #[serde(default)]
    app_password_env: Option<String>,
}

fn default_bind() -> String {
    "127.0.0.1:8080".into()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}
fn default_contact() -> String {
    "https://github.com/kizashi/kizashi".into()
}
fn default_timeout() -> u64 {
    20
}
fn default_max_body() -> u64 {
    10 * 1024 * 1024
}
fn default_concurrency() -> usize {
    4
}
fn default_source_kind() -> String {
    "feed".into()
}
fn default_schedule() -> String {
    "0 */15 * * * *".into()
}
fn default_item_kind() -> String {
    "news".into()
}
fn default_per_host_ms() -> u64 {
    5_000
}
fn default_stale_hours() -> u64 {
    48
}
fn default_backoff_secs() -> u64 {
    60
}
fn default_timezone() -> String {
    "Asia/Tokyo".into()
}
fn default_services() -> Vec<String> {
    [
        "7pay",
        "paypay",
        "linepay",
        "merpay",
        "famipay",
        "dbarai",
        "aupay",
        "rakutenpay",
        "coincheck",
        "zaif",
    ]
    .map(String::from)
    .to_vec()
}

/// How a source is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// GET of a document read by its shape: RSS 0.9x/1.0/2.0, Atom 0.3/1.0, JSON Feed, or a
    /// Mastodon timeline (e.g. `/api/v1/timelines/tag/7pay`). Hatena Bookmark and Google News
    /// RSS are feeds too.
    Feed,
    /// Misskey `POST /api/notes/search` with `query`.
    Misskey,
    /// Bluesky `app.bsky.feed.searchPosts` with `query`, signed in with an app password.
    Bluesky,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Feed => "feed",
            SourceKind::Misskey => "misskey",
            SourceKind::Bluesky => "bluesky",
        }
    }
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "feed" => Ok(SourceKind::Feed),
            "misskey" => Ok(SourceKind::Misskey),
            "bluesky" => Ok(SourceKind::Bluesky),
            other => Err(format!(
                "unknown source kind {other:?} (supported: feed, misskey, bluesky)"
            )),
        }
    }
}

/// Sign-in for a Bluesky source. The password is never logged or stored in the database.
#[derive(Clone, PartialEq)]
pub struct Credentials {
    pub identifier: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credentials {{ identifier: {:?}, password: <redacted> }}",
            self.identifier
        )
    }
}

/// A source as configured; seeds the database on first start.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    pub name: Slug,
    pub kind: SourceKind,
    pub url: url::Url,
    /// Six-field cron (with seconds), evaluated in Asia/Tokyo.
    pub schedule: String,
    pub item_kind: ItemKind,
    /// Zone for dates the source writes without one.
    pub timezone: chrono_tz::Tz,
    /// Items older than this many days are deleted (none: kept forever).
    pub retention_days: Option<u32>,
    /// Search query of Misskey and Bluesky sources.
    pub query: Option<String>,
    /// Fetch each new item's page and keep its main text (robots.txt honoured).
    pub fetch_article: bool,
    /// Items first seen within this many days that drop out of the feed are checked at their
    /// URL; a 404 or 410 deletes them (deleted at the source).
    pub verify_deletions_days: Option<u32>,
    /// Bluesky sign-in (from the config or the environment variable it names).
    pub credentials: Option<Credentials>,
}

#[derive(Debug, Clone)]
pub struct CrawlSettings {
    pub contact_url: String,
    pub timeout: std::time::Duration,
    pub max_body_bytes: u64,
    pub concurrency: usize,
    pub allow_private_networks: bool,
    /// Minimum time between two requests to the same host.
    pub per_host_interval: std::time::Duration,
    /// A feed that answers 200 with the same bytes for this long is flagged stale.
    pub stale_after: chrono::Duration,
    /// First retry delay of a failing source; doubles with each failure (capped at 6 h).
    pub backoff_base: std::time::Duration,
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: url::Url,
    pub secret: Option<String>,
    pub format: WebhookFormat,
    /// Status-page incident changes.
    pub incidents: bool,
    /// Early-warning alerts (opened, acknowledged, resolved).
    pub alerts: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// The event as JSON (`{"event": …, …}`).
    Json,
    /// A Slack-compatible incoming-webhook message (`{"text": …}`).
    Slack,
}

/// Early-warning detection (see `spikes` for the method).
#[derive(Debug, Clone)]
pub struct AlertSettings {
    pub enabled: bool,
    pub check_every: std::time::Duration,
    pub params: crate::spikes::SpikeParams,
}

/// The public status page.
#[derive(Debug, Clone)]
pub struct StatusSettings {
    /// Shown as the page title and in the JSON `page.name`.
    pub name: String,
    /// Absolute base URL of the public site, without a trailing slash (feeds and JSON links).
    pub public_url: String,
    pub max_age_secs: u32,
    pub stale_while_revalidate_secs: u32,
}

/// A per-client request rate: `per_minute` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateQuota {
    pub per_minute: std::num::NonZeroU32,
    pub burst: std::num::NonZeroU32,
}

/// Request limits of the web server (`[limits]`).
#[derive(Debug, Clone)]
pub struct LimitsSettings {
    /// Longest a handler may take to produce its response head; then 503.
    pub request_timeout: std::time::Duration,
    /// Longest one search may spend in the index before it is stopped.
    pub search_budget: std::time::Duration,
    /// Per client address on `/api/*` except the status JSON; `None` when set to 0 (off).
    pub api_rate: Option<RateQuota>,
    /// Per client address on the public status JSON `/api/v2/*` (pre-rendered, so generous).
    pub status_api_rate: Option<RateQuota>,
}

fn rate_quota(
    section: &str,
    per_minute: u32,
    burst: u32,
) -> Result<Option<RateQuota>, ConfigError> {
    let Some(per_minute) = std::num::NonZeroU32::new(per_minute) else {
        return Ok(None);
    };
    let burst = std::num::NonZeroU32::new(burst).ok_or_else(|| {
        key_err(
            format!("limits.{section}_burst"),
            "must be at least 1 (set the per_minute rate to 0 to turn the limit off)",
        )
    })?;
    Ok(Some(RateQuota { per_minute, burst }))
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub status: StatusSettings,
    /// Session cookies carry `Secure`; off only for plain-HTTP development.
    pub cookie_secure: bool,
    /// Once accounts exist the dashboard and search need a viewer sign-in, unless this is on.
    pub public_dashboard: bool,
    /// Reverse proxies whose X-Forwarded-For is believed for the client address.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Receivers of incident changes (POSTed JSON, HMAC-signed when a secret is set).
    pub webhooks: Vec<WebhookConfig>,
    pub alerts: AlertSettings,
    pub limits: LimitsSettings,
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    /// The database: the SQLite file in `data_dir` unless `database_url` names another.
    pub database: Database,
    pub dictionaries_dir: Option<PathBuf>,
    pub crawl: CrawlSettings,
    pub sources: Vec<SourceConfig>,
    pub services: Vec<Slug>,
}

/// Parses a six-field cron expression (seconds first) the way the scheduler does.
pub fn parse_schedule(s: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(s)
        .map_err(|e| format!("{s:?} is not a cron schedule with a seconds field ({e})"))
}

impl Settings {
    /// Built-in defaults, no file, no environment.
    pub fn defaults() -> Self {
        Self::from_sources(None, std::iter::empty()).unwrap_or_else(|e| panic!("defaults: {e}"))
    }

    /// Loads `path` if given (it must exist), else `./kizashi.toml` if present, then applies
    /// `KIZASHI_*` environment variables.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let implicit = Path::new("kizashi.toml");
        let file = match path {
            Some(p) => Some(p),
            None if implicit.exists() => Some(implicit),
            None => None,
        };
        let text = match file {
            Some(p) => Some((
                p.display().to_string(),
                std::fs::read_to_string(p).map_err(|e| ConfigError::Read {
                    path: p.display().to_string(),
                    reason: e.to_string(),
                })?,
            )),
            None => None,
        };
        Self::from_sources(
            text.as_ref().map(|(p, t)| (p.as_str(), t.as_str())),
            std::env::vars(),
        )
    }

    /// The pure core of `load`: file text (path, contents) and environment pairs in.
    pub fn from_sources(
        file: Option<(&str, &str)>,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table = match file {
            Some((path, text)) => text
                .parse::<toml::Table>()
                .map_err(|e| ConfigError::Syntax {
                    path: path.to_string(),
                    reason: e.message().to_string()
                        + &e.span()
                            .map(|s| format!(" (line {})", line_of(text, s.start)))
                            .unwrap_or_default(),
                })?,
            None => toml::Table::new(),
        };
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("KIZASHI_") else {
                continue;
            };
            // KIZASHI_CONFIG and KIZASHI_ROLE are command-line flags; KIZASHI_TEST_* configure the
            // test suite (KIZASHI_TEST_POSTGRES_URL), not the app.
            if rest.is_empty()
                || rest == "CONFIG"
                || rest == "ROLE"
                || rest.starts_with("LOG")
                || rest.starts_with("TEST_")
            {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
            // Other programs' KIZASHI_* variables (and typos of ours) are not config keys.
            if !ENV_KEYS.contains(&path[0].as_str()) {
                tracing::warn!(variable = %name, "ignored: not a configuration key");
                continue;
            }
            set_path(&mut table, &path, env_value(&value))
                .map_err(|reason| key_err(path.join("."), format!("from {name}: {reason}")))?;
        }
        let raw: RawSettings = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let key = e.path().to_string();
                let reason = e.into_inner().to_string();
                let reason = reason.lines().next().unwrap_or("invalid value").to_string();
                key_err(
                    if key == "." {
                        "(top level)".into()
                    } else {
                        key
                    },
                    reason,
                )
            })?;
        Self::validate(raw)
    }

    fn validate(raw: RawSettings) -> Result<Self, ConfigError> {
        let bind: SocketAddr = raw.bind.parse().map_err(|_| {
            key_err(
                "bind",
                format!("{:?} is not an address like 127.0.0.1:8080", raw.bind),
            )
        })?;
        if raw.data_dir.as_os_str().is_empty() {
            return Err(key_err("data_dir", "must not be empty"));
        }
        let database = match &raw.database_url {
            None => Database::Sqlite(raw.data_dir.join("kizashi.sqlite")),
            Some(url) => Database::parse(url).map_err(|reason| key_err("database_url", reason))?,
        };
        if raw.crawl.timeout_secs == 0 {
            return Err(key_err("crawl.timeout_secs", "must be at least 1"));
        }
        if raw.crawl.concurrency == 0 {
            return Err(key_err("crawl.concurrency", "must be at least 1"));
        }
        if raw.crawl.per_host_interval_ms == 0 {
            return Err(key_err("crawl.per_host_interval_ms", "must be at least 1"));
        }
        if raw.crawl.max_body_bytes < 1024 {
            return Err(key_err("crawl.max_body_bytes", "must be at least 1024"));
        }
        url::Url::parse(&raw.crawl.contact_url)
            .map_err(|e| key_err("crawl.contact_url", format!("not a URL: {e}")))?;
        let mut sources: Vec<SourceConfig> = Vec::new();
        for (i, s) in raw.sources.into_iter().enumerate() {
            let k = |f: &str| format!("sources[{i}].{f}");
            let name = Slug::parse(&s.name).map_err(|r| key_err(k("name"), r))?;
            if sources.iter().any(|o| o.name == name) {
                return Err(key_err(k("name"), format!("{name} is used by two sources")));
            }
            let url = url::Url::parse(&s.url)
                .map_err(|e| key_err(k("url"), format!("{:?}: {e}", s.url)))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(key_err(k("url"), "only http and https URLs can be fetched"));
            }
            parse_schedule(&s.schedule).map_err(|r| key_err(k("schedule"), r))?;
            sources.push(SourceConfig {
                name,
                kind: SourceKind::parse(&s.kind).map_err(|r| key_err(k("kind"), r))?,
                url,
                schedule: s.schedule,
                item_kind: ItemKind::parse(&s.item_kind).map_err(|r| key_err(k("item_kind"), r))?,
                timezone: s.timezone.parse().map_err(|_| {
                    key_err(
                        k("timezone"),
                        format!("{:?} is not an IANA time zone like Asia/Tokyo", s.timezone),
                    )
                })?,
                retention_days: match s.retention_days {
                    Some(0) => {
                        return Err(key_err(
                            k("retention_days"),
                            "must be at least 1 (leave it out to keep items forever)",
                        ))
                    }
                    other => other,
                },
                query: s.query.clone().filter(|q| !q.trim().is_empty()),
                fetch_article: s.fetch_article,
                verify_deletions_days: s.verify_deletions_days.filter(|d| *d > 0),
                credentials: match (&s.identifier, &s.app_password, &s.app_password_env) {
                    (None, None, None) => None,
                    (Some(id), Some(pw), None) => Some(Credentials {
                        identifier: id.clone(),
                        password: pw.clone(),
                    }),
                    (Some(id), None, Some(var)) => Some(Credentials {
                        identifier: id.clone(),
                        password: env_lookup(var).ok_or_else(|| {
                            key_err(
                                k("app_password_env"),
                                format!("environment variable {var} is not set"),
                            )
                        })?,
                    }),
                    _ => {
                        return Err(key_err(
                            k("identifier"),
                            "give identifier with exactly one of app_password or app_password_env",
                        ))
                    }
                },
            });
            let Some(last) = sources.last() else { continue };
            if matches!(last.kind, SourceKind::Misskey | SourceKind::Bluesky)
                && last.query.is_none()
            {
                return Err(key_err(
                    k("query"),
                    "misskey and bluesky sources need a search query",
                ));
            }
            if last.kind == SourceKind::Bluesky && last.credentials.is_none() {
                return Err(key_err(
                    k("identifier"),
                    "bluesky search needs a signed-in session: set identifier and app_password_env",
                ));
            }
        }
        let public_url = url::Url::parse(&raw.status.public_url)
            .map_err(|e| key_err("status.public_url", format!("not a URL: {e}")))?;
        if !matches!(public_url.scheme(), "http" | "https") {
            return Err(key_err("status.public_url", "must be an http or https URL"));
        }
        if raw.status.name.trim().is_empty() {
            return Err(key_err("status.name", "must not be empty"));
        }
        if raw.status.max_age_secs > 3600 {
            return Err(key_err(
                "status.max_age_secs",
                "at most 3600: clients would miss incidents for too long",
            ));
        }
        let status = StatusSettings {
            name: raw.status.name.trim().to_string(),
            public_url: raw.status.public_url.trim_end_matches('/').to_string(),
            max_age_secs: raw.status.max_age_secs,
            stale_while_revalidate_secs: raw.status.stale_while_revalidate_secs,
        };
        let known = crate::dictionaries::Dictionaries::builtin();
        let mut services = Vec::new();
        for (i, s) in raw.services.iter().enumerate() {
            let slug = Slug::parse(s).map_err(|r| key_err(format!("services[{i}]"), r))?;
            if known.service(slug.as_str()).is_none() && raw.dictionaries_dir.is_none() {
                return Err(key_err(
                    format!("services[{i}]"),
                    format!("unknown service {slug:?}; add it to dictionaries/services.toml"),
                ));
            }
            services.push(slug);
        }
        let mut trusted_proxies = Vec::new();
        for (i, p) in raw.trusted_proxies.iter().enumerate() {
            trusted_proxies.push(p.trim().parse::<std::net::IpAddr>().map_err(|_| {
                key_err(
                    format!("trusted_proxies[{i}]"),
                    format!("{p:?} is not an IP address like 127.0.0.1 or ::1"),
                )
            })?);
        }
        let mut webhooks = Vec::new();
        for (i, w) in raw.webhooks.into_iter().enumerate() {
            let url = url::Url::parse(&w.url)
                .map_err(|e| key_err(format!("webhooks[{i}].url"), format!("{:?}: {e}", w.url)))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(key_err(
                    format!("webhooks[{i}].url"),
                    "must be http or https",
                ));
            }
            if w.secret.as_deref().is_some_and(|s| s.len() < 16) {
                return Err(key_err(
                    format!("webhooks[{i}].secret"),
                    "at least 16 characters (it signs the payload)",
                ));
            }
            let format = match w.format.as_str() {
                "json" => WebhookFormat::Json,
                "slack" => WebhookFormat::Slack,
                other => {
                    return Err(key_err(
                        format!("webhooks[{i}].format"),
                        format!("{other:?} is not json or slack"),
                    ))
                }
            };
            if let Some(bad) = w
                .events
                .iter()
                .find(|e| !matches!(e.as_str(), "incident" | "alert"))
            {
                return Err(key_err(
                    format!("webhooks[{i}].events"),
                    format!("{bad:?} is not incident or alert"),
                ));
            }
            webhooks.push(WebhookConfig {
                url,
                secret: w.secret,
                format,
                incidents: w.events.iter().any(|e| e == "incident"),
                alerts: w.events.iter().any(|e| e == "alert"),
            });
        }
        let a = raw.alerts;
        let checks: [(&str, bool, &str); 7] = [
            ("check_every_secs", a.check_every_secs >= 10, "at least 10"),
            ("min_count", a.min_count >= 1, "at least 1"),
            ("max_p", a.max_p > 0.0 && a.max_p < 0.5, "between 0 and 0.5"),
            (
                "baseline_weeks",
                (1..=12).contains(&a.baseline_weeks),
                "1 to 12",
            ),
            ("floor_rate", a.floor_rate > 0.0, "above 0"),
            (
                "share_min_rise",
                (0.0..1.0).contains(&a.share_min_rise),
                "from 0 to 1",
            ),
            (
                "share_window_hours",
                (1..=48).contains(&a.share_window_hours),
                "1 to 48",
            ),
        ];
        if let Some((key, _, reason)) = checks.iter().find(|c| !c.1) {
            return Err(key_err(format!("alerts.{key}"), *reason));
        }
        let alerts = AlertSettings {
            enabled: a.enabled,
            check_every: std::time::Duration::from_secs(a.check_every_secs),
            params: crate::spikes::SpikeParams {
                min_count: a.min_count,
                max_p: a.max_p,
                baseline_weeks: a.baseline_weeks,
                floor_rate: a.floor_rate,
                cooldown_hours: a.cooldown_hours.clamp(0, 24 * 30),
                resolve_after_hours: a.resolve_after_hours.clamp(1, 24 * 90),
                share_window_hours: a.share_window_hours,
                share_min_count: a.share_min_count,
                share_min_rise: a.share_min_rise,
            },
        };
        let l = &raw.limits;
        if !(1..=3600).contains(&l.request_timeout_secs) {
            return Err(key_err(
                "limits.request_timeout_secs",
                "between 1 and 3600 seconds",
            ));
        }
        if l.search_budget_ms < 10 || l.search_budget_ms > l.request_timeout_secs * 1000 {
            return Err(key_err(
                "limits.search_budget_ms",
                "at least 10 ms and at most the request timeout",
            ));
        }
        let limits = LimitsSettings {
            request_timeout: std::time::Duration::from_secs(l.request_timeout_secs),
            search_budget: std::time::Duration::from_millis(l.search_budget_ms),
            api_rate: rate_quota("api", l.api_per_minute, l.api_burst)?,
            status_api_rate: rate_quota("status_api", l.status_api_per_minute, l.status_api_burst)?,
        };
        Ok(Self {
            status,
            webhooks,
            alerts,
            limits,
            cookie_secure: raw.cookie_secure,
            public_dashboard: raw.public_dashboard,
            trusted_proxies,
            bind,
            data_dir: raw.data_dir,
            database,
            dictionaries_dir: raw.dictionaries_dir,
            crawl: CrawlSettings {
                contact_url: raw.crawl.contact_url,
                timeout: std::time::Duration::from_secs(raw.crawl.timeout_secs),
                max_body_bytes: raw.crawl.max_body_bytes,
                concurrency: raw.crawl.concurrency,
                allow_private_networks: raw.crawl.allow_private_networks,
                per_host_interval: std::time::Duration::from_millis(raw.crawl.per_host_interval_ms),
                stale_after: chrono::Duration::hours(
                    raw.crawl.stale_after_hours.min(100_000) as i64
                ),
                backoff_base: std::time::Duration::from_secs(raw.crawl.backoff_base_secs.max(1)),
            },
            sources,
            services,
        })
    }

    pub fn index_dir(&self) -> PathBuf {
        self.data_dir.join("index")
    }
}

/// Where the data lives. SQLite (one file, the default) or a PostgreSQL server shared by
/// several nodes; any other scheme is refused at start.
#[derive(Debug, Clone, PartialEq)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres(PostgresUrl),
}

impl Database {
    /// `sqlite://PATH` (or `sqlite:PATH`), `postgres://…` or `postgresql://…`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let scheme = s.split_once(':').map(|(scheme, _)| scheme).unwrap_or("");
        match scheme {
            "sqlite" => {
                let path = s["sqlite:".len()..].trim_start_matches("//");
                let path = path.split('?').next().unwrap_or("");
                if path.is_empty() {
                    return Err(
                        "sqlite:// needs a file path (sqlite://./data/kizashi.sqlite)".into(),
                    );
                }
                Ok(Self::Sqlite(PathBuf::from(path)))
            }
            "postgres" | "postgresql" => Ok(Self::Postgres(PostgresUrl::parse(s)?)),
            _ => {
                Err(format!(
                "unsupported database URL scheme {:?}: use postgres://user:password@host:5432/db \
                 or sqlite://path/kizashi.sqlite",
                if scheme.is_empty() { s.get(..12).unwrap_or(s) } else { scheme }
            ))
            }
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }
}

/// A PostgreSQL connection URL. Its password never reaches a log: `Debug` and `Display`
/// print the URL with the password replaced; `expose` is for the driver only.
#[derive(Clone, PartialEq)]
pub struct PostgresUrl(url::Url);

impl PostgresUrl {
    pub fn parse(s: &str) -> Result<Self, String> {
        let url = url::Url::parse(s).map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(format!("{:?} is not a postgres:// URL", url.scheme()));
        }
        if url.host_str().is_none_or(str::is_empty) && !s.contains("host=") {
            return Err("a PostgreSQL URL needs a host (postgres://user@host/db)".into());
        }
        Ok(Self(url))
    }

    /// The full URL with its password, for connecting.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// The URL with the password replaced by `***`.
    pub fn redacted(&self) -> String {
        let mut u = self.0.clone();
        if u.password().is_some() {
            let _ = u.set_password(Some("***"));
        }
        // A password given as a query parameter is hidden too.
        if u.query_pairs().any(|(k, _)| k == "password") {
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k == "password" {
                        "***".into()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            u.query_pairs_mut().clear().extend_pairs(pairs);
        }
        u.to_string()
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresUrl({})", self.redacted())
    }
}

impl std::fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Top-level keys an environment variable may set.
const ENV_KEYS: &[&str] = &[
    "bind",
    "data_dir",
    "database_url",
    "dictionaries_dir",
    "crawl",
    "sources",
    "services",
    "status",
    "cookie_secure",
    "public_dashboard",
    "trusted_proxies",
    "webhooks",
    "alerts",
    "limits",
];

fn env_lookup(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

fn line_of(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())].matches('\n').count() + 1
}

/// An environment value is read as TOML when it parses as a scalar or array, else as a string.
fn env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| {
            matches!(
                v,
                toml::Value::Boolean(_)
                    | toml::Value::Integer(_)
                    | toml::Value::Float(_)
                    | toml::Value::Array(_)
            )
        })
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    match path {
        [] => Err("empty key".into()),
        [last] => {
            // A string env value for a field the file gives as a path or string stays a string;
            // numbers and booleans were already typed by env_value.
            table.insert(last.clone(), value);
            Ok(())
        }
        [head, rest @ ..] => {
            let entry = table
                .entry(head.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(t) => set_path(t, rest, value),
                _ => Err(format!("`{head}` is not a section")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(file: &str, env: &[(&str, &str)]) -> Result<Settings, String> {
        Settings::from_sources(
            Some(("kizashi.toml", file)),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn limits_have_defaults_turn_off_at_zero_and_name_bad_keys() {
        let s = Settings::defaults();
        assert_eq!(s.limits.request_timeout.as_secs(), 30);
        assert_eq!(s.limits.search_budget.as_millis(), 3000);
        assert_eq!(s.limits.api_rate.unwrap().per_minute.get(), 600);
        assert_eq!(s.limits.status_api_rate.unwrap().burst.get(), 600);
        let s = load(
            "[limits]\napi_per_minute = 0\n",
            &[("KIZASHI_LIMITS__REQUEST_TIMEOUT_SECS", "5")],
        )
        .unwrap();
        assert!(s.limits.api_rate.is_none());
        assert_eq!(s.limits.request_timeout.as_secs(), 5);
        for (file, key) in [
            (
                "[limits]\nrequest_timeout_secs = 0\n",
                "limits.request_timeout_secs",
            ),
            (
                "[limits]\nsearch_budget_ms = 60000\n",
                "limits.search_budget_ms",
            ),
            ("[limits]\napi_burst = 0\n", "limits.api_burst"),
            ("[limits]\nburst = 3\n", "limits"),
        ] {
            let e = load(file, &[]).unwrap_err();
            assert!(e.contains(key), "{file}: {e}");
        }
    }

    #[test]
    fn database_url_picks_the_engine_refuses_other_schemes_and_hides_the_password() {
        let s = Settings::defaults();
        assert_eq!(
            s.database,
            Database::Sqlite(PathBuf::from("./data/kizashi.sqlite"))
        );
        let s = load(
            "",
            &[(
                "KIZASHI_DATABASE_URL",
                "postgres://kz:s3cret@db.example:5432/kizashi",
            )],
        )
        .unwrap();
        let Database::Postgres(url) = &s.database else {
            panic!("{:?}", s.database)
        };
        assert_eq!(url.expose(), "postgres://kz:s3cret@db.example:5432/kizashi");
        for shown in [format!("{s:?}"), url.to_string()] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(
                shown.contains("postgres://kz:***@db.example:5432/kizashi"),
                "{shown}"
            );
        }
        let q = PostgresUrl::parse("postgres://kz@h/db?password=s3cret&sslmode=disable").unwrap();
        assert!(!format!("{q:?}").contains("s3cret"), "{q:?}");
        let s = load("database_url = \"sqlite:///var/lib/k.sqlite\"\n", &[]).unwrap();
        assert_eq!(
            s.database,
            Database::Sqlite(PathBuf::from("/var/lib/k.sqlite"))
        );
        for bad in ["mysql://u:p@h/db", "k.sqlite", "postgres://"] {
            let e = load(&format!("database_url = {bad:?}\n"), &[]).unwrap_err();
            assert!(e.starts_with("config key `database_url`"), "{bad}: {e}");
            assert!(!e.contains(":p@"), "{e}");
        }
    }

    #[test]
    fn defaults_listen_on_loopback_8080_with_data_dir() {
        let s = Settings::defaults();
        assert_eq!(s.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(s.data_dir, PathBuf::from("./data"));
        assert_eq!(s.services.len(), 10);
        assert!(!s.crawl.allow_private_networks);
        assert!(s.cookie_secure, "cookies are Secure unless turned off");
        assert!(!s.public_dashboard);
    }

    #[test]
    fn environment_overrides_file() {
        let s = load(
            "bind = \"127.0.0.1:9000\"\n[crawl]\ntimeout_secs = 5\n",
            &[
                ("KIZASHI_BIND", "0.0.0.0:7000"),
                ("KIZASHI_DATA_DIR", "/tmp/k"),
                ("KIZASHI_CRAWL__ALLOW_PRIVATE_NETWORKS", "true"),
                ("OTHER", "x"),
                ("KIZASHI_SOMETHING_ELSE", "1"),
            ],
        )
        .unwrap();
        assert_eq!(s.bind.to_string(), "0.0.0.0:7000");
        assert_eq!(s.data_dir, PathBuf::from("/tmp/k"));
        assert_eq!(s.crawl.timeout.as_secs(), 5);
        assert!(s.crawl.allow_private_networks);
    }

    #[test]
    fn errors_name_the_key_and_reason_on_one_line() {
        let rows = [
            ("bind = \"nowhere\"", "`bind`"),
            ("[crawl]\ntimeout_secs = \"soon\"", "`crawl.timeout_secs`"),
            ("colour = 1", "colour"),
            (
                "[[sources]]\nname = \"a\"\nurl = \"http://x/\"\nschedule = \"*/5 * * * *\"",
                "`sources[0].schedule`",
            ),
            (
                "[[sources]]\nname = \"A B\"\nurl = \"http://x/\"",
                "`sources[0].name`",
            ),
            (
                "[[sources]]\nname = \"a\"\nurl = \"ftp://x/\"",
                "`sources[0].url`",
            ),
            ("services = [\"7pay\", \"nopay\"]", "`services[1]`"),
            (
                "[[sources]]\nname = \"a\"\nurl = \"http://x/\"\ntimezone = \"Mars/Base\"",
                "`sources[0].timezone`",
            ),
            (
                "[[sources]]\nname = \"a\"\nurl = \"http://x/\"\nretention_days = 0",
                "`sources[0].retention_days`",
            ),
            (
                "[crawl]\nper_host_interval_ms = 0",
                "`crawl.per_host_interval_ms`",
            ),
            ("[status]\npublic_url = \"ftp://x\"", "`status.public_url`"),
            ("[status]\nmax_age_secs = 86400", "`status.max_age_secs`"),
            ("trusted_proxies = [\"nginx\"]", "`trusted_proxies[0]`"),
            ("[[webhooks]]\nurl = \"ftp://x/\"", "`webhooks[0].url`"),
            (
                "[[webhooks]]\nurl = \"https://x/\"\nsecret = \"short\"",
                "`webhooks[0].secret`",
            ),
        ];
        for (file, key) in rows {
            let e = load(file, &[]).unwrap_err();
            assert!(e.contains(key), "{file:?} gave {e:?}");
            assert!(!e.contains('\n'), "one line: {e:?}");
        }
        let e = load("", &[("KIZASHI_CRAWL__TIMEOUT_SECS", "abc")]).unwrap_err();
        assert!(e.contains("crawl.timeout_secs"), "{e}");
    }

    #[test]
    fn the_example_config_is_valid() {
        let s = load(include_str!("../kizashi.example.toml"), &[]).unwrap();
        assert!(!s.sources.is_empty());
    }
}
