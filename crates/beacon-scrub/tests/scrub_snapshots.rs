//! Snapshots of what scrubbing makes of a table of texts (every rule, and near-misses that must stay as
//! they are) and of whole events. Review changes with `INSTA_UPDATE=always` plus `git diff`, or
//! `cargo insta review`.

use crate::events;
use beacon_scrub::{ScrubStats, scrub_event, scrub_text_counted};
use serde_json::{Map, Value, json};

/// Case name, input. Names become snapshot file names.
const TEXT_CASES: &[(&str, &str)] = &[
    // E-mail addresses.
    ("email_plain", "contact alice@example.com for access"),
    (
        "email_display_name",
        "From: Alice Smith <alice.smith+beacon@mail.example.co.uk>",
    ),
    // IPv4 / IPv6.
    ("ipv4_with_port", "connect to 192.168.1.20:5432 refused"),
    ("ipv4_two", "proxy 10.0.0.1 forwarded for 203.0.113.7"),
    ("ipv6_bracketed_port", "listening on [2001:db8::1]:8080"),
    (
        "ipv6_full",
        "peer fe80:0000:0000:0000:0202:b3ff:fe1e:8329 dropped",
    ),
    ("ipv6_loopback", "bind ::1 failed"),
    ("ipv6_mapped_ipv4", "client ::ffff:192.0.2.128 connected"),
    // Card numbers.
    ("card_spaced", "charge 4111 1111 1111 1111 declined"),
    ("card_dashed", "card=5555-5555-5555-4444"),
    ("card_amex", "amex 378282246310005 ok"),
    ("card_then_digit", "card 4111 1111 1111 1111 2 items"),
    // IBANs.
    ("iban_spaced", "pay to DE89 3704 0044 0532 0130 00 today"),
    ("iban_compact", "IBAN GB82WEST12345698765432"),
    // PEM keys.
    (
        "pem_private_key",
        "key: -----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7V\nQ2x1ZQ==\n-----END RSA PRIVATE KEY----- loaded",
    ),
    (
        "pem_unterminated",
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAAS",
    ),
    // Credentials in URLs.
    (
        "url_credentials",
        "postgres://beacon:s3cr3t@db.internal:5432/beacon",
    ),
    (
        "url_credentials_at_in_password",
        "https://bob:p@ss@example.com/x",
    ),
    // Bearer tokens and secret key=value pairs.
    (
        "bearer_in_prose",
        "sent bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
    ),
    ("authorization_bearer", "Authorization: Bearer abc.def.ghi"),
    ("authorization_basic", "Authorization: Basic dXNlcjpwYXNz"),
    ("query_token", "GET /api?access_token=abc123&page=2"),
    ("password_pair", "login failed password=hunter2 user=bob"),
    ("json_secret", r#"{"api_key": "sk_live_123", "page": 2}"#),
    (
        "python_repr_secret",
        "{'password': 'hunter2', 'user': 'bob'}",
    ),
    ("header_api_key", "X-Api-Key: 0123abcd"),
    ("cookie_header", "Cookie: sessionid=abc123; theme=dark"),
    // Home paths.
    ("home_linux", "/home/alice/src/app/main.py"),
    ("home_macos", "/Users/alice/Library/Caches/app/log.txt"),
    ("home_windows", r"C:\Users\alice\AppData\Local\app.exe"),
    ("home_windows_escaped", r"C:\\Users\\alice\\app"),
    ("home_file_url", "file:///home/alice/notes.txt"),
    // Several rules at once.
    (
        "mixed",
        "user alice@example.com from 10.1.2.3 paid with 4111111111111111 (token=t0k3n)",
    ),
    // Near-misses: none of these may change.
    ("keep_version_four_parts", "upgraded to 5.37.0.1234"),
    ("keep_timestamp", "at 2024-05-01 12:30:45.123 UTC"),
    ("keep_luhn_failure", "order 4111 1111 1111 1112"),
    ("keep_epoch_millis", "ts=1700000000000"),
    (
        "keep_system_path",
        "/usr/lib/python3.11/site-packages/requests/api.py",
    ),
    (
        "keep_auth_words",
        "author of the authentication module; OAuth flow authorize()",
    ),
    ("keep_author_pair", "author: jdoe, authority=ca.example"),
    (
        "keep_uuid",
        "request 550e8400-e29b-41d4-a716-446655440000 failed",
    ),
    (
        "keep_commit_sha",
        "built from 9fceb02d0ae598e95dc970b74767f19372d61af8",
    ),
    (
        "keep_rust_paths",
        "beacon_collector::auth::verify_token at db::connect via <Self::add as core::ops::Add>::add",
    ),
    (
        "keep_home_not_at_path_start",
        "https://example.com/home/index.html",
    ),
    ("keep_mac_address", "iface 00:1a:2b:3c:4d:5e up"),
    ("keep_release", "my-app@1.2.3-beta.rc"),
    ("keep_float", "ratio 0.30000000000000004"),
    ("keep_bearer_prose", "the bearer of bad news"),
    (
        "keep_scrubbed",
        "[Filtered] [ip] [email] password=[Filtered]",
    ),
];

fn counts(stats: &ScrubStats) -> Value {
    let map: Map<String, Value> = stats
        .iter()
        .filter(|&(_, n)| n > 0)
        .map(|(name, n)| (name.to_owned(), json!(n)))
        .collect();
    Value::Object(map)
}

#[test]
fn text_table() {
    assert!(TEXT_CASES.len() >= 25);
    for &(name, input) in TEXT_CASES {
        let mut stats = ScrubStats::default();
        let output = scrub_text_counted(input, &mut stats).into_owned();
        if name.starts_with("keep_") {
            assert_eq!(output, input, "{name} must not change");
        }
        let mut again = ScrubStats::default();
        assert_eq!(scrub_text_counted(&output, &mut again), output, "{name}");
        assert_eq!(again.total(), 0, "{name}: second scrub counts nothing");
        insta::assert_json_snapshot!(
            format!("text_{name}"),
            json!({"input": input, "output": output, "redactions": counts(&stats)})
        );
    }
}

fn event_snapshot(name: &str, mut event: beacon_wire::sentry::StoredEvent) {
    let stats = scrub_event(&mut event);
    insta::assert_json_snapshot!(
        format!("event_{name}"),
        json!({"redactions": counts(&stats), "event": event})
    );
}

#[test]
fn python_event() {
    event_snapshot("python", events::python_event());
}

#[test]
fn rust_event() {
    event_snapshot("rust", events::rust_event());
}

#[test]
fn javascript_event() {
    event_snapshot("javascript", events::javascript_event());
}
