//! spikes: early-warning detection on hourly counts, as pure functions (`now` is a parameter).
//!
//! Method: a one-sided Poisson tail test of the count in the latest hour against an
//! hour-of-week baseline — the mean of the same hour in the previous `baseline_weeks` weeks,
//! blended with the series' recent mean hourly rate and floored at `floor_rate`, so a service
//! with no history (7pay at launch) still has a small, finite expectation. An hour alerts when
//! its count is at least `min_count` and P(X ≥ observed | expected) < `max_p`. Consecutive
//! alerting hours of one series within `cooldown_hours` form one alert.
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpikeParams {
    pub min_count: u64,
    pub max_p: f64,
    pub baseline_weeks: usize,
    pub floor_rate: f64,
    pub cooldown_hours: i64,
}

impl Default for SpikeParams {
    fn default() -> Self {
        Self {
            min_count: 5,
            max_p: 1e-4,
            baseline_weeks: 4,
            floor_rate: 0.2,
            cooldown_hours: 6,
        }
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

fn ln_factorial(n: u64) -> f64 {
    (2..=n).map(|i| (i as f64).ln()).sum()
}

/// The expected count for hour `h` of a series of hourly counts (index 0 = oldest).
pub fn expected(counts: &[u64], h: usize, p: &SpikeParams) -> f64 {
    let same_hour: Vec<f64> = (1..=p.baseline_weeks)
        .filter_map(|w| h.checked_sub(w * 168).map(|i| counts[i] as f64))
        .collect();
    let recent = &counts[h.saturating_sub(168)..h];
    let recent_mean = if recent.is_empty() {
        0.0
    } else {
        recent.iter().sum::<u64>() as f64 / recent.len() as f64
    };
    let seasonal = if same_hour.is_empty() {
        recent_mean
    } else {
        same_hour.iter().sum::<f64>() / same_hour.len() as f64
    };
    // Half seasonal, half recent level: the rhythm without ignoring a slowly rising level.
    (0.5 * seasonal + 0.5 * recent_mean).max(p.floor_rate)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub service: String,
    pub category: Option<String>,
    pub metric: &'static str,
    /// First alerting hour (start, epoch ms) and when it was detected (end of that hour).
    pub started_at: i64,
    pub detected_at: i64,
    pub observed: u64,
    pub expected: f64,
    /// −log10 of the tail probability.
    pub score: f64,
}

/// Hourly counts per series: (service, category) → counts per hour from `start` (epoch ms,
/// on an hour boundary).
pub type Series = BTreeMap<(String, Option<String>), Vec<u64>>;

/// Replays detection hour by hour over `[start + from_hour, start + to_hour)`, as if each
/// hour's end were "now": an hour is judged only on counts up to and including it. Returns
/// one alert per burst (alerting hours of one series closer than the cooldown are grouped).
pub fn backtest(
    series: &Series,
    start: i64,
    from_hour: usize,
    to_hour: usize,
    p: &SpikeParams,
) -> Vec<Alert> {
    let mut out: Vec<Alert> = Vec::new();
    for ((service, category), counts) in series {
        let mut last_alert_hour: Option<usize> = None;
        for h in from_hour..to_hour.min(counts.len()) {
            let observed = counts[h];
            if observed < p.min_count {
                continue;
            }
            let lambda = expected(counts, h, p);
            let tail = poisson_tail(observed, lambda);
            if tail >= p.max_p {
                continue;
            }
            let grouped = last_alert_hour.is_some_and(|l| (h - l) as i64 <= p.cooldown_hours);
            last_alert_hour = Some(h);
            if grouped {
                if let Some(a) = out
                    .iter_mut()
                    .rev()
                    .find(|a| &a.service == service && &a.category == category)
                {
                    a.observed = a.observed.max(observed);
                }
                continue;
            }
            let hour_ms = 3_600_000;
            out.push(Alert {
                service: service.clone(),
                category: category.clone(),
                metric: "volume",
                started_at: start + h as i64 * hour_ms,
                detected_at: start + (h as i64 + 1) * hour_ms,
                observed,
                expected: (lambda * 100.0).round() / 100.0,
                score: ((-tail.max(1e-300).log10()) * 100.0).round() / 100.0,
            });
        }
    }
    out.sort_by(|a, b| {
        a.detected_at
            .cmp(&b.detected_at)
            .then(a.service.cmp(&b.service))
            .then(b.category.is_some().cmp(&a.category.is_some()))
    });
    // One incident is one alert: a service's total and its categories that burst within the
    // cooldown of each other merge, keeping the earliest detection and the specific category.
    let window = p.cooldown_hours * 3_600_000;
    let mut merged: Vec<Alert> = Vec::new();
    for a in out {
        match merged
            .iter_mut()
            .find(|m| m.service == a.service && (a.started_at - m.started_at).abs() <= window)
        {
            Some(m) => {
                if m.category.is_none() && a.category.is_some() {
                    m.category = a.category.clone();
                }
                m.observed = m.observed.max(a.observed);
                m.score = m.score.max(a.score);
            }
            None => merged.push(a),
        }
    }
    merged
}

/// Builds hourly series from mentions: (service, category) pairs plus (service, None) totals.
pub fn hourly_series(mentions: &[(i64, String, Vec<String>)], start: i64, hours: usize) -> Series {
    let mut series: Series = BTreeMap::new();
    for (at, service, categories) in mentions {
        if *at < start {
            continue;
        }
        let h = ((*at - start) / 3_600_000) as usize;
        if h >= hours {
            continue;
        }
        for key in std::iter::once(None).chain(categories.iter().cloned().map(Some)) {
            series
                .entry((service.clone(), key))
                .or_insert_with(|| vec![0; hours])[h] += 1;
        }
    }
    series
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
    fn a_burst_from_a_near_zero_baseline_alerts_once_and_rhythm_does_not() {
        let p = SpikeParams::default();
        // Four weeks of a daily rhythm: 3 mentions at 12:00–13:00 each day, 0 otherwise.
        let hours = 24 * 7 * 5;
        let mut counts = vec![0u64; hours];
        for d in 0..(hours / 24) {
            counts[d * 24 + 12] = 3;
        }
        let mut series = Series::new();
        series.insert(("paypay".into(), None), counts.clone());
        assert!(
            backtest(&series, 0, 24 * 7 * 4, hours, &p).is_empty(),
            "the daily rhythm is expected"
        );
        // A new service with no history: 0 for weeks, then 12, 30, 25 in consecutive hours.
        let mut burst = vec![0u64; hours];
        let t = hours - 30;
        burst[t] = 12;
        burst[t + 1] = 30;
        burst[t + 2] = 25;
        series.insert(("7pay".into(), Some("fraud".into())), burst);
        let alerts = backtest(&series, 0, 24 * 7 * 4, hours, &p);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].started_at, t as i64 * 3_600_000);
        assert_eq!(
            alerts[0].detected_at,
            (t as i64 + 1) * 3_600_000,
            "detected at the end of the first hour"
        );
        assert_eq!(alerts[0].observed, 30, "the burst's peak");
    }
}
