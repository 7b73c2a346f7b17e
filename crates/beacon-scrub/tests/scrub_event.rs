//! Plain assertions on `scrub_event`: no canary survives, exact counts, idempotence, clean events untouched.

use crate::events;
use beacon_scrub::{FILTERED, IP, ScrubStats, scrub_event, scrub_value};
use beacon_wire::sentry::StoredEvent;
use serde_json::json;

fn assert_no_canary(name: &str, mut event: StoredEvent, canaries: &[&str]) {
    let before = serde_json::to_string(&event).unwrap();
    for canary in canaries {
        assert!(
            before.contains(canary) || before.contains(&canary.replace('\\', "\\\\")),
            "{name}: fixture lacks canary {canary:?}"
        );
    }
    scrub_event(&mut event);
    let after = serde_json::to_string(&event).unwrap();
    for canary in canaries {
        assert!(
            !after.to_lowercase().contains(&canary.to_lowercase()),
            "{name}: {canary:?} survived scrubbing: {after}"
        );
    }
}

#[test]
fn no_canary_survives() {
    assert_no_canary("python", events::python_event(), events::PYTHON_CANARIES);
    assert_no_canary("rust", events::rust_event(), events::RUST_CANARIES);
    assert_no_canary(
        "javascript",
        events::javascript_event(),
        events::JAVASCRIPT_CANARIES,
    );
}

#[test]
fn exact_counts_for_the_python_event() {
    let mut event = events::python_event();
    let stats = scrub_event(&mut event);
    let want = ScrubStats {
        // The message.
        email: 2, // message, extra customer_email
        card: 1,
        // Exception value: the server address and the URL's user:password; the fingerprint's address;
        // extra peer (IPv6).
        ip: 3,
        url_credentials: 1,
        // Three frame filenames under /home/alice.
        home_path: 3,
        // Tags api_key (by key) and url (access_token=…); context app.session_token; extra password (by
        // key) and headers.Authorization (by key).
        secret_value: 5,
        // customer_email, password, headers, peer.
        extra_dropped: 4,
        // The client_ip tag names a person's address: dropped whole, not redacted.
        tags_dropped: 1,
        ..ScrubStats::default()
    };
    assert_eq!(stats, want);
    assert_eq!(stats.total(), 15);
    assert!(!event.tags.contains_key("client_ip"));

    assert_eq!(
        event.message.as_deref(),
        Some("payment failed for [email] using card [Filtered]")
    );
    let frames = &event.exceptions[0].frames;
    assert_eq!(
        frames[1].filename.as_deref(),
        Some("/home/[Filtered]/projects/billing/billing/views.py")
    );
    assert_eq!(
        frames[0].filename.as_deref(),
        Some("/usr/lib/python3.11/site-packages/django/core/handlers/base.py")
    );
    assert_eq!(event.tags["api_key"], FILTERED);
    assert_eq!(event.tags["browser"], "Firefox 128.0");
    assert_eq!(
        event.tags["url"],
        "https://billing.example.com/charge?order=7&access_token=[Filtered]"
    );
    assert_eq!(event.contexts["app"]["session_token"], json!(FILTERED));
    assert_eq!(event.contexts["runtime"]["version"], json!("3.11.4"));
    assert_eq!(
        event.extra.keys().map(String::as_str).collect::<Vec<_>>(),
        ["duration_ms", "items", "note", "order_id"]
    );
    assert_eq!(event.release.as_deref(), Some("billing@2.4.1"));
    assert_eq!(
        event.fingerprint,
        Some(vec!["{{ default }}".to_owned(), "gateway-[ip]".to_owned()])
    );
}

#[test]
fn extras_kept_only_when_unchanged() {
    let mut event = events::javascript_event();
    let stats = scrub_event(&mut event);
    // redux_state (IBAN), request (nested Cookie), X-Api-Key (by key) are gone; values the SDK had
    // already filtered pass unchanged.
    assert_eq!(
        event.extra.keys().map(String::as_str).collect::<Vec<_>>(),
        ["feature_flags", "filtered_by_sdk", "route", "viewport"]
    );
    assert_eq!(
        event.extra["filtered_by_sdk"],
        json!({"password": "[Filtered]", "refresh_token": null})
    );
    assert_eq!(stats.extra_dropped, 3);
    assert_eq!(event.tags["Cookie"], FILTERED);
    assert_eq!(event.tags["user.ip"], IP);
    assert_eq!(
        event.exceptions[0].frames[2].filename.as_deref(),
        Some(r"C:\Users\[Filtered]\AppData\Local\Programs\app\resources\app.asar\config.js")
    );
}

#[test]
fn idempotent() {
    for event in [
        events::python_event(),
        events::rust_event(),
        events::javascript_event(),
    ] {
        let mut once = event.clone();
        let first = scrub_event(&mut once);
        assert!(first.total() > 0);
        let mut twice = once.clone();
        let second = scrub_event(&mut twice);
        assert_eq!(twice, once);
        assert_eq!(second, ScrubStats::default());
    }
}

#[test]
fn clean_30_frame_event_is_untouched() {
    let mut event = events::clean_event(30);
    let before = serde_json::to_string(&event).unwrap();
    let pointers: Vec<*const u8> = event.exceptions[0]
        .frames
        .iter()
        .map(|f| f.filename.as_ref().unwrap().as_ptr())
        .collect();
    let stats = scrub_event(&mut event);
    assert!(stats.is_empty(), "{stats:?}");
    assert_eq!(serde_json::to_string(&event).unwrap(), before);
    // Not even reallocated.
    let after: Vec<*const u8> = event.exceptions[0]
        .frames
        .iter()
        .map(|f| f.filename.as_ref().unwrap().as_ptr())
        .collect();
    assert_eq!(after, pointers);
}

#[test]
fn json_values() {
    let mut stats = ScrubStats::default();
    let mut v = json!({
        "user": {"email": "carol@example.com", "auth": {"token": "x"}, "ok": true},
        "list": ["10.0.0.1", 4111111111111111u64, 1700000000000u64, -3],
        "alice@example.com": 1
    });
    scrub_value(&mut v, &mut stats);
    assert_eq!(
        v,
        json!({
            "user": {"email": "[email]", "auth": "[Filtered]", "ok": true},
            "list": ["[ip]", "[Filtered]", 1700000000000u64, -3],
            "[email]": 1
        })
    );
    assert_eq!(stats.email, 2);
    assert_eq!(stats.secret_value, 1);
    assert_eq!(stats.ip, 1);
    assert_eq!(stats.card, 1);
}
