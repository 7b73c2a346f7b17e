//! `POST /api/v1/mobile`: `mobile::parse_batch` on any body never panics; every trace event is either
//! accepted or rejected with its index, accepted records are within the time window, and the device
//! info kept serialises.
#![no_main]

use beacon_wire::mobile::parse_batch;
use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = DateTime::<Utc>::from_timestamp(1_764_400_000, 0).unwrap();
    let Ok(batch) = parse_batch(data, now) else {
        return;
    };
    let mut seen: Vec<usize> = batch.rejected.iter().map(|r| r.index).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), batch.rejected.len(), "an index rejected twice");
    for r in &batch.rejected {
        assert!(r.index < batch.accepted.len() + batch.rejected.len());
    }
    let now_us = now.timestamp_micros();
    for a in &batch.accepted {
        assert!(a.dur_us > 0);
        assert!(a.ts_us >= now_us - 7 * 86_400_000_000 && a.ts_us <= now_us + 86_400_000_000);
    }
    serde_json::to_string(&batch.device).expect("device info serialises");
});
