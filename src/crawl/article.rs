//! HTML article pages: the page title and its main text (the block with the most paragraph
//! text), for sources that link to articles and for pages served where a feed was expected.
use super::charset::{decode, CharsetDecision};
use scraper::{ElementRef, Html, Selector};

#[derive(Debug, Clone, PartialEq)]
pub struct Article {
    pub title: String,
    pub text: String,
    pub charset: CharsetDecision,
}

/// Splits a raw HTTP response dump (`HTTP/1.1 200 OK` … blank line … body) into its
/// Content-Type and body.
pub fn split_http_dump(bytes: &[u8]) -> Option<(Option<String>, &[u8])> {
    if !bytes.starts_with(b"HTTP/") {
        return None;
    }
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))?;
    let head = String::from_utf8_lossy(&bytes[..end]);
    let ct = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-type")
            .then(|| v.trim().to_string())
    });
    Some((ct, &bytes[end..]))
}

fn text_of(e: ElementRef<'_>) -> String {
    crate::text::html_to_text(&e.inner_html())
}

pub fn extract(bytes: &[u8], content_type: Option<&str>) -> Article {
    let (html, charset) = decode(bytes, content_type);
    let doc = Html::parse_document(&html);
    let sel = |s: &str| Selector::parse(s).ok();
    let title = sel("title")
        .and_then(|s| doc.select(&s).next())
        .map(|t| t.text().collect::<String>().trim().to_string())
        .unwrap_or_default();
    // The container whose own <p> children hold the most text (direct children only, so the
    // cost stays linear in the page size).
    let mut best = (0usize, String::new());
    if let Some(containers) = sel("article, main, section, div, td, body") {
        for c in doc.select(&containers) {
            let text: String = c
                .children()
                .filter_map(ElementRef::wrap)
                .filter(|p| p.value().name() == "p")
                .map(|p| text_of(p) + "\n")
                .collect();
            let len = text.chars().count();
            if len > best.0 {
                best = (len, text);
            }
        }
    }
    let text = if best.0 > 0 {
        crate::text::collapse_whitespace(&best.1)
    } else {
        sel("body")
            .and_then(|s| doc.select(&s).next())
            .map(text_of)
            .unwrap_or_default()
    };
    Article {
        title,
        text,
        charset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_and_main_text() {
        let page = "<html><head><title>7payの不正利用 - ニュース</title></head><body>\
            <nav><p>メニュー</p></nav><article><p>セブンペイで不正利用が発覚した。</p><p>被害は約900人。</p></article>\
            <footer><p>©</p></footer></body></html>";
        let a = extract(page.as_bytes(), Some("text/html; charset=utf-8"));
        assert_eq!(a.title, "7payの不正利用 - ニュース");
        assert_eq!(a.text, "セブンペイで不正利用が発覚した。\n被害は約900人。");
    }

    #[test]
    fn http_dumps_split_into_header_and_body() {
        let (ct, body) =
            split_http_dump(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<p>x</p>").unwrap();
        assert_eq!(ct.as_deref(), Some("text/html"));
        assert_eq!(body, b"<p>x</p>");
        assert!(split_http_dump(b"<p>x</p>").is_none());
    }
}
