//! metrics: process-wide counters and histograms for `/metrics`, kept in atomics (no metrics
//! crate). Stages record into the one `global()` registry where the event happens (the crawler
//! counts fetch statuses, the pipeline counts ingested items, the web layer times requests);
//! `render` writes them in the Prometheus text format. Gauges read from the database (items,
//! index lag, per-source state, open alerts) are written by the `/metrics` handler itself.
//!
//! No HTTP types and no IO here: the web layer passes route patterns and status codes in.
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

/// The pipeline stages whose errors are counted (`kizashi_stage_errors_total{stage=…}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The request failed or the server answered an error status.
    Fetch,
    /// The bytes could not be read as a feed.
    Parse,
    /// An item could not be analyzed (tokenized/classified).
    Analyze,
    /// A batch could not be written to the database.
    Store,
    /// The indexer could not apply changes.
    Index,
}

impl Stage {
    const ALL: [Stage; 5] = [
        Stage::Fetch,
        Stage::Parse,
        Stage::Analyze,
        Stage::Store,
        Stage::Index,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Fetch => "fetch",
            Stage::Parse => "parse",
            Stage::Analyze => "analyze",
            Stage::Store => "store",
            Stage::Index => "index",
        }
    }
}

/// Upper bounds (seconds) of the HTTP latency buckets: 1 ms to 10 s, then +Inf.
pub const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One Prometheus histogram: per-bucket counts (not cumulative; `render` sums them), the sum
/// in microseconds, and the count.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros().min(u64::MAX as u128) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }
}

/// Responses are grouped by status class so the label set stays small.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn status_class(status: u16) -> usize {
    usize::from(status / 100).clamp(1, 5) - 1
}

/// One route's histograms, one per status class.
type RouteHistograms = Arc<[Histogram; CLASSES.len()]>;

#[derive(Debug, Default)]
pub struct Registry {
    /// Fetch responses by HTTP status (index = status code, 100..=599).
    fetch_status: Vec<AtomicU64>,
    /// Fetches that got no HTTP answer (connection refused, timeout, refused address, …).
    fetch_failed: AtomicU64,
    items_new: AtomicU64,
    items_updated: AtomicU64,
    stage_errors: [AtomicU64; 5],
    /// Route pattern → latency histograms by status class. Routes are patterns, never raw
    /// paths, so the key set is bounded by the route table.
    http: RwLock<HashMap<String, RouteHistograms>>,
}

/// The process's registry.
pub fn global() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::new)
}

impl Registry {
    pub fn new() -> Self {
        Self {
            fetch_status: (0..600).map(|_| AtomicU64::new(0)).collect(),
            ..Self::default()
        }
    }

    /// A fetch got an HTTP answer with this status.
    pub fn fetch_status(&self, status: u16) {
        match self.fetch_status.get(usize::from(status)) {
            Some(c) if status >= 100 => {
                c.fetch_add(1, Relaxed);
            }
            _ => {
                self.fetch_failed.fetch_add(1, Relaxed);
            }
        }
    }

    /// A fetch got no HTTP answer.
    pub fn fetch_failed(&self) {
        self.fetch_failed.fetch_add(1, Relaxed);
    }

    /// Items a committed batch inserted and updated.
    pub fn items_ingested(&self, new: u64, updated: u64) {
        self.items_new.fetch_add(new, Relaxed);
        self.items_updated.fetch_add(updated, Relaxed);
    }

    pub fn stage_error(&self, stage: Stage, n: u64) {
        if n > 0 {
            self.stage_errors[stage as usize].fetch_add(n, Relaxed);
        }
    }

    /// Records one HTTP request: `route` is the matched pattern (`/status/incidents/{id}`) or
    /// a fixed label for unmatched paths.
    pub fn http_request(&self, route: &str, status: u16, took: Duration) {
        let found = self
            .http
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(route)
            .cloned();
        let h = match found {
            Some(h) => h,
            None => self
                .http
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .entry(route.to_string())
                .or_default()
                .clone(),
        };
        h[status_class(status)].observe(took);
    }

    /// Requests recorded for a route and status class (tests and diagnostics).
    pub fn http_count(&self, route: &str, status: u16) -> u64 {
        self.http
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(route)
            .map_or(0, |h| h[status_class(status)].count())
    }

    /// Appends every counter and histogram in the Prometheus text format (version 0.0.4).
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP kizashi_fetches_total Fetches by HTTP status (status=\"error\": no HTTP answer).\n# TYPE kizashi_fetches_total counter"
        );
        for (code, c) in self.fetch_status.iter().enumerate() {
            let n = c.load(Relaxed);
            if n > 0 {
                let _ = writeln!(out, "kizashi_fetches_total{{status=\"{code}\"}} {n}");
            }
        }
        let _ = writeln!(
            out,
            "kizashi_fetches_total{{status=\"error\"}} {}",
            self.fetch_failed.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP kizashi_items_ingested_total Items written by crawls, imports and reanalysis (new or changed).\n# TYPE kizashi_items_ingested_total counter"
        );
        let _ = writeln!(
            out,
            "kizashi_items_ingested_total{{change=\"new\"}} {}\nkizashi_items_ingested_total{{change=\"updated\"}} {}",
            self.items_new.load(Relaxed),
            self.items_updated.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP kizashi_stage_errors_total Errors by pipeline stage.\n# TYPE kizashi_stage_errors_total counter"
        );
        for s in Stage::ALL {
            let _ = writeln!(
                out,
                "kizashi_stage_errors_total{{stage=\"{}\"}} {}",
                s.as_str(),
                self.stage_errors[s as usize].load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP kizashi_http_request_duration_seconds Time to the response head, by route pattern and status class.\n# TYPE kizashi_http_request_duration_seconds histogram"
        );
        let mut routes: Vec<(String, RouteHistograms)> = self
            .http
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        let series = routes.iter().flat_map(|(route, hs)| {
            CLASSES
                .iter()
                .zip(hs.iter())
                .filter(|(_, h)| h.count() > 0)
                .map(move |(class, h)| (route, *class, h))
        });
        for (route, class, h) in series {
            let labels = format!("route=\"{}\",status=\"{class}\"", escape_label(route));
            let mut cumulative = 0;
            for (i, upper) in LATENCY_BUCKETS.iter().enumerate() {
                cumulative += h.buckets[i].load(Relaxed);
                let _ = writeln!(
                    out,
                    "kizashi_http_request_duration_seconds_bucket{{{labels},le=\"{upper}\"}} {cumulative}"
                );
            }
            cumulative += h.buckets[LATENCY_BUCKETS.len()].load(Relaxed);
            let _ = writeln!(
                out,
                "kizashi_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {cumulative}"
            );
            let _ = writeln!(
                out,
                "kizashi_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum_micros.load(Relaxed) as f64 / 1e6
            );
            // The count is the +Inf bucket, read once, so the two always agree.
            let _ = writeln!(
                out,
                "kizashi_http_request_duration_seconds_count{{{labels}}} {cumulative}"
            );
        }
    }
}

/// Escapes a label value (backslash, double quote, newline).
pub fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `kizashi_open_alerts`: the number of alerts in state open. `None` (no alerts table
/// yet) leaves the gauge out rather than reporting a false zero.
pub fn render_open_alerts(out: &mut String, open_alerts: Option<u64>) {
    if let Some(n) = open_alerts {
        let _ = writeln!(
            out,
            "# HELP kizashi_open_alerts Alerts in state open (neither acknowledged nor resolved).\n# TYPE kizashi_open_alerts gauge\nkizashi_open_alerts {n}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_count_matches() {
        let r = Registry::new();
        r.http_request("/api/search", 200, Duration::from_micros(500));
        r.http_request("/api/search", 204, Duration::from_millis(30));
        r.http_request("/api/search", 200, Duration::from_secs(20));
        r.http_request("/api/search", 404, Duration::from_millis(2));
        let mut out = String::new();
        r.render(&mut out);
        let b = |le: &str| {
            line(
                &out,
                &format!("kizashi_http_request_duration_seconds_bucket{{route=\"/api/search\",status=\"2xx\",le=\"{le}\"}}"),
            )
            .and_then(|l| l.rsplit(' ').next())
            .map(String::from)
        };
        assert_eq!(b("0.001").as_deref(), Some("1"));
        assert_eq!(b("0.025").as_deref(), Some("1"));
        assert_eq!(b("0.05").as_deref(), Some("2"));
        assert_eq!(b("10").as_deref(), Some("2"));
        assert_eq!(b("+Inf").as_deref(), Some("3"));
        assert!(out.contains(
            "kizashi_http_request_duration_seconds_count{route=\"/api/search\",status=\"2xx\"} 3"
        ));
        assert!(out.contains(
            "kizashi_http_request_duration_seconds_count{route=\"/api/search\",status=\"4xx\"} 1"
        ));
        assert!(out.contains(
            "kizashi_http_request_duration_seconds_sum{route=\"/api/search\",status=\"2xx\"} 20.0305"
        ));
        assert_eq!(r.http_count("/api/search", 201), 3);
    }

    #[test]
    fn fetches_items_and_stage_errors_render() {
        let r = Registry::new();
        r.fetch_status(404);
        r.fetch_status(404);
        r.fetch_status(200);
        r.fetch_status(42);
        r.fetch_failed();
        r.items_ingested(3, 1);
        r.stage_error(Stage::Parse, 2);
        r.stage_error(Stage::Index, 0);
        let mut out = String::new();
        r.render(&mut out);
        for want in [
            "kizashi_fetches_total{status=\"404\"} 2",
            "kizashi_fetches_total{status=\"200\"} 1",
            "kizashi_fetches_total{status=\"error\"} 2",
            "kizashi_items_ingested_total{change=\"new\"} 3",
            "kizashi_items_ingested_total{change=\"updated\"} 1",
            "kizashi_stage_errors_total{stage=\"parse\"} 2",
            "kizashi_stage_errors_total{stage=\"index\"} 0",
            "# TYPE kizashi_http_request_duration_seconds histogram",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
        let mut alerts = String::new();
        render_open_alerts(&mut alerts, None);
        assert!(alerts.is_empty());
        render_open_alerts(&mut alerts, Some(2));
        assert!(alerts.ends_with("kizashi_open_alerts 2\n"));
    }
}
