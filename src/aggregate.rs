//! aggregate: time series as pure functions over timestamps. Buckets follow Asia/Tokyo
//! boundaries; `now` is always a parameter.
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Asia::Tokyo;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Hour,
    Day,
}

impl Interval {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "hour" => Ok(Self::Hour),
            "day" => Ok(Self::Day),
            other => Err(format!("interval {other:?} is not hour or day")),
        }
    }
    pub fn millis(self) -> i64 {
        match self {
            Interval::Hour => 3_600_000,
            Interval::Day => 86_400_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bucket {
    /// Bucket start in Asia/Tokyo, RFC 3339 (`2019-07-03T00:00:00+09:00`).
    pub start: String,
    pub mentions: u64,
}

/// Japan has had no daylight saving time since 1951, so its offset is fixed; using the
/// zone database anyway keeps the rendering honest.
const JST_OFFSET_MS: i64 = 9 * 3_600_000;

/// The start of the JST bucket containing `ms`.
pub fn floor(ms: i64, interval: Interval) -> i64 {
    let step = interval.millis();
    (ms + JST_OFFSET_MS).div_euclid(step) * step - JST_OFFSET_MS
}

/// The start of the first bucket at or after `ms`.
pub fn ceil(ms: i64, interval: Interval) -> i64 {
    let f = floor(ms, interval);
    if f == ms {
        f
    } else {
        f + interval.millis()
    }
}

pub fn jst_rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.with_timezone(&Tokyo).to_rfc3339())
        .unwrap_or_default()
}

/// Parses a time parameter: RFC 3339, or a date (`2019-07-03`) taken as JST midnight.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let midnight = d
            .and_hms_opt(0, 0, 0)
            .and_then(|n| Tokyo.from_local_datetime(&n).single());
        if let Some(t) = midnight {
            return Ok(t.timestamp_millis());
        }
    }
    Err(format!(
        "{s:?} is neither an RFC 3339 time (2019-07-03T10:00:00+09:00) nor a date (2019-07-03)"
    ))
}

/// Most buckets one series may have; a wider range is refused rather than allocated.
pub const MAX_BUCKETS: i64 = 20_000;

/// Counts `times` into consecutive buckets covering [from, to) on JST boundaries. `from` is
/// floored and `to` ceiled to bucket edges; times outside are ignored.
pub fn buckets(
    times: &[i64],
    interval: Interval,
    from: i64,
    to: i64,
) -> Result<Vec<Bucket>, String> {
    let step = interval.millis();
    let start = floor(from, interval);
    let end = ceil(to, interval).max(start);
    let n = (end - start) / step;
    if n > MAX_BUCKETS {
        return Err(format!(
            "the range holds {n} buckets, more than {MAX_BUCKETS}; narrow from/to or use interval=day"
        ));
    }
    let mut counts = vec![0u64; n as usize];
    for &t in times {
        if t >= from && t < to {
            let i = ((t - start) / step) as usize;
            if let Some(c) = counts.get_mut(i) {
                *c += 1;
            }
        }
    }
    Ok(counts
        .into_iter()
        .enumerate()
        .map(|(i, mentions)| Bucket {
            start: jst_rfc3339(start + i as i64 * step),
            mentions,
        })
        .collect())
}

/// One mention as the time series counts it: when, what kind, by whom, and the sentiment of
/// the (item, service) pair (or of the item when no service is selected).
#[derive(Debug, Clone, PartialEq)]
pub struct Mention {
    pub at: i64,
    pub social: bool,
    pub author: Option<String>,
    pub label: crate::domain::SentimentLabel,
    pub score: f64,
}

/// A bucket with the breakdown the dashboard charts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BucketStats {
    pub start: String,
    pub mentions: u64,
    /// Distinct authors of the social mentions (one account posting fifty times is one).
    pub authors: u64,
    pub news: u64,
    pub social: u64,
    pub negative: u64,
    pub neutral: u64,
    pub positive: u64,
    /// Mean sentiment score of the bucket's mentions; None when it has none.
    pub mean_sentiment: Option<f64>,
}

/// Counts mentions into JST buckets covering [from, to), with kinds, unique social authors,
/// sentiment shares and mean score.
pub fn bucket_stats(
    mentions: &[Mention],
    interval: Interval,
    from: i64,
    to: i64,
) -> Result<Vec<BucketStats>, String> {
    use crate::domain::SentimentLabel::*;
    let base = buckets(&[], interval, from, to)?;
    let step = interval.millis();
    let start = floor(from, interval);
    let mut stats: Vec<BucketStats> = base
        .into_iter()
        .map(|b| BucketStats {
            start: b.start,
            mentions: 0,
            authors: 0,
            news: 0,
            social: 0,
            negative: 0,
            neutral: 0,
            positive: 0,
            mean_sentiment: None,
        })
        .collect();
    let mut authors: Vec<std::collections::HashSet<&str>> = vec![Default::default(); stats.len()];
    let mut sums = vec![0.0f64; stats.len()];
    for m in mentions.iter().filter(|m| m.at >= from && m.at < to) {
        let i = ((m.at - start) / step) as usize;
        let Some(b) = stats.get_mut(i) else { continue };
        b.mentions += 1;
        if m.social {
            b.social += 1;
            if let Some(a) = &m.author {
                authors[i].insert(a);
            }
        } else {
            b.news += 1;
        }
        match m.label {
            Negative => b.negative += 1,
            Neutral => b.neutral += 1,
            Positive => b.positive += 1,
        }
        sums[i] += m.score;
    }
    for (i, b) in stats.iter_mut().enumerate() {
        b.authors = authors[i].len() as u64;
        if b.mentions > 0 {
            b.mean_sentiment = Some((sums[i] / b.mentions as f64 * 1000.0).round() / 1000.0);
        }
    }
    Ok(stats)
}

/// A rollup row as the charts read it: (hour start, kind, label, count, score sum).
pub type RollupTuple<'a> = (i64, &'a str, &'a str, i64, f64);

/// The same buckets as `bucket_stats`, from hourly rollup rows — (hour start, kind, label,
/// count, score sum) — and distinct social authors per bucket (bucket start, authors).
/// Rows count whole hours: `from` and `to` are taken to hour edges.
pub fn rollup_stats(
    rows: &[RollupTuple],
    authors: &[(i64, i64)],
    interval: Interval,
    from: i64,
    to: i64,
) -> Result<Vec<BucketStats>, String> {
    let mut stats = bucket_stats(&[], interval, from, to)?;
    let step = interval.millis();
    let start = floor(from, interval);
    let mut sums = vec![0.0f64; stats.len()];
    for &(hour, kind, label, n, score_sum) in rows {
        if hour < start {
            continue;
        }
        let i = ((hour - start) / step) as usize;
        let Some(b) = stats.get_mut(i) else { continue };
        let n = n.max(0) as u64;
        b.mentions += n;
        if kind == "social" {
            b.social += n;
        } else {
            b.news += n;
        }
        match label {
            "negative" => b.negative += n,
            "positive" => b.positive += n,
            _ => b.neutral += n,
        }
        sums[i] += score_sum;
    }
    for &(at, n) in authors {
        if at >= start {
            if let Some(b) = stats.get_mut(((at - start) / step) as usize) {
                b.authors = n.max(0) as u64;
            }
        }
    }
    for (i, b) in stats.iter_mut().enumerate() {
        if b.mentions > 0 {
            b.mean_sentiment = Some((sums[i] / b.mentions as f64 * 1000.0).round() / 1000.0);
        }
    }
    Ok(stats)
}

/// The default window when the caller gives none: from the earliest data (or 30 days before
/// `now`, whichever is earlier) to the end of the bucket holding `now` or the latest data.
pub fn default_window(
    span: Option<(i64, i64)>,
    interval: Interval,
    now: DateTime<Utc>,
) -> (i64, i64) {
    let now = now.timestamp_millis();
    let month_ago = now - 30 * 86_400_000;
    let (lo, hi) = span.unwrap_or((month_ago, now));
    let mut from = floor(lo.min(month_ago), interval);
    let to = floor(hi.max(now), interval) + interval.millis();
    if (to - from) / interval.millis() > MAX_BUCKETS {
        from = to - MAX_BUCKETS * interval.millis();
    }
    (from, to)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> i64 {
        parse_time(s).unwrap()
    }

    #[test]
    fn day_buckets_follow_jst_midnight() {
        let times = [
            t("2019-07-02T23:59:59+09:00"),
            t("2019-07-03T00:00:00+09:00"),
            t("2019-07-02T15:00:00Z"), // = 2019-07-03 00:00 JST
            t("2019-07-03T23:59:59.999+09:00"),
        ];
        let b = buckets(&times, Interval::Day, t("2019-07-02"), t("2019-07-04")).unwrap();
        assert_eq!(
            b,
            vec![
                Bucket {
                    start: "2019-07-02T00:00:00+09:00".into(),
                    mentions: 1
                },
                Bucket {
                    start: "2019-07-03T00:00:00+09:00".into(),
                    mentions: 3
                },
            ]
        );
    }

    #[test]
    fn hour_buckets_and_half_open_ranges() {
        let times = [
            t("2019-07-03T10:00:00+09:00"),
            t("2019-07-03T10:59:00+09:00"),
            t("2019-07-03T12:00:00+09:00"),
        ];
        let b = buckets(
            &times,
            Interval::Hour,
            t("2019-07-03T10:00:00+09:00"),
            t("2019-07-03T12:00:00+09:00"),
        )
        .unwrap();
        assert_eq!(b.iter().map(|b| b.mentions).collect::<Vec<_>>(), vec![2, 0]);
    }

    #[test]
    fn parse_time_accepts_rfc3339_and_jst_dates() {
        assert_eq!(t("2019-07-03"), t("2019-07-03T00:00:00+09:00"));
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn bucket_stats_break_down_kinds_authors_and_sentiment() {
        use crate::domain::SentimentLabel::*;
        let m = |at: &str, social: bool, author: Option<&str>, label, score| Mention {
            at: t(at),
            social,
            author: author.map(String::from),
            label,
            score,
        };
        let rows = [
            m("2019-07-03T10:00:00+09:00", true, Some("a"), Negative, -0.8),
            m("2019-07-03T11:00:00+09:00", true, Some("a"), Negative, -0.6),
            m("2019-07-03T12:00:00+09:00", true, Some("b"), Neutral, 0.0),
            m("2019-07-03T23:59:59+09:00", false, None, Positive, 0.4),
            m("2019-07-04T00:00:00+09:00", false, None, Negative, -1.0),
        ];
        let s = bucket_stats(&rows, Interval::Day, t("2019-07-03"), t("2019-07-05")).unwrap();
        assert_eq!(
            (s[0].mentions, s[0].social, s[0].news, s[0].authors),
            (4, 3, 1, 2)
        );
        assert_eq!((s[0].negative, s[0].neutral, s[0].positive), (2, 1, 1));
        assert_eq!(s[0].mean_sentiment, Some(-0.25));
        assert_eq!((s[1].mentions, s[1].mean_sentiment), (1, Some(-1.0)));
        let empty = bucket_stats(&[], Interval::Day, t("2019-07-03"), t("2019-07-04")).unwrap();
        assert_eq!(empty[0].mean_sentiment, None);
    }

    #[test]
    fn huge_ranges_are_refused() {
        assert!(buckets(&[], Interval::Hour, 0, 86_400_000 * 3650).is_err());
    }
}
