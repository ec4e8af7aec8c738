//! The one crawler test whose expected results nobody on the team wrote: every real-world file
//! in ../shared/corpus/feeds is decoded in place and compared with its INDEX.tsv row (item
//! count and first title). Skipped with a notice where the corpus is absent.
use kizashi::crawl::{article, parse_feed, CrawlError, SourceCtx};
use kizashi::domain::ItemKind;
use std::path::PathBuf;

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('\\') => out.push('\\'),
                Some(o) => {
                    out.push('\\');
                    out.push(o)
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Titles are compared with whitespace removed: the index trims, our reader also folds runs.
fn squash(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

#[test]
fn shared_real_world_feeds_match_their_index() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/feeds");
    let Ok(index) = std::fs::read_to_string(dir.join("INDEX.tsv")) else {
        eprintln!(
            "NOTICE: {} is absent; the real-world feed check is skipped",
            dir.display()
        );
        return;
    };
    let mut header: Vec<&str> = Vec::new();
    let mut failures = Vec::new();
    let mut checked = 0;
    for line in index.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        if header.is_empty() {
            header = cols;
            continue;
        }
        let col = |name: &str| cols[header.iter().position(|h| *h == name).unwrap()];
        let file = col("file");
        let format = col("format");
        let want_items: usize = col("expected_items").parse().unwrap();
        let want_title = unescape(col("expected_first_title"));
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let ctx = SourceCtx {
            name: "corpus",
            item_kind: ItemKind::News,
            tz: chrono_tz::Asia::Tokyo,
            url: Some("https://example.jp/"),
        };
        checked += 1;
        let (count, first) = if format.starts_with("HTML article") || format.starts_with("HTTP/1.1")
        {
            let (ct, body) = article::split_http_dump(&bytes).unwrap_or((None, &bytes));
            let a = article::extract(body, ct.as_deref());
            (1, Some(a.title))
        } else if format.starts_with("HTML (not a feed)") {
            match parse_feed(&bytes, Some("text/html"), &ctx) {
                Err(CrawlError::NotAFeed(_)) => continue,
                other => {
                    failures.push(format!("{file}: want NotAFeed, got {other:?}"));
                    continue;
                }
            }
        } else {
            match parse_feed(&bytes, None, &ctx) {
                Ok(p) => {
                    let first = p.items.first().map(|i| {
                        if i.title.is_empty() {
                            i.body.clone()
                        } else {
                            i.title.clone()
                        }
                    });
                    (p.items.len(), first)
                }
                Err(e) => {
                    failures.push(format!("{file}: {e}"));
                    continue;
                }
            }
        };
        if count != want_items {
            failures.push(format!("{file}: {count} items, want {want_items}"));
        }
        let want = if want_title == "(none)" {
            None
        } else {
            Some(squash(&want_title))
        };
        let got = first
            .map(|t| squash(&t))
            .filter(|t| !t.is_empty() || want.as_deref() == Some(""));
        if want_items > 0 && got != want {
            failures.push(format!("{file}: first title {got:?}, want {want:?}"));
        }
    }
    assert!(checked >= 24, "only {checked} rows in INDEX.tsv");
    assert!(
        failures.is_empty(),
        "{} of {checked} files differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
