//! status: the public status page as pre-rendered bytes. No HTTP types here.
//!
//! The database holds the truth and a `status_version` bumped by every status write. This node
//! keeps one `Rendered` set: every public document (HTML, feeds, JSON) in identity, gzip and
//! brotli form with a strong ETag each, plus the version it was built from and the time until
//! which it stays right (next JST midnight or maintenance boundary). A request only reads that
//! set; rebuilding happens after a local write, when a poll sees another node's version, or
//! when the clock passes `valid_until`.
pub mod history;
pub mod markdown;
pub mod render;

use crate::config::StatusSettings;
use crate::store::{Store, StoreError};
use actix_web::http::header::HeaderValue;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("rendering the status page: {0}")]
    Render(#[from] askama::Error),
    #[error("compressing the status page: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Brotli,
}

impl Encoding {
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
            Encoding::Brotli => "br",
        }
    }

    /// Picks the best encoding an `Accept-Encoding` value allows: brotli, then gzip, else
    /// identity. Honors `q=0` and `*`. No allocation: it runs on every request.
    pub fn negotiate(accept: Option<&str>) -> Encoding {
        let Some(accept) = accept else {
            return Encoding::Identity;
        };
        // (br, gzip, *): None = not mentioned, Some(q > 0) = allowed or refused.
        let (mut br, mut gzip, mut star) = (None, None, None);
        // On every status request: one pass over the bytes, parameters parsed only when present.
        for part in accept.as_bytes().split(|&b| b == b',') {
            let (name, params) = match part.iter().position(|&b| b == b';') {
                Some(i) => (&part[..i], Some(&part[i + 1..])),
                None => (part, None),
            };
            let allowed = params.is_none_or(|p| {
                String::from_utf8_lossy(p)
                    .split(';')
                    .filter_map(|p| p.trim().strip_prefix("q="))
                    .filter_map(|v| v.trim().parse::<f32>().ok())
                    .next()
                    .is_none_or(|q| q > 0.0)
            });
            match name.trim_ascii() {
                n if n.eq_ignore_ascii_case(b"br") => br = Some(allowed),
                n if n.eq_ignore_ascii_case(b"gzip") => gzip = Some(allowed),
                b"*" => star = Some(allowed),
                _ => {}
            }
        }
        if br.or(star).unwrap_or(false) {
            Encoding::Brotli
        } else if gzip.or(star).unwrap_or(false) {
            Encoding::Gzip
        } else {
            Encoding::Identity
        }
    }
}

/// One public document in every encoding.
#[derive(Debug, Clone)]
pub struct Page {
    pub content_type: &'static str,
    identity: Bytes,
    gzip: Bytes,
    br: Bytes,
    /// Prepared as header values, so serving copies no header text.
    etags: [HeaderValue; 3],
    hash: String,
}

impl Page {
    fn hash_of(identity: &[u8]) -> String {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(identity))
    }

    fn build(content_type: &'static str, identity: Vec<u8>) -> Result<Self, StatusError> {
        let hash = Self::hash_of(&identity);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&identity)?;
        let gzip = gz.finish()?;
        let mut br = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut br, 4096, 9, 22);
            w.write_all(&identity)?;
        }
        // Hex digits and quotes: always a valid header value.
        let tag = |suffix: &str| {
            HeaderValue::from_str(&format!("\"{}{suffix}\"", &hash[..32]))
                .unwrap_or(HeaderValue::from_static(""))
        };
        Ok(Self {
            content_type,
            identity: identity.into(),
            gzip: gzip.into(),
            br: br.into(),
            etags: [tag(""), tag("-gz"), tag("-br")],
            hash,
        })
    }

    /// The bytes in one encoding; cloning a `Bytes` shares them, it does not copy.
    pub fn body(&self, e: Encoding) -> &Bytes {
        match e {
            Encoding::Identity => &self.identity,
            Encoding::Gzip => &self.gzip,
            Encoding::Brotli => &self.br,
        }
    }

    /// A strong ETag per encoding: the bytes differ, so the tags must too.
    pub fn etag(&self, e: Encoding) -> &str {
        self.etag_value(e).to_str().unwrap_or_default()
    }

    /// `etag` as the header value it is kept as.
    pub fn etag_value(&self, e: Encoding) -> &HeaderValue {
        match e {
            Encoding::Identity => &self.etags[0],
            Encoding::Gzip => &self.etags[1],
            Encoding::Brotli => &self.etags[2],
        }
    }
}

/// Every public document of one status version.
#[derive(Debug, Default)]
pub struct Rendered {
    pub version: i64,
    pub valid_until: i64,
    pub pages: HashMap<String, Page>,
}

impl Rendered {
    pub fn get(&self, path: &str) -> Option<&Page> {
        self.pages.get(path)
    }
}

/// The rendered set this node serves.
pub struct StatusSite {
    /// `Cache-Control` of every public status response, built once.
    pub cache_control: HeaderValue,
    current: RwLock<Arc<Rendered>>,
    rebuilding: tokio::sync::Mutex<()>,
    settings: StatusSettings,
    css: String,
}

impl StatusSite {
    /// Empty until the first `refresh`; `valid_until` of 0 makes the first request build.
    pub fn new(settings: StatusSettings, css: &str) -> Self {
        Self {
            cache_control: HeaderValue::from_str(&format!(
                "public, max-age={}, stale-while-revalidate={}",
                settings.max_age_secs, settings.stale_while_revalidate_secs
            ))
            .unwrap_or(HeaderValue::from_static("no-cache")),
            current: RwLock::new(Arc::new(Rendered {
                version: -1,
                valid_until: i64::MIN,
                pages: HashMap::new(),
            })),
            rebuilding: tokio::sync::Mutex::new(()),
            settings,
            css: css.to_string(),
        }
    }

    pub fn current(&self) -> Arc<Rendered> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The current set, rebuilt first if the clock has passed its `valid_until`. This is the
    /// only check on the request path: no database read.
    pub async fn serve(
        &self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<Arc<Rendered>, StatusError> {
        let cur = self.current();
        if now.timestamp_millis() < cur.valid_until {
            return Ok(cur);
        }
        match self.refresh(store, now, true).await {
            Ok(r) => Ok(r),
            // The page must stay up when the database does not: serve the last bytes.
            Err(e) if !cur.pages.is_empty() => {
                tracing::error!(error = %e, "status pages could not be rebuilt; serving the last ones");
                Ok(cur)
            }
            Err(e) => Err(e),
        }
    }

    /// Rebuilds when the stored version differs from the rendered one (or, with `force_time`,
    /// when the rendered set has expired). One rebuild at a time; waiters reuse its result.
    pub async fn refresh(
        &self,
        store: &Store,
        now: DateTime<Utc>,
        force_time: bool,
    ) -> Result<Arc<Rendered>, StatusError> {
        let _guard = self.rebuilding.lock().await;
        let cur = self.current();
        let now_ms = now.timestamp_millis();
        let version = store.status_version().await?;
        if version == cur.version && !(force_time && now_ms >= cur.valid_until) {
            return Ok(cur);
        }
        let snap = store
            .status_snapshot(now_ms - (history::HISTORY_DAYS + 1) * history::DAY)
            .await?;
        let settings = self.settings.clone();
        let css = self.css.clone();
        let previous = cur.clone();
        let rendered = tokio::task::spawn_blocking(move || {
            build(&snap, &settings, &css, now_ms, Some(&previous))
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
        let rendered = Arc::new(rendered);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = rendered.clone();
        tracing::debug!(
            version = rendered.version,
            pages = rendered.pages.len(),
            "status pages rebuilt"
        );
        Ok(rendered)
    }
}

/// Renders every document of a snapshot and compresses those whose bytes changed since
/// `previous` (unchanged documents keep their compressed forms and ETags).
pub fn build(
    snap: &crate::domain::status::StatusSnapshot,
    settings: &StatusSettings,
    css: &str,
    now: i64,
    previous: Option<&Rendered>,
) -> Result<Rendered, StatusError> {
    let docs = render::render_documents(snap, settings, css, now)?;
    let mut pages = HashMap::new();
    for d in docs {
        let reused = previous
            .and_then(|p| p.pages.get(&d.path))
            .filter(|p| p.content_type == d.content_type && p.hash == Page::hash_of(&d.body));
        let page = match reused {
            // Cloning shares the compressed bytes.
            Some(p) => p.clone(),
            None => Page::build(d.content_type, d.body)?,
        };
        pages.insert(d.path, page);
    }
    Ok(Rendered {
        version: snap.version,
        valid_until: render::valid_until(snap, now),
        pages,
    })
}

/// Writes every document as a static file under `dir` (`/status` → `status/index.html`,
/// JSON and feeds under their own names), each with `.gz` and `.br` siblings for servers that
/// serve pre-compressed files. Returns the number of documents.
pub fn export(rendered: &Rendered, dir: &std::path::Path) -> std::io::Result<usize> {
    for (path, page) in &rendered.pages {
        let rel = path.trim_start_matches('/');
        let file = if page.content_type == render::HTML {
            dir.join(rel).join("index.html")
        } else {
            dir.join(rel)
        };
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, page.body(Encoding::Identity))?;
        let mut gz = file.clone().into_os_string();
        gz.push(".gz");
        std::fs::write(gz, page.body(Encoding::Gzip))?;
        let mut br = file.into_os_string();
        br.push(".br");
        std::fs::write(br, page.body(Encoding::Brotli))?;
    }
    Ok(rendered.pages.len())
}

#[cfg(test)]
mod tests {
    use super::Encoding::{self, *};

    #[test]
    fn negotiation_prefers_brotli_then_gzip_and_honors_q0() {
        let rows = [
            (None, Identity),
            (Some(""), Identity),
            (Some("gzip"), Gzip),
            (Some("gzip, deflate, br"), Brotli),
            (Some("br;q=0, gzip"), Gzip),
            (Some("*"), Brotli),
            (Some("*;q=0"), Identity),
            (Some("deflate"), Identity),
            (Some("GZIP;q=0.5"), Gzip),
            (Some(" br ; q=0 , gzip;q=0, identity"), Identity),
            (Some("br;level=5;q=0.1,gzip"), Brotli),
            (Some("gzip;q=0.000, *;q=1"), Brotli),
        ];
        for (accept, want) in rows {
            assert_eq!(Encoding::negotiate(accept), want, "{accept:?}");
        }
    }
}
