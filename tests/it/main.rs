//! The one integration-test binary: starts the real app on port 0 against local fixtures.
mod accounts;
mod alerts;
mod analysis;
mod browser;
mod cli;
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

pub async fn spawn_app_with(settings: Settings, dir: Option<tempfile::TempDir>) -> TestApp {
    let clock = ManualClock::new(test_now());
    let app = Application::build(settings, Arc::new(clock.clone()))
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
