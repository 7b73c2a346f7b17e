//! Error reports go through a bounded queue: a capture never waits; when the queue is full the report
//! is dropped and counted, and so is what is left at the shutdown deadline. Runs the agent on a thread
//! of its own and stops it from a plain (non-async) thread.

use crate::util::*;
use beacon_agent::{Agent, Captured, Config, ErrorsConfig};
use beacon_testkit::*;
use std::time::Duration;

#[test]
fn a_full_queue_drops_and_counts_and_never_blocks() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tls = test_tls();
    // A collector that never answers: the first report hangs until its timeout.
    let silent = rt.block_on(fault_server(&tls, Fault::Silent));
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        security_alerts: false,
        state_file: Some(dir.path().join("state.json")),
        ca_file: Some(tls.ca_file.clone()),
        timeout_secs: 30,
        errors: ErrorsConfig {
            dsn: Some(format!(
                "https://0123456789abcdef0123456789abcdef@{}/1",
                silent.host_port()
            )),
            queue: 4,
            capture_panics: false,
            ..ErrorsConfig::default()
        },
        ..Config::default()
    };
    let agent = Agent::builder(config).start_thread().unwrap();
    let err = std::io::Error::other("disk full");
    let mut results = Vec::new();
    for _ in 0..50 {
        results.push(agent.capture_error(&err));
    }
    let queued = results.iter().filter(|r| **r == Captured::Queued).count() as u64;
    let dropped = results.iter().filter(|r| **r == Captured::Dropped).count() as u64;
    assert_eq!(queued + dropped, 50);
    assert!(
        (4..=5).contains(&queued),
        "queue of 4 (+1 taken by the worker): {results:?}"
    );
    let status = agent.shutdown_blocking(Duration::from_millis(200));
    assert_eq!(status.errors_queued, queued);
    assert_eq!(status.errors_sent, 0);
    assert_eq!(
        status.errors_dropped, 50,
        "dropped when full, and the rest at the deadline: {status:?}"
    );
    assert!(silent.count() <= 1, "no retry");
}
