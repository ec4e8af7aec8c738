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

/// Status-page incidents over a chart's time range `from`..`to` (ms), mapped linearly onto
/// the plot's x extent: operational truth beside public perception.
fn bands(
    (left, right): (f64, f64),
    from: i64,
    to: i64,
    incidents: &[(i64, String, i64, Option<i64>)],
    prefix: &str,
) -> Vec<Annotation> {
    if to <= from {
        return Vec::new();
    }
    let span = (right - left) / (to - from) as f64;
    let mut out = Vec::new();
    for (id, name, start, end) in incidents {
        let s = (*start).clamp(from, to);
        let e = end.unwrap_or(to).clamp(from, to);
        if e <= s && !(from..to).contains(start) {
            continue;
        }
        out.push(Annotation {
            x: left + (s - from) as f64 * span,
            w: ((e - s) as f64 * span).max(2.0),
            title: name.clone(),
            href: format!("{prefix}/status/incidents/{id}"),
        });
    }
    out
}

/// Okabe–Ito palette (then two of Paul Tol's): distinguishable with the common colour-vision
/// deficiencies.
pub const PALETTE: [&str; 10] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
    // two more from Paul Tol's colour-blind-safe muted scheme, for up to ten series
    "#882255", "#44AA99",
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

/// One rectangle of a stacked bar.
pub struct Segment {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
    pub color: &'static str,
    pub title: String,
}

/// A line drawn over a stacked chart (its own scale, labelled on the right).
pub struct Line {
    pub name: String,
    pub color: &'static str,
    /// SVG polyline points, "x,y x,y …"; gaps (buckets without a value) split the line.
    pub paths: Vec<String>,
    pub dots: Vec<Bar>,
    pub right_ticks: Vec<Tick>,
}

/// Stacked bars per bucket (news and social, sentiment shares, categories, services), with
/// a legend, values in <title>s, and optionally a line on a second scale.
pub struct StackedChart {
    pub id: String,
    pub title: String,
    pub desc: String,
    pub width: f64,
    pub height: f64,
    pub plot_left: f64,
    pub plot_right: f64,
    pub plot_top: f64,
    pub plot_bottom: f64,
    pub segments: Vec<Segment>,
    pub y_ticks: Vec<Tick>,
    pub x_ticks: Vec<Tick>,
    pub x_label: String,
    pub y_label: String,
    pub legend: Vec<(String, &'static str)>,
    pub line: Option<Line>,
    pub annotations: Vec<Annotation>,
    /// Per bucket, the values as `label=value` pairs (for tests and scripts reading the SVG).
    pub data: Vec<String>,
}

/// What a stacked chart shows.
pub struct StackSpec<'a> {
    pub id: &'a str,
    pub title: &'a str,
    /// Bucket labels (JST start, RFC 3339).
    pub starts: &'a [String],
    /// Series names and colours, bottom first.
    pub series: &'a [(String, &'static str)],
    /// values[bucket][series]
    pub values: &'a [Vec<f64>],
    /// Show each bucket as shares of 100 %.
    pub percent: bool,
    pub unit: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub hourly: bool,
}

fn bucket_label(start: &str, hourly: bool) -> String {
    // 2019-07-03T10:00:00+09:00 → 07/03 or 07/03 10:00
    let day = start.get(5..10).unwrap_or("").replace('-', "/");
    if hourly {
        format!("{day} {}", start.get(11..16).unwrap_or(""))
    } else {
        day
    }
}

fn fmt_value(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

pub fn stacked(spec: &StackSpec) -> StackedChart {
    let (width, height) = (640.0, 220.0);
    let (left, right, top, bottom) = (44.0, width - 44.0, 12.0, height - 40.0);
    let n = spec.starts.len().max(1) as f64;
    let slot = (right - left) / n;
    let totals: Vec<f64> = spec.values.iter().map(|v| v.iter().sum()).collect();
    let (ceiling, step) = if spec.percent {
        (100.0, 25u64)
    } else {
        let max = totals.iter().cloned().fold(0.0, f64::max).ceil() as u64;
        let step = nice_step(max.max(1));
        ((max.max(1).div_ceil(step) * step) as f64, step)
    };
    let mut segments = Vec::new();
    let mut data = Vec::new();
    for (i, row) in spec.values.iter().enumerate() {
        let label = bucket_label(&spec.starts[i], spec.hourly);
        let mut y = bottom;
        let total = totals[i];
        let mut pairs = Vec::new();
        for (j, v) in row.iter().enumerate() {
            let (name, color) = &spec.series[j];
            pairs.push(format!("{name}={}", fmt_value(*v)));
            let shown = if spec.percent {
                if total > 0.0 {
                    v / total * 100.0
                } else {
                    0.0
                }
            } else {
                *v
            };
            if shown <= 0.0 {
                continue;
            }
            let h = shown / ceiling * (bottom - top);
            y -= h;
            let title = if spec.percent {
                format!(
                    "{label} {name}: {shown:.0}% ({} {})",
                    fmt_value(*v),
                    spec.unit
                )
            } else {
                format!("{label} {name}: {} {}", fmt_value(*v), spec.unit)
            };
            segments.push(Segment {
                x: left + i as f64 * slot + slot * 0.1,
                y,
                w: (slot * 0.8).max(1.0),
                h,
                color,
                title,
            });
        }
        data.push(pairs.join(" "));
    }
    let y_ticks = (0..=(ceiling as u64 / step))
        .map(|i| {
            let v = (i * step) as f64;
            Tick {
                pos: bottom - (v / ceiling) * (bottom - top),
                label: if spec.percent {
                    format!("{v:.0}%")
                } else {
                    format!("{v:.0}")
                },
            }
        })
        .collect();
    let every = (spec.starts.len() / 6).max(1);
    let x_ticks = spec
        .starts
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0)
        .map(|(i, s)| Tick {
            pos: left + i as f64 * slot + slot / 2.0,
            label: bucket_label(s, spec.hourly),
        })
        .collect();
    let total: f64 = totals.iter().sum();
    StackedChart {
        id: spec.id.to_string(),
        title: spec.title.to_string(),
        desc: format!(
            "{} – {}: {} {}",
            spec.starts
                .first()
                .map(|s| bucket_label(s, spec.hourly))
                .unwrap_or_default(),
            spec.starts
                .last()
                .map(|s| bucket_label(s, spec.hourly))
                .unwrap_or_default(),
            fmt_value(total),
            spec.unit
        ),
        width,
        height,
        plot_left: left,
        plot_right: right,
        plot_top: top,
        plot_bottom: bottom,
        segments,
        y_ticks,
        x_ticks,
        x_label: spec.x_label.to_string(),
        y_label: spec.y_label.to_string(),
        legend: spec.series.to_vec(),
        line: None,
        annotations: Vec::new(),
        data,
    }
}

impl StackedChart {
    /// Adds a line on its own scale [lo, hi] (labelled on the right); None leaves a gap.
    pub fn with_line(
        mut self,
        name: &str,
        color: &'static str,
        values: &[Option<f64>],
        (lo, hi): (f64, f64),
        starts: &[String],
        hourly: bool,
    ) -> Self {
        let n = values.len().max(1) as f64;
        let slot = (self.plot_right - self.plot_left) / n;
        let span = (hi - lo).max(1e-9);
        let y = |v: f64| self.plot_bottom - (v - lo) / span * (self.plot_bottom - self.plot_top);
        let mut paths = Vec::new();
        let mut current = String::new();
        let mut dots = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let x = self.plot_left + i as f64 * slot + slot / 2.0;
            match v {
                Some(v) => {
                    if !current.is_empty() {
                        current.push(' ');
                    }
                    current.push_str(&format!("{x:.1},{:.1}", y(*v)));
                    dots.push(Bar {
                        x,
                        y: y(*v),
                        w: 0.0,
                        h: 0.0,
                        title: format!(
                            "{} {name}: {}",
                            bucket_label(starts.get(i).map(String::as_str).unwrap_or(""), hourly),
                            if hi <= 1.0 {
                                format!("{v:+.2}")
                            } else {
                                fmt_value(*v)
                            }
                        ),
                    });
                }
                None => {
                    if !current.is_empty() {
                        paths.push(std::mem::take(&mut current));
                    }
                }
            }
        }
        if !current.is_empty() {
            paths.push(current);
        }
        let right_ticks = [lo, (lo + hi) / 2.0, hi]
            .iter()
            .map(|v| Tick {
                pos: y(*v),
                label: if hi <= 1.0 {
                    format!("{v:+.1}")
                } else {
                    fmt_value(*v)
                },
            })
            .collect();
        self.line = Some(Line {
            name: name.to_string(),
            color,
            paths,
            dots,
            right_ticks,
        });
        self
    }

    /// Adds status-page incidents as bands; `from`..`to` (ms) is the chart's time range and
    /// `incidents` are (id, name, start, end or None).
    pub fn annotate(
        &mut self,
        from: i64,
        to: i64,
        incidents: &[(i64, String, i64, Option<i64>)],
        prefix: &str,
    ) {
        self.annotations = bands(
            (self.plot_left, self.plot_right),
            from,
            to,
            incidents,
            prefix,
        );
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

    #[test]
    fn stacked_segments_add_up_and_say_their_values() {
        let starts = vec![
            "2019-07-03T00:00:00+09:00".to_string(),
            "2019-07-04T00:00:00+09:00".to_string(),
        ];
        let series = vec![
            ("news".to_string(), PALETTE[0]),
            ("social".to_string(), PALETTE[1]),
        ];
        let values = vec![vec![1.0, 3.0], vec![0.0, 8.0]];
        let spec = StackSpec {
            id: "c",
            title: "t",
            starts: &starts,
            series: &series,
            values: &values,
            percent: false,
            unit: "件",
            x_label: "",
            y_label: "",
            hourly: false,
        };
        let c = stacked(&spec);
        // The zero segment is not drawn; heights are proportional across buckets.
        assert_eq!(c.segments.len(), 3);
        assert!((c.segments[0].h * 3.0 - c.segments[1].h).abs() < 1e-9);
        assert!((c.segments[2].h - 2.0 * (c.segments[0].h + c.segments[1].h)).abs() < 1e-9);
        assert_eq!(c.segments[1].title, "07/03 social: 3 件");
        assert_eq!(c.data, ["news=1 social=3", "news=0 social=8"]);
        let shares = stacked(&StackSpec {
            percent: true,
            ..spec
        });
        assert_eq!(shares.segments[0].title, "07/03 news: 25% (1 件)");
        let lined = c.with_line(
            "mean",
            PALETTE[2],
            &[Some(-0.5), None],
            (-1.0, 1.0),
            &starts,
            false,
        );
        let line = lined.line.unwrap();
        assert_eq!(line.paths.len(), 1, "a gap ends the line");
        assert_eq!(line.dots[0].title, "07/03 mean: -0.50");
    }
}
