//! The simulator against a real in-process collector: what it says it sent and got acknowledged is
//! what the store holds, and a seed gives the same traffic twice.

use beacon_sim::{Hooks, SimConfig};
use beacon_testkit::TestCollector;
use std::collections::HashSet;

struct Setup {
    collector: TestCollector,
    dsn: String,
    api_key: String,
}

async fn setup() -> Setup {
    let collector = TestCollector::builder().system_clock().start().await;
    let dsn = collector.create_project("sim").await.dsn(&collector.url);
    let api_key = collector.create_api_key("sim").await;
    Setup {
        dsn,
        api_key,
        collector,
    }
}

fn config(s: &Setup, record: Option<std::path::PathBuf>) -> SimConfig {
    SimConfig {
        url: s.collector.url.clone(),
        servers: 60,
        devices: 25,
        days: 10,
        seed: 7,
        rate: None,
        concurrency: 8,
        project_dsn: Some(s.dsn.clone()),
        api_key: Some(s.api_key.clone()),
        ca_cert: None,
        progress: false,
        record,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_simulator_saw_acknowledged_is_stored() {
    let s = setup().await;
    let record = s.collector.dir.path().join("acked.txt");
    let summary = beacon_sim::run(config(&s, Some(record.clone())), Hooks::default())
        .await
        .unwrap();
    // Ten days, no clock hook: mobile traffic only for the last six (older traces are refused).
    assert_eq!(summary.mobile_days, 6);
    for c in [&summary.security, &summary.errors, &summary.mobile] {
        assert!(c.requests > 0, "{summary}");
        assert_eq!(
            (c.rejected, c.rate_limited, c.failed),
            (0, 0, 0),
            "{summary}"
        );
        assert_eq!(c.accepted, c.items, "{summary}");
    }
    let lines = std::fs::read_to_string(&record).unwrap();
    let checks: HashSet<&str> = lines
        .lines()
        .filter_map(|l| l.strip_prefix("check "))
        .collect();
    let events = lines.lines().filter(|l| l.starts_with("event ")).count() as u64;
    let traces: u64 = lines
        .lines()
        .filter_map(|l| l.strip_prefix("traces "))
        .map(|n| n.parse::<u64>().unwrap())
        .sum();
    assert_eq!(
        lines.lines().filter(|l| l.starts_with("check ")).count() as u64,
        summary.security.accepted
    );
    assert_eq!(events, summary.errors.accepted);
    assert_eq!(traces, summary.mobile.accepted);

    let store = s.collector.running().store.clone();
    // Every simulated day's check lands on today (receipt day): one row per server.
    let today = chrono::Utc::now().date_naive();
    let stored: HashSet<String> = store
        .latest_per_server(today, today, true)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.server_id)
        .collect();
    assert_eq!(stored.len(), checks.len());
    assert!(checks.iter().all(|c| stored.contains(*c)));
    assert_eq!(store.count_trace_events().await.unwrap(), traces);
    let issues = store
        .issues(&beacon_wire::admin::IssueFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(issues.iter().map(|i| i.count).sum::<u64>(), events);
    assert!(
        issues.len() <= beacon_sim::fleet::CODE_PATHS.len(),
        "one issue per code path at most"
    );
    s.collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_gives_the_same_traffic() {
    let (a, b) = (setup().await, setup().await);
    let sa = beacon_sim::run(config(&a, None), Hooks::default())
        .await
        .unwrap();
    let sb = beacon_sim::run(config(&b, None), Hooks::default())
        .await
        .unwrap();
    assert_eq!(sa, sb);
    assert_eq!(
        a.collector
            .running()
            .store
            .count_trace_events()
            .await
            .unwrap(),
        b.collector
            .running()
            .store
            .count_trace_events()
            .await
            .unwrap()
    );
    let mut other = config(&a, None);
    other.seed = 8;
    assert_ne!(
        beacon_sim::describe(&other),
        beacon_sim::describe(&config(&a, None))
    );
}
