//! Real Sentry SDKs against a real collector: the Python `sentry-sdk` (with `brotli`, as in
//! production) sends errors; they arrive grouped, and no canary of personal data reaches storage.
//!
//! Needs `python3` with `sentry_sdk` and `brotli` (`scripts/test` installs them). Skipped with a note
//! without them, unless `BEACON_REQUIRE_SDKS=1` (set by `scripts/test`).

use crate::util::*;
use beacon_testkit::*;
use std::process::Command;

const CANARIES: &[&str] = &[
    "alice.canary@example.com",
    "203.0.113.77",
    "tok_CANARY_5f3a9b1c7d",
    "4111 1111 1111 1111",
    "4111111111111111",
    "hunter2-CANARY",
    "db01.customer.internal",
    "/home/alice",
];

/// Greps the SQLite database and its WAL for every canary, after checking that the events are
/// in them at all (`stored` is a string every stored event carries).
fn assert_no_canary_in_sqlite_files(data_dir: &std::path::Path, stored: &str) {
    let contains = |bytes: &[u8], s: &str| bytes.windows(s.len()).any(|w| w == s.as_bytes());
    let files: Vec<(&str, Vec<u8>)> = ["beacon.db", "beacon.db-wal"]
        .into_iter()
        .map(|f| (f, std::fs::read(data_dir.join(f)).unwrap_or_default()))
        .collect();
    assert!(
        files.iter().any(|(_, b)| contains(b, stored)),
        "the events are not in the files"
    );
    for (f, bytes) in &files {
        for canary in CANARIES {
            assert!(!contains(bytes, canary), "{canary} in {f}");
        }
    }
}

fn python_ready() -> bool {
    let required = std::env::var("BEACON_REQUIRE_SDKS").is_ok_and(|v| v == "1");
    let ok = Command::new("python3")
        .args(["-c", "import sentry_sdk, brotli"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            !required,
            "BEACON_REQUIRE_SDKS=1 but python3 with sentry_sdk and brotli is missing"
        );
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "NOTE: Python sentry-sdk test SKIPPED: run `pip install sentry-sdk brotli` (scripts/test does)"
        );
    }
    ok
}

/// Creates a project on the collector at `url`; returns its id and DSN.
fn project_dsn(url: &str, name: &str) -> (i64, String) {
    let project = create_project(url, name);
    (project.id, project.dsn(url))
}

fn admin(url: &str) -> reqwest::blocking::RequestBuilder {
    client().get(url).bearer_auth(ADMIN_TOKEN)
}

/// Creates a project on the collector at `url`, runs the Python client against it, checks the
/// grouping and the stored events; returns nothing but panics on any mismatch.
fn python_client_round_trip(url: &str, dir: &std::path::Path) {
    let (project, dsn) = project_dsn(url, "python-app");

    // The client lives under a home directory, so its frames carry /home/alice/… paths.
    let app_dir = dir.join("home/alice/shop");
    std::fs::create_dir_all(&app_dir).unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/sdk/python_client.py"
        ),
        app_dir.join("app.py"),
    )
    .unwrap();
    // Run as `python3 app.py` from its directory, as a service would: the frames' abs_path carries
    // the home directory (and must not be stored); sys.argv (which the SDK puts in `extra`) is relative.
    let out = Command::new("python3")
        .arg("app.py")
        .current_dir(&app_dir)
        .env("BEACON_DSN", &dsn)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python client failed: {}",
        text(&out.stderr)
    );

    let issues: Vec<serde_json::Value> = admin(&format!(
        "{url}/admin/v1/issues?project={project}&sort=count"
    ))
    .send()
    .unwrap()
    .json()
    .unwrap();
    let summary: Vec<(String, u64)> = issues
        .iter()
        .map(|i| {
            (
                i["title"].as_str().unwrap().to_string(),
                i["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(issues.len(), 4, "{summary:?}");
    let value_error = issues
        .iter()
        .find(|i| i["title"].as_str().unwrap().starts_with("ValueError"))
        .unwrap();
    assert_eq!(
        value_error["count"], 2,
        "the same error from the same place is one issue: {summary:?}"
    );
    assert_eq!(value_error["servers"], 1);
    let key_errors = issues
        .iter()
        .filter(|i| i["title"].as_str().unwrap().starts_with("KeyError"))
        .count();
    assert_eq!(
        key_errors, 2,
        "one type from two call sites is two issues: {summary:?}"
    );
    assert!(
        issues
            .iter()
            .any(|i| i["title"].as_str().unwrap().starts_with("payment failed"))
    );

    let detail: serde_json::Value = admin(&format!("{url}/admin/v1/issues/{}", value_error["id"]))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let ev = &detail["latest_event"];
    assert_eq!(ev["release"], "app@1.2.3");
    assert_eq!(ev["platform"], "python");
    let frames = ev["exceptions"][0]["frames"].as_array().unwrap();
    assert!(frames.iter().any(|f| f["function"] == "parse_amount"));
    let event_text = ev.to_string();
    for canary in CANARIES {
        assert!(
            !event_text.contains(canary),
            "{canary} in the stored event: {event_text}"
        );
    }
}

#[test]
fn python_sentry_sdk_events_arrive_grouped_and_scrubbed() {
    if !python_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[("BEACON_ADMIN_TOKEN", ADMIN_TOKEN)]);
    python_client_round_trip(&server.url, dir.path());
    drop(server);
    // Nothing of the canaries anywhere in the store's files.
    assert_no_canary_in_sqlite_files(dir.path(), "parse_amount");
}

#[test]
fn python_sentry_sdk_on_postgres_leaves_no_canary_in_a_dump() {
    if !python_ready() {
        return;
    }
    let Some(db) = TestPg::from_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = serve_on(&db, dir.path());
    python_client_round_trip(&server.url, dir.path());
    drop(server);
    let dump = db.dump();
    assert!(dump.contains("ValueError"), "the dump holds the events");
    for canary in CANARIES {
        assert!(!dump.contains(canary), "{canary} in the postgres dump");
    }
}

/// The Rust `sentry` crate, unmodified (ureq transport, plain http to loopback).
#[test]
fn rust_sentry_crate_errors_and_panics_arrive_grouped_and_scrubbed() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[("BEACON_ADMIN_TOKEN", ADMIN_TOKEN)]);
    let (project, dsn) = project_dsn(&server.url, "rust-app");

    #[derive(Debug)]
    struct PaymentError(String);
    impl std::fmt::Display for PaymentError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}", self.0)
        }
    }
    impl std::error::Error for PaymentError {}

    #[inline(never)]
    fn charge(n: u32) {
        sentry::capture_error(&PaymentError(format!(
            "card declined for alice.canary@example.com ({n})"
        )));
    }
    #[inline(never)]
    fn refund() {
        sentry::capture_error(&PaymentError(
            "card declined for alice.canary@example.com (9)".into(),
        ));
    }

    let mut options = sentry::ClientOptions::default();
    options.release = Some("rust-app@2.0.0".into());
    options.environment = Some("production".into());
    options.server_name = Some("db01.customer.internal".into());
    options.send_default_pii = true;
    options.attach_stacktrace = true;
    let guard = sentry::init((dsn.as_str(), options));
    sentry::configure_scope(|scope| {
        scope.set_user(Some(sentry::User {
            email: Some("alice.canary@example.com".into()),
            ip_address: Some("203.0.113.77".parse().unwrap()),
            username: Some("alice".into()),
            ..Default::default()
        }));
        scope.set_tag("client_ip", "203.0.113.77");
        scope.set_tag("server_id", "srv-rust-1");
        scope.set_extra("auth_header", "Bearer tok_CANARY_5f3a9b1c7d".into());
        scope.set_extra("card", "4111 1111 1111 1111".into());
    });
    // The same error from the same place, twice; the same type from a second place.
    for n in 0..2 {
        charge(n);
    }
    refund();
    // A panic, through the panic hook.
    let _ = std::panic::catch_unwind(|| panic!("ledger out of balance for 203.0.113.77"));
    sentry::capture_message(
        "nightly job failed for alice.canary@example.com",
        sentry::Level::Warning,
    );
    assert!(
        guard.flush(Some(std::time::Duration::from_secs(10))),
        "the sdk flushed"
    );
    drop(guard);

    let issues: Vec<serde_json::Value> = admin(&format!(
        "{}/admin/v1/issues?project={project}&sort=count",
        server.url
    ))
    .send()
    .unwrap()
    .json()
    .unwrap();
    let summary: Vec<(String, u64, String)> = issues
        .iter()
        .map(|i| {
            (
                i["title"].as_str().unwrap().to_string(),
                i["count"].as_u64().unwrap(),
                i["culprit"].to_string(),
            )
        })
        .collect();
    assert_eq!(issues.len(), 4, "{summary:?}");
    assert_eq!(
        issues[0]["count"], 2,
        "the same error from the same place is one issue: {summary:?}"
    );
    assert!(
        issues[0]["culprit"]
            .as_str()
            .unwrap_or_default()
            .contains("charge"),
        "{summary:?}"
    );
    let payment = issues
        .iter()
        .filter(|i| i["title"].as_str().unwrap().contains("PaymentError"))
        .count();
    assert_eq!(
        payment, 2,
        "the same type from two places is two issues: {summary:?}"
    );
    assert!(
        issues.iter().any(|i| i["title"]
            .as_str()
            .unwrap()
            .contains("ledger out of balance")),
        "{summary:?}"
    );
    let text = serde_json::to_string(&issues).unwrap();
    for canary in CANARIES {
        assert!(!text.contains(canary), "{canary} in {text}");
    }
    drop(server);
    assert_no_canary_in_sqlite_files(dir.path(), "PaymentError");
}
