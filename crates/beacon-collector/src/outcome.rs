//! Every received item ends in exactly one outcome — by construction.
//!
//! A handler takes an [`Items`] guard for what it received (one check, the events of an envelope, the
//! trace events of a batch) and gives every item an outcome by consuming the guard, whole or in parts
//! split off with [`Items::split`]: [`accept`](Items::accept), [`duplicate`](Items::duplicate),
//! [`reject`](Items::reject) with a reason, or [`rate_limited`](Items::rate_limited). Each counts in
//! `beacon_items_total{channel, outcome, reason}`; nothing else in the collector writes that
//! counter. A guard dropped with items left is a bug: a debug build panics on it (a release build logs
//! it at error and counts the items as rejected with reason `unaccounted`).

use crate::error::ApiError;
use crate::metrics::ITEMS_TOTAL;
use beacon_store::WriteOutcome;

/// Items of one channel still waiting for their outcome.
#[must_use = "every received item must end in an outcome"]
#[derive(Debug)]
pub struct Items {
    channel: &'static str,
    pending: u64,
}

impl Items {
    /// `n` items received on `channel`.
    pub fn new(channel: &'static str, n: u64) -> Self {
        Self {
            channel,
            pending: n,
        }
    }

    /// One item received on `channel`.
    pub fn one(channel: &'static str) -> Self {
        Self::new(channel, 1)
    }

    /// How many items still wait for their outcome.
    pub fn len(&self) -> u64 {
        self.pending
    }

    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Takes `n` of these items (at most all of them) into a guard of their own.
    pub fn split(&mut self, n: u64) -> Items {
        let n = n.min(self.pending);
        self.pending -= n;
        Items::new(self.channel, n)
    }

    /// What was received as one item (a request body) turned out to hold `n` items, each of which
    /// ends on its own; the one item ends with them (no outcome of its own).
    pub fn into_items(mut self, n: u64) -> Items {
        debug_assert_eq!(self.pending, 1, "into_items on a guard of one item");
        self.pending = 0;
        Items::new(self.channel, n)
    }

    /// Stored: new.
    pub fn accept(self) {
        self.end("accepted", "")
    }

    /// Not kept, on purpose, and not an error (an envelope item type Beacon does not store): counted
    /// as accepted with the reason that says why nothing was kept.
    pub fn accept_unstored(self, reason: &str) {
        self.end("accepted", reason)
    }

    /// Stored before: not stored again.
    pub fn duplicate(self) {
        self.end("duplicate", "")
    }

    /// Refused, for `reason` (a short snake_case word: `invalid_version`, `too_large`, …).
    pub fn reject(self, reason: &str) {
        self.end("rejected", reason)
    }

    /// Refused by a rate limit.
    pub fn rate_limited(self) {
        self.end("rate_limited", "")
    }

    /// The outcome of these items' write: accepted, duplicate, or rejected as `unstorable` or
    /// `store_unavailable`.
    pub fn stored(self, outcome: Result<WriteOutcome, &ApiError>) {
        match outcome {
            Ok(WriteOutcome::Accepted) => self.accept(),
            Ok(WriteOutcome::Duplicate) => self.duplicate(),
            Ok(WriteOutcome::Unstorable) => self.reject("unstorable"),
            Err(_) => self.reject("store_unavailable"),
        }
    }

    fn end(mut self, outcome: &'static str, reason: &str) {
        count(self.channel, outcome, reason, self.pending);
        self.pending = 0;
    }
}

impl Drop for Items {
    fn drop(&mut self) {
        if self.pending == 0 || std::thread::panicking() {
            return;
        }
        debug_assert!(
            false,
            "{} {} item(s) dropped without an outcome",
            self.pending, self.channel
        );
        tracing::error!(
            channel = self.channel,
            items = self.pending,
            "items dropped without an outcome"
        );
        count(self.channel, "rejected", "unaccounted", self.pending);
    }
}

fn count(channel: &'static str, outcome: &'static str, reason: &str, n: u64) {
    if n == 0 {
        return;
    }
    let reason: metrics::SharedString = if reason.is_empty() {
        "".into()
    } else {
        reason.to_string().into()
    };
    metrics::counter!(ITEMS_TOTAL, "channel" => channel, "outcome" => outcome, "reason" => reason)
        .increment(n);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_takes_at_most_what_is_left() {
        let mut all = Items::new("test", 5);
        let two = all.split(2);
        assert_eq!((two.len(), all.len()), (2, 3));
        let rest = all.split(10);
        assert_eq!((rest.len(), all.len()), (3, 0));
        two.accept();
        rest.reject("test");
        assert!(all.is_empty());
    }

    #[test]
    #[should_panic(expected = "dropped without an outcome")]
    #[cfg(debug_assertions)]
    fn a_forgotten_item_is_caught_in_debug_builds() {
        let _forgotten = Items::one("test");
    }
}
