//! Bounded fuzz runs on the stable toolchain (no cargo-fuzz, no nightly): seeded mutations of
//! seed inputs for three targets that take outside input — feed decoding, normalization and
//! tokenization, and the query parser. None may panic, and each checks invariants of its
//! output.
//!
//! By default every target runs a fixed number of iterations from a fixed seed (part of
//! `cargo test`, deterministic). The CI fuzz step sets `FUZZ_SECS` (time per target)
//! and `FUZZ_SEED` (a new seed each run); a failing input is printed with the seed and
//! iteration, and the same seed replays the same sequence.
use crate::fixtures;
use kizashi::crawl::{article, charset, parse_feed, SourceCtx};
use kizashi::domain::ItemKind;
use std::time::{Duration, Instant};

/// How long a target runs and from which seed.
struct Run {
    seed: u64,
    iterations: usize,
    until: Option<Instant>,
}

impl Run {
    fn from_env(default_iterations: usize) -> Self {
        let secs = std::env::var("FUZZ_SECS")
            .ok()
            .and_then(|s| s.parse::<u64>().ok());
        let seed = std::env::var("FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0x9E3779B97F4A7C15)
            .max(1);
        Self {
            seed,
            iterations: if secs.is_some() {
                usize::MAX
            } else {
                default_iterations
            },
            until: secs.map(|s| Instant::now() + Duration::from_secs(s)),
        }
    }

    fn going(&self, i: usize) -> bool {
        i < self.iterations
            && self
                .until
                .is_none_or(|u| !i.is_multiple_of(64) || Instant::now() < u)
    }

    /// Runs `f` on one input; a panic is reported with what replays it.
    fn case<T>(&self, i: usize, input: &dyn std::fmt::Debug, f: impl FnOnce() -> T) -> T {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(v) => v,
            Err(p) => {
                eprintln!(
                    "fuzz failure: FUZZ_SEED={} iteration {i}, input {input:?}",
                    self.seed
                );
                std::panic::resume_unwind(p)
            }
        }
    }
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "&",
    "&amp;",
    "&#x",
    "&nbsp;",
    ";",
    "<",
    ">",
    "</item>",
    "<item>",
    "<![CDATA[",
    "]]>",
    "<!--",
    "-->",
    "<?xml version=\"1.0\" encoding=\"Shift_JIS\"?>",
    "\u{feff}",
    "\0",
    "\u{1}",
    "<entry>",
    "</feed>",
    "{",
    "}",
    "[",
    "\"posts\":",
    "\"content\":",
    "\u{FFFD}",
    "ｾﾌﾞﾝﾍﾟｲ",
    "不正利用",
    "<link>",
    "</link>",
    "<pubDate>",
    "Wed, 31 Feb 2019 99:99:99 JST",
];

fn mutate(rng: &mut XorShift, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(6) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let cut = rng.below(v.len() + 1);
                v.truncate(cut);
            }
            2 => {
                let i = rng.below(v.len() + 1);
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                v.splice(i..i, t.iter().copied());
            }
            3 if v.len() > 2 => {
                let (a, b) = (rng.below(v.len()), rng.below(v.len()));
                let (a, b) = (a.min(b), a.max(b));
                let slice = v[a..b].to_vec();
                let i = rng.below(v.len() + 1);
                v.splice(i..i, slice);
            }
            4 => {
                let i = rng.below(v.len() + 1);
                let n = rng.below(16);
                let noise: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(i..i, noise);
            }
            _ => {
                let s = String::from_utf8_lossy(&v).into_owned();
                v = encoding_rs::SHIFT_JIS.encode(&s).0.into_owned();
            }
        }
    }
    v
}

#[test]
fn feed_decoding_survives_ten_thousand_mutations() {
    let base = "https://news.example.jp";
    let seeds: Vec<Vec<u8>> = vec![
        fixtures::rss2(base, fixtures::NEWS).into_bytes(),
        fixtures::atom(base, fixtures::SOCIAL).into_bytes(),
        fixtures::rdf_shift_jis(base, fixtures::RDF_ROWS),
        br#"[{"id":"1","url":"https://m.example/@a/1","created_at":"2019-07-03T01:00:00Z","content":"<p>7pay</p>","account":{"acct":"a"}}]"#.to_vec(),
        br#"{"posts":[{"uri":"at://d/app.bsky.feed.post/3","author":{"handle":"h"},"record":{"text":"x","createdAt":"2019"}}]}"#.to_vec(),
        br#"{"version":"https://jsonfeed.org/version/1.1","title":"t","items":[{"id":"1","url":"https://e.jp/1","content_text":"x"}]}"#.to_vec(),
        b"<html><head><title>t</title></head><body><p>x</p></body></html>".to_vec(),
    ];
    let ctx = SourceCtx {
        name: "fuzz",
        item_kind: ItemKind::News,
        tz: chrono_tz::Asia::Tokyo,
        url: Some(base),
    };
    let run = Run::from_env(10_000);
    let mut rng = XorShift(run.seed);
    let (mut parsed, mut i) = (0, 0);
    while run.going(i) {
        let input = mutate(&mut rng, &seeds[i % seeds.len()]);
        let ct = [
            None,
            Some("text/xml; charset=utf-8"),
            Some("application/json"),
            Some("text/html; charset=euc-jp"),
        ][i % 4];
        let ok = run.case(i, &String::from_utf8_lossy(&input), || {
            let _ = charset::decode(&input, ct);
            if i % 10 == 0 {
                let _ = article::extract(&input, ct);
            }
            parse_feed(&input, ct, &ctx).is_ok()
        });
        parsed += usize::from(ok);
        i += 1;
    }
    eprintln!("fuzz feeds: {i} inputs, seed {}", run.seed);
    // Many mutated feeds stay readable (JSON and HTML seeds never do): leniency is doing its
    // job, not just rejecting.
    assert!(
        parsed * 100 > i * 15,
        "only {parsed} of {i} mutated documents parsed"
    );
}

/// Japanese text with the variation the analyzer must survive: widths, iteration marks,
/// composed characters, emoji with modifiers, combining marks, control and private-use
/// characters, HTML, very long runs.
const TEXT_SEEDS: &[&str] = &[
    "7payで不正利用、被害相次ぐ。セブンペイ使えないんだけど…怖い😱",
    "ＰａｙＰａｙ　還元キャンペーン！！　ｾﾌﾞﾝﾍﾟｲ ㍿ ㌔ ①②③ 々ゝゞヽヾ",
    "<p>二段階認証が<b>未導入</b>&amp;申し込み&#x3042;</p><script>x</script>",
    "👨‍👩‍👧‍👦🏳️‍🌈 e\u{301} か\u{3099} \u{200b}\u{feff}\u{202e}abc\u{0}\u{7}",
    "サーバーサーバーサーバーーーーーーーーーーーーーーーーーーーー",
    "ｱｲｳｴｵｶﾞｷﾞｸﾞｹﾞｺﾞﾊﾟﾋﾟﾌﾟﾍﾟﾎﾟ\u{e000}\u{10ffff}",
    "不正アクセスを受け、クレジットカードからのチャージを一時停止した。被害額は約5500万円。",
];

fn mutate_text(rng: &mut XorShift, input: &str) -> String {
    let mut chars: Vec<char> = input.chars().collect();
    for _ in 0..1 + rng.below(6) {
        match rng.below(6) {
            0 if !chars.is_empty() => {
                let i = rng.below(chars.len());
                chars.remove(i);
            }
            1 => {
                // any scalar value, weighted towards the BMP's CJK and compatibility blocks
                let c = match rng.below(3) {
                    0 => char::from_u32(0x3000 + rng.below(0x7000) as u32),
                    1 => char::from_u32(0xFF00 + rng.below(0x100) as u32),
                    _ => char::from_u32(rng.below(0x110000) as u32),
                };
                let i = rng.below(chars.len() + 1);
                chars.insert(i, c.unwrap_or('\u{FFFD}'));
            }
            2 if chars.len() > 2 => {
                let (a, b) = (rng.below(chars.len()), rng.below(chars.len()));
                let (a, b) = (a.min(b), a.max(b));
                let slice: Vec<char> = chars[a..b].to_vec();
                let i = rng.below(chars.len() + 1);
                chars.splice(
                    i..i,
                    slice
                        .iter()
                        .copied()
                        .cycle()
                        .take(slice.len() * (1 + rng.below(20))),
                );
            }
            3 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                let i = rng.below(chars.len() + 1);
                chars.splice(i..i, t.chars());
            }
            4 => {
                let cut = rng.below(chars.len() + 1);
                chars.truncate(cut);
            }
            _ => {
                let other = TEXT_SEEDS[rng.below(TEXT_SEEDS.len())];
                chars.extend(other.chars());
            }
        }
    }
    chars.into_iter().collect()
}

#[test]
fn normalization_and_tokenization_survive_mutated_text() {
    let pipeline =
        kizashi::pipeline::Pipeline::new(&kizashi::dictionaries::Dictionaries::builtin()).unwrap();
    let analyzer = pipeline.analyzer();
    let run = Run::from_env(1_500);
    let mut rng = XorShift(run.seed ^ 0x5151);
    let mut i = 0;
    while run.going(i) {
        let text = mutate_text(&mut rng, TEXT_SEEDS[i % TEXT_SEEDS.len()]);
        run.case(i, &text, || {
            let plain = kizashi::text::html_to_text(&text);
            let tokens = analyzer.tokenize(&plain).expect("tokenizes");
            let mut last_position = 0;
            for t in &tokens {
                // Offsets slice the original text; positions never go back.
                assert!(t.start <= t.end && t.end <= plain.len(), "{t:?}");
                assert!(plain.is_char_boundary(t.start) && plain.is_char_boundary(t.end));
                assert!(t.position >= last_position, "{t:?}");
                last_position = t.position;
                let _ = kizashi::search::search_form(&t.text);
            }
            let grams = kizashi::search::bigrams(&plain);
            for g in &grams {
                assert!(g.offset_from <= g.offset_to && g.offset_to <= plain.len());
            }
            let analysis = pipeline.analyze_text(&plain).expect("analyzes");
            serde_json::to_string(&analysis).expect("serializes");
            let _ = kizashi::text::truncate_chars(&plain, 7);
        });
        i += 1;
    }
    eprintln!("fuzz text: {i} inputs, seed {}", run.seed);
}

/// Pieces of the query language and of what users paste into a search box.
const QUERY_PARTS: &[&str] = &[
    "7pay",
    "不正利用",
    "セブンペイ",
    "ＰａｙＰａｙ",
    "二段階認証",
    "サーバー",
    "申し込み",
    " ",
    " ",
    " ",
    "OR",
    "AND",
    "NOT",
    "-",
    "+",
    "\"",
    "\"",
    "(",
    ")",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "title:",
    "service:",
    "category:",
    "sentiment:",
    "kind:",
    "source:",
    "tag:",
    "published:",
    "base:",
    "grams:",
    "nosuchfield:",
    "*",
    "~",
    "~2",
    "^",
    "^3",
    "\\",
    ":",
    "'",
    "TO",
    "IN",
    "published:[2019-07-01T00:00:00Z TO *]",
    "\u{0}",
    "\u{3000}",
    "😱",
    "ｾﾌﾞﾝ",
    "㍿",
    "&amp;",
    "<b>",
    "%",
    "?",
    "!",
    "/",
    "https://example.jp/a?b=c",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_parser_answers_every_query_with_results_or_a_400() {
    let dir = tempfile::tempdir().unwrap();
    let app = crate::spawn_app_with(crate::test_settings(dir.path(), &[]), Some(dir)).await;
    let raws = fixtures::NEWS
        .iter()
        .map(|r| kizashi::domain::RawItem {
            source: "fuzz".into(),
            guid: Some(r.id.into()),
            url: fixtures::url_of("https://news.example.jp", r.id),
            title: r.title.into(),
            body: r.body.into(),
            published_at: chrono::DateTime::parse_from_rfc3339(r.published)
                .ok()
                .map(|t| t.with_timezone(&chrono::Utc)),
            author: None,
            kind: ItemKind::News,
            bookmarks: None,
            tags: vec!["決済".into()],
        })
        .collect();
    let state = app.state.clone();
    state
        .pipeline
        .ingest(&state.store, raws, crate::test_now())
        .await
        .unwrap();
    state.index_notify.notify_one();
    app.wait_indexed().await;
    let run = Run::from_env(1_500);
    let mut rng = XorShift(run.seed ^ 0xC0FFEE);
    let (mut i, mut answered) = (0, 0);
    while run.going(i) {
        let n = 1 + rng.below(12);
        let mut q: String = (0..n)
            .map(|_| QUERY_PARTS[rng.below(QUERY_PARTS.len())])
            .collect();
        if i % 50 == 0 {
            // now and then something long: nesting, many alternatives, one huge word
            q = match rng.below(3) {
                0 => format!(
                    "{}7pay{}",
                    "(".repeat(rng.below(40)),
                    ")".repeat(rng.below(40))
                ),
                1 => vec!["不正"; rng.below(80)].join(" OR "),
                _ => "認証".repeat(rng.below(300)),
            };
        }
        let req = kizashi::search::SearchRequest {
            q: q.clone(),
            limit: 5,
            with_facets: i % 2 == 0,
            sort: if i % 3 == 0 {
                kizashi::search::SortBy::Newest
            } else {
                kizashi::search::SortBy::Relevance
            },
            ..Default::default()
        };
        let result = state.index.search(&state.store, &req).await;
        run.case(i, &q, || match result {
            Ok(r) => {
                assert!(r.hits.len() <= 5 && r.hits.len() <= r.total);
                for h in &r.hits {
                    // snippets are HTML-safe: only <b> survives as markup
                    let stripped = h.snippet.replace("<b>", "").replace("</b>", "");
                    assert!(!stripped.contains('<'), "{}", h.snippet);
                }
            }
            Err(e) => match kizashi::web::error::WebError::from(e) {
                kizashi::web::error::WebError::BadRequest(msg) => assert!(!msg.is_empty()),
                other => panic!("not a 400: {other:?}"),
            },
        });
        answered += 1;
        i += 1;
    }
    assert_eq!(answered, i);
    eprintln!("fuzz queries: {i} inputs, seed {}", run.seed);
}
