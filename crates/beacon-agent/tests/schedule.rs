//! The schedule over a day, with a manual clock: the first tick (after the jitter) checks, the ticks
//! within 24 hours do not, the tick 24 hours after the last check does; a collector that answers 500
//! or never answers is not asked again before the next due time. Connections are counted on loopback.

use crate::util::*;
use beacon_agent::{Agent, ManualClock, Status};
use beacon_testkit::*;
use std::sync::Arc;
use std::time::Duration;

const TICK: Duration = Duration::from_secs(4 * 3600);

async fn tick(
    clock: &ManualClock,
    agent: &beacon_agent::AgentHandle,
    by: Duration,
    n: u64,
) -> Status {
    clock.advance(by);
    wait_until(&format!("tick {n}"), || agent.status().ticks >= n).await;
    let s = agent.status();
    assert_eq!(s.ticks, n, "one tick per advance");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_cycle_checks_on_the_first_tick_then_once_a_day() {
    let tls = test_tls();
    let collector = start_collector(&tls).await;
    let fwd = forwarder(collector.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = agent_config(&fwd.url(), &tls, dir.path());
    config.payload_log = true;
    let t0 = chrono::Utc::now();
    let clock = Arc::new(ManualClock::new(t0));
    let agent = Agent::builder(config)
        .facts(facts())
        .clock(clock.clone())
        .env(no_env)
        .start_on(&tokio::runtime::Handle::current())
        .unwrap();

    // Before the jitter has passed: nothing.
    settle().await;
    assert_eq!((agent.status().ticks, fwd.count()), (0, 0));

    // The first tick checks.
    let s = tick(&clock, &agent, Duration::from_secs(600), 1).await;
    assert_eq!((s.checks, s.check_failures, fwd.count()), (1, 0, 1));
    assert_eq!(collector.stored_checks().await, 1);
    let first_check = clock_now(&clock);

    // Five more ticks within 24 hours: no check, no connection.
    for n in 2..=6 {
        let s = tick(&clock, &agent, TICK, n).await;
        assert_eq!((s.checks, fwd.count()), (1, 1), "tick {n}");
    }
    // The tick 24 hours after the first check checks again, sending the last check's time.
    let s = tick(&clock, &agent, TICK, 7).await;
    assert_eq!((s.checks, s.check_failures, fwd.count()), (2, 0, 2));
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("state.json")).unwrap()).unwrap();
    let last: chrono::DateTime<chrono::Utc> =
        state["last_check"].as_str().unwrap().parse().unwrap();
    assert_eq!(last, clock_now(&clock));
    let id = state["diagnostic_id"].as_str().unwrap();
    assert!(beacon_agent::is_diagnostic_id(id));

    let urls = logged_urls(&dir.path().join("beacon-agent-payloads.log"));
    assert_eq!(urls.len(), 2);
    assert!(!urls[0].contains("lc="), "{}", urls[0]);
    assert!(
        urls[1].contains(&format!("&lc={}&", first_check.timestamp_millis())),
        "{}",
        urls[1]
    );
    for u in &urls {
        assert!(u.contains(&format!("id={id}")), "the id is made once: {u}");
    }
    agent.shutdown(Duration::from_secs(5)).await;
    collector.stop().await;
}

fn clock_now(clock: &ManualClock) -> chrono::DateTime<chrono::Utc> {
    beacon_agent::Clock::now(clock)
}

fn logged_urls(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["channel"] == "security")
        .map(|v| v["url"].as_str().unwrap().to_string())
        .collect()
}

async fn failing_collector_waits_for_the_next_due_time(fault: Fault) {
    let tls = test_tls();
    let server = fault_server(&tls, fault).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = agent_config(&server.url(), &tls, dir.path());
    config.timeout_secs = 1;
    config.connect_timeout_secs = 1;
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let agent = Agent::builder(config)
        .facts(facts())
        .clock(clock.clone())
        .env(no_env)
        .start_on(&tokio::runtime::Handle::current())
        .unwrap();
    let s = tick(&clock, &agent, Duration::from_secs(600), 1).await;
    assert_eq!((s.checks, s.check_failures, server.count()), (1, 1, 1));
    for n in 2..=6 {
        let s = tick(&clock, &agent, TICK, n).await;
        assert_eq!(
            (s.checks, server.count()),
            (1, 1),
            "tick {n}: no retry before the next due time"
        );
    }
    let s = tick(&clock, &agent, TICK, 7).await;
    assert_eq!((s.checks, s.check_failures, server.count()), (2, 2, 2));
    agent.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_answering_500_is_not_retried_before_the_next_due_time() {
    failing_collector_waits_for_the_next_due_time(Fault::Status500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_times_out_is_not_retried_before_the_next_due_time() {
    failing_collector_waits_for_the_next_due_time(Fault::Silent).await;
}
