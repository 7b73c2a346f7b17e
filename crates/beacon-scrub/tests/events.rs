//! Events full of canaries, shared by the snapshot and the asserting tests.

use beacon_wire::sentry::StoredEvent;
use serde_json::{Value, json};

/// An event from its JSON form; fields left out take their empty defaults.
pub fn event(fields: Value) -> StoredEvent {
    let mut base = json!({
        "event_id": "0123456789abcdef0123456789abcdef",
        "timestamp": "2026-01-02T03:04:05Z",
        "level": "error",
        "exceptions": [],
        "tags": {},
        "contexts": {},
        "extra": {},
    });
    let (Value::Object(base_map), Value::Object(fields)) = (&mut base, fields) else {
        panic!("event fields must be an object");
    };
    base_map.extend(fields);
    serde_json::from_value(base).expect("valid stored event")
}

/// A Django/requests-style Python event.
pub fn python_event() -> StoredEvent {
    event(json!({
        "platform": "python",
        "release": "billing@2.4.1",
        "environment": "production",
        "message": "payment failed for alice@example.com using card 4111 1111 1111 1111",
        "exceptions": [{
            "type": "OperationalError",
            "value": "could not connect to server at 10.20.30.40:5432 via postgres://billing:Sup3rS3cret@db.internal/billing",
            "module": "psycopg2",
            "mechanism": {"type": "logging", "handled": true},
            "frames": [
                {"module": "django.core.handlers.base", "function": "_get_response",
                 "filename": "/usr/lib/python3.11/site-packages/django/core/handlers/base.py", "lineno": 197, "in_app": false},
                {"module": "billing.views", "function": "charge",
                 "filename": "/home/alice/projects/billing/billing/views.py", "lineno": 42, "in_app": true},
                {"module": "billing.gateway", "function": "authorize_payment",
                 "filename": "/home/alice/projects/billing/billing/gateway.py", "lineno": 17, "in_app": true},
                {"module": "psycopg2", "function": "connect",
                 "filename": "/home/alice/.venv/lib/python3.11/site-packages/psycopg2/__init__.py", "lineno": 122, "in_app": false}
            ]
        }],
        "tags": {
            "api_key": "sk_live_51HxYzQ2eZvKYlo2C",
            "client_ip": "203.0.113.7",
            "browser": "Firefox 128.0",
            "server": "web-1",
            "url": "https://billing.example.com/charge?order=7&access_token=tok_9f8e7d6c"
        },
        "contexts": {
            "os": {"name": "Linux", "version": "6.1.0-18-amd64"},
            "runtime": {"name": "CPython", "version": "3.11.4", "build": "main, Jun  7 2023, 12:45:48"},
            "app": {"app_start_time": "2026-01-02T03:00:00Z", "session_token": "abcd1234efgh"}
        },
        "extra": {
            "customer_email": "alice@example.com",
            "password": "hunter2",
            "order_id": 1234,
            "note": "retry scheduled",
            "headers": {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl", "Accept": "application/json"},
            "peer": "2001:db8:85a3::8a2e:370:7334",
            "items": ["sku-1", "sku-2"],
            "duration_ms": 1532.5
        },
        "fingerprint": ["{{ default }}", "gateway-10.20.30.40"]
    }))
}

/// The canaries in [`python_event`]: none may survive scrubbing.
pub const PYTHON_CANARIES: &[&str] = &[
    "alice",
    "4111 1111 1111 1111",
    "10.20.30.40",
    "Sup3rS3cret",
    "hunter2",
    "sk_live_51HxYzQ2eZvKYlo2C",
    "203.0.113.7",
    "tok_9f8e7d6c",
    "abcd1234efgh",
    "eyJhbGciOiJIUzI1NiJ9",
    "2001:db8:85a3::8a2e:370:7334",
];

/// A Rust (sentry-rust, tokio) panic event.
pub fn rust_event() -> StoredEvent {
    event(json!({
        "platform": "native",
        "release": "beacon-agent@0.9.0",
        "environment": "staging",
        "message": "request to https://api.example.com/v1/sync failed: Authorization: Bearer ghp_16C7e42F292c6912E7710c838347Ae178B4a",
        "exceptions": [{
            "type": "std::io::Error",
            "value": "Connection refused (os error 111) connecting to [fe80::1ff:fe23:4567:890a]:443",
            "module": null,
            "mechanism": {"type": "panic", "handled": false},
            "frames": [
                {"module": "std::rt", "function": "std::rt::lang_start::{{closure}}",
                 "filename": "/rustc/3f5fd8dd41153bc5fdca9427e9e05be2c767ba23/library/std/src/rt.rs", "lineno": 166, "in_app": false},
                {"module": "tokio::runtime::task::harness", "function": "tokio::runtime::task::harness::Harness<T,S>::poll",
                 "filename": "/Users/alice/.cargo/registry/src/index.crates.io-6f17d22bba15001f/tokio-1.38.0/src/runtime/task/harness.rs", "lineno": 151, "in_app": false},
                {"module": "agent::net", "function": "agent::net::connect",
                 "filename": "/home/alice/code/agent/src/net.rs", "lineno": 88, "in_app": true},
                {"module": "agent::auth", "function": "<agent::auth::Client as core::ops::Drop>::drop",
                 "filename": "/home/alice/code/agent/src/auth.rs", "lineno": 12, "in_app": true},
                {"module": "core::result", "function": "core::result::Result<T,E>::unwrap",
                 "filename": "/rustc/3f5fd8dd41153bc5fdca9427e9e05be2c767ba23/library/core/src/result.rs", "lineno": 1102, "in_app": false}
            ]
        }],
        "tags": {
            "peer_ip": "198.51.100.23",
            "auth_token": "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            "os.name": "macOS",
            "host": "build-01",
            "upstream": "[2001:db8::17]:8443"
        },
        "contexts": {
            "os": {"name": "macOS", "version": "14.5", "kernel_version": "Darwin Kernel Version 23.5.0"},
            "runtime": {"name": "rustc", "version": "1.79.0"}
        },
        "extra": {
            "panic_payload": "called `Result::unwrap()` on an `Err` value: Os { code: 111, kind: ConnectionRefused }",
            "config_path": "/Users/alice/.config/agent/config.toml",
            "db_url": "postgres://agent:hunter2@10.0.0.5/agent",
            "retry_count": 3,
            "card": 5555555555554444u64,
            "thread": "tokio-runtime-worker"
        },
        "fingerprint": null
    }))
}

pub const RUST_CANARIES: &[&str] = &[
    "alice",
    "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    "fe80::1ff:fe23:4567:890a",
    "198.51.100.23",
    "2001:db8::17",
    "hunter2",
    "10.0.0.5",
    "5555555555554444",
];

/// A browser (JavaScript) event, with secrets in URLs, nested `extra` and `C:\Users` paths.
pub fn javascript_event() -> StoredEvent {
    event(json!({
        "platform": "javascript",
        "release": "frontend@2026.1.0",
        "environment": "production",
        "message": "Failed to fetch https://api.example.com/v1/users?email=bob@example.org&token=tok_abc123",
        "exceptions": [{
            "type": "TypeError",
            "value": "Cannot read properties of undefined (reading 'iban') for GB82 WEST 1234 5698 7654 32",
            "module": null,
            "mechanism": {"type": "onunhandledrejection", "handled": false},
            "frames": [
                {"module": null, "function": "HTMLButtonElement.onClick",
                 "filename": "https://app.example.com/static/js/main.3f2a9c1d.js", "lineno": 2, "in_app": true},
                {"module": "components/Payment", "function": "submitPayment",
                 "filename": "webpack:///./src/components/Payment.tsx", "lineno": 58, "in_app": true},
                {"module": null, "function": "loadConfig",
                 "filename": "C:\\Users\\bob\\AppData\\Local\\Programs\\app\\resources\\app.asar\\config.js", "lineno": 9, "in_app": false}
            ]
        }],
        "tags": {
            "url": "https://app.example.com/login?session=xyz789&next=%2F",
            "user.ip": "2001:db8::42",
            "Cookie": "sessionid=s3ss10n",
            "browser": "Chrome 126.0.6478.127",
            "os": "Windows 10.0.19045"
        },
        "contexts": {
            "os": {"name": "Windows", "version": "10.0.19045", "build": "19045.4529"},
            "app": {"app_name": "Billing", "device_app_hash": "9fceb02d0ae598e95dc970b74767f19372d61af8", "build_type": "release"}
        },
        "extra": {
            "redux_state": {"user": {"name": "Bob", "iban": "GB82 WEST 1234 5698 7654 32"}},
            "request": {"headers": {"Cookie": "sessionid=s3ss10n"}},
            "route": "/settings/profile",
            "viewport": {"w": 1280, "h": 720},
            "filtered_by_sdk": {"password": "[Filtered]", "refresh_token": null},
            "X-Api-Key": "0123abcdef",
            "feature_flags": ["new-checkout", "dark-mode"]
        },
        "fingerprint": ["checkout", "{{ default }}"]
    }))
}

pub const JAVASCRIPT_CANARIES: &[&str] = &[
    "bob@example.org",
    "tok_abc123",
    "GB82 WEST 1234 5698 7654 32",
    "bob",
    "xyz789",
    "2001:db8::42",
    "s3ss10n",
    "0123abcdef",
];

/// A clean 30-frame event: nothing in it may change.
pub fn clean_event(frames: usize) -> StoredEvent {
    let frames: Vec<Value> = (0..frames)
        .map(|i| {
            json!({
                "module": format!("app.services.module_{i}"),
                "function": format!("handle_request_{i}"),
                "filename": format!("/srv/app/releases/5.37.0.1234/app/services/module_{i}.py"),
                "lineno": 10 + i,
                "in_app": i % 2 == 0,
            })
        })
        .collect();
    event(json!({
        "platform": "python",
        "release": "app@5.37.0",
        "environment": "production",
        "message": "Worker timed out after 30s at 12:30:45 (request 550e8400-e29b-41d4-a716-446655440000)",
        "exceptions": [{
            "type": "TimeoutError",
            "value": "operation timed out after 30000 ms; commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
            "module": "builtins",
            "mechanism": {"type": "generic", "handled": true},
            "frames": frames
        }],
        "tags": {"browser": "Firefox 128.0", "server": "web-1", "transaction": "/api/orders/{id}", "author": "team-billing"},
        "contexts": {"os": {"name": "Linux", "version": "6.1.0"}, "runtime": {"name": "CPython", "version": "3.11.4"}},
        "extra": {"attempt": 3, "queue": "orders", "elapsed": 30.5, "ids": [1, 2, 3], "path": "/usr/lib/python3/dist-packages"},
        "fingerprint": ["{{ default }}", "timeout"]
    }))
}
