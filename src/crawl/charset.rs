//! Charset decisions from bytes: BOM → valid UTF-8 → HTTP charset → XML prolog / HTML meta →
//! detection (chardetng, Japanese TLD hint) → lossy UTF-8. The decision is recorded.
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CharsetDecision {
    pub encoding: &'static str,
    /// bom | utf8 | http | prolog | detected
    pub from: &'static str,
    /// Whether undecodable bytes were replaced by U+FFFD.
    pub lossy: bool,
}

impl std::fmt::Display for CharsetDecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}{})",
            self.encoding,
            self.from,
            if self.lossy { ", lossy" } else { "" }
        )
    }
}

/// Decodes `bytes` to a String, choosing the charset as documented above.
///
/// Valid UTF-8 with non-ASCII content wins over a declaration: a prolog that says ISO-8859-1
/// over UTF-8 bytes is a lie seen in the wild, and Shift_JIS or EUC-JP text is practically
/// never valid UTF-8. A declaration that does not decode cleanly is ignored in favour of
/// detection.
pub fn decode(bytes: &[u8], content_type: Option<&str>) -> (String, CharsetDecision) {
    if let Some((enc, bom_len)) = encoding_rs::Encoding::for_bom(bytes) {
        let (text, lossy) = enc.decode_without_bom_handling(&bytes[bom_len..]);
        return (text.into_owned(), decision(enc, "bom", lossy));
    }
    let declared = content_type
        .and_then(charset_param)
        .and_then(|label| encoding_rs::Encoding::for_label(label.trim().as_bytes()))
        .map(|e| (e, "http"))
        .or_else(|| {
            sniff_declaration(bytes)
                .and_then(|label| encoding_rs::Encoding::for_label(label.as_bytes()))
                .map(|e| (e, "prolog"))
        });
    if !bytes.is_ascii() {
        if let Ok(text) = std::str::from_utf8(bytes) {
            let from = match declared {
                Some((e, from)) if e == encoding_rs::UTF_8 => from,
                _ => "utf8",
            };
            return (text.to_string(), decision(encoding_rs::UTF_8, from, false));
        }
    }
    if let Some((enc, from)) = declared {
        // UTF-16 declared in a prolog of an ASCII-compatible document is impossible.
        if enc != encoding_rs::UTF_16LE && enc != encoding_rs::UTF_16BE {
            if let Some(text) = enc.decode_without_bom_handling_and_without_replacement(bytes) {
                return (text.into_owned(), decision(enc, from, false));
            }
        }
    }
    // ISO-2022-JP is 7-bit: ASCII bytes with escape sequences still need detection.
    if bytes.is_ascii() && !bytes.contains(&0x1B) {
        return (
            String::from_utf8_lossy(bytes).into_owned(),
            decision(encoding_rs::UTF_8, "utf8", false),
        );
    }
    let mut detector = chardetng::EncodingDetector::new();
    detector.feed(bytes, true);
    let enc = detector.guess(Some(b"jp"), true);
    let (text, _, lossy) = enc.decode(bytes);
    (text.into_owned(), decision(enc, "detected", lossy))
}

fn decision(
    enc: &'static encoding_rs::Encoding,
    from: &'static str,
    lossy: bool,
) -> CharsetDecision {
    CharsetDecision {
        encoding: enc.name(),
        from,
        lossy,
    }
}

/// The `charset` parameter of a Content-Type header.
pub fn charset_param(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches(['"', '\'']).to_string())
            .filter(|v| !v.is_empty())
    })
}

/// The encoding named by an XML prolog (`encoding="…"`) or an HTML meta tag (`charset=…`)
/// within the first 2 KiB, read as ASCII.
pub fn sniff_declaration(bytes: &[u8]) -> Option<String> {
    let head = &bytes[..bytes.len().min(2048)];
    let head: String = head
        .iter()
        .map(|&b| {
            if b.is_ascii() {
                b.to_ascii_lowercase() as char
            } else {
                ' '
            }
        })
        .collect();
    let value_after = |key: &str| -> Option<String> {
        let i = head.find(key)? + key.len();
        let rest =
            head[i..].trim_start_matches(|c: char| c == '"' || c == '\'' || c.is_whitespace());
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
            .unwrap_or(rest.len());
        Some(rest[..end].to_string()).filter(|s| !s.is_empty())
    };
    if head.trim_start().starts_with("<?xml") {
        let prolog_end = head.find("?>").unwrap_or(head.len());
        if let Some(v) = head[..prolog_end]
            .find("encoding")
            .and_then(|_| value_after("encoding="))
        {
            return Some(v);
        }
    }
    value_after("charset=")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_table() {
        let sjis = encoding_rs::SHIFT_JIS
            .encode("不正利用の被害が拡大しています。")
            .0
            .into_owned();
        let euc = encoding_rs::EUC_JP
            .encode("不正アクセスの被害が拡大しています。")
            .0
            .into_owned();
        let jis = encoding_rs::ISO_2022_JP
            .encode("二段階認証を導入します。")
            .0
            .into_owned();
        let mut prolog_sjis = b"<?xml version=\"1.0\" encoding=\"Shift_JIS\"?><a>".to_vec();
        prolog_sjis.extend_from_slice(&sjis);
        let mut latin_lie = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a>".to_vec();
        latin_lie.extend_from_slice("Café 認証".as_bytes());
        let mut bom = vec![0xEF, 0xBB, 0xBF];
        bom.extend_from_slice("7pay".as_bytes());
        bom.push(0xF1);
        let rows: Vec<(&[u8], Option<&str>, &str, &str)> = vec![
            (&prolog_sjis, None, "Shift_JIS", "prolog"),
            (
                &sjis,
                Some("text/xml; charset=Shift_JIS"),
                "Shift_JIS",
                "http",
            ),
            (
                &sjis,
                Some("text/xml; charset=utf-8"),
                "Shift_JIS",
                "detected",
            ),
            (&sjis, None, "Shift_JIS", "detected"),
            (&euc, None, "EUC-JP", "detected"),
            (
                &jis,
                Some("text/plain; charset=iso-2022-jp"),
                "ISO-2022-JP",
                "http",
            ),
            (&latin_lie, None, "UTF-8", "utf8"),
            (&bom, Some("text/xml; charset=Shift_JIS"), "UTF-8", "bom"),
            (b"<a>ascii</a>", None, "UTF-8", "utf8"),
        ];
        for (bytes, ct, enc, from) in rows {
            let (_, d) = decode(bytes, ct);
            assert_eq!(
                (d.encoding, d.from),
                (enc, from),
                "{ct:?} {:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let (text, d) = decode(&bom, None);
        assert!(d.lossy);
        assert_eq!(text, "7pay\u{FFFD}");
        assert_eq!(decode(&euc, None).0, "不正アクセスの被害が拡大しています。");
        assert_eq!(decode(&jis, None).0, "二段階認証を導入します。");
    }

    #[test]
    fn html_meta_labels_are_found() {
        assert_eq!(
            sniff_declaration(b"<HTML><HEAD><META HTTP-EQUIV=\"Content-Type\" CONTENT=\"text/html; CHARSET=x-sjis\">").as_deref(),
            Some("x-sjis")
        );
        assert_eq!(
            sniff_declaration(b"\n<?xml version='1.0' encoding='euc-jp'?>").as_deref(),
            Some("euc-jp")
        );
    }
}
