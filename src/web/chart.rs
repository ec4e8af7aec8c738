//! Server-rendered SVG bar charts: geometry computed here, drawn by templates/partials/chart.html.
//! Readable without JavaScript; every bar carries its value in a <title> for hover and
//! screen readers.
use crate::aggregate::Bucket;

pub struct Bar {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
    pub title: String,
}

pub struct Tick {
    pub pos: f64,
    pub label: String,
}

pub struct BarChart {
    pub id: String,
    pub title: String,
    pub desc: String,
    pub width: f64,
    pub height: f64,
    pub plot_left: f64,
    pub plot_right: f64,
    pub plot_top: f64,
    pub plot_bottom: f64,
    pub bars: Vec<Bar>,
    pub y_ticks: Vec<Tick>,
    pub x_ticks: Vec<Tick>,
    pub x_label: String,
    pub y_label: String,
    pub color: &'static str,
    /// Status-page incidents drawn as bands behind the bars.
    pub annotations: Vec<Annotation>,
}

/// An incident over a chart's time range: operational truth beside public perception.
pub struct Annotation {
    pub x: f64,
    pub w: f64,
    pub title: String,
    pub href: String,
}

impl BarChart {
    /// Adds incidents as bands; `from`..`to` (ms) is the chart's time range, mapped linearly
    /// onto the plot as the day buckets are. `incidents` are (id, name, start, end or None).
    pub fn annotate(
        &mut self,
        from: i64,
        to: i64,
        incidents: &[(i64, String, i64, Option<i64>)],
        prefix: &str,
    ) {
        if to <= from {
            return;
        }
        let span = (self.plot_right - self.plot_left) / (to - from) as f64;
        for (id, name, start, end) in incidents {
            let s = (*start).clamp(from, to);
            let e = end.unwrap_or(to).clamp(from, to);
            if e <= s && !(from..to).contains(start) {
                continue;
            }
            let x = self.plot_left + (s - from) as f64 * span;
            self.annotations.push(Annotation {
                x,
                w: ((e - s) as f64 * span).max(2.0),
                title: name.clone(),
                href: format!("{prefix}/status/incidents/{id}"),
            });
        }
    }
}

/// Okabe–Ito palette: distinguishable with the common colour-vision deficiencies.
pub const PALETTE: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
];

/// A tick step from 1, 2, 5 × 10^k giving at most five intervals up to `max`.
fn nice_step(max: u64) -> u64 {
    let mut mag = 1u64;
    loop {
        for m in [1, 2, 5] {
            let step = m * mag;
            if max.div_ceil(step) <= 5 {
                return step;
            }
        }
        mag *= 10;
    }
}

/// A bar chart of day buckets. `unit` follows each value in tooltips (件 / mentions).
pub fn daily_bars(
    id: &str,
    title: &str,
    buckets: &[Bucket],
    color: &'static str,
    unit: &str,
    x_label: &str,
    y_label: &str,
) -> BarChart {
    let (width, height) = (640.0, 200.0);
    let (left, right, top, bottom) = (44.0, width - 12.0, 12.0, height - 40.0);
    let max = buckets.iter().map(|b| b.mentions).max().unwrap_or(0);
    let step = nice_step(max.max(1));
    let ceiling = (max.max(1).div_ceil(step) * step) as f64;
    let n = buckets.len().max(1) as f64;
    let slot = (right - left) / n;
    let bars = buckets
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let h = (b.mentions as f64 / ceiling) * (bottom - top);
            Bar {
                x: left + i as f64 * slot + slot * 0.1,
                y: bottom - h,
                w: (slot * 0.8).max(1.0),
                h,
                title: format!(
                    "{}: {} {}",
                    &b.start[..10.min(b.start.len())],
                    b.mentions,
                    unit
                ),
            }
        })
        .collect();
    let y_ticks = (0..=(ceiling as u64 / step))
        .map(|i| {
            let v = (i * step) as f64;
            Tick {
                pos: bottom - (v / ceiling) * (bottom - top),
                label: format!("{v:.0}"),
            }
        })
        .collect();
    let every = (buckets.len() / 6).max(1);
    let x_ticks = buckets
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0)
        .map(|(i, b)| Tick {
            pos: left + i as f64 * slot + slot / 2.0,
            label: b.start.get(5..10).unwrap_or("").replace('-', "/"),
        })
        .collect();
    let total: u64 = buckets.iter().map(|b| b.mentions).sum();
    BarChart {
        id: id.to_string(),
        title: title.to_string(),
        desc: format!(
            "{} – {}: {total} {unit}",
            buckets
                .first()
                .map(|b| &b.start[..10.min(b.start.len())])
                .unwrap_or(""),
            buckets
                .last()
                .map(|b| &b.start[..10.min(b.start.len())])
                .unwrap_or("")
        ),
        width,
        height,
        plot_left: left,
        plot_right: right,
        plot_top: top,
        plot_bottom: bottom,
        bars,
        y_ticks,
        x_ticks,
        x_label: x_label.to_string(),
        y_label: y_label.to_string(),
        color,
        annotations: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_heights_are_proportional_and_titled() {
        let b = vec![
            Bucket {
                start: "2019-07-02T00:00:00+09:00".into(),
                mentions: 2,
            },
            Bucket {
                start: "2019-07-03T00:00:00+09:00".into(),
                mentions: 4,
            },
        ];
        let c = daily_bars("c", "7pay", &b, PALETTE[0], "件", "日付", "件数");
        assert!((c.bars[1].h - 2.0 * c.bars[0].h).abs() < 1e-9);
        assert_eq!(c.bars[1].title, "2019-07-03: 4 件");
        assert_eq!(c.y_ticks.last().unwrap().label, "4");
        let labels = |max: u64| {
            let b = vec![Bucket {
                start: "2019-07-02T00:00:00+09:00".into(),
                mentions: max,
            }];
            daily_bars("c", "t", &b, PALETTE[0], "", "", "")
                .y_ticks
                .into_iter()
                .map(|t| t.label)
                .collect::<Vec<_>>()
        };
        assert_eq!(labels(31), ["0", "10", "20", "30", "40"]);
        assert_eq!(labels(0), ["0", "1"]);
        assert_eq!(labels(7), ["0", "2", "4", "6", "8"]);
    }
}
