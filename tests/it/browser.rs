//! End to end in headless Chromium: sign in with password and TOTP, post an incident through
//! the admin form, see it on /status and in summary.json. Chromium is driven over the DevTools
//! protocol on `--remote-debugging-pipe` (two FIFOs, NUL-delimited JSON), so no driver binary
//! or WebSocket crate is needed. Skipped, with a message, where `chromium` is not installed.
use crate::{spawn_app_with, test_settings};
use kizashi::auth::{self, Role};
use kizashi::clock::Clock;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Chromium {
    child: Child,
    to: std::fs::File,
    from: BufReader<std::fs::File>,
    next_id: u64,
    session: Option<String>,
    _profile: tempfile::TempDir,
}

impl Chromium {
    fn available() -> bool {
        Command::new("chromium")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn start() -> Self {
        let profile = tempfile::tempdir().unwrap();
        let cmd_in = profile.path().join("cdp-in");
        let cmd_out = profile.path().join("cdp-out");
        for p in [&cmd_in, &cmd_out] {
            assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
        }
        let script = format!(
            "exec chromium --headless=new --no-sandbox --disable-gpu --no-first-run \
             --disable-background-networking --disable-component-update --disable-sync \
             --remote-debugging-pipe --user-data-dir={dir} about:blank 3<{i} 4>{o}",
            dir = profile.path().join("user").display(),
            i = cmd_in.display(),
            o = cmd_out.display(),
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Opening a FIFO waits for the other end: the shell opens fd 3 first, then fd 4.
        let to = std::fs::OpenOptions::new()
            .write(true)
            .open(&cmd_in)
            .unwrap();
        let from = BufReader::new(std::fs::File::open(&cmd_out).unwrap());
        Self {
            child,
            to,
            from,
            next_id: 0,
            session: None,
            _profile: profile,
        }
    }

    fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        self.to.write_all(msg.to_string().as_bytes()).unwrap();
        self.to.write_all(b"\0").unwrap();
        self.to.flush().unwrap();
        loop {
            let mut buf = Vec::new();
            let n = self.from.read_until(0, &mut buf).unwrap();
            assert!(n > 0, "chromium closed the pipe");
            buf.pop();
            let v: Value = serde_json::from_slice(&buf).unwrap();
            if v["id"] == id {
                if let Some(e) = v.get("error") {
                    return Err(e.to_string());
                }
                return Ok(v["result"].clone());
            }
        }
    }

    fn open(&mut self, url: &str) {
        let t = self
            .call("Target.createTarget", json!({ "url": url }))
            .unwrap();
        let s = self
            .call(
                "Target.attachToTarget",
                json!({ "targetId": t["targetId"], "flatten": true }),
            )
            .unwrap();
        self.session = Some(s["sessionId"].as_str().unwrap().to_string());
    }

    fn eval(&mut self, expression: &str) -> Result<Value, String> {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        )?;
        if let Some(e) = r.get("exceptionDetails") {
            return Err(e.to_string());
        }
        Ok(r["result"]["value"].clone())
    }

    /// Polls `expression` until it is true (a navigation may be under way meanwhile).
    fn wait_for(&mut self, expression: &str) {
        for _ in 0..300 {
            if self.eval(expression).ok() == Some(json!(true)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let state = self.eval("location.href + ' ' + document.body.innerText");
        panic!("never true: {expression}; page: {state:?}");
    }

    fn go(&mut self, base: &str, path: &str) {
        self.eval(&format!(
            "location.href = {:?}; true",
            format!("{base}{path}")
        ))
        .unwrap();
        self.wait_for(&format!(
            "location.pathname + location.search === {path:?} && document.readyState === 'complete'"
        ));
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        self.session = None;
        let _ = self.call("Browser.close", json!({}));
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_with_totp_post_an_incident_and_see_it_on_the_status_page() {
    if !Chromium::available() {
        eprintln!("skipped: chromium is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(test_settings(dir.path(), &[]), Some(dir)).await;
    for (id, name) in [("charge", "チャージ"), ("api", "決済API")] {
        let r = app
            .client
            .put(format!("{}/api/v1/components/{id}", app.base))
            .json(&json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let token = auth::create_user(&app.state.store, "ops", Role::Operator, app.clock.now())
        .await
        .unwrap();
    let base = app.base.clone();
    let clock = app.clock.clone();
    let secret_at_setup = tokio::task::spawn_blocking(move || {
        let mut c = Chromium::start();
        c.open(&format!("{base}/setup/{token}"));
        c.wait_for("document.readyState === 'complete' && !!document.getElementById('totp-secret')");
        let secret = c
            .eval("document.getElementById('totp-secret').textContent")
            .unwrap()
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            c.eval("document.querySelector('img.qr').src.startsWith('data:image/svg+xml')")
                .unwrap(),
            json!(true)
        );
        let code = auth::totp_code(&secret, clock.now().timestamp()).unwrap();
        c.eval(&format!(
            "(() => {{ const f = document.querySelector('form'); f.elements['password'].value = 'correct horse battery staple'; \
             f.elements['code'].value = {code:?}; f.submit(); return true; }})()"
        ))
        .unwrap();
        c.wait_for("document.readyState === 'complete' && document.body.innerText.includes('設定完了')");

        // Sign in: password and a fresh TOTP code.
        clock.set(clock.now() + chrono::Duration::seconds(30));
        let code = auth::totp_code(&secret, clock.now().timestamp()).unwrap();
        c.go(&base, "/login");
        c.eval(&format!(
            "(() => {{ const f = document.querySelector('form[action=\"/login\"]'); f.elements['name'].value = 'ops'; \
             f.elements['password'].value = 'correct horse battery staple'; f.elements['code'].value = {code:?}; \
             f.submit(); return true; }})()"
        ))
        .unwrap();
        c.wait_for("location.pathname === '/admin/status' && document.readyState === 'complete'");
        // The session cookie is HttpOnly: scripts cannot read it.
        assert_eq!(
            c.eval("document.cookie.includes('kizashi_session')").unwrap(),
            json!(false)
        );

        // Post an incident through the admin form.
        c.eval(
            "(() => { const f = document.querySelector('form[action=\"/admin/status/incidents\"]'); \
             f.elements['name'].value = 'セブンペイ チャージ停止'; \
             f.elements['body'].value = '**不正利用**の報告を受け、チャージを停止しています。'; \
             f.elements['impact_charge'].value = 'major_outage'; f.submit(); return true; })()",
        )
        .unwrap();
        c.wait_for(
            "location.pathname === '/admin/status' && document.readyState === 'complete' \
             && document.body.innerText.includes('セブンペイ チャージ停止')",
        );

        c.go(&base, "/status");
        let text = c.eval("document.body.innerText").unwrap();
        let text = text.as_str().unwrap();
        assert!(text.contains("セブンペイ チャージ停止"), "{text}");
        assert!(text.contains("重大な障害"), "{text}");
        assert_eq!(
            c.eval("document.querySelector('.update strong:not(.stage)').textContent")
                .unwrap(),
            json!("不正利用"),
            "Markdown rendered"
        );

        c.go(&base, "/api/v2/summary.json");
        let body = c.eval("document.body.innerText").unwrap();
        let summary: Value = serde_json::from_str(body.as_str().unwrap()).unwrap();
        assert_eq!(summary["incidents"][0]["name"], "セブンペイ チャージ停止");
        assert_eq!(summary["status"]["indicator"], "critical");
        secret
    })
    .await
    .unwrap();
    assert_eq!(secret_at_setup.len(), 32);
}

/// The dashboard in a real browser: the service page's charts render (laid out, not empty)
/// and their bars hold exactly the numbers `/api/timeseries` returns for the same window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_charts_show_the_numbers_the_api_returns() {
    if !Chromium::available() {
        eprintln!("skipped: chromium is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(test_settings(dir.path(), &[]), Some(dir)).await;
    let posts = [
        (
            "2019-07-02T10:00:00+09:00",
            "social",
            "7payで買い物した。便利",
        ),
        (
            "2019-07-03T09:00:00+09:00",
            "social",
            "7payで身に覚えのないチャージ。不正利用かも",
        ),
        (
            "2019-07-03T11:00:00+09:00",
            "social",
            "セブンペイが乗っ取られた。怖い",
        ),
        (
            "2019-07-03T15:00:00+09:00",
            "news",
            "7pay、不正利用の被害報告相次ぐ",
        ),
        (
            "2019-07-04T14:00:00+09:00",
            "news",
            "7pay運営会社が会見、チャージを停止",
        ),
        ("2019-07-04T16:00:00+09:00", "social", "7payの会見ひどい"),
        (
            "2019-07-04T18:00:00+09:00",
            "social",
            "PayPayは大丈夫だけど7payは怖い",
        ),
    ];
    let raws = posts
        .iter()
        .enumerate()
        .map(|(i, (at, kind, text))| kizashi::domain::RawItem {
            source: "browser".into(),
            guid: None,
            url: format!("https://example.jp/{i}"),
            title: if *kind == "news" {
                text.to_string()
            } else {
                String::new()
            },
            body: text.to_string(),
            published_at: Some(chrono::DateTime::parse_from_rfc3339(at).unwrap().into()),
            author: (*kind == "social").then(|| format!("u{i}")),
            kind: kizashi::domain::ItemKind::parse(kind).unwrap(),
            bookmarks: None,
            tags: Vec::new(),
        })
        .collect();
    let r = app
        .state
        .pipeline
        .ingest(&app.state.store, raws, app.clock.now())
        .await
        .unwrap();
    assert_eq!(r.counts.new, posts.len() as u64);
    let (_, api) = app
        .get_json("/api/timeseries?service=7pay&interval=day&from=2019-07-01&to=2019-07-06")
        .await;
    let want: Vec<String> = api["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| format!("ニュース={} ソーシャル={}", b["news"], b["social"]))
        .collect();
    assert!(
        want.iter().any(|w| w != "ニュース=0 ソーシャル=0"),
        "{want:?}"
    );
    let base = app.base.clone();
    let seen = tokio::task::spawn_blocking(move || {
        let mut c = Chromium::start();
        c.open("about:blank");
        c.go(&base, "/services/7pay");
        c.go(&base, "/services/7pay?from=2019-07-01&to=2019-07-05&interval=day");
        let js = r#"(() => {
            const svg = document.querySelector('#mentions-7pay');
            const box = svg.getBoundingClientRect();
            const values = [...svg.querySelectorAll('g.bucket')].map(g => g.dataset.values);
            const bars = [...svg.querySelectorAll('rect.bar')].filter(r => r.getBBox().height > 0).length;
            const titles = [...svg.querySelectorAll('rect.bar title')].map(t => t.textContent);
            const sentiment = document.querySelectorAll('#sentiment-7pay rect.bar').length;
            const categories = document.querySelectorAll('#categories-7pay rect.bar').length;
            const top = document.querySelectorAll('#top-items li').length;
            return JSON.stringify({ w: box.width, h: box.height, values, bars, titles, sentiment, categories, top });
        })()"#;
        let v = c.eval(js).unwrap();
        c.go(&base, "/");
        let overview = c
            .eval("document.querySelector('#share-of-voice') !== null && document.querySelector('#chart-7pay').getBoundingClientRect().width > 100")
            .unwrap();
        (v, overview)
    })
    .await
    .unwrap();
    let v: Value = serde_json::from_str(seen.0.as_str().unwrap()).unwrap();
    assert!(
        v["w"].as_f64().unwrap() > 200.0 && v["h"].as_f64().unwrap() > 50.0,
        "{v}"
    );
    let got: Vec<String> = v["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, want, "the chart's buckets are the API's");
    // One drawn bar per non-zero (bucket, kind), each saying its value.
    let nonzero: usize = api["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| usize::from(b["news"] != 0) + usize::from(b["social"] != 0))
        .sum();
    assert_eq!(v["bars"], nonzero, "{v}");
    assert!(
        v["titles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t.as_str().unwrap().starts_with("07/03 ソーシャル: 2")),
        "{v}"
    );
    assert!(
        v["sentiment"].as_u64().unwrap() > 0 && v["categories"].as_u64().unwrap() > 0,
        "{v}"
    );
    assert_eq!(v["top"], posts.len(), "{v}");
    assert_eq!(seen.1, json!(true), "the overview renders its charts");
}
