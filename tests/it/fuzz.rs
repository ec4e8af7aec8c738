//! A bounded fuzz run of feed decoding on the stable toolchain: seeded mutations (bit flips,
//! truncation, splices, random insertions, encodings) of fixture documents must never panic.
//! Deterministic, so a failure reproduces; the iteration count bounds its time.
use crate::fixtures;
use kizashi::crawl::{article, charset, parse_feed, SourceCtx};
use kizashi::domain::ItemKind;

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
    let mut rng = XorShift(0x9E3779B97F4A7C15);
    let mut parsed = 0;
    for i in 0..10_000 {
        let input = mutate(&mut rng, &seeds[i % seeds.len()]);
        let ct = [
            None,
            Some("text/xml; charset=utf-8"),
            Some("application/json"),
            Some("text/html; charset=euc-jp"),
        ][i % 4];
        let _ = charset::decode(&input, ct);
        if parse_feed(&input, ct, &ctx).is_ok() {
            parsed += 1;
        }
        if i % 10 == 0 {
            let _ = article::extract(&input, ct);
        }
    }
    // Many mutated feeds stay readable (JSON and HTML seeds never do): leniency is doing its
    // job, not just rejecting.
    assert!(
        parsed > 1_500,
        "only {parsed} of 10000 mutated documents parsed"
    );
}
