//! `POST /api/v1/mobile`: `mobile::parse_batch` on any body never panics; every trace event is either
//! accepted or rejected with its index, accepted records are within the time window, and the device
//! info kept serialises. The dead-letter views (`batch_dead_letter`, `trace_event_dead_letter`) never
//! panic and never keep the raw device id.
#![no_main]

use beacon_wire::mobile::{batch_dead_letter, parse_batch, trace_event_dead_letter};
use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = DateTime::<Utc>::from_timestamp(1_764_400_000, 0).unwrap();
    if let Some(dead) = batch_dead_letter(data) {
        let v: serde_json::Value = serde_json::from_str(&dead).expect("a dead letter is JSON");
        assert!(
            v.pointer("/device_info/device_unique_id").is_none(),
            "{dead}"
        );
    }
    let Ok(batch) = parse_batch(data, now) else {
        return;
    };
    for r in &batch.rejected {
        std::hint::black_box(trace_event_dead_letter(&r.raw));
    }
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
