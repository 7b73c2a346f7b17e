//! Data retention: how long each channel's data is kept ([`RetentionPolicy`]) and the one rule that
//! says what has expired on a given day ([`RetentionPolicy::cutoff`]). The backends remove expired
//! data in small batches ([`crate::Store::apply_retention`]) and describe what they hold
//! ([`crate::Store::retention_status`]).
//!
//! Ages are counted in UTC days: with `N` days, data of day `d` is removed from day `d + N + 1` on,
//! so nothing younger than `N` whole days is ever removed. `0` keeps a channel forever.
//!
//! What "day" means per channel: a check's day of receipt, an error event's time of receipt, a
//! trace event's own timestamp (its sketches are filed under that day too), a sketch row's day and
//! a dead letter's time of receipt. Issues are not aged by themselves: an issue goes, with its
//! counts and servers, once its last event has expired (its `last_seen` is before the cutoff);
//! until then it keeps its lifetime count and first/last seen.

pub use beacon_wire::admin::{RetentionChannel, RetentionOutcome, RetentionRun, RetentionStatus};
use chrono::{DateTime, Days, NaiveDate, Utc};

/// Rows removed per transaction. Small enough that a batch takes a few milliseconds and ingestion
/// commits between two batches; error events carry a few KiB of JSON each, so fewer of them.
pub const BATCH_ROWS: usize = 5_000;
/// Error events (and issues) removed per transaction.
pub const EVENT_BATCH_ROWS: usize = 1_000;

/// Most days a channel may be kept (a hundred years, far from any date arithmetic's limits).
pub const MAX_DAYS: u32 = 36_600;

/// Days kept per channel; `0` keeps forever. The defaults are `[retention]`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub checks_days: u32,
    pub events_days: u32,
    pub trace_events_days: u32,
    pub sketches_days: u32,
    pub dead_letters_days: u32,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            checks_days: 400,
            events_days: 90,
            trace_events_days: 30,
            sketches_days: 730,
            dead_letters_days: 30,
        }
    }
}

impl RetentionPolicy {
    /// Keeps everything.
    pub const FOREVER: RetentionPolicy = RetentionPolicy {
        checks_days: 0,
        events_days: 0,
        trace_events_days: 0,
        sketches_days: 0,
        dead_letters_days: 0,
    };

    pub fn days(&self, channel: RetentionChannel) -> u32 {
        match channel {
            RetentionChannel::Checks => self.checks_days,
            RetentionChannel::Events => self.events_days,
            RetentionChannel::TraceEvents => self.trace_events_days,
            RetentionChannel::Sketches => self.sketches_days,
            RetentionChannel::DeadLetters => self.dead_letters_days,
        }
    }

    /// The first day kept on `today`: data of earlier days has expired. `None` when the channel is
    /// kept forever (or its period reaches before the calendar's start).
    pub fn cutoff(&self, channel: RetentionChannel, today: NaiveDate) -> Option<NaiveDate> {
        match self.days(channel) {
            0 => None,
            n => today.checked_sub_days(Days::new(u64::from(n.min(MAX_DAYS)))),
        }
    }

    /// Every channel with its cutoff on `today`, in [`RetentionChannel::ALL`]'s order.
    pub fn cutoffs(&self, today: NaiveDate) -> Vec<(RetentionChannel, Option<NaiveDate>)> {
        RetentionChannel::ALL
            .iter()
            .map(|c| (*c, self.cutoff(*c, today)))
            .collect()
    }
}

/// The first instant of `day` (UTC midnight): times before it belong to earlier days.
pub fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
}

/// [`midnight`] in microseconds since the epoch, the unit of trace events' timestamps.
pub fn midnight_us(day: NaiveDate) -> i64 {
    midnight(day).timestamp_micros()
}

/// How far a stored trace event's timestamp may lie from its receipt: the mobile channel accepts
/// events up to [`beacon_wire::mobile::MAX_AGE_US`] old and a day in the future. A backend that walks
/// trace events in order of receipt may stop once it sees timestamps this far past the cutoff.
pub const TRACE_TS_SPREAD_US: i64 = beacon_wire::mobile::MAX_AGE_US + 86_400 * 1_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn cutoff_keeps_n_whole_days() {
        let p = RetentionPolicy {
            events_days: 1,
            ..RetentionPolicy::FOREVER
        };
        // On 2026-03-10, an event of 2026-03-09 23:59 is less than a day old: kept. One of
        // 2026-03-08 is at least a day old: removed.
        assert_eq!(
            p.cutoff(RetentionChannel::Events, d("2026-03-10")),
            Some(d("2026-03-09"))
        );
        assert_eq!(p.cutoff(RetentionChannel::Checks, d("2026-03-10")), None);
        let defaults = RetentionPolicy::default();
        assert_eq!(
            defaults.cutoff(RetentionChannel::TraceEvents, d("2026-03-31")),
            Some(d("2026-03-01"))
        );
        assert_eq!(defaults.cutoffs(d("2026-03-31")).len(), 5);
        // Periods longer than the calendar keep everything rather than fail.
        let long = RetentionPolicy {
            checks_days: u32::MAX,
            ..RetentionPolicy::FOREVER
        };
        assert!(
            long.cutoff(RetentionChannel::Checks, d("2026-03-31"))
                .is_some()
        );
        assert_eq!(midnight_us(d("1970-01-02")), 86_400_000_000);
    }
}
