//! Time as the agent sees it. The schedule reads [`Clock::now`] (wall-clock time, because the last-check
//! time is shared with other nodes through the [`State`](crate::State)) and waits with
//! [`Clock::sleep_until`]. Tests drive a [`ManualClock`] to cross days without waiting for them.

use chrono::{DateTime, Utc};
use std::future::Future;
use std::pin::Pin;

/// A boxed future returned by [`Clock::sleep_until`].
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// A source of wall-clock time that can wait.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
    /// Completes once [`now`](Clock::now) is at or after `at`.
    fn sleep_until(&self, at: DateTime<Utc>) -> Sleep<'_>;
}

/// The system clock. Sleeps in steps of at most an hour and looks at the clock again after each, so a
/// suspended machine or a clock that was set does not stretch the schedule.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Sleep<'_> {
        Box::pin(async move {
            loop {
                let left = at - Utc::now();
                let Ok(left) = left.to_std() else { return };
                if left.is_zero() {
                    return;
                }
                tokio::time::sleep(left.min(std::time::Duration::from_secs(3600))).await;
            }
        })
    }
}

/// A clock that moves only when told to; every sleeper whose time has come wakes up.
#[derive(Debug)]
pub struct ManualClock(tokio::sync::watch::Sender<DateTime<Utc>>);

impl ManualClock {
    /// A clock standing at `at`.
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(tokio::sync::watch::Sender::new(at))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        let by = chrono::Duration::from_std(by).expect("duration in range");
        self.0.send_modify(|now| *now += by);
    }

    /// Sets the clock.
    pub fn set(&self, at: DateTime<Utc>) {
        self.0.send_replace(at);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.borrow()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Sleep<'_> {
        let mut rx = self.0.subscribe();
        Box::pin(async move {
            loop {
                if *rx.borrow_and_update() >= at {
                    return;
                }
                if rx.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_whose_time_has_come() {
        let start = Utc::now();
        let clock = std::sync::Arc::new(ManualClock::new(start));
        let c = clock.clone();
        let sleeper =
            tokio::spawn(async move { c.sleep_until(start + chrono::Duration::hours(4)).await });
        clock.advance(Duration::from_secs(3 * 3600));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_secs(3600));
        tokio::time::timeout(Duration::from_secs(10), sleeper)
            .await
            .expect("woke")
            .unwrap();
    }
}
