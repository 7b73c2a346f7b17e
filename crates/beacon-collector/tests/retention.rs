//! Retention through the collector: the admin routes, and the background job, on the collector's
//! (manual) clock.

use crate::util::*;
use beacon_testkit::*;
use serde_json::Value;

fn channel<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .or_else(|| list["channels"].as_array())
        .expect("a list of channels, or a run's")
        .iter()
        .find(|c| c["channel"] == name)
        .unwrap_or_else(|| panic!("{name} in {list}"))
}

async fn check_in(c: &TestCollector, servers: std::ops::Range<u32>) {
    for n in servers {
        let r = c
            .security(&mattermost_query(&server_id(n), "9.5.0", 10))
            .await;
        assert_eq!(r.status(), 200);
    }
}

#[tokio::test]
async fn retention_follows_the_collectors_clock() {
    let c = TestCollector::start_with(|c| {
        c.retention.checks_days = 2;
        // The job runs at start, then not again during this test.
        c.retention.interval_secs = 86_400;
    })
    .await;
    // 2026-03-02 and 2026-03-03: three servers each day.
    check_in(&c, 0..3).await;
    c.clock().advance(chrono::Duration::days(1));
    check_in(&c, 0..3).await;
    let status = c.get_admin("/retention").await;
    let checks = channel(&status, "checks");
    assert_eq!(checks["retention_days"], 2);
    assert_eq!(checks["rows"], 6);
    assert_eq!(checks["oldest_day"], "2026-03-02");
    assert!(checks["bytes"].as_u64().unwrap() > 0);
    assert_eq!(channel(&status, "events")["retention_days"], 90);
    assert_eq!(channel(&status, "events")["oldest_day"], Value::Null);

    // On 2026-03-05, the checks of 2026-03-02 are more than two days old.
    c.clock().advance(chrono::Duration::days(2));
    let dry = c
        .admin_post("/retention/apply?dry_run=true")
        .send()
        .await
        .unwrap();
    assert_eq!(dry.status(), 200);
    let dry: Value = dry.json().await.unwrap();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["today"], "2026-03-05");
    assert_eq!(channel(&dry, "checks")["removed"], 3);
    assert_eq!(channel(&dry, "checks")["cutoff"], "2026-03-03");
    assert_eq!(c.stored_checks().await, 6, "a dry run removes nothing");
    let run: Value = c
        .admin_post("/retention/apply")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(run["dry_run"], false);
    assert_eq!(channel(&run, "checks")["removed"], 3);
    assert_eq!(c.stored_checks().await, 3);
    let bad = c
        .admin_post("/retention/apply?dry_run=maybe")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    c.stop().await;
}

/// The job looks at the clock every `interval_secs` and purges once the UTC day changed.
#[tokio::test]
async fn the_job_purges_when_the_day_changes() {
    let c = TestCollector::start_with(|c| {
        c.retention.checks_days = 1;
        c.retention.interval_secs = 1;
    })
    .await;
    check_in(&c, 0..4).await;
    assert_eq!(c.stored_checks().await, 4);
    // 2026-03-04: the checks of 2026-03-02 are more than a day old.
    c.clock().advance(chrono::Duration::days(2));
    let mut left = c.stored_checks().await;
    for _ in 0..2000 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        left = c.stored_checks().await;
    }
    assert_eq!(left, 0, "the job removed the checks of 2026-03-02");
    // Counted once the run is over (it may still be shrinking the file).
    let counted = |metrics: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("beacon_retention_removed_total{channel=\"checks\"} "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let mut removed = counted(&c.metrics().await);
    for _ in 0..2000 {
        if removed >= 4.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        removed = counted(&c.metrics().await);
    }
    assert!(removed >= 4.0, "{removed}");
    c.stop().await;
}
