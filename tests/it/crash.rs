//! Crash safety of the real binary: `kizashi import`, `crawl --once`, `reanalyze` and `serve`
//! (catching up and rebuilding after `reindex`) are killed with SIGKILL at random moments, at
//! least ten times, and restarted. Each reanalysis runs with the other of two lexicons (お得
//! positive or negative), so it rewrites every item. Committed items never disappear between
//! kills; after a final clean import, crawl and reanalysis and an index catch-up, every item
//! the inputs hold is stored exactly once, every stored item is in the index exactly once,
//! and the index carries the last analysis (its sentiment counts equal the database's).
use crate::fixtures::{FixtureServer, Response};
use crate::{enc, spawn_app_with, test_settings};
use kizashi::search::SearchRequest;
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const IMPORTED: usize = 1_500;
const SOURCES: usize = 4;
const PER_SOURCE: usize = 50;

struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn kizashi(dir: &std::path::Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kizashi"))
        .env("KIZASHI_DATA_DIR", dir)
        .env("KIZASHI_BIND", "127.0.0.1:0")
        .env("KIZASHI_LOG", "error")
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Runs to the end; panics unless it succeeds.
fn finish(dir: &std::path::Path, args: &[&str]) {
    let status = kizashi(dir, args).wait().unwrap();
    assert!(status.success(), "kizashi {args:?}: {status}");
}

fn import_line(i: usize) -> String {
    let body = if i.is_multiple_of(3) {
        format!("PayPayで不正利用の報告、その{i}。被害額を調査中。")
    } else {
        format!("PayPayの還元キャンペーン、その{i}。お得だと話題。")
    };
    serde_json::json!({
        "url": format!("https://import.example.jp/a/{i}"),
        "title": format!("記事{i}"),
        "body": body,
        "published_at": format!("2019-07-{:02}T{:02}:00:00+09:00", 1 + i % 5, i % 24),
        "source": "crash-import",
        "kind": if i.is_multiple_of(2) { "news" } else { "social" },
        "author": if i.is_multiple_of(2) { None } else { Some(format!("u{}", i % 11)) },
    })
    .to_string()
}

fn feed(s: usize) -> String {
    let items: String = (0..PER_SOURCE)
        .map(|i| {
            format!(
                "<item><title>フィード{s}の記事{i}</title><link>https://feed{s}.example.jp/{i}</link>\
                 <guid>feed{s}-{i}</guid><description>7payのチャージ停止について{i}</description>\
                 <pubDate>Wed, 03 Jul 2019 {:02}:00:00 +0900</pubDate></item>",
                i % 24
            )
        })
        .collect();
    format!("<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>f{s}</title>{items}</channel></rss>")
}

/// Ids of committed items, read from the database while no process runs.
async fn committed_ids(dir: &std::path::Path) -> BTreeSet<i64> {
    let store = kizashi::store::Store::open(dir).await.unwrap();
    let ids = store.item_ids_after(0, 1_000_000).await.unwrap();
    store.close().await;
    ids.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_nothing_and_counts_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let server = FixtureServer::start().await;
    // Two lexicons: the built-in one, and one where お得 (in two thirds of the imported items)
    // is negative.
    let lexicon = include_str!("../../dictionaries/sentiment.tsv");
    assert!(lexicon.contains("\nお得\t0.7\n"));
    let dicts = [path.join("dict-a"), path.join("dict-b")];
    for (d, text) in dicts.iter().zip([
        lexicon.to_string(),
        lexicon.replace("\nお得\t0.7\n", "\nお得\t-0.7\n"),
    ]) {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("sentiment.tsv"), text).unwrap();
    }
    let mut sources = String::new();
    for s in 0..SOURCES {
        server.set(
            &format!("/feed{s}.xml"),
            Response::ok("application/rss+xml", feed(s)),
        );
        sources.push_str(&format!(
            "[[sources]]\nname = \"feed{s}\"\nurl = \"{}/feed{s}.xml\"\nschedule = \"0 0 0 1 1 *\"\n",
            server.base
        ));
    }
    let configure = |dict: &std::path::Path| {
        std::fs::write(
            path.join("kizashi.toml"),
            format!(
                "dictionaries_dir = {:?}\n[crawl]\nallow_private_networks = true\ntimeout_secs = 5\nper_host_interval_ms = 1\n{sources}",
                dict.display().to_string()
            ),
        )
        .unwrap();
    };
    let mut lexicon_in_use = 0;
    configure(&dicts[lexicon_in_use]);
    let lines: Vec<String> = (0..IMPORTED).map(import_line).collect();
    std::fs::write(path.join("items.jsonl"), lines.join("\n") + "\n").unwrap();

    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x2545F4914F6CDD1D_u64);
    let mut rng = XorShift(seed);
    let mut seen = BTreeSet::new();
    let (mut kills, mut rounds) = ([0usize; 4], 0);
    let mut log = Vec::new();
    // Ten or more kills of a running process, each kind of work killed at least once; rounds
    // whose process ended first still count as restarts but not as kills.
    while (kills.iter().sum::<usize>() < 12 || kills.contains(&0)) && rounds < 80 {
        rounds += 1;
        // import 35%, crawl 25%, reanalyze 20%, serve 20%; delays fit each one's length
        let op = match rng.below(20) {
            0..=6 => 0,
            7..=11 => 1,
            12..=15 => 2,
            _ => 3,
        };
        let (args, delay): (&[&str], u64) = match op {
            0 => (&["import", "items.jsonl"], 50 + rng.below(2_000)),
            1 => (&["crawl", "--once"], 20 + rng.below(400)),
            2 => {
                lexicon_in_use = 1 - lexicon_in_use;
                configure(&dicts[lexicon_in_use]);
                (&["reanalyze"], 50 + rng.below(1_500))
            }
            _ => {
                // A new index generation, rebuilt by the server that is then killed.
                if rng.below(2) == 0 {
                    finish(&path, &["reindex"]);
                }
                (&["serve"], 100 + rng.below(1_500))
            }
        };
        let mut child = kizashi(&path, args);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let running = child.try_wait().unwrap().is_none();
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        if running {
            kills[op] += 1;
        }
        log.push(format!(
            "{args:?} after {delay} ms: {}",
            if running { "killed" } else { "had ended" }
        ));
        assert!(running || status.success(), "{args:?} failed: {status}");
        // Nothing committed is ever lost.
        let now = committed_ids(&path).await;
        let lost: Vec<&i64> = seen.difference(&now).collect();
        assert!(lost.is_empty(), "lost {lost:?} after {log:?}");
        seen = now;
    }
    let kills_total: usize = kills.iter().sum();
    assert!(
        kills_total >= 10 && !kills.contains(&0),
        "kills by import/crawl/reanalyze/serve {kills:?}: {log:?}"
    );

    // A clean import and crawl complete the inputs; the server's index then catches up.
    configure(&dicts[1]);
    finish(&path, &["import", "items.jsonl"]);
    finish(&path, &["crawl", "--once"]);
    finish(&path, &["reanalyze"]);
    let mut settings = test_settings(&path, &[]);
    settings.dictionaries_dir = Some(dicts[1].clone());
    let app = spawn_app_with(settings, Some(dir)).await;
    app.wait_indexed().await;
    let state = app.state.clone();

    // Every input item stored exactly once.
    let ids: Vec<i64> = state.store.item_ids_after(0, 1_000_000).await.unwrap();
    let items = state.store.items(&ids).await.unwrap();
    let urls: BTreeSet<String> = items.iter().map(|i| i.url.clone()).collect();
    let want: BTreeSet<String> =
        (0..IMPORTED)
            .map(|i| format!("https://import.example.jp/a/{i}"))
            .chain((0..SOURCES).flat_map(|s| {
                (0..PER_SOURCE).map(move |i| format!("https://feed{s}.example.jp/{i}"))
            }))
            .collect();
    assert_eq!(items.len(), want.len(), "{log:?}");
    assert_eq!(urls, want, "{log:?}");
    assert!(seen.iter().all(|id| ids.contains(id)));

    // Every stored item is in the index exactly once.
    let indexed = state.index.matching_ids(&SearchRequest::default()).unwrap();
    assert_eq!(indexed, ids, "{log:?}");
    // ... and found by text and counted once by the facets.
    let (_, body) = app
        .get_json(&format!("/api/search?q={}&per_page=1", enc("不正利用")))
        .await;
    assert_eq!(body["total"], IMPORTED.div_ceil(3), "{body}");
    let (_, body) = app.get_json("/api/search?per_page=1").await;
    assert_eq!(body["total"], want.len());
    let kinds: u64 = body["facets"]["kind"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(kinds as usize, want.len(), "{body}");
    // The index follows the last analysis: sentiment counts agree with the database.
    let mut by_label = std::collections::BTreeMap::<String, u64>::new();
    for it in &items {
        *by_label.entry(it.sentiment_label.clone()).or_default() += 1;
    }
    let facet: std::collections::BTreeMap<String, u64> = body["facets"]["sentiment"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    assert_eq!(facet, by_label, "{log:?}");
    // With the first lexicon the 1,000 お得 items are positive; with the last one neutral.
    let positive = by_label.get("positive").copied().unwrap_or(0) as usize;
    assert!(positive <= SOURCES * PER_SOURCE, "{by_label:?}");
    eprintln!("crash rounds (seed {seed}): {log:#?}");
}
