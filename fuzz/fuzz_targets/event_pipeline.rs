//! One error event as the collector handles it: projection (`event::project`), scrubbing
//! (`beacon_scrub::scrub_event`), grouping (`grouping::group`) and serialising what is stored,
//! under a heap budget per input: more than 64 bytes per input byte + 1 MiB at any moment fails the
//! input (an abort at the allocation that crosses it), as does any panic; libFuzzer's `-timeout`
//! and `-rss_limit_mb` bound time and total memory. Also checked: scrubbing is idempotent and
//! grouping is deterministic. The dead-letter projection (`event::project_lenient`) goes through the
//! same steps, and gives the strict projection whenever that one succeeds.
#![no_main]

use beacon_fuzz::{Counting, within_budget};
use beacon_wire::sentry::{event, grouping};
use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: Counting = Counting;

const WHAT: &str = "event_pipeline";

fuzz_target!(|data: &[u8]| {
    let budget = 64 * data.len() + (1 << 20);
    within_budget(&WHAT, budget, || {
        let received = DateTime::<Utc>::from_timestamp(1_764_400_000, 0).unwrap();
        let id = "0123456789abcdef0123456789abcdef";
        let lenient = event::project_lenient(data, id, received);
        let Ok(mut e) = event::project(data, id, received) else {
            if let Some(mut dead) = lenient {
                beacon_scrub::scrub_event(&mut dead);
                std::hint::black_box(
                    serde_json::to_string(&dead).expect("a dead letter serialises"),
                );
            }
            return;
        };
        assert_eq!(
            lenient.as_ref(),
            Some(&e),
            "lenient and strict projections differ"
        );
        beacon_scrub::scrub_event(&mut e);
        let g = grouping::group(&e);
        let stored = serde_json::to_string(&e).expect("a stored event serialises");
        // Scrubbing a scrubbed event finds nothing more and changes nothing.
        let mut again = e.clone();
        let stats = beacon_scrub::scrub_event(&mut again);
        assert!(
            stats.is_empty(),
            "second scrub redacted more: {stats:?}\n{stored}"
        );
        assert_eq!(again, e, "second scrub changed the event");
        assert_eq!(grouping::group(&again), g, "grouping is not deterministic");
        assert_eq!(g.hash.len(), 32);
        std::hint::black_box(stored);
    });
});
