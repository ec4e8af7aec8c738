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
            "location.pathname === {path:?} && document.readyState === 'complete'"
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
