//! Time as the collector sees it. Tests drive a [`ManualClock`] to cross UTC days.

use chrono::{DateTime, Utc};
use std::sync::Mutex;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to.
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Mutex::new(at))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().expect("clock lock") = at;
    }

    pub fn advance(&self, by: chrono::Duration) {
        *self.0.lock().expect("clock lock") += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock lock")
    }
}

/// The system clock moved by an adjustable offset: `beacon demo` runs a month of simulated traffic
/// through a collector whose days follow the simulation, then sets the offset back to zero.
#[derive(Default)]
pub struct OffsetClock(std::sync::atomic::AtomicI64);

impl OffsetClock {
    /// Makes `now()` answer `at` at this instant (and move on from there).
    pub fn set(&self, at: DateTime<Utc>) {
        let offset = (at - Utc::now()).num_milliseconds();
        self.0.store(offset, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn reset(&self) {
        self.0.store(0, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
            + chrono::Duration::milliseconds(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}
