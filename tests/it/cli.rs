//! The real binary: import (with catch-up into a server started later), analyze, config errors.
use crate::{enc, spawn_app_with, test_settings};
use std::io::Write;
use std::process::{Command, Stdio};

fn kizashi(data_dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kizashi"));
    c.env("KIZASHI_DATA_DIR", data_dir)
        .env("KIZASHI_LOG", "warn")
        .current_dir(data_dir);
    c
}

fn run_with_stdin(mut cmd: Command, input: &str) -> (i32, String, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn line(i: usize, title: &str, body: &str, at: &str, kind: &str) -> String {
    serde_json::json!({
        "url": format!("https://news.example.jp/{i}"), "title": title, "body": body,
        "published_at": at, "source": "import-test", "kind": kind, "author": if kind == "social" { Some(format!("u{}", i % 7)) } else { None }
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_keeps_good_lines_reports_bad_ones_and_the_server_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    // 60 items over three JST days; every third mentions 不正利用; every fifth has hostile HTML.
    let mut lines = Vec::new();
    let mut want_fraud = 0;
    let mut want_day: std::collections::BTreeMap<String, u64> = Default::default();
    for i in 0..60 {
        let day = ["2019-07-02", "2019-07-03", "2019-07-04"][i % 3];
        let at = format!("{day}T{:02}:{:02}:00+09:00", (i * 7) % 24, i % 60);
        let fraud = i % 3 == 0;
        let body = format!(
            "{}7payの話題その{i}。{}",
            if i % 5 == 0 {
                "<img src=x onerror=alert(1)>"
            } else {
                ""
            },
            if fraud {
                "不正利用が疑われる"
            } else {
                "特に問題はない"
            }
        );
        if fraud {
            want_fraud += 1;
        }
        *want_day.entry(format!("{day}T00:00:00+09:00")).or_default() += 1;
        lines.push(line(
            i,
            &format!("記事{i}"),
            &body,
            &at,
            if i % 2 == 0 { "news" } else { "social" },
        ));
    }
    lines.insert(10, "{not json".into());
    lines.insert(20, line(999, "日付が変", "本文", "3rd of July", "news"));
    let input = lines.join("\n") + "\n";

    let (code, out, err) = run_with_stdin(
        {
            let mut c = kizashi(dir.path());
            c.args(["import", "-"]);
            c
        },
        &input,
    );
    assert_eq!(code, 0, "{err}");
    let summary: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(summary["new"], 60, "{out}");
    assert_eq!(summary["failed"], 2);
    assert!(err.contains("line 11:"), "{err}");
    assert!(
        err.contains("line 21:") && err.contains("published_at"),
        "{err}"
    );

    // Importing the same file twice adds nothing.
    let (_, out, _) = run_with_stdin(
        {
            let mut c = kizashi(dir.path());
            c.args(["import", "-"]);
            c
        },
        &input,
    );
    let summary: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(summary["new"], 0);
    assert_eq!(summary["unchanged"], 60);

    // The server was down during the import; on start its index catches up from the database.
    let path = dir.path().to_path_buf();
    let app = spawn_app_with(test_settings(&path, &[]), Some(dir)).await;
    app.wait_indexed().await;
    let (_, body) = app
        .get_json(&format!("/api/search?q={}&per_page=100", enc("不正利用")))
        .await;
    assert_eq!(body["total"], want_fraud, "{body}");
    for hit in body["hits"].as_array().unwrap() {
        let s = hit["snippet"].as_str().unwrap();
        assert!(!s.contains("<img"), "snippet is HTML-safe: {s}");
        assert!(s.contains("<b>"), "snippet highlights: {s}");
    }
    let (_, body) = app
        .get_json("/api/timeseries?service=7pay&interval=day&from=2019-07-02&to=2019-07-05")
        .await;
    let got: std::collections::BTreeMap<String, u64> = body["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["start"].as_str().unwrap().to_string(),
                b["mentions"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, want_day);

    // A reindex request rebuilds the index from the database with the same results.
    let (code, _, err) = run_with_stdin(
        {
            let mut c = kizashi(&path);
            c.arg("reindex");
            c
        },
        "",
    );
    assert_eq!(code, 0, "{err}");
    for _ in 0..100 {
        if app.state.index.committed_watermark().unwrap().generation == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(app.state.index.committed_watermark().unwrap().generation, 1);
    let (_, body) = app
        .get_json(&format!("/api/search?q={}&per_page=100", enc("不正利用")))
        .await;
    assert_eq!(body["total"], want_fraud);
}

#[test]
fn analyze_prints_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run_with_stdin(
        {
            let mut c = kizashi(dir.path());
            c.arg("analyze");
            c
        },
        "ＰａｙＰａｙで払った\nPayPayは大丈夫だけど7payは怖い。\n今日は晴れ\n",
    );
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["text"], "ＰａｙＰａｙで払った");
    assert_eq!(rows[0]["services"], serde_json::json!(["paypay"]));
    assert_eq!(rows[1]["services"], serde_json::json!(["7pay", "paypay"]));
    for r in &rows {
        assert!(["negative", "neutral", "positive"]
            .contains(&r["sentiment"]["label"].as_str().unwrap()));
        assert!(r["sentiment"]["score"].as_f64().unwrap().abs() <= 1.0);
        assert!(r["categories"].is_array() && r["targets"].is_array());
    }
    assert_eq!(rows[2]["sentiment"]["label"], "neutral");
}

#[test]
fn a_bad_config_is_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "bind = \"127.0.0.1:8080\"\n[crawl]\ntimeout_secs = -3\n",
    )
    .unwrap();
    let out = kizashi(dir.path())
        .args(["--config", cfg.to_str().unwrap(), "serve"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("crawl.timeout_secs"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawl_once_sources_json_and_delete_reach_the_index() {
    use crate::fixtures::{FixtureServer, Response};
    let server = FixtureServer::start().await;
    let items: String = (0..3)
        .map(|i| format!("<item><title>PayPayの障害{i}</title><link>https://example.jp/outage/{i}</link><pubDate>Wed, 03 Jul 2019 1{i}:00:00 +0900</pubDate></item>"))
        .collect();
    server.set(
        "/f.xml",
        Response::ok(
            "application/rss+xml",
            format!("<rss version=\"2.0\"><channel><title>t</title>{items}</channel></rss>"),
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("k.toml");
    std::fs::write(
        &cfg,
        format!(
            "[crawl]\nallow_private_networks = true\nper_host_interval_ms = 10\n[[sources]]\nname = \"outages\"\nurl = \"{}/f.xml\"\nschedule = \"0 */10 * * * *\"\n",
            server.base
        ),
    )
    .unwrap();
    let cfg_arg = cfg.to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let out = kizashi(dir.path())
            .args(["--config", &cfg_arg])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let summary: serde_json::Value =
        serde_json::from_str(run(&["crawl", "--once"]).trim()).unwrap();
    assert_eq!(summary["new_items"], 3, "{summary}");

    let sources: serde_json::Value = serde_json::from_str(&run(&["sources", "--json"])).unwrap();
    let s = &sources[0];
    for key in [
        "name",
        "url",
        "kind",
        "last_fetch_at",
        "last_status",
        "new_items",
        "seen_items",
        "total_items",
        "next_run_at",
        "last_error",
        "backoff_until",
        "charset_decision",
    ] {
        assert!(s.get(key).is_some(), "{key} in {s}");
    }
    assert_eq!(s["name"], "outages");
    assert_eq!(s["kind"], "feed");
    assert_eq!(s["last_status"], "200");
    assert_eq!(
        (
            s["new_items"].as_i64(),
            s["seen_items"].as_i64(),
            s["total_items"].as_i64()
        ),
        (Some(3), Some(3), Some(3))
    );
    assert!(s["last_error"].is_null() && s["backoff_until"].is_null());
    assert_eq!(s["charset_decision"], "UTF-8 (utf8)");
    let next = chrono::DateTime::parse_from_rfc3339(s["next_run_at"].as_str().unwrap()).unwrap();
    assert_eq!(next.format("%S").to_string(), "00");
    assert_eq!(next.offset().local_minus_utc(), 9 * 3600, "shown in JST");

    // The server indexes what the command stored; a deletion reaches the index as well.
    let app = spawn_app_with(test_settings(dir.path(), &[]), None).await;
    app.wait_indexed().await;
    let (_, body) = app
        .get_json(&format!("/api/search?q={}", enc("障害")))
        .await;
    assert_eq!(body["total"], 3);
    let out = run(&[
        "delete",
        "--url",
        "https://example.jp/outage/1?utm_source=x",
    ]);
    assert!(out.contains("\"deleted\":1"), "{out}");
    app.wait_indexed().await;
    let (_, body) = app
        .get_json(&format!("/api/search?q={}", enc("障害")))
        .await;
    assert_eq!(body["total"], 2, "{body}");
    assert!(body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["url"] != "https://example.jp/outage/1"));
    let (status, html) = app.get_text("/admin/sources").await;
    assert_eq!(status, 200);
    assert!(html.contains("id=\"source-outages\""));

    // delete refuses to run without a filter.
    let out = kizashi(dir.path())
        .args(["--config", &cfg_arg, "delete"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_running_and_restore_with_a_rebuilt_index() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..5)
        .map(|i| {
            line(
                i,
                &format!("記事{i}"),
                "7payの不正利用",
                "2019-07-03T10:00:00+09:00",
                "news",
            )
        })
        .collect();
    let (code, _, err) = run_with_stdin(
        {
            let mut c = kizashi(dir.path());
            c.args(["import", "-"]);
            c
        },
        &lines.join("\n"),
    );
    assert_eq!(code, 0, "{err}");
    let app = spawn_app_with(test_settings(dir.path(), &[]), None).await;
    app.wait_indexed().await;
    let (_, ready) = app.get_json("/readyz").await;
    assert_eq!(ready["ready"], true);
    // Online backup while the server runs.
    let backup = dir.path().join("backup.sqlite");
    let out = kizashi(dir.path())
        .args(["backup", backup.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"items\":5"));
    let again = kizashi(dir.path())
        .args(["backup", backup.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        !again.status.success(),
        "an existing file is never overwritten"
    );
    // Restore into a fresh data directory; the next start rebuilds the index from it.
    let other = tempfile::tempdir().unwrap();
    let out = kizashi(other.path())
        .args(["restore", backup.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored = spawn_app_with(test_settings(other.path(), &[]), None).await;
    restored.wait_indexed().await;
    let (_, body) = restored
        .get_json(&format!("/api/search?q={}", enc("不正利用")))
        .await;
    assert_eq!(body["total"], 5, "{body}");
    // Not a kizashi database: refused, nothing replaced.
    let junk = other.path().join("junk.sqlite");
    std::fs::write(&junk, b"not a database").unwrap();
    let out = kizashi(other.path())
        .args(["restore", junk.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    drop((dir, other));
}

/// A July-2019-like replay: five weeks of ordinary chatter with a daily rhythm about six
/// services, 7pay's launch on 07-01, fraud reports from 07-03 08:00 JST, news at 13:00.
fn scenario_lines() -> Vec<String> {
    let mut lines = Vec::new();
    let mut n = 0;
    let mut push = |at: String, body: String, kind: &str, lines: &mut Vec<String>| {
        n += 1;
        lines.push(
            serde_json::json!({"url": format!("https://scenario.example/{n}"), "title": "", "body": body,
                "published_at": at, "source": "scenario", "kind": kind, "author": format!("u{}", n % 97)})
            .to_string(),
        );
    };
    let services = [
        "PayPay",
        "LINE Pay",
        "メルペイ",
        "ファミペイ",
        "d払い",
        "au PAY",
    ];
    for day in 0..40 {
        let date =
            chrono::NaiveDate::from_ymd_opt(2019, 5, 27).unwrap() + chrono::Duration::days(day);
        for (si, s) in services.iter().enumerate() {
            for (hour, count) in [(8, 1), (12, 2), (19, 2)] {
                for k in 0..count {
                    let body = if (day as usize + si + k).is_multiple_of(9) {
                        format!("{s}がちょっと遅い")
                    } else {
                        format!("{s}で支払いした")
                    };
                    push(
                        format!("{date}T{hour:02}:{:02}:00+09:00", 10 + k * 7),
                        body,
                        "social",
                        &mut lines,
                    );
                }
            }
        }
        if date >= chrono::NaiveDate::from_ymd_opt(2019, 7, 1).unwrap() {
            for hour in [9, 12, 18] {
                push(
                    format!("{date}T{hour:02}:05:00+09:00"),
                    "7payを使ってみた".into(),
                    "social",
                    &mut lines,
                );
            }
        }
    }
    // The fraud reports, hour by hour from 08:00 on 07-03.
    for (h, count) in [(8, 3), (9, 9), (10, 18), (11, 30), (12, 40)] {
        for k in 0..count {
            push(
                format!("2019-07-03T{h:02}:{:02}:00+09:00", k % 60),
                "7payで身に覚えのないチャージがあった、不正利用された".into(),
                "social",
                &mut lines,
            );
        }
    }
    push(
        "2019-07-03T13:00:00+09:00".into(),
        "セブンペイで不正アクセス被害、チャージを停止".into(),
        "news",
        &mut lines,
    );
    lines
}

#[test]
fn backtest_finds_the_fraud_spike_early_and_nothing_in_the_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run_with_stdin(
        {
            let mut c = kizashi(dir.path());
            c.args(["import", "-"]);
            c
        },
        &scenario_lines().join("\n"),
    );
    assert_eq!(code, 0, "{err}");
    let out = kizashi(dir.path())
        .args(["backtest", "--from", "2019-06-24", "--to", "2019-07-05"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let alerts = v["alerts"].as_array().unwrap();
    assert_eq!(
        alerts.len(),
        1,
        "one incident, one alert; no false alerts in the baseline: {v}"
    );
    let a = &alerts[0];
    assert_eq!(
        (a["service"].as_str(), a["category"].as_str()),
        (Some("7pay"), Some("fraud")),
        "{a}"
    );
    let detected =
        chrono::DateTime::parse_from_rfc3339(a["detected_at"].as_str().unwrap()).unwrap();
    let first_reports = chrono::DateTime::parse_from_rfc3339("2019-07-03T08:00:00+09:00").unwrap();
    let news = chrono::DateTime::parse_from_rfc3339("2019-07-03T13:00:00+09:00").unwrap();
    assert!(
        detected - first_reports <= chrono::Duration::hours(3),
        "detected at {detected}"
    );
    assert!(detected < news);
}
