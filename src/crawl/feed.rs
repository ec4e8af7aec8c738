//! Feed documents to items: RSS 0.9x/1.0/2.0, Atom 0.3/1.0 and JSON Feed through feed-rs,
//! after a lenient repair pass (bare &, HTML entities, control characters, a leading newline
//! before the prolog, truncated documents keep their complete items). Dates without a zone are
//! read in the source's zone.
use super::charset::{decode, CharsetDecision};
use super::CrawlError;
use crate::domain::{ItemKind, RawItem};
use crate::text::html_to_text;
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use std::borrow::Cow;

/// What the parser needs to know about the source a document came from.
#[derive(Debug, Clone, Copy)]
pub struct SourceCtx<'a> {
    pub name: &'a str,
    pub item_kind: ItemKind,
    /// Zone for dates written without one.
    pub tz: Tz,
    /// The URL fetched (base for relative links and for note URLs of JSON APIs).
    pub url: Option<&'a str>,
}

/// What a source's document gave.
#[derive(Debug)]
pub struct Parsed {
    pub items: Vec<RawItem>,
    pub charset: CharsetDecision,
    /// Repairs applied to accept the document (empty when it was well-formed).
    pub repairs: Vec<&'static str>,
}

/// Parses a feed document served for `source`.
pub fn parse_feed(
    bytes: &[u8],
    content_type: Option<&str>,
    ctx: &SourceCtx<'_>,
) -> Result<Parsed, CrawlError> {
    let (source, item_kind, tz) = (ctx.name, ctx.item_kind, ctx.tz);
    let (text, charset) = decode(bytes, content_type);
    let trimmed = text.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let items = super::social::parse_json(trimmed, ctx)?;
        return Ok(Parsed {
            items,
            charset,
            repairs: Vec::new(),
        });
    }
    if looks_like_html(trimmed) {
        return Err(CrawlError::NotAFeed(
            "the server sent an HTML page where a feed was expected".into(),
        ));
    }
    let mut repairs = Vec::new();
    let cleaned = sanitize_xml(trimmed);
    if let Cow::Owned(_) = cleaned {
        repairs.push("entities/control characters");
    }
    let cleaned = relabel_utf8(&cleaned);
    let cleaned = atom03_to_atom10(&cleaned);
    let feed = match parse_with_feed_rs(&cleaned, tz) {
        Ok(feed) => feed,
        Err(first) => {
            let mut repaired = None;
            for candidate in truncation_repairs(&cleaned) {
                if let Ok(feed) = parse_with_feed_rs(&candidate, tz) {
                    repaired = Some(feed);
                    break;
                }
            }
            match repaired {
                Some(feed) => {
                    repairs.push("truncated document closed");
                    feed
                }
                None => return Err(CrawlError::Parse(first)),
            }
        }
    };
    let extensions = item_extensions(&cleaned);
    let mut items = Vec::new();
    for entry in feed.entries {
        if let Some(mut item) = entry_to_item(entry, source, item_kind, ctx.url) {
            if let Some(ext) = extensions.get(&item.url) {
                item.bookmarks = ext.bookmarks;
                for s in &ext.subjects {
                    if !item.tags.contains(s) {
                        item.tags.push(s.clone());
                    }
                }
            }
            items.push(item);
        }
    }
    Ok(Parsed {
        items,
        charset,
        repairs,
    })
}

fn parse_with_feed_rs(text: &str, tz: Tz) -> Result<feed_rs::model::Feed, String> {
    let parser = feed_rs::parser::Builder::new()
        // Leave ids empty when the feed gave none: identity then falls back to the URL.
        .id_generator(|_, _, _| String::new())
        .sanitize_content(false)
        .timestamp_parser(move |s| parse_date(s, tz))
        .build();
    parser.parse(text.as_bytes()).map_err(|e| e.to_string())
}

/// An entry with neither link nor id is still an item: it links to the feed itself and is
/// identified by a hash of its text.
fn entry_to_item(
    entry: feed_rs::model::Entry,
    source: &str,
    item_kind: ItemKind,
    feed_url: Option<&str>,
) -> Option<RawItem> {
    let url = entry
        .links
        .iter()
        .find(|l| l.rel.as_deref().is_none_or(|r| r == "alternate"))
        .or(entry.links.first())
        .map(|l| l.href.trim().to_string())
        .filter(|u| !u.is_empty());
    let mut guid = Some(entry.id.trim().to_string()).filter(|g| !g.is_empty());
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
    let mut tags: Vec<String> = entry
        .categories
        .iter()
        .map(|c| {
            c.label
                .clone()
                .unwrap_or_else(|| c.term.clone())
                .trim()
                .to_string()
        })
        .filter(|t| !t.is_empty() && t.chars().count() <= 100)
        .collect();
    tags.dedup();
    tags.truncate(20);
    let url = match url.or_else(|| guid.clone().filter(|g| g.starts_with("http"))) {
        Some(u) => u,
        None => {
            if guid.is_none() {
                guid = Some(format!(
                    "h:{}",
                    crate::pipeline::hash_hex(format!("{title}\n{body}").as_bytes())
                ));
            }
            feed_url?.to_string()
        }
    };
    let url = super::unwrap_google_news(&url, &body_html).unwrap_or(url);
    Some(RawItem {
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
        bookmarks: None,
        tags,
    })
}

/// Per-item extension elements feed parsers drop, read from the raw document by the item's
/// link: Hatena Bookmark's `<hatena:bookmarkcount>` and RSS 1.0's `<dc:subject>`.
#[derive(Default)]
struct Extensions {
    bookmarks: Option<i64>,
    subjects: Vec<String>,
}

fn item_extensions(text: &str) -> std::collections::HashMap<String, Extensions> {
    let mut out = std::collections::HashMap::new();
    if !text.contains("hatena:bookmarkcount") && !text.contains("dc:subject") {
        return out;
    }
    for chunk in text.split("<item").skip(1) {
        let chunk = chunk.split("</item>").next().unwrap_or(chunk);
        let all = |open: &str, close: &str| -> Vec<String> {
            let mut found = Vec::new();
            let mut rest = chunk;
            while let Some(i) = rest.find(open) {
                let after = &rest[i + open.len()..];
                let Some(j) = after.find(close) else { break };
                found.push(html_escape::decode_html_entities(after[..j].trim()).into_owned());
                rest = &after[j + close.len()..];
            }
            found
        };
        let Some(link) = all("<link>", "</link>").into_iter().next() else {
            continue;
        };
        let ext = Extensions {
            bookmarks: all("<hatena:bookmarkcount>", "</hatena:bookmarkcount>")
                .first()
                .and_then(|c| c.parse().ok()),
            subjects: all("<dc:subject>", "</dc:subject>")
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect(),
        };
        out.insert(link, ext);
    }
    out
}

fn looks_like_html(text: &str) -> bool {
    let head: String = text
        .chars()
        .take(512)
        .collect::<String>()
        .to_ascii_lowercase();
    let head = head.trim_start();
    head.starts_with("<!doctype html")
        || head.starts_with("<html")
        || (head.contains("<html")
            && !head.contains("<rss")
            && !head.contains("<feed")
            && !head.contains("<rdf"))
}

/// Lenient dates: RFC 2822 (also with a `JST` zone), RFC 3339, ISO 8601 without a zone (read in
/// `tz`), and a bare date (midnight in `tz`).
pub fn parse_date(s: &str, tz: Tz) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let rfc2822 = s.replace(" JST", " +0900").replace(" jst", " +0900");
    if let Ok(t) = DateTime::parse_from_rfc2822(&rfc2822) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%z",
        "%Y-%m-%dT%H:%M%:z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(t.with_timezone(&Utc));
        }
    }
    let local = |n: NaiveDateTime| {
        tz.from_local_datetime(&n)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
    };
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
        "%Y/%m/%d %H:%M:%S",
        "%Y/%m/%d %H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, fmt) {
            return local(n);
        }
    }
    for fmt in ["%Y-%m-%d", "%Y/%m/%d"] {
        if let Ok(d) = NaiveDate::parse_from_str(s, fmt) {
            return d.and_hms_opt(0, 0, 0).and_then(local);
        }
    }
    // RFC 2822 with a zone abbreviation chrono does not know: read the rest in the source zone.
    let without_zone = rfc2822.rsplit_once(' ').map(|(a, _)| a).unwrap_or(&rfc2822);
    NaiveDateTime::parse_from_str(without_zone, "%a, %d %b %Y %H:%M:%S")
        .ok()
        .and_then(local)
}

const XML_ENTITIES: [&str; 5] = ["amp", "lt", "gt", "quot", "apos"];

/// Repairs what lenient readers accept and XML parsers do not: bare `&`, HTML-only named
/// entities, control characters. CDATA sections and comments are copied untouched.
pub fn sanitize_xml(text: &str) -> Cow<'_, str> {
    let needs = text
        .bytes()
        .any(|b| b == b'&' || (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')))
        || text.contains('\u{7f}');
    if !needs {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("<![CDATA[") || rest.starts_with("<!--") {
            let close = if rest.starts_with("<!--") {
                "-->"
            } else {
                "]]>"
            };
            let end = rest[4..]
                .find(close)
                .map(|i| i + 4 + close.len())
                .unwrap_or(rest.len());
            out.push_str(&rest[..end]);
            rest = &rest[end..];
            continue;
        }
        match c {
            '&' => {
                let tail = &rest[1..];
                let end = tail
                    .char_indices()
                    .take(40)
                    .find(|(_, ch)| *ch == ';')
                    .map(|(i, _)| i);
                let name = end.map(|e| &tail[..e]);
                let valid_ref = name.is_some_and(|n| {
                    if let Some(num) = n.strip_prefix("#x").or_else(|| n.strip_prefix("#X")) {
                        !num.is_empty() && num.chars().all(|d| d.is_ascii_hexdigit())
                    } else if let Some(num) = n.strip_prefix('#') {
                        !num.is_empty() && num.chars().all(|d| d.is_ascii_digit())
                    } else {
                        XML_ENTITIES.contains(&n)
                    }
                });
                if valid_ref {
                    out.push('&');
                    rest = tail;
                    continue;
                }
                if let Some(n) =
                    name.filter(|n| !n.is_empty() && n.chars().all(|ch| ch.is_ascii_alphanumeric()))
                {
                    let entity = format!("&{n};");
                    let decoded = html_escape::decode_html_entities(&entity);
                    if decoded != entity {
                        for ch in decoded.chars() {
                            out.push_str(&format!("&#x{:X};", ch as u32));
                        }
                        rest = &tail[n.len() + 1..];
                        continue;
                    }
                }
                out.push_str("&amp;");
                rest = tail;
            }
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => rest = &rest[1..],
            '\u{7f}' => rest = &rest[1..],
            c => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    Cow::Owned(out)
}

/// Atom 0.3 (purl.org/atom/ns#) is read as Atom 1.0: same shape, older names for the dates.
fn atom03_to_atom10(text: &str) -> Cow<'_, str> {
    const NS03: &str = "http://purl.org/atom/ns#";
    if !text.contains(NS03) {
        return text.into();
    }
    let mut out = text
        .replace(NS03, "http://www.w3.org/2005/Atom")
        .replace("<issued>", "<published>")
        .replace("</issued>", "</published>")
        .replace("<modified>", "<updated>")
        .replace("</modified>", "</updated>");
    // 0.3 text constructs carried MIME types; 1.0 wants text/html/xhtml.
    for tag in ["title", "summary", "content", "tagline"] {
        out = out
            .replace(
                &format!("<{tag} type=\"text/plain\""),
                &format!("<{tag} type=\"text\""),
            )
            .replace(
                &format!("<{tag} type=\"text/html\""),
                &format!("<{tag} type=\"html\""),
            )
            .replace(
                &format!("<{tag} type=\"application/xhtml+xml\""),
                &format!("<{tag} type=\"xhtml\""),
            );
    }
    out.into()
}

/// Rewrites the prolog's encoding to UTF-8: the text is already decoded.
fn relabel_utf8(text: &str) -> Cow<'_, str> {
    if let Some(end) = text.starts_with("<?xml").then(|| text.find("?>")).flatten() {
        let prolog = &text[..end];
        if let Some(i) = prolog.find("encoding") {
            let after = &prolog[i..];
            if let Some(q_at) = after.find(['"', '\'']) {
                let q = after[q_at..].chars().next().unwrap_or('"');
                if let Some(close) = after[q_at + 1..].find(q) {
                    let stop = i + q_at + 1 + close + 1;
                    return format!("{}encoding=\"UTF-8\"{}", &text[..i], &text[stop..]).into();
                }
            }
        }
    }
    text.into()
}

/// Candidate repairs of a truncated document, best first: cut after the last complete item and
/// close the root; cut at the last complete tag and close the root.
fn truncation_repairs(text: &str) -> Vec<String> {
    let lower = text.to_ascii_lowercase();
    let closers = if lower.contains("<rdf:rdf") {
        "</rdf:RDF>"
    } else if lower.contains("<rss") {
        "</channel></rss>"
    } else if lower.contains("<feed") {
        "</feed>"
    } else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let last_item = ["</item>", "</entry>"]
        .iter()
        .filter_map(|t| lower.rfind(t).map(|i| i + t.len()))
        .max();
    if let Some(cut) = last_item {
        out.push(format!("{}{closers}", &text[..cut]));
    }
    if let Some(cut) = text.rfind('>') {
        let head = &text[..=cut];
        let head_lower = head.to_ascii_lowercase();
        let mut s = head.to_string();
        if closers == "</channel></rss>" {
            if !head_lower.contains("</channel>") {
                s.push_str("</channel>");
            }
            s.push_str("</rss>");
        } else {
            s.push_str(closers);
        }
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKYO: Tz = chrono_tz::Asia::Tokyo;

    const CTX: SourceCtx<'static> = SourceCtx {
        name: "s",
        item_kind: ItemKind::News,
        tz: TOKYO,
        url: None,
    };

    fn items(xml: &str) -> Vec<RawItem> {
        parse_feed(xml.as_bytes(), None, &CTX).unwrap().items
    }

    #[test]
    fn shift_jis_rss_from_its_prolog() {
        let rss = r#"<?xml version="1.0" encoding="Shift_JIS"?>
<rss version="2.0"><channel><title>テスト</title>
<item><title>7payで不正利用</title><link>https://example.jp/a?utm_source=x</link>
<guid>a-1</guid><pubDate>Wed, 03 Jul 2019 10:00:00 +0900</pubDate>
<description>&lt;p&gt;被害が&lt;b&gt;拡大&lt;/b&gt;&lt;/p&gt;</description></item>
<item><title>日付なし</title><link>https://example.jp/b</link></item>
</channel></rss>"#;
        let (bytes, _, _) = encoding_rs::SHIFT_JIS.encode(rss);
        let p = parse_feed(&bytes, Some("application/xml"), &CTX).unwrap();
        assert_eq!(
            (p.charset.encoding, p.charset.from),
            ("Shift_JIS", "prolog")
        );
        assert_eq!(p.items.len(), 2);
        assert_eq!(p.items[0].title, "7payで不正利用");
        assert_eq!(p.items[0].body, "被害が拡大");
        assert_eq!(p.items[0].guid.as_deref(), Some("a-1"));
        assert_eq!(
            p.items[0].published_at.unwrap().to_rfc3339(),
            "2019-07-03T01:00:00+00:00"
        );
        assert_eq!(p.items[1].guid, None);
        assert_eq!(p.items[1].published_at, None);
    }

    #[test]
    fn bare_ampersands_html_entities_and_control_characters_are_repaired() {
        let xml = "<rss version=\"2.0\"><channel><title>t</title>\
            <item><title>A&nbsp;&copy; 被害\u{1}</title><link>https://e.jp/a?x=1&y=2</link></item>\
            <item><title>&#x4E0D;&amp;正 &unknownthing; R&D</title><link>https://e.jp/b</link></item>\
            <item><title><![CDATA[a & b]]></title><link>https://e.jp/c</link></item></channel></rss>";
        let it = items(xml);
        assert_eq!(it.len(), 3);
        assert_eq!(it[0].title, "A © 被害");
        assert_eq!(it[0].url, "https://e.jp/a?x=1&y=2");
        assert_eq!(it[1].title, "不&正 &unknownthing; R&D");
        assert_eq!(it[2].title, "a & b");
    }

    #[test]
    fn a_truncated_document_keeps_its_complete_items() {
        let xml = "\n<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>t</title>\
            <item><title>一件目</title><link>https://e.jp/1</link></item>\
            <item><title>二件目</title><link>https://e.jp/2</link></item>\
            <item><title>三件目</title><link>https://e.j";
        let p = parse_feed(xml.as_bytes(), None, &CTX).unwrap();
        assert_eq!(
            p.items.iter().map(|i| i.title.as_str()).collect::<Vec<_>>(),
            ["一件目", "二件目"]
        );
        assert!(p.repairs.contains(&"truncated document closed"));
        // Channel only, cut inside a comment: accepted with no items.
        let channel_only = "<rss version=\"2.0\"><channel><title>t</title><!-- error -->";
        assert_eq!(items(channel_only).len(), 0);
    }

    #[test]
    fn rdf_dc_subject_and_rss_category_become_tags() {
        let rdf = r#"<?xml version="1.0"?><rdf:RDF xmlns="http://purl.org/rss/1.0/" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns:dc="http://purl.org/dc/elements/1.1/">
            <channel rdf:about="https://e.jp/"><title>t</title><link>https://e.jp/</link><description>d</description></channel>
            <item rdf:about="https://e.jp/1"><title>7pay</title><link>https://e.jp/1</link><dc:subject>決済</dc:subject><dc:date>2019-07-03T10:00:00+09:00</dc:date></item></rdf:RDF>"#;
        let it = items(rdf);
        assert_eq!(it[0].tags, ["決済"]);
        assert_eq!(
            it[0].published_at.unwrap().to_rfc3339(),
            "2019-07-03T01:00:00+00:00"
        );
        let rss = "<rss version=\"2.0\"><channel><title>t</title><item><title>x</title><link>https://e.jp/2</link><category>経済</category><category>IT</category></item></channel></rss>";
        assert_eq!(items(rss)[0].tags, ["経済", "IT"]);
    }

    #[test]
    fn hatena_bookmark_counts_are_kept() {
        let xml = r#"<?xml version="1.0"?><rdf:RDF xmlns="http://purl.org/rss/1.0/" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns:hatena="http://www.hatena.ne.jp/info/xmlns#">
            <channel rdf:about="https://b.hatena.ne.jp/"><title>t</title><link>https://b.hatena.ne.jp/</link><description>d</description></channel>
            <item rdf:about="https://e.jp/7pay?a=1&amp;b=2"><title>7pay</title><link>https://e.jp/7pay?a=1&amp;b=2</link><hatena:bookmarkcount>1234</hatena:bookmarkcount></item>
            <item rdf:about="https://e.jp/x"><title>x</title><link>https://e.jp/x</link></item></rdf:RDF>"#;
        let it = items(xml);
        assert_eq!(it[0].bookmarks, Some(1234));
        assert_eq!(it[1].bookmarks, None);
    }

    #[test]
    fn atom_0_3_reads_like_atom_1_0() {
        let xml = r#"<?xml version="1.0"?><feed version="0.3" xmlns="http://purl.org/atom/ns#"><title>t</title>
            <entry><title>節税</title><link rel="alternate" type="text/html" href="http://e.jp/1"/>
            <issued>2005-10-13T00:52:02Z</issued><id>tag:e.jp,2005:1</id></entry></feed>"#;
        let it = items(xml);
        assert_eq!(it.len(), 1);
        assert_eq!(
            it[0].published_at.unwrap().to_rfc3339(),
            "2005-10-13T00:52:02+00:00"
        );
    }

    #[test]
    fn html_and_garbage_are_errors_not_panics() {
        let html =
            "<!DOCTYPE html><html><head><title>Not a feed</title></head><body>x</body></html>";
        assert!(matches!(
            parse_feed(html.as_bytes(), None, &CTX),
            Err(CrawlError::NotAFeed(_))
        ));
        assert!(parse_feed(b"\x00\x01 not xml", None, &CTX).is_err());
    }

    #[test]
    fn dates_table() {
        let rows = [
            (
                "Wed, 03 Jul 2019 10:00:00 +0900",
                "2019-07-03T01:00:00+00:00",
            ),
            ("Wed, 03 Jul 2019 10:00:00 JST", "2019-07-03T01:00:00+00:00"),
            ("Wed, 03 Jul 2019 01:00:00 GMT", "2019-07-03T01:00:00+00:00"),
            ("2019-07-03T10:00:00+09:00", "2019-07-03T01:00:00+00:00"),
            ("2006-01-03 21:32:56", "2006-01-03T12:32:56+00:00"),
            ("2006-01-03T21:32:56", "2006-01-03T12:32:56+00:00"),
            ("2019-07-03", "2019-07-02T15:00:00+00:00"),
        ];
        for (s, want) in rows {
            assert_eq!(
                parse_date(s, TOKYO).map(|t| t.to_rfc3339()).as_deref(),
                Some(want),
                "{s}"
            );
        }
        assert_eq!(parse_date("", TOKYO), None);
        assert_eq!(parse_date("someday", TOKYO), None);
        // The source's zone, when it is not Tokyo.
        assert_eq!(
            parse_date("2019-07-03 10:00:00", chrono_tz::UTC)
                .unwrap()
                .to_rfc3339(),
            "2019-07-03T10:00:00+00:00"
        );
    }
}
