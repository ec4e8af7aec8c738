//! `kizashi demo`: starts the app on a simulated clock, serves a scenario's items from the
//! local feed server and crawls them with the real crawler — every simulated hour through
//! the weeks of ordinary chatter, then every ten simulated minutes (paced in real time) from
//! `live_from` — running the live alert detector after each crawl.
use super::{generate, scenario, start_of, Scenario};
use crate::app::{AppState, Application};
use crate::clock::ManualClock;
use crate::config::Settings;
use chrono::{DateTime, Utc};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub struct DemoOptions<'a> {
    pub scenario: &'a str,
    pub data_dir: &'a Path,
    pub bind: std::net::SocketAddr,
    /// Real time per ten simulated minutes once the replay is live.
    pub live_tick: Duration,
    /// Print progress lines.
    pub verbose: bool,
}

/// What the replay ended with.
pub struct DemoRun {
    pub scenario: Scenario,
    pub state: Arc<AppState>,
    pub clock: ManualClock,
    pub port: u16,
    pub alerts: Vec<serde_json::Value>,
}

fn demo_settings(opts: &DemoOptions, feeds: &str) -> anyhow::Result<Settings> {
    let toml = format!(
        "bind = {bind:?}\ndata_dir = {dir:?}\npublic_dashboard = true\n\
         [crawl]\nallow_private_networks = true\nper_host_interval_ms = 1\ntimeout_secs = 30\n\
         [[sources]]\nname = \"demo-news\"\nurl = \"{feeds}/news.rss\"\nschedule = \"0 0 0 1 1 *\"\nitem_kind = \"news\"\n\
         [[sources]]\nname = \"demo-social\"\nurl = \"{feeds}/social.json\"\nschedule = \"0 0 0 1 1 *\"\nitem_kind = \"social\"\n\
         [alerts]\ncheck_every_secs = 86400\n",
        bind = opts.bind.to_string(),
        dir = opts.data_dir.display().to_string(),
    );
    Ok(Settings::from_sources(
        Some(("demo", &toml)),
        std::iter::empty(),
    )?)
}

/// Runs a scenario to its end; the app keeps serving (the returned state) until dropped.
pub async fn run(opts: DemoOptions<'_>) -> anyhow::Result<DemoRun> {
    let s = scenario(opts.scenario)?;
    let clock = ManualClock::new(start_of(&s));
    let items = generate(&s, "https://demo.kizashi.invalid");
    let total = items.len();
    let (feeds, _feed_server) = super::feeds::serve(items, Arc::new(clock.clone()))?;
    let settings = demo_settings(&opts, &feeds)?;
    let app = Application::build(settings, Arc::new(clock.clone())).await?;
    let port = app.port();
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    if opts.verbose {
        println!(
            "kizashi demo — {} ({total} synthetic items): http://{}:{port}/ (alerts: /alerts)",
            s.name,
            opts.bind.ip()
        );
    }
    let end = s.end.with_timezone(&Utc);
    let live_from = s.live_from.with_timezone(&Utc);
    let mut t = start_of(&s);
    let mut last_day = String::new();
    while t < end {
        t += if t < live_from {
            chrono::Duration::hours(1)
        } else {
            chrono::Duration::minutes(10)
        };
        clock.set(t);
        step(&state).await?;
        let opened = crate::alerting::detect_now(&state).await?;
        if opts.verbose {
            let day = jst(t)[..10].to_string();
            if day != last_day {
                println!("{day}  {} items stored", state.store.item_count().await?);
                last_day = day;
            }
            for id in opened {
                if let Some(a) = crate::alerting::alert_json_by_id(&state.store, id).await? {
                    println!(
                        "  ⚠ {}  alert: {} / {} ({}, observed {}, expected {})",
                        jst(t),
                        a["service"].as_str().unwrap_or(""),
                        a["category"].as_str().unwrap_or("overall"),
                        a["metric"].as_str().unwrap_or(""),
                        a["observed"],
                        a["expected"]
                    );
                }
            }
        }
        if t >= live_from && !opts.live_tick.is_zero() {
            tokio::time::sleep(opts.live_tick).await;
        }
    }
    let f = crate::store::AlertFilter {
        limit: 500,
        ..Default::default()
    };
    let mut alerts = Vec::new();
    for r in state.store.alerts(&f).await?.iter().rev() {
        alerts.push(crate::alerting::stored_alert_json(&state.store, r).await?);
    }
    Ok(DemoRun {
        scenario: s,
        state,
        clock,
        port,
        alerts,
    })
}

/// One crawl of every source at the clock's now.
async fn step(state: &Arc<AppState>) -> anyhow::Result<()> {
    for source in state.store.sources().await? {
        let summary = crate::jobs::crawl_source(state, &source).await;
        if summary.status == "error" {
            anyhow::bail!(
                "the demo feed {} failed: {}",
                source.name,
                summary.error.unwrap_or_default()
            );
        }
    }
    Ok(())
}

fn jst(t: DateTime<Utc>) -> String {
    crate::aggregate::jst_rfc3339(t.timestamp_millis())
}

/// The scenario's items as `kizashi import` JSON Lines.
pub fn export(name: &str, out: &mut dyn std::io::Write) -> anyhow::Result<usize> {
    let s = scenario(name)?;
    let items = generate(&s, "https://demo.kizashi.invalid");
    for i in &items {
        let line = serde_json::json!({
            "url": i.url,
            "title": i.title,
            "body": i.body,
            "published_at": i.published_at.map(|t| t.to_rfc3339()),
            "source": i.source,
            "kind": i.kind.as_str(),
            "author": i.author,
        });
        writeln!(out, "{line}")?;
    }
    Ok(items.len())
}
