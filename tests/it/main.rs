//! The one integration-test binary: starts the real app on port 0 against local fixtures.
mod accounts;
mod alerts;
mod analysis;
mod browser;
mod cli;
mod cluster;
mod corpus;
mod crash;
mod crawler;
mod fixtures;
mod flow;
mod fuzz;
mod limits;
mod metrics;
mod properties;
mod search;
mod status;
mod store;
mod webhooks;

use kizashi::app::{AppState, Application};
use kizashi::clock::ManualClock;
use kizashi::config::Settings;
use std::sync::Arc;
use std::time::Duration;

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub state: Arc<AppState>,
    pub clock: ManualClock,
    pub _dir: Option<tempfile::TempDir>,
    /// A PostgreSQL test database lives (and is dropped) with the app.
    pub _db: Option<TestDb>,
}

/// The fixed "now" of the tests: 2019-07-06 12:00 JST, after every fixture item.
pub fn test_now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2019-07-06T12:00:00+09:00")
        .unwrap()
        .with_timezone(&chrono::Utc)
}

/// Settings for a test: loopback port 0, the given data dir, private networks allowed, a short
/// per-host interval, and the given sources with a schedule that never fires during a test
/// (crawls are triggered).
pub fn test_settings(data_dir: &std::path::Path, sources: &[(&str, &str, &str)]) -> Settings {
    test_settings_with(
        data_dir,
        "allow_private_networks = true\ntimeout_secs = 5\nper_host_interval_ms = 20\n",
        sources,
    )
}

/// Like `test_settings` with the `[crawl]` section given.
pub fn test_settings_with(
    data_dir: &std::path::Path,
    crawl: &str,
    sources: &[(&str, &str, &str)],
) -> Settings {
    let mut toml = format!(
        "bind = \"127.0.0.1:0\"\ndata_dir = {:?}\n[crawl]\n{crawl}\n",
        data_dir.display().to_string()
    );
    for (name, url, kind) in sources {
        toml.push_str(&format!(
            "[[sources]]\nname = \"{name}\"\nurl = \"{url}\"\nschedule = \"0 0 0 1 1 *\"\nitem_kind = \"{kind}\"\n"
        ));
    }
    Settings::from_sources(Some(("test.toml", &toml)), std::iter::empty()).unwrap()
}

/// The app on `db` (its settings applied), keeping the database for the app's lifetime.
pub async fn spawn_app_on(settings: Settings, dir: tempfile::TempDir, db: TestDb) -> TestApp {
    let mut app = spawn_app_with(db.apply(settings), Some(dir)).await;
    if db.database.is_some() {
        app._db = Some(db);
    }
    app
}

pub async fn spawn_app_with(settings: Settings, dir: Option<tempfile::TempDir>) -> TestApp {
    spawn_app_as(settings, dir, kizashi::app::Role::All).await
}

/// The app in one role (`serve --role`).
pub async fn spawn_app_as(
    settings: Settings,
    dir: Option<tempfile::TempDir>,
    role: kizashi::app::Role,
) -> TestApp {
    // KIZASHI_TEST_EVERY_APP_ON_POSTGRES=1 moves every in-process app still on its default
    // SQLite file onto a fresh PostgreSQL database (a wider, slower sweep of the queries;
    // tests that open the SQLite file themselves then fail by design).
    let mut settings = settings;
    let mut db = None;
    if std::env::var_os("KIZASHI_TEST_EVERY_APP_ON_POSTGRES").is_some()
        && settings.database
            == kizashi::config::Database::Sqlite(settings.data_dir.join("kizashi.sqlite"))
    {
        if let Some(pg) = fresh_postgres("every_app").await {
            settings = pg.apply(settings);
            db = Some(pg);
        }
    }
    let clock = ManualClock::new(test_now());
    let app = Application::build_as(settings, Arc::new(clock.clone()), role)
        .await
        .expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        base,
        client: reqwest::Client::new(),
        state,
        clock,
        _dir: dir,
        _db: db,
    }
}

impl TestApp {
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// The last URL segment of each hit of a search API path, in result order.
    pub async fn hit_slugs(&self, path: &str) -> Vec<String> {
        let (status, body) = self.get_json(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        body["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                h["url"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    /// Waits until the index has applied every committed change.
    pub async fn wait_indexed(&self) {
        for _ in 0..200 {
            let (_, h) = self.get_json("/healthz").await;
            if h["index"]["lag"] == 0 && h["index"]["db_seq"].as_i64().unwrap_or(0) > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("index did not catch up");
    }
}

/// `q` percent-encoded for a URL.
pub fn enc(q: &str) -> String {
    url::form_urlencoded::byte_serialize(q.as_bytes()).collect()
}

/// The database of one test. SQLite lives in the test's data dir (the default); PostgreSQL
/// is a fresh database on the server `KIZASHI_TEST_POSTGRES_URL` names, dropped with this
/// value, so tests run side by side.
pub struct TestDb {
    pub engine: &'static str,
    pub database: Option<kizashi::config::Database>,
    _drop: Option<PgDropGuard>,
}

impl TestDb {
    pub fn sqlite() -> Self {
        Self {
            engine: "sqlite",
            database: None,
            _drop: None,
        }
    }

    /// `settings` with this database (SQLite: unchanged).
    pub fn apply(&self, mut settings: Settings) -> Settings {
        if let Some(db) = &self.database {
            settings.database = db.clone();
        }
        settings
    }

    /// The PostgreSQL URL with its password, for tests that connect directly.
    pub fn postgres_url(&self) -> Option<String> {
        match &self.database {
            Some(kizashi::config::Database::Postgres(u)) => Some(u.expose().to_string()),
            _ => None,
        }
    }
}

/// The engines a store test runs on: SQLite always, PostgreSQL when
/// `KIZASHI_TEST_POSTGRES_URL` is set (else one line says it was skipped).
pub async fn engines(test: &str) -> Vec<TestDb> {
    let mut out = vec![TestDb::sqlite()];
    match fresh_postgres(test).await {
        Some(db) => out.push(db),
        None => skipped(test, "its PostgreSQL run"),
    }
    out
}

/// Says that `what` of `test` did not run for want of `KIZASHI_TEST_POSTGRES_URL`. Written to
/// the process's stderr directly: the test harness captures `eprintln!` of passing tests.
pub fn skipped(test: &str, what: &str) {
    use std::io::Write;
    // One write, so lines of tests running side by side do not interleave.
    let line = format!("{test}: skipped {what}: set KIZASHI_TEST_POSTGRES_URL\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

struct PgDropGuard {
    admin_url: String,
    name: String,
}

impl Drop for PgDropGuard {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime: a thread with its own runtime does the async
        // work. FORCE ends the pools the test left open.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    use sqlx::Connection;
                    if let Ok(mut c) = sqlx::PgConnection::connect(&url).await {
                        let _ = sqlx::query(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .execute(&mut c)
                        .await;
                    }
                })
        })
        .join();
    }
}

/// A new, empty PostgreSQL database for `test`, or None without `KIZASHI_TEST_POSTGRES_URL`.
pub async fn fresh_postgres(test: &str) -> Option<TestDb> {
    use sqlx::Connection;
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let admin_url = std::env::var("KIZASHI_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())?;
    let slug: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(30)
        .collect();
    let name = format!(
        "kz_{slug}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("KIZASHI_TEST_POSTGRES_URL: cannot connect: {e}"));
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    let mut url = url::Url::parse(&admin_url).unwrap();
    url.set_path(&name);
    Some(TestDb {
        engine: "postgres",
        database: Some(kizashi::config::Database::Postgres(
            kizashi::config::PostgresUrl::parse(url.as_str()).unwrap(),
        )),
        _drop: Some(PgDropGuard { admin_url, name }),
    })
}
