//! Accounts over HTTP: setup link, password + TOTP sign-in, sessions and cookies, CSRF, roles,
//! lockout, logout and sign-out-everywhere, and TOTP codes accepted once only.
use crate::{spawn_app_with, test_settings, TestApp};
use kizashi::auth::{self, Role};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub(crate) const PASSWORD: &str = "correct horse battery staple";

async fn app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    spawn_app_with(test_settings(dir.path(), &[]), Some(dir)).await
}

async fn app_on(db: crate::TestDb) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    crate::spawn_app_on(test_settings(dir.path(), &[]), dir, db).await
}

/// A browser without a cookie store: cookies are kept by hand so tests can see them.
pub(crate) struct Browser<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
    pub(crate) cookies: BTreeMap<String, String>,
}

pub(crate) struct Resp {
    pub(crate) status: u16,
    headers: HeaderMap,
    pub(crate) text: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }
}

/// The value of `<input type="hidden" name="csrf" value="…">`.
fn hidden_csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("csrf field") + 19;
    html[at..at + html[at..].find('"').unwrap()].to_string()
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> &'a str {
    let a = s.find(start).unwrap_or_else(|| panic!("{start} in {s}")) + start.len();
    &s[a..a + s[a..].find(end).unwrap()]
}

impl<'a> Browser<'a> {
    pub(crate) fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, r: reqwest::RequestBuilder) -> Resp {
        let r = if self.cookies.is_empty() {
            r
        } else {
            r.header("cookie", self.cookie_header())
        };
        let r = r.send().await.unwrap();
        let resp = Resp {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            text: String::new(),
        };
        for c in resp.set_cookies() {
            let pair = c.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() || c.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
        Resp {
            text: r.text().await.unwrap(),
            ..resp
        }
    }

    pub(crate) async fn get(&mut self, path: &str) -> Resp {
        let r = self.client.get(format!("{}{path}", self.app.base));
        self.send(r).await
    }

    async fn post_form(&mut self, path: &str, form: &[(&str, &str)]) -> Resp {
        let r = self
            .client
            .post(format!("{}{path}", self.app.base))
            .form(form);
        self.send(r).await
    }

    async fn post_json(&mut self, path: &str, body: Value, csrf: Option<&str>) -> Resp {
        let mut r = self
            .client
            .post(format!("{}{path}", self.app.base))
            .json(&body);
        if let Some(t) = csrf {
            r = r.header("x-csrf-token", t);
        }
        self.send(r).await
    }

    pub(crate) async fn login(&mut self, name: &str, password: &str, code: &str) -> Resp {
        let page = self.get("/login").await;
        assert_eq!(page.status, 200);
        let csrf = hidden_csrf(&page.text);
        self.post_form(
            "/login",
            &[
                ("name", name),
                ("password", password),
                ("code", code),
                ("csrf", &csrf),
            ],
        )
        .await
    }

    /// The session's CSRF token, from /account.
    async fn csrf(&mut self) -> String {
        let page = self.get("/account").await;
        assert_eq!(page.status, 200, "{}", page.text);
        hidden_csrf(&page.text)
    }
}

fn now_secs(app: &TestApp) -> i64 {
    app.clock_now().timestamp()
}

pub(crate) trait ClockNow {
    fn clock_now(&self) -> chrono::DateTime<chrono::Utc>;
    fn advance(&self, secs: i64);
}

impl ClockNow for TestApp {
    fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        use kizashi::clock::Clock;
        self.clock.now()
    }
    fn advance(&self, secs: i64) {
        self.clock
            .set(self.clock_now() + chrono::Duration::seconds(secs));
    }
}

/// Creates a user and completes setup through the web pages; returns (TOTP secret, recovery
/// codes). Viewers have no TOTP.
pub(crate) async fn enrol(app: &TestApp, name: &str, role: Role) -> (Option<String>, Vec<String>) {
    let token = auth::create_user(&app.state.store, name, role, app.clock_now())
        .await
        .unwrap();
    let mut b = Browser::new(app);
    let page = b.get(&format!("/setup/{token}")).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let csrf = hidden_csrf(&page.text);
    let secret = page
        .text
        .contains("id=\"totp-secret\"")
        .then(|| between(&page.text, "<code id=\"totp-secret\">", "</code>").to_string());
    if let Some(secret) = &secret {
        assert!(
            page.text.contains("data:image/svg+xml;base64,"),
            "QR code shown"
        );
        // A wrong code does not finish setup.
        let bad = b
            .post_form(
                &format!("/setup/{token}"),
                &[("password", PASSWORD), ("code", "000000"), ("csrf", &csrf)],
            )
            .await;
        assert_eq!(bad.status, 400, "{}", bad.text);
        let _ = secret;
    }
    let code = secret
        .as_deref()
        .map(|s| auth::totp_code(s, now_secs(app)).unwrap())
        .unwrap_or_default();
    let done = b
        .post_form(
            &format!("/setup/{token}"),
            &[("password", PASSWORD), ("code", &code), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.text);
    let codes: Vec<String> = done
        .text
        .split("<li><code>")
        .skip(1)
        .map(|s| s[..s.find('<').unwrap()].to_string())
        .collect();
    // The link works once.
    assert_eq!(b.get(&format!("/setup/{token}")).await.status, 404);
    (secret, codes)
}

/// A fresh TOTP code: the clock moves on one 30-second step first.
pub(crate) fn next_code(app: &TestApp, secret: &str) -> String {
    app.advance(30);
    auth::totp_code(secret, now_secs(app)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_signs_in_with_password_and_totp_and_posts_an_incident() {
    for db in crate::engines("operator_signs_in_with_password_and_totp_and_posts_an_incident").await
    {
        operator_signs_in_with_password_and_totp_and_posts_an_incident_on(db).await;
    }
}

async fn operator_signs_in_with_password_and_totp_and_posts_an_incident_on(db: crate::TestDb) {
    let app = app_on(db).await;
    let mut anon = Browser::new(&app);
    // No accounts yet: the dashboard is open.
    assert_eq!(anon.get("/").await.status, 200);

    let (secret, codes) = enrol(&app, "ops", Role::Operator).await;
    let secret = secret.expect("operators enrol TOTP");
    assert_eq!(codes.len(), 10);

    // Accounts exist: dashboard and APIs need a sign-in; status pages stay public.
    let r = anon.get("/").await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/login"));
    assert_eq!(anon.get("/api/search?q=x").await.status, 401);
    let status = anon.get("/status").await;
    assert_eq!(status.status, 200);
    assert!(status.set_cookies().is_empty());
    for h in [
        "content-security-policy",
        "x-frame-options",
        "referrer-policy",
    ] {
        assert!(status.header(h).is_some(), "{h} on /status");
    }
    assert_eq!(status.header("x-frame-options"), Some("DENY"));

    let mut b = Browser::new(&app);
    // Password right, TOTP wrong.
    let r = b.login("ops", PASSWORD, "123456").await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.text.contains("wrong"));
    assert!(!b.cookies.contains_key("kizashi_session"));
    // Password only.
    assert_eq!(b.login("ops", PASSWORD, "").await.status, 401);
    // Wrong password, right code.
    let code = next_code(&app, &secret);
    assert_eq!(b.login("ops", "wrong password!!", &code).await.status, 401);

    let code = next_code(&app, &secret);
    let r = b.login("ops", PASSWORD, &code).await;
    assert_eq!(r.status, 303, "{}", r.text);
    assert_eq!(r.header("location"), Some("/admin/status"));
    let set = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("kizashi_session="))
        .unwrap();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{attr} in {set}");
    }
    let first_session = b.cookies["kizashi_session"].clone();

    // The same code again (same time step) is refused, even with the right password.
    let mut other = Browser::new(&app);
    assert_eq!(other.login("ops", PASSWORD, &code).await.status, 401);

    // JSON API: the session alone is not enough, the CSRF header is required.
    let incident = json!({ "name": "PayPay 決済エラー", "body": "調査しています。" });
    let r = b
        .post_json("/api/v1/incidents", incident.clone(), None)
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = b
        .post_json("/api/v1/incidents", incident.clone(), Some("forged"))
        .await;
    assert_eq!(r.status, 403);
    let csrf = b.csrf().await;
    let r = b
        .post_json("/api/v1/incidents", incident.clone(), Some(&csrf))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(anon.get("/status").await.text.contains("PayPay 決済エラー"));
    let summary: Value =
        serde_json::from_str(&anon.get("/api/v2/summary.json").await.text).unwrap();
    assert_eq!(summary["incidents"][0]["name"], "PayPay 決済エラー");

    // Admin HTML form: missing CSRF fails, with CSRF works.
    let form = [
        ("name", "LINE Pay 遅延"),
        ("status", "investigating"),
        ("body", ""),
    ];
    let r = b.post_form("/admin/status/incidents", &form).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let mut with = form.to_vec();
    with.push(("csrf", &csrf));
    let r = b.post_form("/admin/status/incidents", &with).await;
    assert_eq!(r.status, 303, "{}", r.text);
    assert!(anon.get("/status").await.text.contains("LINE Pay 遅延"));
    assert!(b.get("/admin/status").await.text.contains("LINE Pay 遅延"));

    // Operators cannot manage users.
    assert_eq!(b.get("/admin/users").await.status, 403);

    // Signing in again rotates the session id; the old one stops working.
    let code = next_code(&app, &secret);
    let r = b.login("ops", PASSWORD, &code).await;
    assert_eq!(r.status, 303);
    let second_session = b.cookies["kizashi_session"].clone();
    assert_ne!(first_session, second_session);
    let mut stale = Browser::new(&app);
    stale
        .cookies
        .insert("kizashi_session".into(), first_session);
    assert_eq!(stale.get("/account").await.status, 303);

    // A recovery code works once.
    let mut rec = Browser::new(&app);
    assert_eq!(rec.login("ops", PASSWORD, &codes[0]).await.status, 303);
    let mut rec2 = Browser::new(&app);
    assert_eq!(rec2.login("ops", PASSWORD, &codes[0]).await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_reads_the_dashboard_but_cannot_write() {
    let app = app().await;
    let (secret, codes) = enrol(&app, "pr-team", Role::Viewer).await;
    assert!(secret.is_none() && codes.is_empty(), "viewers have no TOTP");
    let mut b = Browser::new(&app);
    let r = b.login("pr-team", PASSWORD, "").await;
    assert_eq!(r.status, 303, "{}", r.text);
    assert_eq!(r.header("location"), Some("/"));
    assert_eq!(b.get("/").await.status, 200);
    assert_eq!(b.get("/api/search?q=7pay").await.status, 200);
    let csrf = b.csrf().await;
    let r = b
        .post_json("/api/v1/incidents", json!({ "name": "x" }), Some(&csrf))
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("viewer"));
    assert_eq!(b.get("/admin/status").await.status, 403);
    let r = b.post_json("/api/crawl", json!({}), Some(&csrf)).await;
    assert_eq!(r.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_totp_code_stays_used_after_a_restart() {
    for db in crate::engines("a_used_totp_code_stays_used_after_a_restart").await {
        a_used_totp_code_stays_used_after_a_restart_on(db).await;
    }
}

async fn a_used_totp_code_stays_used_after_a_restart_on(db: crate::TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let database = db.apply(test_settings(&data, &[])).database;
    let app = crate::spawn_app_on(test_settings(&data, &[]), dir, db).await;
    let (secret, _) = enrol(&app, "ops", Role::Operator).await;
    let code = next_code(&app, &secret.unwrap());
    let mut b = Browser::new(&app);
    assert_eq!(b.login("ops", PASSWORD, &code).await.status, 303);
    // A new process (or another node) opens the same database: nothing in memory carries over.
    let store = kizashi::store::Store::connect(&database).await.unwrap();
    let again = auth::login(&store, "ops", PASSWORD, &code, "192.0.2.1", app.clock_now()).await;
    assert!(
        matches!(again, Err(auth::AuthError::BadCredentials)),
        "{:?}",
        again.map(|s| s.user)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_account_stays_locked_for_the_stated_time_and_an_admin_can_unlock_it() {
    for db in crate::engines(
        "a_locked_account_stays_locked_for_the_stated_time_and_an_admin_can_unlock_it",
    )
    .await
    {
        a_locked_account_stays_locked_for_the_stated_time_and_an_admin_can_unlock_it_on(db).await;
    }
}

async fn a_locked_account_stays_locked_for_the_stated_time_and_an_admin_can_unlock_it_on(
    db: crate::TestDb,
) {
    let app = app_on(db).await;
    let (admin_secret, _) = enrol(&app, "admin", Role::Admin).await;
    let admin_secret = admin_secret.unwrap();
    let (secret, _) = enrol(&app, "ops", Role::Operator).await;
    let secret = secret.unwrap();
    let mut b = Browser::new(&app);
    for i in 1..=4 {
        let r = b.login("ops", "not the password", "").await;
        assert_eq!(r.status, 401, "failure {i}");
    }
    let r = b.login("ops", "not the password", "").await;
    assert_eq!(r.status, 429, "the fifth failure locks");
    assert!(
        r.text.contains("locked") && r.text.contains("JST"),
        "{}",
        r.text
    );
    // The right password and a fresh code do not help while locked…
    let code = next_code(&app, &secret);
    let r = b.login("ops", PASSWORD, &code).await;
    assert_eq!(r.status, 429);
    // …until just before the 15 minutes are over…
    app.advance(15 * 60 - 31);
    let code = auth::totp_code(&secret, now_secs(&app)).unwrap();
    assert_eq!(b.login("ops", PASSWORD, &code).await.status, 429);
    // …and it opens when they are.
    app.advance(1);
    let code = auth::totp_code(&secret, now_secs(&app)).unwrap();
    assert_eq!(b.login("ops", PASSWORD, &code).await.status, 303);

    // Lock again, then an admin unlocks.
    let mut c = Browser::new(&app);
    for _ in 0..5 {
        c.login("ops", "not the password", "").await;
    }
    let code = next_code(&app, &secret);
    assert_eq!(c.login("ops", PASSWORD, &code).await.status, 429);
    let mut admin = Browser::new(&app);
    let code = next_code(&app, &admin_secret);
    assert_eq!(admin.login("admin", PASSWORD, &code).await.status, 303);
    let users = admin.get("/admin/users").await;
    assert_eq!(users.status, 200);
    assert!(users.text.contains("locked until"));
    assert!(
        users.text.contains("sign_in_failed"),
        "failures are audited"
    );
    let csrf = hidden_csrf(&users.text);
    let r = admin
        .post_form("/admin/users/ops/unlock", &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, 303);
    let code = next_code(&app, &secret);
    assert_eq!(c.login("ops", PASSWORD, &code).await.status, 303);
    let audit = admin.get("/admin/users").await.text;
    assert!(audit.contains("user_unlock"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_one_session_and_sign_out_everywhere_ends_all() {
    for db in crate::engines("logout_ends_one_session_and_sign_out_everywhere_ends_all").await {
        logout_ends_one_session_and_sign_out_everywhere_ends_all_on(db).await;
    }
}

async fn logout_ends_one_session_and_sign_out_everywhere_ends_all_on(db: crate::TestDb) {
    let app = app_on(db).await;
    let (secret, _) = enrol(&app, "ops", Role::Operator).await;
    let secret = secret.unwrap();
    let mut laptop = Browser::new(&app);
    let mut phone = Browser::new(&app);
    let mut tablet = Browser::new(&app);
    for b in [&mut laptop, &mut phone, &mut tablet] {
        let code = next_code(&app, &secret);
        assert_eq!(b.login("ops", PASSWORD, &code).await.status, 303);
        assert_eq!(b.get("/account").await.status, 200);
    }
    let saved = laptop.cookies.clone();
    let csrf = laptop.csrf().await;
    // Logout needs the CSRF token too.
    assert_eq!(laptop.post_form("/logout", &[]).await.status, 403);
    let r = laptop.post_form("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 303);
    let mut replay = Browser::new(&app);
    replay.cookies = saved;
    assert_eq!(
        replay.get("/account").await.status,
        303,
        "logged-out id is dead"
    );
    assert_eq!(
        phone.get("/account").await.status,
        200,
        "other sessions live"
    );

    let csrf = phone.csrf().await;
    let r = phone
        .post_form("/account/sign-out-everywhere", &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(phone.get("/account").await.status, 303);
    assert_eq!(tablet.get("/account").await.status, 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_without_the_form_token_is_refused() {
    let app = app().await;
    enrol(&app, "ops", Role::Operator).await;
    let mut b = Browser::new(&app);
    let r = b
        .post_form("/login", &[("name", "ops"), ("password", PASSWORD)])
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_add_prints_a_one_time_setup_link() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let app = spawn_app_with(test_settings(&data, &[]), Some(dir)).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kizashi"))
        .env("KIZASHI_DATA_DIR", &data)
        .env("KIZASHI_LOG", "warn")
        .current_dir(&data)
        .args(["user", "add", "kanri", "--role", "admin"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let link = String::from_utf8(out.stdout).unwrap();
    let path = &link.trim()[link.find("/setup/").unwrap()..];
    let mut b = Browser::new(&app);
    let page = b.get(path).await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("kanri") && page.text.contains("totp-secret"));
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_kizashi"))
        .env("KIZASHI_DATA_DIR", &data)
        .current_dir(&data)
        .args(["user", "add", "x", "--role", "root"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a role"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_are_scoped_capped_by_role_hashed_and_revocable() {
    for db in crate::engines("api_tokens_are_scoped_capped_by_role_hashed_and_revocable").await {
        api_tokens_are_scoped_capped_by_role_hashed_and_revocable_on(db).await;
    }
}

async fn api_tokens_are_scoped_capped_by_role_hashed_and_revocable_on(db: crate::TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let database = db.apply(test_settings(&data, &[])).database;
    let app = crate::spawn_app_on(test_settings(&data, &[]), dir, db).await;
    enrol(&app, "ops", Role::Operator).await;
    enrol(&app, "pr-team", Role::Viewer).await;
    let store = &app.state.store;
    let now = app.clock_now();
    let read = auth::create_token(store, "analyst", "ops", auth::TokenScope::Read, now)
        .await
        .unwrap();
    let write = auth::create_token(store, "deploy-bot", "ops", auth::TokenScope::Write, now)
        .await
        .unwrap();
    let viewer_write = auth::create_token(store, "pr-bot", "pr-team", auth::TokenScope::Write, now)
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let call = |method: &str, path: &str, token: &str| {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        client
            .request(m, format!("{}{path}", app.base))
            .bearer_auth(token)
            .json(&json!({ "name": "トークンから登録" }))
            .send()
    };
    assert_eq!(
        call("GET", "/api/search?q=7pay", &read)
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        call("GET", "/api/timeseries", &read)
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        call("POST", "/api/v1/incidents", &read)
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        call("GET", "/", &read).await.unwrap().status(),
        403,
        "pages need a sign-in"
    );
    // A write token needs no CSRF header: browsers never send it on their own.
    let r = call("POST", "/api/v1/incidents", &write).await.unwrap();
    assert_eq!(r.status(), 201);
    // …but it cannot exceed its owner's role.
    assert_eq!(
        call("POST", "/api/v1/incidents", &viewer_write)
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        call("GET", "/api/search?q=x", "kz_forged")
            .await
            .unwrap()
            .status(),
        401
    );

    // Only a hash is stored.
    sqlx::any::install_default_drivers();
    let url = match &database {
        kizashi::config::Database::Sqlite(path) => format!("sqlite://{}", path.display()),
        kizashi::config::Database::Postgres(url) => url.expose().to_string(),
    };
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let hashes: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM api_tokens")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(hashes.len(), 3);
    assert!(hashes
        .iter()
        .all(|h| h.len() == 64 && !h.contains(&read[3..])));
    assert!(!hashes.contains(&read) && !hashes.contains(&write));

    store.revoke_api_token("deploy-bot", 0).await.unwrap();
    assert_eq!(
        call("POST", "/api/v1/incidents", &write)
            .await
            .unwrap()
            .status(),
        401
    );

    // The audit log names the token.
    let entries = store.audit_entries(50).await.unwrap();
    assert!(entries
        .iter()
        .any(|e| e.action == "incident_create" && e.actor == "ops (token deploy-bot)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_ends_every_session_and_needs_new_password_and_totp() {
    let app = app().await;
    let (secret, _) = enrol(&app, "ops", Role::Operator).await;
    let secret = secret.unwrap();
    let mut b = Browser::new(&app);
    let code = next_code(&app, &secret);
    assert_eq!(b.login("ops", PASSWORD, &code).await.status, 303);
    assert_eq!(b.get("/account").await.status, 200);

    let token = auth::reset_user(&app.state.store, "ops", app.clock_now())
        .await
        .unwrap();
    assert_eq!(b.get("/account").await.status, 303, "the session ended");
    let code = next_code(&app, &secret);
    assert_eq!(
        Browser::new(&app)
            .login("ops", PASSWORD, &code)
            .await
            .status,
        401,
        "the old password and TOTP no longer work"
    );
    let mut s = Browser::new(&app);
    let page = s.get(&format!("/setup/{token}")).await;
    assert_eq!(page.status, 200);
    let new_secret = between(&page.text, "<code id=\"totp-secret\">", "</code>").to_string();
    assert_ne!(new_secret, secret);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_forwarded_address_is_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path(), &[]);
    settings.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let app = spawn_app_with(settings, Some(dir)).await;
    enrol(&app, "ops", Role::Operator).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut b = Browser::new(&app);
    let csrf = hidden_csrf(&b.get("/login").await.text);
    let cookie = b.cookie_header();
    let attempt = |ip: &'static str| {
        client
            .post(format!("{}/login", app.base))
            .header("cookie", cookie.clone())
            .header("x-forwarded-for", format!("{ip}, 127.0.0.1"))
            .form(&[
                ("name", "nobody"),
                ("password", "x"),
                ("csrf", csrf.as_str()),
            ])
            .send()
    };
    // Twenty failures from one client address lock that address, not the proxy.
    for _ in 0..20 {
        assert_eq!(attempt("203.0.113.9").await.unwrap().status(), 401);
    }
    let r = attempt("203.0.113.9").await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.text().await.unwrap().contains("this address"));
    assert_eq!(attempt("198.51.100.7").await.unwrap().status(), 401);
    let entries = app.state.store.audit_entries(5).await.unwrap();
    assert_eq!(entries[0].ip, "198.51.100.7");
    assert_eq!(entries[0].action, "sign_in_failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_belong_to_admins_incidents_to_operators() {
    let app = app().await;
    let (ops_secret, _) = enrol(&app, "ops", Role::Operator).await;
    let (admin_secret, _) = enrol(&app, "admin", Role::Admin).await;
    let mut ops = Browser::new(&app);
    let code = next_code(&app, &ops_secret.unwrap());
    assert_eq!(ops.login("ops", PASSWORD, &code).await.status, 303);
    let mut admin = Browser::new(&app);
    let code = next_code(&app, &admin_secret.unwrap());
    assert_eq!(admin.login("admin", PASSWORD, &code).await.status, 303);
    let put = |b: &Browser, csrf: &str| {
        b.client
            .put(format!("{}/api/v1/components/api", app.base))
            .header("cookie", b.cookie_header())
            .header("x-csrf-token", csrf)
            .json(&json!({ "name": "決済API" }))
            .send()
    };
    let csrf = ops.csrf().await;
    assert_eq!(put(&ops, &csrf).await.unwrap().status(), 403);
    let csrf = admin.csrf().await;
    assert_eq!(put(&admin, &csrf).await.unwrap().status(), 200);
    let csrf = ops.csrf().await;
    let r = ops
        .post_json(
            "/api/v1/incidents",
            json!({ "name": "遅延", "components": { "api": "degraded_performance" } }),
            Some(&csrf),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_ends_a_users_sessions_and_the_audit_log_is_append_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let app = spawn_app_with(test_settings(&data, &[]), Some(dir)).await;
    let (ops_secret, _) = enrol(&app, "ops", Role::Operator).await;
    let (admin_secret, _) = enrol(&app, "admin", Role::Admin).await;
    let mut ops = Browser::new(&app);
    let code = next_code(&app, &ops_secret.unwrap());
    assert_eq!(ops.login("ops", PASSWORD, &code).await.status, 303);
    let mut admin = Browser::new(&app);
    let code = next_code(&app, &admin_secret.unwrap());
    assert_eq!(admin.login("admin", PASSWORD, &code).await.status, 303);
    let users = admin.get("/admin/users").await;
    let csrf = hidden_csrf(&users.text);
    assert_eq!(
        admin
            .post_form("/admin/users/ops/end-sessions", &[])
            .await
            .status,
        403,
        "CSRF token required"
    );
    assert_eq!(ops.get("/account").await.status, 200);
    let r = admin
        .post_form("/admin/users/ops/end-sessions", &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(ops.get("/account").await.status, 303, "ops was signed out");
    assert_eq!(admin.get("/account").await.status, 200, "the admin was not");
    let log = admin.get("/admin/users").await.text;
    for action in ["user_setup", "sign_in", "user_end_sessions"] {
        assert!(log.contains(action), "{action} in the audit log");
    }

    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        data.join("kizashi.sqlite").display()
    ))
    .await
    .unwrap();
    for sql in [
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log",
    ] {
        let e = sqlx::query(sql).execute(&pool).await.unwrap_err();
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
}

/// Admins pause sources and choose the watched services; both are audited with before and
/// after, and take effect: a paused source is not crawled, an unwatched service leaves the
/// dashboard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_and_service_edits_take_effect_and_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let settings = crate::test_settings(
        dir.path(),
        &[("feed-a", "http://127.0.0.1:9/a.xml", "news")],
    );
    let app = crate::spawn_app_with(settings, Some(dir)).await;
    let form = |path: &str, fields: &[(&str, &str)]| {
        app.client
            .post(format!("{}{path}", app.base))
            .form(fields)
            .send()
    };
    let r = form("/admin/sources/feed-a", &[("csrf", ""), ("crawl", "off")])
        .await
        .unwrap();
    assert!(
        r.status().is_success() || r.status().is_redirection(),
        "{}",
        r.status()
    );
    let summary = kizashi::jobs::crawl_all(&app.state).await.unwrap();
    assert!(
        summary.is_empty(),
        "a paused source is not crawled: {summary:?}"
    );
    let (_, page) = app.get_text("/admin/sources").await;
    assert!(page.contains(r#"value="on""#), "the page offers to resume");
    let r = form("/admin/sources/nope", &[("csrf", ""), ("crawl", "off")])
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = form("/admin/sources/feed-a", &[("csrf", ""), ("crawl", "maybe")])
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let (_, before) = app.get_text("/").await;
    assert!(before.contains(r#"id="service-paypay""#));
    form(
        "/admin/services/paypay",
        &[("csrf", ""), ("watched", "off"), ("position", "1")],
    )
    .await
    .unwrap();
    let (_, after) = app.get_text("/").await;
    assert!(
        !after.contains(r#"id="service-paypay""#),
        "unwatched services leave the dashboard"
    );
    let r = form(
        "/admin/services/paypay",
        &[("csrf", ""), ("watched", "on"), ("position", "-3")],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400, "a bad position changes nothing");
    let (_, still) = app.get_text("/").await;
    assert!(!still.contains(r#"id="service-paypay""#));

    let entries = app.state.store.audit_entries(10).await.unwrap();
    let find = |action: &str| {
        entries
            .iter()
            .find(|e| e.action == action)
            .cloned()
            .unwrap()
    };
    let s = find("source_update");
    assert_eq!(
        (s.target.as_str(), s.before.as_deref(), s.after.as_deref()),
        ("source feed-a", Some("enabled=true"), Some("enabled=false"))
    );
    let v = find("service_update");
    assert_eq!(v.target, "service paypay");
    assert_eq!(v.before.as_deref(), Some("watched=true position=1"));
    assert_eq!(v.after.as_deref(), Some("watched=false position=1"));
}
