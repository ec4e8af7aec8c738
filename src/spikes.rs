//! spikes: early-warning detection on hourly counts, as pure functions (`now` is a parameter).
//! The live detector (jobs) and `kizashi backtest` run the same two steps:
//!
//! 1. `hot_hours` judges the hour containing `now` (so far) and the hour before it, on the
//!    counts known at `now` — an item counts only from the time it became visible.
//!    - volume, per service and per (service, category): a one-sided Poisson tail test of the
//!      hour's count against a seasonal baseline (see `expected`: the same hour of day over
//!      the last week and of the week over the last `baseline_weeks` weeks, plus two standard
//!      errors), floored at `floor_rate`, so a service with no history (7pay at launch) still
//!      has a small, finite expectation. Hot when the count is at least `min_count` and
//!      P(X ≥ observed | expected) < `max_p`. A partial hour is tested against a whole hour's
//!      expectation, which only makes it harder to pass. Nothing is judged before the data
//!      holds a week of anything (warm-up).
//!    - negative_share, per service: the negative (item, service) pairs among the last
//!      `share_window_hours` hours against the share of the previous week (with a weak prior
//!      of one third). Hot when there are at least `share_min_count` mentions, the share rose
//!      by at least `share_min_rise`, and the binomial tail P(X ≥ negatives) < `max_p`.
//! 2. `step` groups hot hours into alerts — one incident is one alert: a hot hour joins an
//!    unresolved alert of the same service whose last hot hour is within `cooldown_hours`
//!    (a category's hour joins the same category, or upgrades an alert about the service as
//!    a whole); alerts quiet for `resolve_after_hours` resolve themselves.
use std::collections::BTreeMap;

pub const HOUR_MS: i64 = 3_600_000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpikeParams {
    pub min_count: u64,
    pub max_p: f64,
    pub baseline_weeks: usize,
    pub floor_rate: f64,
    pub cooldown_hours: i64,
    pub resolve_after_hours: i64,
    pub share_window_hours: usize,
    pub share_min_count: u64,
    pub share_min_rise: f64,
}

impl Default for SpikeParams {
    fn default() -> Self {
        Self {
            min_count: 5,
            max_p: 1e-4,
            baseline_weeks: 4,
            floor_rate: 0.2,
            cooldown_hours: 6,
            resolve_after_hours: 24,
            share_window_hours: 3,
            share_min_count: 10,
            share_min_rise: 0.3,
        }
    }
}

impl SpikeParams {
    /// Hours of history the tests look at before the judged hour.
    pub fn history_hours(&self) -> usize {
        (self.baseline_weeks.max(1)) * 168 + self.share_window_hours + 1
    }
}

/// P(X ≥ k) for X ~ Poisson(λ), computed in log space so large k and small λ stay finite.
pub fn poisson_tail(k: u64, lambda: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    let lambda = lambda.max(1e-9);
    // P(X ≥ k) = 1 − Σ_{i<k} p(i); for the far tail, sum upward from k instead.
    let ln_p = |i: u64| -lambda + i as f64 * lambda.ln() - ln_factorial(i);
    if (k as f64) > lambda {
        let mut total = 0.0;
        let mut i = k;
        loop {
            let term = ln_p(i).exp();
            total += term;
            if term < total * 1e-12 || i > k + 10_000 {
                break;
            }
            i += 1;
        }
        total.min(1.0)
    } else {
        let below: f64 = (0..k).map(|i| ln_p(i).exp()).sum();
        (1.0 - below).clamp(0.0, 1.0)
    }
}

/// P(X ≥ k) for X ~ Binomial(n, p), summed upward from k by the term recurrence.
pub fn binomial_tail(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    let p = p.clamp(1e-9, 1.0 - 1e-9);
    let ln_first = ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)
        + k as f64 * p.ln()
        + (n - k) as f64 * (1.0 - p).ln();
    let ratio = p / (1.0 - p);
    let mut term = ln_first.exp();
    let mut total = term;
    for i in k..n {
        term *= (n - i) as f64 / (i + 1) as f64 * ratio;
        total += term;
        if term < total * 1e-12 {
            break;
        }
    }
    total.clamp(0.0, 1.0)
}

fn ln_factorial(n: u64) -> f64 {
    (2..=n).map(|i| (i as f64).ln()).sum()
}

/// One hour of one series: mentions and, of those, negative ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HourCount {
    pub n: u64,
    pub negative: u64,
}

/// Hourly counts per (service, category) — category None is the service as a whole — from
/// `start` (epoch ms on an hour boundary), one entry per hour.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub start: i64,
    pub hours: usize,
    pub series: BTreeMap<(String, Option<String>), Vec<HourCount>>,
}

/// A mention as detection sees it: the (item, service) pair, counted in the hour it was
/// published, but only from the time it became visible.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub published: i64,
    pub visible: i64,
    pub service: String,
    pub categories: Vec<String>,
    pub negative: bool,
}

impl Counts {
    pub fn new(start: i64, hours: usize) -> Self {
        Self {
            start: floor_hour(start),
            hours,
            series: BTreeMap::new(),
        }
    }

    /// Adds `n` mentions (`negative` of them negative) to a series' hour; times outside the
    /// span are ignored.
    pub fn add(&mut self, service: &str, category: Option<&str>, at: i64, n: u64, negative: u64) {
        if at < self.start {
            return;
        }
        let h = ((at - self.start) / HOUR_MS) as usize;
        if h >= self.hours {
            return;
        }
        let hours = self.hours;
        let slot = &mut self
            .series
            .entry((service.to_string(), category.map(str::to_string)))
            .or_insert_with(|| vec![HourCount::default(); hours])[h];
        slot.n += n;
        slot.negative += negative;
    }

    /// Adds one event to its service's total and to each of its categories.
    pub fn add_event(&mut self, e: &Event) {
        let neg = u64::from(e.negative);
        self.add(&e.service, None, e.published, 1, neg);
        for c in &e.categories {
            self.add(&e.service, Some(c), e.published, 1, neg);
        }
    }
}

pub fn floor_hour(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// The expected count for hour `h` of a series (index 0 = oldest), from hours before it only:
/// the mean of the same hour of day over the previous seven days, averaged with the mean of
/// the same hour of the week over the previous `baseline_weeks` weeks when there are any —
/// and then raised by two standard errors of that estimate, so that a thin history does not
/// make an ordinary hour look rare. Never below `floor_rate`.
pub fn expected(counts: &[HourCount], h: usize, p: &SpikeParams) -> f64 {
    let at = |step: usize, k: usize| h.checked_sub(step * k).map(|i| counts[i].n as f64);
    let daily: Vec<f64> = (1..=7).filter_map(|d| at(24, d)).collect();
    let weekly: Vec<f64> = (1..=p.baseline_weeks).filter_map(|w| at(168, w)).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (lambda, samples) = match (daily.is_empty(), weekly.is_empty()) {
        (true, _) => (0.0, 1),
        (false, true) => (mean(&daily), daily.len()),
        (false, false) => (
            0.5 * mean(&daily) + 0.5 * mean(&weekly),
            daily.len() + weekly.len(),
        ),
    };
    let upper = lambda + 2.0 * (lambda / samples as f64).sqrt();
    upper.max(p.floor_rate)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Volume,
    NegativeShare,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Volume => "volume",
            Metric::NegativeShare => "negative_share",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "volume" => Some(Metric::Volume),
            "negative_share" => Some(Metric::NegativeShare),
            _ => None,
        }
    }
}

/// A judged hour that passed its test.
#[derive(Debug, Clone, PartialEq)]
pub struct Hot {
    pub service: String,
    pub category: Option<String>,
    pub metric: Metric,
    /// Start of the hot hour (epoch ms).
    pub hour: i64,
    /// A count (volume) or a share in [0, 1] (negative_share).
    pub observed: f64,
    pub expected: f64,
    /// −log10 of the tail probability.
    pub score: f64,
}

fn score_of(tail: f64) -> f64 {
    round2(-tail.max(1e-300).log10())
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Judges the hour containing `now` and the hour before it, on `counts` as known at `now`.
pub fn hot_hours(counts: &Counts, now: i64, p: &SpikeParams) -> Vec<Hot> {
    let current = floor_hour(now);
    if current < counts.start {
        return Vec::new();
    }
    let h_now = ((current - counts.start) / HOUR_MS) as usize;
    // Warm-up: nothing is judged before there is a week of data about anything (a service
    // new to the data is still judged — 7pay had no history — but a new installation's
    // first days are not).
    let first_data = counts
        .series
        .values()
        .filter_map(|s| s.iter().position(|c| c.n > 0))
        .min();
    let judged_from = first_data.map_or(usize::MAX, |f| f + 168);
    let mut out = Vec::new();
    for ((service, category), series) in &counts.series {
        for h in [h_now.checked_sub(1), Some(h_now)].into_iter().flatten() {
            if h >= series.len() || h < judged_from {
                continue;
            }
            let hour = counts.start + h as i64 * HOUR_MS;
            let observed = series[h].n;
            if observed >= p.min_count {
                let lambda = expected(series, h, p);
                let tail = poisson_tail(observed, lambda);
                if tail < p.max_p {
                    out.push(Hot {
                        service: service.clone(),
                        category: category.clone(),
                        metric: Metric::Volume,
                        hour,
                        observed: observed as f64,
                        expected: round2(lambda),
                        score: score_of(tail),
                    });
                }
            }
            if category.is_none() {
                if let Some(hot) = negative_share(series, h, p) {
                    out.push(Hot {
                        service: service.clone(),
                        category: None,
                        hour,
                        ..hot
                    });
                }
            }
        }
    }
    out
}

fn negative_share(series: &[HourCount], h: usize, p: &SpikeParams) -> Option<Hot> {
    let w = p.share_window_hours.max(1);
    let lo = (h + 1).saturating_sub(w);
    let (n, k) = series[lo..=h]
        .iter()
        .fold((0, 0), |(n, k), c| (n + c.n, k + c.negative));
    if n < p.share_min_count {
        return None;
    }
    let (n0, k0) = series[lo.saturating_sub(168)..lo]
        .iter()
        .fold((0, 0), |(n, k), c| (n + c.n, k + c.negative));
    let baseline = ((k0 as f64 + 1.0) / (n0 as f64 + 3.0)).clamp(0.02, 0.98);
    let share = k as f64 / n as f64;
    if share - baseline < p.share_min_rise {
        return None;
    }
    let tail = binomial_tail(k, n, baseline);
    (tail < p.max_p).then(|| Hot {
        service: String::new(),
        category: None,
        metric: Metric::NegativeShare,
        hour: 0,
        observed: round2(share),
        expected: round2(baseline),
        score: score_of(tail),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    Open,
    Acknowledged,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Open => "open",
            AlertState::Acknowledged => "acknowledged",
            AlertState::Resolved => "resolved",
        }
    }
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "open" => Ok(AlertState::Open),
            "acknowledged" => Ok(AlertState::Acknowledged),
            "resolved" => Ok(AlertState::Resolved),
            other => Err(format!(
                "state {other:?} is not open, acknowledged or resolved"
            )),
        }
    }
}

/// An alert as detection tracks it. `id` is the store's id (0 until stored).
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub id: i64,
    pub service: String,
    pub category: Option<String>,
    pub metric: Metric,
    /// Start of the first hot hour, and when detection first saw it (epoch ms).
    pub started_at: i64,
    pub detected_at: i64,
    pub last_hot_at: i64,
    /// The last hot hour of any category (None: only the service as a whole so far).
    pub last_category_hot_at: Option<i64>,
    /// The strongest hot hour's figures.
    pub observed: f64,
    pub expected: f64,
    pub score: f64,
    pub state: AlertState,
}

/// What `step` did to an alert (index into the alert list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Opened(usize),
    Updated(usize),
    Resolved(usize),
}

/// Folds the hot hours judged at `now` into `alerts` (grouping, cooldown, auto-resolve) and
/// says what changed. Category hours go first, so a service's total joins its category.
pub fn step(alerts: &mut Vec<Alert>, mut hots: Vec<Hot>, now: i64, p: &SpikeParams) -> Vec<Change> {
    let cooldown = p.cooldown_hours * HOUR_MS;
    let mut changes = Vec::new();
    hots.sort_by(|a, b| {
        b.category
            .is_some()
            .cmp(&a.category.is_some())
            .then(a.hour.cmp(&b.hour))
            .then(b.score.total_cmp(&a.score))
    });
    for hot in hots {
        let live = |a: &Alert| {
            a.service == hot.service
                && a.state != AlertState::Resolved
                && hot.hour - a.last_hot_at <= cooldown
        };
        // A category's hour joins an alert whose categories were hot lately (an incident
        // shows several: fraud, then security, then the press conference), or upgrades a
        // fresh alert about the service as a whole; the service's total keeps any alert of
        // the service alive but never carries a new kind of incident into an old alert.
        let target = match &hot.category {
            Some(_) => alerts
                .iter()
                .rposition(|a| {
                    live(a)
                        && a.last_category_hot_at
                            .is_some_and(|l| hot.hour - l <= cooldown)
                })
                .or_else(|| {
                    alerts.iter().rposition(|a| {
                        live(a) && a.category.is_none() && hot.hour - a.started_at <= cooldown
                    })
                }),
            None => alerts.iter().rposition(live),
        };
        match target {
            Some(i) => {
                let a = &mut alerts[i];
                let mut changed = false;
                if a.category.is_none() && hot.category.is_some() {
                    a.category = hot.category.clone();
                    changed = true;
                }
                if hot.hour > a.last_hot_at {
                    a.last_hot_at = hot.hour;
                    changed = true;
                }
                if hot.category.is_some() && a.last_category_hot_at.is_none_or(|l| hot.hour > l) {
                    a.last_category_hot_at = Some(hot.hour);
                    changed = true;
                }
                if hot.metric == a.metric && hot.score > a.score {
                    a.observed = hot.observed;
                    a.expected = hot.expected;
                    a.score = hot.score;
                    changed = true;
                }
                if changed && !changes.contains(&Change::Updated(i)) {
                    changes.push(Change::Updated(i));
                }
            }
            None => {
                let last_category_hot_at = hot.category.is_some().then_some(hot.hour);
                alerts.push(Alert {
                    id: 0,
                    service: hot.service,
                    category: hot.category,
                    metric: hot.metric,
                    started_at: hot.hour,
                    detected_at: now,
                    last_hot_at: hot.hour,
                    last_category_hot_at,
                    observed: hot.observed,
                    expected: hot.expected,
                    score: hot.score,
                    state: AlertState::Open,
                });
                changes.push(Change::Opened(alerts.len() - 1));
            }
        }
    }
    let quiet = p.resolve_after_hours * HOUR_MS;
    for (i, a) in alerts.iter_mut().enumerate() {
        if a.state != AlertState::Resolved && now - (a.last_hot_at + HOUR_MS) >= quiet {
            a.state = AlertState::Resolved;
            changes.push(Change::Resolved(i));
        }
    }
    changes
}

/// Replays detection every `step_ms` over `(from, to]` as if each step were "now", over
/// `events` (any order) and with `counts` starting early enough for the baseline. Returns
/// every alert opened, in the state the replay left it.
pub fn backtest(
    mut events: Vec<Event>,
    from: i64,
    to: i64,
    step_ms: i64,
    p: &SpikeParams,
) -> Vec<Alert> {
    let start = floor_hour(from) - p.history_hours() as i64 * HOUR_MS;
    let hours = ((to - start) / HOUR_MS) as usize + 2;
    let mut counts = Counts::new(start, hours);
    events.sort_by_key(|e| e.visible);
    let mut next = 0;
    let mut alerts = Vec::new();
    let mut now = from;
    while now <= to {
        while next < events.len() && events[next].visible <= now {
            counts.add_event(&events[next]);
            next += 1;
        }
        let hots = hot_hours(&counts, now, p);
        step(&mut alerts, hots, now, p);
        now += step_ms.max(60_000);
    }
    alerts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_tail_matches_known_values() {
        // P(X ≥ 1 | 1) = 1 − e^−1
        assert!((poisson_tail(1, 1.0) - 0.632_120_6).abs() < 1e-6);
        // P(X ≥ 10 | 0.2) is tiny but finite
        let p = poisson_tail(10, 0.2);
        assert!(p > 0.0 && p < 1e-9, "{p}");
        assert_eq!(poisson_tail(0, 3.0), 1.0);
    }

    #[test]
    fn binomial_tail_matches_known_values() {
        // P(X ≥ 8 | 10, 0.5) = (45 + 10 + 1) / 1024
        assert!((binomial_tail(8, 10, 0.5) - 56.0 / 1024.0).abs() < 1e-12);
        assert!((binomial_tail(1, 3, 0.5) - 7.0 / 8.0).abs() < 1e-12);
        assert_eq!(binomial_tail(0, 5, 0.1), 1.0);
        assert_eq!(binomial_tail(6, 5, 0.1), 0.0);
        let far = binomial_tail(900, 1000, 0.1);
        assert!((0.0..1e-200).contains(&far), "{far}");
    }

    fn event(h: i64, service: &str, cats: &[&str], negative: bool) -> Event {
        Event {
            published: h * HOUR_MS + 60_000,
            visible: h * HOUR_MS + 60_000,
            service: service.into(),
            categories: cats.iter().map(|c| c.to_string()).collect(),
            negative,
        }
    }

    /// Five weeks of a daily rhythm for PayPay: three mentions at noon every day.
    fn rhythm() -> Vec<Event> {
        (0..35)
            .flat_map(|d| (0..3).map(move |_| event(d * 24 + 12, "paypay", &[], false)))
            .collect()
    }

    #[test]
    fn a_burst_from_a_near_zero_baseline_alerts_once_and_rhythm_does_not() {
        let p = SpikeParams::default();
        let week4 = 24 * 7 * 4 * HOUR_MS;
        let end = 35 * 24 * HOUR_MS;
        assert!(
            backtest(rhythm(), week4, end, HOUR_MS, &p).is_empty(),
            "the daily rhythm is expected"
        );
        // A new service with no history: nothing for weeks, then 12, 30, 25 fraud reports in
        // consecutive hours.
        let t = 35 * 24 - 30;
        let mut events = rhythm();
        for (dh, n) in [(0, 12), (1, 30), (2, 25)] {
            events.extend((0..n).map(|_| event(t + dh, "7pay", &["fraud"], true)));
        }
        let alerts = backtest(events, week4, end, HOUR_MS, &p);
        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        let a = &alerts[0];
        assert_eq!(
            (a.service.as_str(), a.category.as_deref()),
            ("7pay", Some("fraud"))
        );
        assert_eq!(a.started_at, t * HOUR_MS);
        assert_eq!(
            a.detected_at,
            (t + 1) * HOUR_MS,
            "at the end of the first hour"
        );
        assert_eq!(a.last_hot_at, (t + 2) * HOUR_MS);
        assert_eq!(a.observed, 30.0, "the strongest hour");
        // Quiet for a day afterwards: resolved by itself.
        assert_eq!(a.state, AlertState::Resolved);
    }

    #[test]
    fn items_count_only_from_when_they_became_visible() {
        let p = SpikeParams::default();
        let t = 35 * 24 - 30;
        let mut events = rhythm();
        // Twenty reports published in hour t but first seen two days later (a source added
        // late): they fill the past, and the past is never judged again.
        events.extend((0..20).map(|_| Event {
            visible: (t + 48) * HOUR_MS,
            ..event(t, "7pay", &["fraud"], true)
        }));
        let alerts = backtest(events, 28 * 24 * HOUR_MS, 35 * 24 * HOUR_MS, HOUR_MS, &p);
        assert!(alerts.is_empty(), "{alerts:#?}");
    }

    #[test]
    fn a_partial_hour_alerts_before_the_hour_ends() {
        let p = SpikeParams::default();
        let t = 35 * 24 - 30;
        let mut events = rhythm();
        events.extend((0..15).map(|i| Event {
            published: t * HOUR_MS + i * 180_000,
            visible: t * HOUR_MS + i * 180_000,
            ..event(t, "7pay", &["fraud"], true)
        }));
        let ten = 10 * 60_000;
        let alerts = backtest(events, 28 * 24 * HOUR_MS, 35 * 24 * HOUR_MS, ten, &p);
        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        assert_eq!(
            alerts[0].detected_at,
            t * HOUR_MS + 20 * 60_000,
            "four reports by 00:10, seven by 00:20: the first step with at least five"
        );
    }

    #[test]
    fn a_rising_negative_share_alerts_without_a_volume_spike() {
        let p = SpikeParams::default();
        // LINE Pay: 6 mentions an hour around the clock, one in six negative; then three hours
        // in which five of six are negative — the volume is ordinary, the tone is not.
        let mut events = Vec::new();
        let t = 35 * 24 - 10;
        for h in 0..35 * 24 {
            for i in 0..6 {
                let negative = if (t..t + 3).contains(&h) {
                    i < 5
                } else {
                    i == 0
                };
                events.push(event(h, "linepay", &[], negative));
            }
        }
        let alerts = backtest(events, 28 * 24 * HOUR_MS, 35 * 24 * HOUR_MS, HOUR_MS, &p);
        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        assert_eq!(alerts[0].metric, Metric::NegativeShare);
        assert!(
            alerts[0].observed > 0.6 && alerts[0].expected < 0.25,
            "{alerts:#?}"
        );
    }

    #[test]
    fn separate_incidents_of_one_service_are_separate_alerts() {
        let p = SpikeParams::default();
        let mut events = rhythm();
        // An outage burst, then a fraud burst a day later: two incidents.
        let t = 35 * 24 - 60;
        events.extend((0..20).map(|_| event(t, "7pay", &["outage"], true)));
        events.extend((0..20).map(|_| event(t + 24, "7pay", &["fraud"], true)));
        // More outage two hours after the outage, and talk of security two hours into the
        // fraud: the same incidents, no new alerts.
        events.extend((0..20).map(|_| event(t + 2, "7pay", &["outage"], true)));
        events.extend((0..20).map(|_| event(t + 26, "7pay", &["security"], true)));
        let alerts = backtest(events, 28 * 24 * HOUR_MS, 35 * 24 * HOUR_MS, HOUR_MS, &p);
        let cats: Vec<_> = alerts.iter().map(|a| a.category.as_deref()).collect();
        assert_eq!(cats, [Some("outage"), Some("fraud")], "{alerts:#?}");
    }
}
