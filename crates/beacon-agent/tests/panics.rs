//! A panic in a host thread reaches the collector as a grouped issue; the stored event (and what the
//! agent sent, per its payload log) holds no environment variable value, no host name and none of the
//! request data the panic message carried. Alone in its test binary (its own `[[test]]`, not a module
//! of `tests.rs`): the panic hook and the environment are per process.

#[allow(dead_code)]
mod util;

use beacon_agent::{Agent, Config, ErrorsConfig};
use beacon_testkit::*;
use std::time::Duration;
use util::*;

const ENV_CANARY: &str = "env-canary-5e1f0c9a7b";
const REQUEST_CANARIES: &[&str] = &[
    "tok_CANARY_77a1",
    "203.0.113.77",
    "alice.canary@example.com",
    "hunter2-CANARY",
];

#[inline(never)]
fn handle_request(n: u32) {
    let password = "hunter2-CANARY";
    panic!(
        "request {n} GET /api/v4/users?token=tok_CANARY_77a1 from 203.0.113.77 for \
         alice.canary@example.com failed (password={password})"
    );
}

#[inline(never)]
fn rebuild_index() {
    let v: Vec<u32> = Vec::new();
    let _ = v[3];
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| h.len() >= 4)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_thread_panic_arrives_as_a_grouped_issue_without_personal_data() {
    // SAFETY: this binary has this one test (see the module comment); no other thread reads the
    // environment yet. (The workspace denies `unsafe_code`; this test needs the one call.)
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("BEACON_AGENT_TEST_SECRET", ENV_CANARY)
    };
    let tls = test_tls();
    let collector = start_collector(&tls).await;
    let fwd = forwarder(collector.addr).await;
    let project = collector.create_project("host").await;
    let (project, dsn) = (project.id, project.dsn(&fwd.url()));
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        security_alerts: false,
        state_file: Some(dir.path().join("state.json")),
        ca_file: Some(tls.ca_file.clone()),
        payload_log: true,
        errors: ErrorsConfig {
            dsn: Some(dsn),
            release: Some("host@1.0.0".into()),
            environment: Some("production".into()),
            in_app: vec!["panics::".into()],
            ..ErrorsConfig::default()
        },
        ..Config::default()
    };
    let agent = Agent::builder(config)
        .start_on(&tokio::runtime::Handle::current())
        .unwrap();

    // Two panics from the same place, one from another, each in a host thread of its own.
    for (name, f) in [
        ("worker-1", handle_request as fn(u32)),
        ("worker-2", handle_request),
    ] {
        let t = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || f(7))
            .unwrap();
        assert!(t.join().is_err());
    }
    let t = std::thread::spawn(rebuild_index);
    assert!(t.join().is_err());
    let status = agent.shutdown(Duration::from_secs(20)).await;
    assert_eq!(
        (
            status.errors_queued,
            status.errors_sent,
            status.errors_dropped
        ),
        (3, 3, 0),
        "{status:?}"
    );
    assert_eq!(fwd.count(), 3);

    let issues = collector
        .get_admin(&format!("/issues?project={project}&sort=count"))
        .await;
    let issues = issues.as_array().unwrap();
    let summary: Vec<String> = issues
        .iter()
        .map(|i| format!("{} x{} @ {}", i["title"], i["count"], i["culprit"]))
        .collect();
    assert_eq!(issues.len(), 2, "{summary:?}");
    let request = &issues[0];
    assert_eq!(
        request["count"], 2,
        "the same panic site is one issue: {summary:?}"
    );
    assert_eq!(request["level"], "fatal");
    assert!(
        request["title"]
            .as_str()
            .unwrap()
            .starts_with("panic: request 7"),
        "{summary:?}"
    );
    assert!(
        request["culprit"]
            .as_str()
            .unwrap()
            .contains("handle_request"),
        "{summary:?}"
    );
    assert_eq!(request["servers"], 1, "tagged with the diagnostic id");
    assert!(
        issues[1]["culprit"]
            .as_str()
            .unwrap()
            .contains("rebuild_index"),
        "{summary:?}"
    );

    let detail = collector
        .get_admin(&format!("/issues/{}", request["id"]))
        .await;
    let event = &detail["latest_event"];
    assert_eq!(event["release"], "host@1.0.0");
    let frames = event["exceptions"][0]["frames"].as_array().unwrap();
    let top = frames.last().unwrap();
    assert!(
        top["function"].as_str().unwrap().contains("handle_request"),
        "the top frame is the host's: {top}"
    );
    assert_eq!(top["in_app"], true);

    let mut canaries: Vec<String> = REQUEST_CANARIES.iter().map(|s| s.to_string()).collect();
    canaries.push(ENV_CANARY.into());
    canaries.extend(host_name());
    let stored = event.to_string();
    let sent = std::fs::read_to_string(dir.path().join("beacon-agent-payloads.log")).unwrap();
    assert_eq!(sent.lines().count(), 3);
    for canary in &canaries {
        assert!(
            !stored.contains(canary.as_str()),
            "{canary} stored: {stored}"
        );
        assert!(!sent.contains(canary.as_str()), "{canary} sent: {sent}");
    }
    assert!(
        stored.contains("[email]") && stored.contains("[ip]"),
        "{stored}"
    );
    collector.stop().await;
}
