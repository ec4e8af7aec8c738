//! Early warning end to end: both demo scenarios, replayed through the real crawler on a
//! simulated clock and backtested over the same items imported with `kizashi import`, must
//! raise the fraud alert within three hours of the first fraud reports and before the first
//! news article, with at most one false alert per week of ordinary chatter. The alert is
//! then read, acknowledged and resolved through the API, the page and the Atom feed.
use kizashi::demo::run::{run, DemoOptions};
use kizashi::demo::Scenario;
use serde_json::Value;
use std::process::Command;

fn ms(rfc: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc)
        .unwrap()
        .timestamp_millis()
}

/// Checks the promise on one list of alerts; returns a description for failures.
fn check(s: &Scenario, alerts: &[Value], how: &str) {
    let first_report = s.first_fraud_report.timestamp_millis();
    let first_news = s.first_news.timestamp_millis();
    let fraud: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["service"] == s.fraud_service.as_str() && a["category"] == "fraud")
        .collect();
    assert_eq!(
        fraud.len(),
        1,
        "{how} {}: one fraud alert: {alerts:#?}",
        s.name
    );
    let detected = ms(fraud[0]["detected_at"].as_str().unwrap());
    assert!(
        detected >= first_report && detected <= first_report + 3 * 3_600_000,
        "{how} {}: detected {} — not within 3 h of the first reports",
        s.name,
        fraud[0]["detected_at"]
    );
    assert!(
        detected < first_news,
        "{how} {}: not before the news",
        s.name
    );
    assert!(
        !fraud[0]["examples"].as_array().unwrap().is_empty(),
        "{how}: the alert carries example items"
    );
    // The baseline: everything before the first event of the timeline.
    let baseline_end = s
        .burst
        .iter()
        .map(|b| b.from.timestamp_millis())
        .chain(
            s.chatter
                .iter()
                .filter_map(|c| c.from.map(|f| f.timestamp_millis())),
        )
        .min()
        .unwrap();
    let weeks = (baseline_end - s.start.timestamp_millis()) / (7 * 86_400_000);
    let false_alerts: Vec<&Value> = alerts
        .iter()
        .filter(|a| ms(a["detected_at"].as_str().unwrap()) < baseline_end)
        .collect();
    assert!(
        false_alerts.len() as i64 <= weeks,
        "{how} {}: {} alerts in {weeks} weeks of ordinary chatter: {false_alerts:#?}",
        s.name,
        false_alerts.len()
    );
}

fn kizashi(data_dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kizashi"));
    c.env("KIZASHI_DATA_DIR", data_dir)
        .env("KIZASHI_LOG", "warn")
        .current_dir(data_dir);
    c
}

/// `kizashi demo --export`, `kizashi import`, `kizashi backtest` over the scenario's span.
fn backtest(s: &Scenario, name: &str) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("items.jsonl");
    let out = kizashi(dir.path())
        .args(["demo", "--scenario", name, "--export"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kizashi(dir.path())
        .arg("import")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kizashi(dir.path())
        .args([
            "backtest",
            "--from",
            &s.start.to_rfc3339(),
            "--to",
            &s.end.to_rfc3339(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["alerts"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_scenarios_alert_on_fraud_early_replayed_and_backtested() {
    for name in ["july2019", "paypay2018"] {
        let dir = tempfile::tempdir().unwrap();
        let run = run(DemoOptions {
            scenario: name,
            data_dir: dir.path(),
            bind: "127.0.0.1:0".parse().unwrap(),
            live_tick: std::time::Duration::ZERO,
            verbose: false,
        })
        .await
        .unwrap();
        check(&run.scenario, &run.alerts, "replayed");
        let backtested = backtest(&run.scenario, name);
        check(&run.scenario, &backtested, "backtest");
        if name == "july2019" {
            alert_interfaces(&run).await;
        }
    }
}

/// The API, the states, the page and the feed, on the replay's stored alerts.
async fn alert_interfaces(run: &kizashi::demo::run::DemoRun) {
    let base = format!("http://127.0.0.1:{}", run.port);
    let c = reqwest::Client::new();
    let get = |path: String| {
        let c = c.clone();
        async move { c.get(path).send().await.unwrap() }
    };
    let all: Value = get(format!("{base}/api/alerts"))
        .await
        .json()
        .await
        .unwrap();
    let alerts = all["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), run.alerts.len());
    // Newest first, each with the documented fields.
    for k in [
        "id",
        "service",
        "category",
        "metric",
        "started_at",
        "detected_at",
        "observed",
        "expected",
        "score",
        "state",
        "examples",
    ] {
        assert!(alerts[0].get(k).is_some(), "{k} missing: {:#?}", alerts[0]);
    }
    let fraud = alerts
        .iter()
        .find(|a| a["category"] == "fraud")
        .unwrap()
        .clone();
    let id = fraud["id"].as_i64().unwrap();
    // Filters and the cursor.
    let by_service: Value = get(format!("{base}/api/alerts?service=famipay"))
        .await
        .json()
        .await
        .unwrap();
    assert!(by_service["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["service"] == "famipay"));
    let first: Value = get(format!("{base}/api/alerts?limit=1"))
        .await
        .json()
        .await
        .unwrap();
    let next = first["next"].as_str().unwrap().to_string();
    let second: Value = get(format!("{base}/api/alerts?limit=1&cursor={next}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        second["alerts"][0]["id"], alerts[1]["id"],
        "the cursor continues"
    );
    for bad in [
        "state=closed",
        "cursor=x",
        "limit=0",
        "service=nope",
        "from=yesterday",
    ] {
        let r = get(format!("{base}/api/alerts?{bad}")).await;
        assert_eq!(r.status(), 400, "{bad}");
    }
    // /metrics counts the open ones.
    let open = alerts.iter().filter(|a| a["state"] == "open").count();
    let metrics = get(format!("{base}/metrics")).await.text().await.unwrap();
    assert!(
        metrics.contains(&format!("kizashi_open_alerts {open}\n")),
        "{metrics}"
    );
    // Acknowledge through the API; the state filter and the page follow.
    let r = c
        .post(format!("{base}/api/v1/alerts/{id}"))
        .json(&serde_json::json!({ "state": "acknowledged" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let acked: Value = get(format!("{base}/api/alerts?state=acknowledged"))
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<i64> = acked["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [id]);
    let r = c
        .post(format!("{base}/api/v1/alerts/{id}"))
        .json(&serde_json::json!({ "state": "finished" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "an unknown state is refused");
    let page = get(format!("{base}/alerts/{id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("確認済み") && page.contains(r#"value="resolved""#),
        "{page}"
    );
    // Resolve from the page's form.
    let r = c
        .post(format!("{base}/alerts/{id}/state"))
        .form(&[("csrf", ""), ("state", "resolved")])
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success() || r.status().is_redirection(),
        "{}",
        r.status()
    );
    let one: Value = get(format!("{base}/api/alerts?state=resolved"))
        .await
        .json()
        .await
        .unwrap();
    let resolved = one["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .unwrap();
    assert_eq!(resolved["state_by"], "(no accounts)");
    let en = get(format!("{base}/en/alerts")).await.text().await.unwrap();
    assert!(en.contains("Mention spike"));
    let atom = get(format!("{base}/alerts.atom")).await;
    assert!(atom.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/atom+xml"));
    let atom = atom.text().await.unwrap();
    assert_eq!(atom.matches("<entry>").count(), run.alerts.len());
    assert!(atom.contains(&format!("/alerts/{id}</id>")));
}

/// The hourly rollups always equal a recount of the items, through inserts, content updates
/// (new categories and sentiment), deletions and re-analysis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_equal_a_recount_after_every_kind_of_write() {
    for db in crate::engines("rollups_equal_a_recount_after_every_kind_of_write").await {
        rollups_equal_a_recount_after_every_kind_of_write_on(db).await;
    }
}

async fn rollups_equal_a_recount_after_every_kind_of_write_on(db: crate::TestDb) {
    use kizashi::domain::{ItemKind, RawItem};
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().unwrap();
    let app = crate::spawn_app_on(crate::test_settings(dir.path(), &[]), dir, db).await;
    let (store, pipeline) = (&app.state.store, &app.state.pipeline);
    let now = kizashi::clock::Clock::now(&*app.state.clock);
    let raw = |i: usize, at: &str, body: &str| RawItem {
        source: "rollup".into(),
        guid: None,
        url: format!("https://example.jp/r/{i}"),
        title: String::new(),
        body: body.into(),
        published_at: Some(chrono::DateTime::parse_from_rfc3339(at).unwrap().into()),
        author: Some(format!("u{i}")),
        kind: ItemKind::Social,
        bookmarks: None,
        tags: Vec::new(),
    };
    let (from, to) = (
        ms("2019-07-01T00:00:00+09:00"),
        ms("2019-07-10T00:00:00+09:00"),
    );
    let check = |what: &'static str| async move {
        let counts = store.detection_counts(from, to).await.unwrap();
        let rolled: BTreeMap<(String, Option<String>), (u64, u64)> = counts
            .series
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.iter().fold((0, 0), |(n, g), c| (n + c.n, g + c.negative)),
                )
            })
            .filter(|(_, v)| v.0 > 0)
            .collect();
        let mut recount: BTreeMap<(String, Option<String>), (u64, u64)> = BTreeMap::new();
        for e in store.mention_events(from, to).await.unwrap() {
            for key in std::iter::once(None).chain(e.categories.iter().cloned().map(Some)) {
                let c = recount.entry((e.service.clone(), key)).or_default();
                c.0 += 1;
                c.1 += u64::from(e.negative);
            }
        }
        assert_eq!(rolled, recount, "after {what}");
        let all: i64 = store
            .rollup_rows(None, None, None, from, to)
            .await
            .unwrap()
            .iter()
            .map(|r| r.n)
            .sum();
        assert_eq!(
            all,
            store.item_count().await.unwrap(),
            "every item once, after {what}"
        );
        rolled
    };
    pipeline
        .ingest(
            store,
            vec![
                raw(
                    1,
                    "2019-07-03T09:10:00+09:00",
                    "7payで身に覚えのないチャージ。不正利用だ",
                ),
                raw(
                    2,
                    "2019-07-03T09:20:00+09:00",
                    "PayPayは大丈夫だけど7payは怖い",
                ),
                raw(3, "2019-07-04T12:00:00+09:00", "LINE Payで払った。便利"),
            ],
            now,
        )
        .await
        .unwrap();
    let first = check("inserts").await;
    assert_eq!(
        first[&("7pay".to_string(), Some("fraud".to_string()))],
        (1, 1)
    );
    // The same post edited: no longer about fraud, now an outage, in another hour.
    pipeline
        .ingest(
            store,
            vec![raw(
                1,
                "2019-07-03T11:00:00+09:00",
                "7payがつながらない。障害かな",
            )],
            now,
        )
        .await
        .unwrap();
    let edited = check("an update").await;
    assert!(!edited.contains_key(&("7pay".to_string(), Some("fraud".to_string()))));
    assert!(edited.contains_key(&("7pay".to_string(), Some("outage".to_string()))));
    let filter = kizashi::store::DeleteFilter {
        url: Some("https://example.jp/r/3".into()),
        ..Default::default()
    };
    assert_eq!(store.delete_items(&filter, now).await.unwrap(), 1);
    let deleted = check("a deletion").await;
    assert!(!deleted.contains_key(&("linepay".to_string(), None)));
    pipeline.reanalyze(store, Some(0), now).await.unwrap();
    assert_eq!(check("re-analysis").await, deleted);
}

/// A saved search is an alert rule: a burst of what it matches alerts even when no watched
/// service is named (「無限おにぎり」 was a 7pay story told without the name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_search_is_an_alert_rule() {
    for db in crate::engines("a_saved_search_is_an_alert_rule").await {
        a_saved_search_is_an_alert_rule_on(db).await;
    }
}

async fn a_saved_search_is_an_alert_rule_on(db: crate::TestDb) {
    use kizashi::domain::{ItemKind, RawItem};
    let dir = tempfile::tempdir().unwrap();
    let app = crate::spawn_app_on(crate::test_settings(dir.path(), &[]), dir, db).await;
    let r = app
        .client
        .post(format!("{}/api/saved-searches", app.base))
        .json(&serde_json::json!({ "name": "おにぎり", "query": "q=おにぎり" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let at = |h: i64| {
        chrono::DateTime::parse_from_rfc3339("2019-06-25T00:00:00+09:00").unwrap()
            + chrono::Duration::hours(h)
    };
    let mut texts: Vec<(chrono::DateTime<chrono::FixedOffset>, String)> = (0..8 * 24)
        .filter(|h| h % 12 == 0)
        .map(|h| (at(h), "コンビニでおにぎりを買った".to_string()))
        .collect();
    let burst = 8 * 24 + 3;
    texts.extend((0..15).map(|i| {
        (
            at(burst) + chrono::Duration::minutes(i * 2),
            format!("無限おにぎりができるらしい {i}"),
        )
    }));
    let raws = texts
        .into_iter()
        .enumerate()
        .map(|(i, (t, body))| RawItem {
            source: "onigiri".into(),
            guid: None,
            url: format!("https://example.jp/o/{i}"),
            title: String::new(),
            body,
            published_at: Some(t.into()),
            author: Some(format!("u{i}")),
            kind: ItemKind::Social,
            bookmarks: None,
            tags: Vec::new(),
        })
        .collect();
    app.clock
        .set((at(burst) + chrono::Duration::minutes(40)).into());
    app.state
        .pipeline
        .import(
            &app.state.store,
            raws,
            kizashi::clock::Clock::now(&*app.state.clock),
        )
        .await
        .unwrap();
    app.state.index_notify.notify_one();
    app.wait_indexed().await;
    let opened = kizashi::alerting::detect_now(&app.state).await.unwrap();
    assert_eq!(opened.len(), 1);
    let (_, v) = app.get_json("/api/alerts").await;
    assert_eq!(v["alerts"][0]["service"], format!("saved-search:{id}"));
    assert_eq!(v["alerts"][0]["observed"], 15.0);
}
