//! The 90-day history bars: the worst state of a component on each JST day, from its recorded
//! status changes and the maintenance windows that covered it. Pure: `now` is a parameter.
use crate::aggregate::{floor, Interval};
use crate::domain::status::{ComponentEvent, ComponentStatus};

pub const DAY: i64 = 86_400_000;
pub const HISTORY_DAYS: i64 = 90;

/// Starts (ms) of the `n` JST days ending with the day containing `now`, oldest first.
pub fn day_starts(now: i64, n: i64) -> Vec<i64> {
    let today = floor(now, Interval::Day);
    (0..n).rev().map(|i| today - i * DAY).collect()
}

/// The worst state on each day; `None` for days before the component existed or after `now`.
/// `events` are oldest first; `windows` are [start, end) intervals with a state of their own.
pub fn daily_worst(
    events: &[ComponentEvent],
    windows: &[(i64, i64, ComponentStatus)],
    created_at: i64,
    days: &[i64],
    now: i64,
) -> Vec<Option<ComponentStatus>> {
    days.iter()
        .map(|&start| {
            if start > now || start + DAY <= created_at {
                return None;
            }
            let from = start.max(created_at);
            let end = (start + DAY).min(now).max(from);
            let at_start = events
                .iter()
                .take_while(|e| e.at <= from)
                .last()
                .map(|e| e.status)
                .unwrap_or(ComponentStatus::Operational);
            let within = events
                .iter()
                .filter(|e| e.at > from && e.at < end)
                .map(|e| e.status);
            let windows = windows
                .iter()
                .filter(|(s, e, _)| *s < end && *e > from)
                .map(|w| w.2);
            std::iter::once(at_start).chain(within).chain(windows).max()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ComponentStatus::*;

    fn ev(at: i64, status: ComponentStatus) -> ComponentEvent {
        ComponentEvent { status, at }
    }

    #[test]
    fn worst_state_per_jst_day() {
        // Day boundaries at JST midnight = 15:00 UTC; build three days from a JST midnight.
        let d0 = floor(1_562_000_000_000, Interval::Day);
        let days = [d0, d0 + DAY, d0 + 2 * DAY, d0 + 3 * DAY];
        let now = d0 + 2 * DAY + 1000;
        let events = [
            ev(d0, Operational),
            ev(d0 + DAY + 10, PartialOutage),
            ev(d0 + DAY + 20, DegradedPerformance),
            ev(d0 + DAY + 30, Operational),
        ];
        let got = daily_worst(&events, &[], d0, &days, now);
        assert_eq!(
            got,
            vec![
                Some(Operational),
                Some(PartialOutage),
                Some(Operational),
                None
            ]
        );
    }

    #[test]
    fn days_before_creation_have_no_data_and_state_carries_over() {
        let d0 = floor(1_562_000_000_000, Interval::Day);
        let days = [d0, d0 + DAY, d0 + 2 * DAY];
        let events = [ev(d0 + DAY + 5, MajorOutage)];
        let got = daily_worst(&events, &[], d0 + DAY + 5, &days, d0 + 3 * DAY);
        assert_eq!(got, vec![None, Some(MajorOutage), Some(MajorOutage)]);
    }

    #[test]
    fn maintenance_windows_count_on_the_days_they_cover() {
        let d0 = floor(1_562_000_000_000, Interval::Day);
        let days = [d0, d0 + DAY];
        let w = [(d0 + DAY - 100, d0 + DAY + 100, UnderMaintenance)];
        let got = daily_worst(&[], &w, d0, &days, d0 + 2 * DAY);
        assert_eq!(got, vec![Some(UnderMaintenance), Some(UnderMaintenance)]);
    }
}
