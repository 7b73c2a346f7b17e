//! Sentry envelopes: `envelope::parse` on any body never panics, and every item payload it returns
//! lies inside the body, in order, without overlapping.
#![no_main]

use beacon_wire::sentry::envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(env) = envelope::parse(data) else {
        return;
    };
    let start = data.as_ptr() as usize;
    let end = start + data.len();
    let mut at = start;
    for item in &env.items {
        let p = item.payload.as_ptr() as usize;
        assert!(
            item.payload.is_empty() || (p >= at && p + item.payload.len() <= end),
            "payload outside the body or overlapping the previous one"
        );
        if !item.payload.is_empty() {
            at = p + item.payload.len();
        }
    }
    // Every item has a header line of at least `{"type":""}`.
    assert!(env.items.len() <= data.len() / 11 + 1);
});
