//! Property tests (proptest) for the aggregation math: JST bucket boundaries, bucket counts
//! that add up to the totals, and chart windows that stay inside the bucket cap. Inputs span
//! 1970–2100 in milliseconds, either side of every JST midnight.
use kizashi::aggregate::{
    bucket_stats, buckets, ceil, default_window, floor, jst_rfc3339, Interval, Mention, MAX_BUCKETS,
};
use kizashi::domain::SentimentLabel;
use proptest::prelude::*;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// 2100-01-01 in epoch milliseconds.
const LATEST: i64 = 4_102_444_800_000;

fn step(i: Interval) -> i64 {
    match i {
        Interval::Hour => HOUR,
        Interval::Day => DAY,
    }
}

fn interval() -> impl Strategy<Value = Interval> {
    prop_oneof![Just(Interval::Hour), Just(Interval::Day)]
}

/// Times, a third of them exactly on or a millisecond beside a JST boundary.
fn time() -> impl Strategy<Value = i64> {
    prop_oneof![
        0..LATEST,
        (0..LATEST / DAY, -1i64..=1).prop_map(|(d, off)| (d * DAY - 9 * HOUR + off).max(0)),
    ]
}

fn label() -> impl Strategy<Value = SentimentLabel> {
    prop_oneof![
        Just(SentimentLabel::Negative),
        Just(SentimentLabel::Neutral),
        Just(SentimentLabel::Positive),
    ]
}

fn mention() -> impl Strategy<Value = Mention> {
    (
        time(),
        any::<bool>(),
        proptest::option::of(0u8..5),
        label(),
        -1.0f64..=1.0,
    )
        .prop_map(|(at, social, author, label, score)| Mention {
            at,
            social,
            author: author.map(|a| format!("u{a}")),
            label,
            score,
        })
}

/// A window of at most `max_buckets` buckets starting at a random time.
fn window(max_buckets: i64) -> impl Strategy<Value = (i64, i64)> {
    (time(), 1..max_buckets * DAY).prop_map(|(from, len)| (from, (from + len).min(LATEST + DAY)))
}

proptest! {
    // Failures print their minimal input; nothing is written into the source tree.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn floor_and_ceil_are_the_jst_boundaries_around_a_time(t in time(), iv in interval()) {
        let (f, c) = (floor(t, iv), ceil(t, iv));
        prop_assert!(f <= t && t < f + step(iv));
        prop_assert!(c >= t && c - t < step(iv));
        prop_assert_eq!(floor(f, iv), f);
        prop_assert_eq!(ceil(c, iv), c);
        prop_assert!(c == f || c == f + step(iv));
        prop_assert_eq!(c == f, t == f);
        // Boundaries read as JST wall-clock: midnight for days, the full hour for hours.
        let shown = jst_rfc3339(f);
        prop_assert!(shown.ends_with("+09:00"), "{}", shown);
        match iv {
            Interval::Day => prop_assert!(shown.contains("T00:00:00"), "{}", shown),
            Interval::Hour => prop_assert!(shown[13..].starts_with(":00:00"), "{}", shown),
        }
    }

    #[test]
    fn bucket_counts_add_up_to_the_times_in_range(
        times in proptest::collection::vec(time(), 0..200),
        (from, to) in window(60),
        iv in interval(),
    ) {
        let b = buckets(&times, iv, from, to).unwrap();
        let in_range = times.iter().filter(|t| **t >= from && **t < to).count() as u64;
        prop_assert_eq!(b.iter().map(|b| b.mentions).sum::<u64>(), in_range);
        prop_assert_eq!(b.len() as i64, (ceil(to, iv) - floor(from, iv)) / step(iv));
        // Each bucket counts exactly the times between its start and the next.
        for (i, bucket) in b.iter().enumerate() {
            let start = floor(from, iv) + i as i64 * step(iv);
            prop_assert_eq!(&bucket.start, &jst_rfc3339(start));
            let want = times
                .iter()
                .filter(|t| **t >= from && **t < to && **t >= start && **t < start + step(iv))
                .count() as u64;
            prop_assert_eq!(bucket.mentions, want);
        }
    }

    #[test]
    fn bucket_stats_agree_with_buckets_and_split_every_mention_once(
        mentions in proptest::collection::vec(mention(), 0..150),
        (from, to) in window(40),
        iv in interval(),
    ) {
        let stats = bucket_stats(&mentions, iv, from, to).unwrap();
        let times: Vec<i64> = mentions.iter().map(|m| m.at).collect();
        let plain = buckets(&times, iv, from, to).unwrap();
        prop_assert_eq!(stats.len(), plain.len());
        for (s, b) in stats.iter().zip(&plain) {
            prop_assert_eq!(&s.start, &b.start);
            prop_assert_eq!(s.mentions, b.mentions);
            prop_assert_eq!(s.news + s.social, s.mentions);
            prop_assert_eq!(s.negative + s.neutral + s.positive, s.mentions);
            prop_assert!(s.authors <= s.social);
            match s.mean_sentiment {
                None => prop_assert_eq!(s.mentions, 0),
                Some(m) => prop_assert!((-1.0..=1.0).contains(&m) && s.mentions > 0),
            }
        }
        let in_range: Vec<&Mention> =
            mentions.iter().filter(|m| m.at >= from && m.at < to).collect();
        prop_assert_eq!(stats.iter().map(|s| s.mentions).sum::<u64>(), in_range.len() as u64);
        prop_assert_eq!(
            stats.iter().map(|s| s.negative).sum::<u64>(),
            in_range.iter().filter(|m| m.label == SentimentLabel::Negative).count() as u64
        );
        prop_assert_eq!(
            stats.iter().map(|s| s.social).sum::<u64>(),
            in_range.iter().filter(|m| m.social).count() as u64
        );
    }

    #[test]
    fn default_windows_are_boundaries_cover_now_and_stay_under_the_cap(
        span in proptest::option::of((time(), time())),
        now in time(),
        iv in interval(),
    ) {
        let span = span.map(|(a, b)| (a.min(b), a.max(b)));
        let now_t = chrono::DateTime::from_timestamp_millis(now).unwrap();
        let (from, to) = default_window(span, iv, now_t);
        prop_assert!(from < to);
        prop_assert_eq!(floor(from, iv), from);
        prop_assert_eq!(floor(to, iv), to);
        prop_assert!((to - from) / step(iv) <= MAX_BUCKETS);
        // The window always renders: buckets() accepts it.
        prop_assert!(buckets(&[], iv, from, to).is_ok());
        // It ends with the bucket of the latest of now and the newest item, and starts at the
        // earlier of the oldest item and 30 days ago unless that would pass the cap (then the
        // most recent buckets are kept).
        let (lo, hi) = span.unwrap_or((now - 30 * DAY, now));
        let latest = hi.max(now);
        prop_assert_eq!(to, floor(latest, iv) + step(iv));
        let earliest = floor(lo.min(now - 30 * DAY), iv);
        if (to - earliest) / step(iv) <= MAX_BUCKETS {
            prop_assert_eq!(from, earliest);
        } else {
            prop_assert_eq!((to - from) / step(iv), MAX_BUCKETS);
        }
    }
}
