//! `GET /security?<query>`: `parse_query` on any string never panics, and a query it accepts, rebuilt
//! by `build_query` (what the agent sends), parses back to the same check.
#![no_main]

use beacon_wire::security::{SecurityCheck, build_query, parse_query};
use libfuzzer_sys::fuzz_target;

/// `build_query` sends an absent count as 0 (as Mattermost does).
fn as_sent(c: &SecurityCheck) -> SecurityCheck {
    let mut c = c.clone();
    for n in [&mut c.teams, &mut c.users, &mut c.activated_users] {
        n.get_or_insert(0);
    }
    c
}

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    if let Ok(parsed) = parse_query(&raw) {
        let built = build_query(&parsed.check);
        let again = parse_query(&built).unwrap_or_else(|e| {
            panic!("{raw:?} parsed, but its rebuilt query {built:?} does not: {e}")
        });
        assert_eq!(again.unknown_keys, 0, "{built:?}");
        assert_eq!(
            as_sent(&again.check),
            as_sent(&parsed.check),
            "{raw:?} -> {built:?}"
        );
        assert_eq!(
            build_query(&again.check),
            built,
            "build_query is not stable"
        );
    }
});
