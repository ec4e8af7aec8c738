//! `/metrics` moves with what the app does: fetches by status, items ingested, stage errors,
//! HTTP latency histograms. The counters are process-wide and other tests run beside this
//! one, so each check compares before and after and asks for at least the change caused here.
use crate::fixtures::{self, FixtureServer, Response};
use crate::{enc, spawn_app_with, test_settings, TestApp};

/// The value of the series whose line starts with `series ` (0 when absent).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn metrics(app: &TestApp) -> String {
    let (status, text) = app.get_text("/metrics").await;
    assert_eq!(status, 200);
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_items_stage_errors_and_latency_show_in_metrics() {
    let server = FixtureServer::start().await;
    server.set(
        "/news.xml",
        Response::ok(
            "application/rss+xml",
            fixtures::rss2(&server.base, fixtures::NEWS),
        ),
    );
    server.set(
        "/broken.xml",
        Response::ok("application/rss+xml", "<<<not a feed"),
    );
    let news = format!("{}/news.xml", server.base);
    let gone = format!("{}/gone.xml", server.base); // the fixture server answers 404
    let broken = format!("{}/broken.xml", server.base);
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(
        dir.path(),
        &[
            ("news", &news, "news"),
            ("gone", &gone, "news"),
            ("broken", &broken, "news"),
        ],
    );
    let app = spawn_app_with(settings, Some(dir)).await;

    let before = metrics(&app).await;
    let r = app
        .client
        .post(format!("{}/api/crawl", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.wait_indexed().await;
    let (status, _) = app
        .get_json(&format!("/api/search?q={}", enc("不正利用")))
        .await;
    assert_eq!(status, 200);
    let (status, _) = app.get_json("/api/search?sort=sideways").await;
    assert_eq!(status, 400);
    let after = metrics(&app).await;

    let delta = |series: &str| value(&after, series) - value(&before, series);
    assert!(
        delta("kizashi_fetches_total{status=\"404\"}") >= 1.0,
        "{after}"
    );
    assert!(
        delta("kizashi_fetches_total{status=\"200\"}") >= 2.0,
        "{after}"
    );
    assert!(
        delta("kizashi_items_ingested_total{change=\"new\"}") >= fixtures::NEWS.len() as f64,
        "{after}"
    );
    assert!(
        delta("kizashi_stage_errors_total{stage=\"fetch\"}") >= 1.0,
        "{after}"
    );
    assert!(
        delta("kizashi_stage_errors_total{stage=\"parse\"}") >= 1.0,
        "{after}"
    );

    // The histogram: count, +Inf bucket and sum per route pattern and status class.
    let search_2xx = "route=\"/api/search\",status=\"2xx\"";
    assert!(
        delta(&format!(
            "kizashi_http_request_duration_seconds_count{{{search_2xx}}}"
        )) >= 1.0,
        "{after}"
    );
    assert_eq!(
        value(
            &after,
            &format!("kizashi_http_request_duration_seconds_bucket{{{search_2xx},le=\"+Inf\"}}")
        ),
        value(
            &after,
            &format!("kizashi_http_request_duration_seconds_count{{{search_2xx}}}")
        ),
    );
    assert!(
        value(
            &after,
            &format!("kizashi_http_request_duration_seconds_sum{{{search_2xx}}}")
        ) > 0.0
    );
    assert!(
        delta("kizashi_http_request_duration_seconds_count{route=\"/api/search\",status=\"4xx\"}")
            >= 1.0,
        "{after}"
    );
    assert!(after.contains("# TYPE kizashi_http_request_duration_seconds histogram"));
    // Patterns, not raw paths: a status incident page is one series whatever its id.
    let _ = app.get_text("/status/incidents/12345").await;
    let _ = app.get_text("/no/such/page-at-all").await;
    let text = metrics(&app).await;
    assert!(text.contains("route=\"/status/incidents/{id}\""), "{text}");
    assert!(!text.contains("12345"), "{text}");
    assert!(!text.contains("page-at-all"), "{text}");
}

#[test]
fn logs_are_json_lines_on_request() {
    // A source on a closed port: the crawl logs a warning. A fresh data directory per run, as
    // a failed source backs off.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let run = |format: Option<&str>, flag: bool| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("kizashi.toml"),
            format!(
                "[crawl]\nallow_private_networks = true\ntimeout_secs = 2\n[[sources]]\nname = \"down\"\nurl = \"http://127.0.0.1:{port}/feed.xml\"\n"
            ),
        )
        .unwrap();
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_kizashi"));
        c.env("KIZASHI_DATA_DIR", dir.path())
            .env("KIZASHI_LOG", "warn")
            .env_remove("KIZASHI_LOG_FORMAT")
            .current_dir(dir.path());
        if flag {
            c.args(["--log-format", "json"]);
        } else if let Some(f) = format {
            c.env("KIZASHI_LOG_FORMAT", f);
        }
        c.args(["crawl", "--once"]);
        let out = c.output().unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    for stderr in [run(None, true), run(Some("json"), false)] {
        // The command's own summary is plain text on stderr too; log lines are objects.
        let lines: Vec<serde_json::Value> = stderr
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        let warning = lines
            .iter()
            .find(|v| v["fields"]["message"] == "crawl problem")
            .unwrap_or_else(|| panic!("no crawl warning in {stderr}"));
        assert_eq!(warning["level"], "WARN");
        assert_eq!(warning["fields"]["source"], "down");
    }
    // Text stays the default.
    let text = run(None, false);
    assert!(text.contains("crawl problem"), "{text}");
    assert!(!text.lines().any(|l| l.starts_with('{')), "{text}");
}

/// The access log is a structured event per request (not for the status documents).
#[test]
fn the_access_log_is_structured() {
    use std::io::{BufRead, Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kizashi"))
        .env("KIZASHI_DATA_DIR", dir.path())
        .env("KIZASHI_BIND", "127.0.0.1:0")
        .env("KIZASHI_LOG", "warn,kizashi::http=info")
        .env("KIZASHI_LOG_FORMAT", "json")
        .current_dir(dir.path())
        .arg("serve")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut banner)
        .unwrap();
    let addr = banner
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap_or_else(|| panic!("no address in {banner:?}"))
        .to_string();
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    assert!(get("/api/search?q=7pay").starts_with("HTTP/1.1 200"));
    assert!(get("/status").starts_with("HTTP/1.1 200"));
    assert!(get("/api/search?sort=x").starts_with("HTTP/1.1 400"));
    child.kill().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    child.wait().unwrap();
    let http: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "kizashi::http")
        .collect();
    assert_eq!(http.len(), 2, "{stderr}");
    let f = &http[0]["fields"];
    assert_eq!(f["method"], "GET");
    assert_eq!(f["uri"], "/api/search?q=7pay");
    assert_eq!(f["route"], "/api/search");
    assert_eq!(f["status"], 200);
    assert!(f["ms"].as_f64().is_some(), "{f}");
    assert_eq!(http[1]["fields"]["status"], 400);
}
