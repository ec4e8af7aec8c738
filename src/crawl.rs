//! crawl: fetching sources over HTTP and turning feed bytes into `RawItem`s.
//! One HTTP client for the whole process (timeouts, size cap, identifying User-Agent,
//! conditional GET). Charset is decided from bytes, never from a guessed String.
use crate::config::CrawlSettings;
use crate::domain::{ItemKind, RawItem};
use crate::text::html_to_text;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CrawlError {
    #[error("request failed: {0}")]
    Http(String),
    #[error("server answered {0}")]
    Status(u16),
    #[error("response larger than {0} bytes")]
    TooLarge(u64),
    #[error("not a feed: {0}")]
    Parse(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// How the bytes were decoded, recorded with the fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharsetDecision {
    pub encoding: &'static str,
    /// bom | http | prolog | meta | detected
    pub from: &'static str,
}

/// The result of fetching one source.
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
}

impl HttpClient {
    pub fn new(settings: &CrawlSettings) -> Result<Self, CrawlError> {
        let user_agent = format!(
            "kizashi/{} (+{})",
            env!("CARGO_PKG_VERSION"),
            settings.contact_url
        );
        let client = reqwest::Client::builder()
            .user_agent(user_agent)
            .connect_timeout(Duration::from_secs(10).min(settings.timeout))
            .read_timeout(settings.timeout)
            .timeout(settings.timeout * 2)
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(|e| CrawlError::Client(e.to_string()))?;
        Ok(Self {
            client,
            max_body: settings.max_body_bytes,
        })
    }

    /// GETs `url`, sending the validators of the last fetch so unchanged feeds cost a 304.
    pub async fn fetch(
        &self,
        url: &str,
        etag: Option<&str>,
        last_modified: Option<&str>,
    ) -> Result<Fetched, CrawlError> {
        let mut req = self.client.get(url).header(
            reqwest::header::ACCEPT,
            "application/rss+xml, application/atom+xml, application/feed+json, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5",
        );
        if let Some(e) = etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, e);
        }
        if let Some(lm) = last_modified {
            req = req.header(reqwest::header::IF_MODIFIED_SINCE, lm);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| CrawlError::Http(e.to_string()))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(Fetched::NotModified);
        }
        if !status.is_success() {
            return Err(CrawlError::Status(status.as_u16()));
        }
        let header = |name: reqwest::header::HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        let content_type = header(reqwest::header::CONTENT_TYPE);
        let etag = header(reqwest::header::ETAG);
        let last_modified = header(reqwest::header::LAST_MODIFIED);
        if resp.content_length().is_some_and(|n| n > self.max_body) {
            return Err(CrawlError::TooLarge(self.max_body));
        }
        // The cap applies to the decompressed stream: reqwest decodes gzip/brotli before us.
        let mut bytes = Vec::new();
        let mut resp = resp;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| CrawlError::Http(e.to_string()))?
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

/// Decodes feed bytes to UTF-8: BOM → HTTP charset → XML prolog / HTML meta → detection.
pub fn decode(bytes: &[u8], content_type: Option<&str>) -> (String, CharsetDecision) {
    let decision = |enc: &'static encoding_rs::Encoding, from| CharsetDecision {
        encoding: enc.name(),
        from,
    };
    if let Some((enc, bom_len)) = encoding_rs::Encoding::for_bom(bytes) {
        let (text, _) = enc.decode_without_bom_handling(&bytes[bom_len..]);
        return (text.into_owned(), decision(enc, "bom"));
    }
    let declared = content_type
        .and_then(charset_param)
        .and_then(|label| encoding_rs::Encoding::for_label(label.as_bytes()))
        .map(|e| (e, "http"))
        .or_else(|| {
            prolog_charset(bytes)
                .and_then(|label| encoding_rs::Encoding::for_label(label.as_bytes()))
                .map(|e| (e, "prolog"))
        });
    if let Some((enc, from)) = declared {
        let (text, _, had_errors) = enc.decode(bytes);
        if !had_errors {
            return (text.into_owned(), decision(enc, from));
        }
        // A wrong declaration: fall through to detection rather than keep mojibake.
    }
    let mut detector = chardetng::EncodingDetector::new();
    detector.feed(bytes, true);
    let enc = detector.guess(Some(b"jp"), true);
    let (text, _, _) = enc.decode(bytes);
    (text.into_owned(), decision(enc, "detected"))
}

fn charset_param(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// The encoding named in an XML prolog or an HTML meta tag in the first KiB (ASCII only).
fn prolog_charset(bytes: &[u8]) -> Option<String> {
    let head = &bytes[..bytes.len().min(1024)];
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    let after = head
        .find("encoding=")
        .map(|i| i + "encoding=".len())
        .or_else(|| head.find("charset=").map(|i| i + "charset=".len()))?;
    let rest = head[after..].trim_start_matches(['"', '\'']);
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))?;
    Some(rest[..end].to_string()).filter(|s| !s.is_empty())
}

/// Rewrites the prolog's encoding to UTF-8 so the XML parser does not decode a second time.
fn relabel_utf8(text: &str) -> std::borrow::Cow<'_, str> {
    if let Some(end) = text.starts_with("<?xml").then(|| text.find("?>")).flatten() {
        let prolog = &text[..end];
        if let Some(i) = prolog.find("encoding=") {
            let q = prolog[i + 9..].chars().next().unwrap_or('"');
            if let Some(close) = prolog[i + 10..].find(q) {
                let mut s = String::with_capacity(text.len());
                s.push_str(&text[..i]);
                s.push_str("encoding=\"UTF-8\"");
                s.push_str(&text[i + 10 + close + 1..]);
                return s.into();
            }
        }
    }
    text.into()
}

/// Parses a feed document (RSS 0.9x/1.0/2.0, Atom, JSON Feed) into raw items.
pub fn parse_feed(
    bytes: &[u8],
    content_type: Option<&str>,
    source: &str,
    item_kind: ItemKind,
) -> Result<(Vec<RawItem>, CharsetDecision), CrawlError> {
    let (text, decision) = decode(bytes, content_type);
    let text = relabel_utf8(&text);
    let parser = feed_rs::parser::Builder::new()
        .id_generator(|_, _, _| String::new())
        .sanitize_content(false)
        .build();
    let feed = parser
        .parse(text.as_bytes())
        .map_err(|e| CrawlError::Parse(e.to_string()))?;
    let mut items = Vec::new();
    for entry in feed.entries {
        let url = entry
            .links
            .iter()
            .find(|l| l.rel.as_deref().is_none_or(|r| r == "alternate"))
            .or(entry.links.first())
            .map(|l| l.href.trim().to_string());
        let guid = Some(entry.id.trim().to_string()).filter(|g| !g.is_empty());
        let Some(url) = url.or_else(|| guid.clone().filter(|g| g.starts_with("http"))) else {
            continue; // nothing to link to or identify: not an item we can show
        };
        let title = entry
            .title
            .map(|t| html_to_text(&t.content))
            .unwrap_or_default();
        let body_html = entry
            .content
            .and_then(|c| c.body)
            .or(entry.summary.map(|s| s.content))
            .unwrap_or_default();
        let body = html_to_text(&body_html);
        if title.is_empty() && body.is_empty() {
            continue;
        }
        items.push(RawItem {
            source: source.to_string(),
            guid,
            url,
            title,
            body,
            published_at: entry.published.or(entry.updated),
            author: entry
                .authors
                .first()
                .map(|a| a.name.trim().to_string())
                .filter(|a| !a.is_empty()),
            kind: item_kind,
        });
    }
    Ok((items, decision))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSS: &str = r#"<?xml version="1.0" encoding="Shift_JIS"?>
<rss version="2.0"><channel><title>テスト</title>
<item><title>7payで不正利用</title><link>https://example.jp/a?utm_source=x</link>
<guid>a-1</guid><pubDate>Wed, 03 Jul 2019 10:00:00 +0900</pubDate>
<description>&lt;p&gt;被害が&lt;b&gt;拡大&lt;/b&gt;&lt;/p&gt;</description></item>
<item><title>日付なし</title><link>https://example.jp/b</link></item>
</channel></rss>"#;

    #[test]
    fn shift_jis_feed_decodes_from_its_prolog() {
        let (bytes, _, _) = encoding_rs::SHIFT_JIS.encode(RSS);
        let (items, decision) =
            parse_feed(&bytes, Some("application/xml"), "s", ItemKind::News).unwrap();
        assert_eq!(decision.encoding, "Shift_JIS");
        assert_eq!(decision.from, "prolog");
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].title, "7payで不正利用");
        assert_eq!(items[0].body, "被害が拡大");
        assert_eq!(items[0].guid.as_deref(), Some("a-1"));
        assert_eq!(
            items[0].published_at.unwrap().to_rfc3339(),
            "2019-07-03T01:00:00+00:00"
        );
        assert_eq!(items[1].guid, None);
        assert_eq!(items[1].published_at, None);
    }

    #[test]
    fn a_wrong_http_charset_falls_back_to_detection() {
        let (bytes, _, _) = encoding_rs::EUC_JP.encode("<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><item><title>不正アクセスの被害が拡大しています</title><link>https://e.jp/1</link></item></channel></rss>");
        let (items, decision) =
            parse_feed(&bytes, Some("text/xml; charset=utf-8"), "s", ItemKind::News).unwrap();
        assert_eq!(decision.encoding, "EUC-JP");
        assert_eq!(items[0].title, "不正アクセスの被害が拡大しています");
    }

    #[test]
    fn garbage_is_a_parse_error_not_a_panic() {
        assert!(parse_feed(b"\x00\x01 not xml", None, "s", ItemKind::News).is_err());
    }
}
