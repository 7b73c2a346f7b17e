//! Sentry envelopes: `envelope::parse`, `envelope::Reader` and `envelope::parse_header` on any body
//! never panic; at most `MAX_ITEMS` items; the header read from the first line alone (what the
//! collector reads before it knows who sent the body) is the header of the whole envelope; and
//! reading with payloads skipped or capped (what the collector does) sees the same items, of the same
//! lengths, as reading them all, keeping exactly the payloads that fit.
#![no_main]

use beacon_wire::sentry::envelope::{self, Payload};
use libfuzzer_sys::fuzz_target;

/// The cap the capped reading uses: small, so both sides of it are reached.
const CAP: usize = 16;

fuzz_target!(|data: &[u8]| {
    let header = envelope::parse_header(data);
    let whole = envelope::parse(data);
    // The collector's reading: events kept up to `CAP` bytes, everything else skipped.
    let capped = envelope::Reader::new(data).and_then(|(h, mut r)| {
        let mut items = Vec::new();
        while let Some(item) = r.next_item(|ty| ty == "event", CAP)? {
            items.push(item);
        }
        Ok((h, items))
    });
    let Ok(env) = whole else {
        assert!(capped.is_err(), "a capped reading succeeded where a whole one failed");
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
    let total: u64 = env.items.iter().map(|i| i.len()).sum();
    assert!(total <= data.len() as u64, "payloads longer than the body");
    // Every item has a header line of at least `{"type":""}`.
    assert!(env.items.len() <= data.len() / 11 + 1);
    let (h, items) = capped.expect("a capped reading fails where a whole one succeeds");
    assert_eq!(h, env.header);
    assert_eq!(items.len(), env.items.len());
    for (c, w) in items.iter().zip(&env.items) {
        assert_eq!((&c.ty, c.len()), (&w.ty, w.len()));
        let Payload::Kept(whole) = &w.payload else {
            panic!("parse keeps every payload");
        };
        match &c.payload {
            Payload::Kept(p) => assert!(c.ty == "event" && p == whole && p.len() <= CAP),
            Payload::TooLarge { .. } => assert!(c.ty == "event" && whole.len() > CAP),
            Payload::Skipped { .. } => assert_ne!(c.ty, "event"),
        }
    }
});
