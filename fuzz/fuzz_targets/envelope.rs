//! Sentry envelopes: `envelope::parse` and `envelope::parse_header` on any body never panic; every
//! item payload `parse` returns lies inside the body, in order, without overlapping; at most
//! `MAX_ITEMS` items; and the header read from the first line alone (what the collector reads before
//! it knows who sent the body) is the header of the whole envelope.
#![no_main]

use beacon_wire::sentry::envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let header = envelope::parse_header(data);
    let Ok(env) = envelope::parse(data) else {
        return;
    };
    assert_eq!(
        header.as_ref(),
        Ok(&env.header),
        "parse_header and parse disagree"
    );
    let first_line = match data.iter().position(|b| *b == b'\n') {
        Some(i) => &data[..=i],
        None => data,
    };
    assert_eq!(envelope::parse_header(first_line).as_ref(), Ok(&env.header));
    assert!(env.items.len() <= envelope::MAX_ITEMS);
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
