//! The storage conformance suite: one set of tests that every backend runs against itself.
//!
//! A backend's test file calls [`conformance_suite!`](crate::conformance_suite) with an expression that
//! builds a fresh, empty store (`Arc<dyn Store>`) per test; each function here becomes one `#[tokio::test]`.

use crate::alerts::{AttemptOutcome, Finding, NewAlertRuleRow};
use crate::mobile::{PerfContext, TraceBatch};
use crate::security::{self, CheckRecord};
use crate::ui::UiSession;
use crate::{EventRecord, IssueDayCount, NewDeadLetter, Store, StoreError, WriteOp, WriteOutcome};
use beacon_wire::admin::{AdminTokenInfo, FleetDimension, ForgetRecord};
use beacon_wire::admin::{IssueFilter, IssueSort};
use beacon_wire::alert::{AlertKind, AlertParams, DeliveryStatus, DestinationKind};
use beacon_wire::bulletin::{Bulletin, NewBulletin, Severity};
use beacon_wire::mobile::{DeviceInfo, Dimension, TraceName, TraceRecord};
use beacon_wire::security::SecurityCheck;
use beacon_wire::sentry::{Level, StoredEvent};
use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};

/// Expands to one `#[tokio::test]` per conformance case; `$make` is an async expression returning
/// `Option<S>` where `S` derefs to `dyn Store`, evaluated afresh for every test; `None` skips the case
/// (for an engine that is not available on this machine — the backend decides and says so).
/// `$reopen` is an async function taking `&S` and returning a second store on the same database
/// (anything that derefs to `dyn Store`, such as a `Box<dyn Store>`), as a second collector would
/// open it: the cases of `@pairs` run over both.
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr, $reopen:path) => {
        $crate::conformance_suite!(@pairs $make, $reopen;
            ui_sessions_shared_between_stores,
            token_revocation_races_keep_one_token,
            login_links_redeemed_once_across_stores,
        );
        $crate::conformance_suite!(@cases $make;
            empty_store_after_migrations,
            dedup_per_server_and_day,
            dedup_holds_across_batches,
            large_mixed_batch_outcomes_in_order,
            bulletins_round_trip,
            admin_tokens,
            fleet_report_latest_per_server,
            fleet_report_folds_small_groups,
            fleet_report_dimensions_and_test_installs,
            fleet_cells_agree_with_each_server,
            report_sums_survive_the_largest_counts,
            growth_report_new_and_gone,
            exposure_report_and_timeline,
            dead_letters_listed_newest_first,
            dead_letters_trimmed_per_channel,
            projects_and_keys,
            events_group_into_issues,
            api_keys_and_secrets,
            traces_sketches_and_reports,
            compaction_keeps_every_event,
            ui_sessions_lifecycle,
            login_links_lifecycle,
            revoked_token_ends_its_sessions,
            forget_a_server_and_a_device,
            admin_tokens_listed_and_revoked,
            release_health_latest_check_and_error_window,
            release_health_report_folds_small_releases,
            report_rollups_match_the_raw_checks,
        );
        // Retention (issue 14).
        $crate::conformance_suite!(@cases $make;
            retention_removes_only_expired_days,
            retention_keeps_every_trace_event_in_the_sketches,
        );
        $crate::conformance_suite!(@pairs $make, $reopen;
            retention_under_load_loses_nothing_young,
            report_rollups_hold_under_two_writers,
            events_from_two_writers_count_once,
        );
        // Alerts (issue 16).
        $crate::conformance_suite!(@cases $make;
            alert_rules_round_trip,
            alert_episodes_fire_once_and_resolve,
            alert_outbox_leases_and_retries,
            alert_tests_are_recorded,
            alert_history_purged_before_a_cutoff,
            issue_event_counts_by_receipt_time,
        );
        $crate::conformance_suite!(@pairs $make, $reopen;
            alert_episode_enqueued_once_across_stores,
        );
    };
    (@pairs $make:expr, $reopen:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(store) = $crate::conformance::Available::available($make.await) else {
                    return;
                };
                // A second store on the same database: another collector.
                let other = $reopen(&store).await;
                $crate::conformance::$case(&*store, &*other).await;
            }
        )*
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                // `$make` may decline (an engine that is not available here): the case is skipped.
                let Some(store) = $crate::conformance::Available::available($make.await) else {
                    return;
                };
                $crate::conformance::$case(&*store).await;
            }
        )*
    };
}

/// What a backend's `fresh()` may return: a store, or `Option` of one when the engine may be absent.
pub trait Available {
    type Store;
    fn available(self) -> Option<Self::Store>;
}

impl<S: std::ops::Deref<Target = dyn Store>> Available for Option<S> {
    type Store = S;
    fn available(self) -> Option<S> {
        self
    }
}

/// Day 0 of the suite's calendar.
pub fn day0() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()
}

pub fn at(day: u64, hour: u32) -> DateTime<Utc> {
    let d = day0() + Days::new(day);
    Utc.from_utc_datetime(&d.and_hms_opt(hour, 0, 0).unwrap())
}

/// A 26-char server id made from a number.
pub fn server_id(n: u32) -> String {
    format!("srv{n:0>23}")
}

pub fn check(n: u32, version: &str, activated: i64) -> SecurityCheck {
    SecurityCheck {
        server_id: server_id(n),
        version: semver::Version::parse(version).unwrap(),
        build: Some("42".into()),
        enterprise: n.is_multiple_of(2),
        os: "linux".into(),
        db: "postgres".into(),
        db_version: Some("15.2".into()),
        teams: Some(2),
        users: Some(activated * 2),
        activated_users: Some(activated),
        unit_tests: false,
        last_check_ms: None,
    }
}

async fn put(store: &dyn Store, day: u64, checks: Vec<SecurityCheck>) -> Vec<WriteOutcome> {
    let ops: Vec<WriteOp> = checks
        .into_iter()
        .enumerate()
        .map(|(i, check)| {
            WriteOp::Check(CheckRecord {
                received_at: at(day, 1) + chrono::Duration::seconds(i as i64),
                check,
            })
        })
        .collect();
    store.write_batch(ops.into()).await.expect("write batch")
}

pub fn bulletin(id: &str, affected: &str, published_day: u64) -> Bulletin {
    Bulletin::from_new(
        NewBulletin {
            id: id.into(),
            title: format!("bulletin {id}"),
            severity: Severity::High,
            affected: affected.into(),
            fixed_in: None,
            body: format!("<h1>{id}</h1>"),
            published_at: Some(at(published_day, 12)),
        },
        Utc::now(),
    )
    .unwrap()
}

pub async fn empty_store_after_migrations(store: &dyn Store) {
    store.ping().await.unwrap();
    assert_eq!(store.count_checks().await.unwrap(), 0);
    assert!(store.bulletins().await.unwrap().is_empty());
    assert_eq!(store.admin_token_count().await.unwrap(), 0);
    assert!(store.dead_letters(None, 10).await.unwrap().is_empty());
    let r = security::fleet(store, day0(), day0(), FleetDimension::Version, false, 5)
        .await
        .unwrap();
    assert_eq!(r.total.servers, 0);
    assert!(r.groups.is_empty() && !r.thresholded);
}

pub async fn dedup_per_server_and_day(store: &dyn Store) {
    let first = check(1, "5.37.0", 10);
    let mut later = check(1, "5.37.1", 20);
    later.teams = Some(9);
    let outcomes = put(store, 0, vec![first.clone(), first, later]).await;
    assert_eq!(
        outcomes,
        vec![
            WriteOutcome::Accepted,
            WriteOutcome::Duplicate,
            WriteOutcome::Duplicate
        ]
    );
    assert_eq!(store.count_checks().await.unwrap(), 1);
    // The day's row holds the latest values.
    let snap = store
        .latest_per_server(day0(), day0(), false)
        .await
        .unwrap();
    assert_eq!(snap.len(), 1);
    assert_eq!(
        (
            snap[0].version.as_str(),
            snap[0].activated_users,
            snap[0].teams
        ),
        ("5.37.1", Some(20), Some(9))
    );
    // Next day: a new row.
    assert_eq!(
        put(store, 1, vec![check(1, "5.37.1", 20)]).await,
        vec![WriteOutcome::Accepted]
    );
    assert_eq!(store.count_checks().await.unwrap(), 2);
}

pub async fn dedup_holds_across_batches(store: &dyn Store) {
    for _ in 0..3 {
        assert_eq!(
            put(store, 0, vec![check(7, "6.0.0", 3), check(8, "6.0.0", 3)])
                .await
                .len(),
            2
        );
    }
    let again = put(store, 0, vec![check(7, "6.0.0", 3)]).await;
    assert_eq!(again, vec![WriteOutcome::Duplicate]);
    assert_eq!(store.count_checks().await.unwrap(), 2);
}

pub async fn large_mixed_batch_outcomes_in_order(store: &dyn Store) {
    // 300 operations: server n % 120 (so repeats land in other chunks of a multi-row backend),
    // a dead letter every 7th operation.
    let mut ops = Vec::new();
    let mut want = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for i in 0..300u32 {
        if i % 7 == 3 {
            ops.push(WriteOp::DeadLetter(NewDeadLetter {
                received_at: at(0, 2),
                channel: "security".into(),
                reason: format!("r{i}"),
                payload: String::new(),
            }));
            want.push(WriteOutcome::Accepted);
        } else {
            let n = i % 120;
            ops.push(WriteOp::Check(CheckRecord {
                received_at: at(0, 2),
                check: check(n, "5.1.0", i64::from(i)),
            }));
            want.push(if seen.insert(n) {
                WriteOutcome::Accepted
            } else {
                WriteOutcome::Duplicate
            });
        }
    }
    assert_eq!(store.write_batch(ops.into()).await.unwrap(), want);
    assert_eq!(store.count_checks().await.unwrap(), seen.len() as u64);
    // The last value given for a server is the one kept.
    let snap = store
        .latest_per_server(day0(), day0(), false)
        .await
        .unwrap();
    let s5 = snap.iter().find(|s| s.server_id == server_id(5)).unwrap();
    assert_eq!(s5.activated_users, Some(245));
    assert_eq!(
        store
            .dead_letters(Some("security"), 1000)
            .await
            .unwrap()
            .len(),
        43
    );
}

pub async fn bulletins_round_trip(store: &dyn Store) {
    let a = bulletin("BSA-1", ">=5.30.0, <5.37.2", 0);
    let b = bulletin("BSA-2", "<6.0.0", 1);
    store.insert_bulletin(&b).await.unwrap();
    store.insert_bulletin(&a).await.unwrap();
    assert!(matches!(
        store.insert_bulletin(&a).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.bulletins().await.unwrap(), vec![a.clone(), b.clone()]);
    assert_eq!(store.bulletin("BSA-1").await.unwrap(), Some(a.clone()));
    assert_eq!(store.bulletin("nope").await.unwrap(), None);

    let retracted = store.retract_bulletin("BSA-1", at(3, 0)).await.unwrap();
    assert_eq!(retracted.retracted_at, Some(at(3, 0)));
    // Idempotent: the first retraction time stays.
    let again = store.retract_bulletin("BSA-1", at(4, 0)).await.unwrap();
    assert_eq!(again.retracted_at, Some(at(3, 0)));
    assert_eq!(
        store.bulletin("BSA-1").await.unwrap().unwrap().retracted_at,
        Some(at(3, 0))
    );
    assert!(matches!(
        store.retract_bulletin("nope", at(3, 0)).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.insert_bulletin(&a).await,
        Err(StoreError::Conflict(_))
    ));
}

pub async fn admin_tokens(store: &dyn Store) {
    assert!(!store.admin_token_valid("abc").await.unwrap());
    store
        .add_admin_token("abc", "first", at(0, 0))
        .await
        .unwrap();
    store
        .add_admin_token("def", "second", at(0, 0))
        .await
        .unwrap();
    assert!(store.admin_token_valid("abc").await.unwrap());
    assert!(!store.admin_token_valid("ab").await.unwrap());
    assert_eq!(store.admin_token_count().await.unwrap(), 2);
}

pub async fn fleet_report_latest_per_server(store: &dyn Store) {
    // Server 1 upgrades on day 1; over days 0..=1 it counts once, at its latest version.
    let servers: Vec<_> = (1..=6).map(|n| check(n, "5.37.0", 10)).collect();
    put(store, 0, servers).await;
    put(store, 1, vec![check(1, "5.38.0", 30)]).await;
    let r = security::fleet(
        store,
        day0(),
        day0() + Days::new(1),
        FleetDimension::Version,
        false,
        1,
    )
    .await
    .unwrap();
    assert_eq!(r.total.servers, 6);
    assert_eq!(r.total.activated_users, 5 * 10 + 30);
    let keys: Vec<_> = r
        .groups
        .iter()
        .map(|g| (g.key.as_str(), g.counts.servers))
        .collect();
    assert_eq!(keys, vec![("5.37.0", 5), ("5.38.0", 1)]);
    assert!(!r.thresholded);
    // One day only.
    let r = security::fleet(
        store,
        day0() + Days::new(1),
        day0() + Days::new(1),
        FleetDimension::Version,
        false,
        1,
    )
    .await
    .unwrap();
    assert_eq!(r.total.servers, 1);
    // An empty range is an error, not an empty report.
    assert!(
        security::fleet(
            store,
            day0() + Days::new(1),
            day0(),
            FleetDimension::Version,
            false,
            1
        )
        .await
        .is_err()
    );
}

pub async fn fleet_report_folds_small_groups(store: &dyn Store) {
    // 5 servers on 5.37.0 (at the threshold: kept), 4 on 5.36.0 (just below: folded).
    let mut batch: Vec<_> = (1..=5).map(|n| check(n, "5.37.0", 10)).collect();
    batch.extend((6..=9).map(|n| check(n, "5.36.0", 10)));
    put(store, 0, batch).await;
    let r = security::fleet(store, day0(), day0(), FleetDimension::Version, false, 5)
        .await
        .unwrap();
    assert!(r.thresholded);
    let keys: Vec<_> = r
        .groups
        .iter()
        .map(|g| (g.key.as_str(), g.counts.servers))
        .collect();
    assert_eq!(keys, vec![("5.37.0", 5), ("other", 4)]);
    assert_eq!(r.total.servers, 9);
    // One more on 5.36.0 reaches the threshold: nothing folded among versions.
    put(store, 0, vec![check(10, "5.36.0", 10)]).await;
    let r = security::fleet(store, day0(), day0(), FleetDimension::Version, false, 5)
        .await
        .unwrap();
    let keys: Vec<_> = r
        .groups
        .iter()
        .map(|g| (g.key.as_str(), g.counts.servers))
        .collect();
    assert_eq!(keys, vec![("5.36.0", 5), ("5.37.0", 5)]);
    assert!(!r.thresholded, "{r:?}");
}

pub async fn fleet_report_dimensions_and_test_installs(store: &dyn Store) {
    let mut batch = Vec::new();
    for n in 1..=6 {
        let mut c = check(n, "5.37.0", 10);
        c.os = if n <= 3 { "linux" } else { "windows" }.into();
        c.db = if n <= 2 { "mysql" } else { "postgres" }.into();
        c.db_version = None;
        batch.push(c);
    }
    let mut test_install = check(99, "5.37.0", 1);
    test_install.unit_tests = true;
    batch.push(test_install);
    put(store, 0, batch).await;

    let f = |by, include_test| security::fleet(store, day0(), day0(), by, include_test, 1);
    let r = f(FleetDimension::Os, false).await.unwrap();
    assert_eq!(r.total.servers, 6);
    let keys: Vec<_> = r
        .groups
        .iter()
        .map(|g| (g.key.as_str(), g.counts.servers))
        .collect();
    assert_eq!(keys, vec![("linux", 3), ("windows", 3)]);
    let r = f(FleetDimension::Os, true).await.unwrap();
    assert_eq!(r.total.servers, 7);
    let r = f(FleetDimension::Edition, false).await.unwrap();
    let keys: Vec<_> = r
        .groups
        .iter()
        .map(|g| (g.key.as_str(), g.counts.servers))
        .collect();
    assert_eq!(keys, vec![("enterprise", 3), ("team", 3)]);
    let r = f(FleetDimension::Db, false).await.unwrap();
    let keys: Vec<_> = r
        .groups
        .iter()
        .map(|g| (g.key.as_str(), g.counts.servers))
        .collect();
    assert_eq!(keys, vec![("postgres", 4), ("mysql", 2)]);
    let r = f(FleetDimension::Dbv, false).await.unwrap();
    assert_eq!(r.groups[0].key, "postgres (unknown)");
    // Distributions: activated users 10 each → bucket 1-10 (6 servers); users 20 → 11-100.
    assert_eq!(r.distributions.activated_users[0].range, "1-10");
    assert_eq!(r.distributions.activated_users[0].servers, 6);
    assert_eq!(r.distributions.users[0].range, "11-100");
}

/// The key of a server in a dimension, written out in Rust: what [`security::dimension_sql`] must give.
fn dimension_key(s: &security::ServerSnapshot, by: FleetDimension) -> String {
    match by {
        FleetDimension::Version => s.version.clone(),
        FleetDimension::Edition => if s.enterprise { "enterprise" } else { "team" }.to_string(),
        FleetDimension::Os => s.os.clone(),
        FleetDimension::Db => s.db.clone(),
        FleetDimension::Dbv => match &s.db_version {
            Some(v) => format!("{} {v}", s.db),
            None => format!("{} (unknown)", s.db),
        },
    }
}

/// A fleet cell's key: (dimension key, bucket labels of users, activated users, teams).
type CellKey = (String, &'static str, &'static str, &'static str);
/// Servers, users, activated users, teams.
type CellSums = (u64, i64, i64, i64);

/// Fleet cells computed in Rust from each server's latest check.
fn cells_of_servers(
    servers: &[security::ServerSnapshot],
    by: FleetDimension,
) -> std::collections::BTreeMap<CellKey, CellSums> {
    let cap = |v: Option<i64>| v.unwrap_or(0).min(security::COUNT_CAP);
    let mut want: std::collections::BTreeMap<CellKey, CellSums> = Default::default();
    for s in servers {
        let e = want
            .entry((
                dimension_key(s, by),
                security::bucket_of(s.users),
                security::bucket_of(s.activated_users),
                security::bucket_of(s.teams),
            ))
            .or_default();
        e.0 += 1;
        e.1 += cap(s.users);
        e.2 += cap(s.activated_users);
        e.3 += cap(s.teams);
    }
    want
}

/// Fleet cells as the store computes them.
async fn cells_of_store(
    store: &dyn Store,
    from: NaiveDate,
    to: NaiveDate,
    by: FleetDimension,
    include_test: bool,
) -> std::collections::BTreeMap<CellKey, CellSums> {
    let mut got: std::collections::BTreeMap<CellKey, CellSums> = Default::default();
    for c in store.fleet_cells(from, to, by, include_test).await.unwrap() {
        let old = got.insert(
            (
                c.key,
                security::bucket_of(c.users_bucket),
                security::bucket_of(c.activated_users_bucket),
                security::bucket_of(c.teams_bucket),
            ),
            (
                c.counts.servers,
                c.counts.users,
                c.counts.activated_users,
                c.counts.teams,
            ),
        );
        assert!(old.is_none(), "one cell per key and buckets");
    }
    got
}

pub async fn fleet_cells_agree_with_each_server(store: &dyn Store) {
    // Every bucket boundary, in every count, over servers that differ in every dimension; some
    // servers check in again the next day with other values (their latest check counts).
    let values = [
        None,
        Some(0),
        Some(1),
        Some(10),
        Some(11),
        Some(100),
        Some(101),
        Some(1000),
        Some(1001),
        Some(10000),
        Some(10001),
        Some(security::COUNT_CAP),
        Some(security::COUNT_CAP + 1),
        Some(i64::MAX),
    ];
    let mut day0_batch = Vec::new();
    let mut day1_batch = Vec::new();
    for n in 0..60u32 {
        let i = n as usize;
        let mut c = check(n, ["5.37.0", "5.38.1", "10.0.0"][i % 3], 1);
        c.os = ["linux", "windows", "freebsd", "darwin"][i % 4].into();
        c.db = ["postgres", "mysql"][i % 2].into();
        c.db_version = [Some("15.2".to_string()), None, Some("8.0".into())][i % 3].clone();
        c.users = values[i % values.len()];
        c.activated_users = values[(i + 5) % values.len()];
        c.teams = values[(i * 7) % values.len()];
        c.unit_tests = n % 11 == 0;
        if n % 4 == 0 {
            let mut later = c.clone();
            later.version = semver::Version::parse("10.1.0").unwrap();
            later.users = values[(i + 1) % values.len()];
            day1_batch.push(later);
        }
        day0_batch.push(c);
    }
    put(store, 0, day0_batch).await;
    put(store, 1, day1_batch).await;
    let (from, to) = (day0(), day0() + Days::new(1));
    for include_test in [false, true] {
        let servers = store
            .latest_per_server(from, to, include_test)
            .await
            .unwrap();
        assert!(servers.len() >= 50, "{} servers", servers.len());
        for by in [
            FleetDimension::Version,
            FleetDimension::Edition,
            FleetDimension::Os,
            FleetDimension::Db,
            FleetDimension::Dbv,
        ] {
            let want = cells_of_servers(&servers, by);
            let got = cells_of_store(store, from, to, by, include_test).await;
            assert_eq!(got, want, "{by:?}, include_test={include_test}");
        }
    }
}

pub async fn report_sums_survive_the_largest_counts(store: &dyn Store) {
    // Counts as large as the wire allows, from many servers: sums are capped, never an error.
    let batch = (1..=40)
        .map(|n| {
            let mut c = check(n, "5.37.1", 1);
            c.activated_users = Some(i64::MAX);
            c.users = Some(i64::MAX);
            c.teams = Some(i64::MAX);
            c
        })
        .collect();
    put(store, 0, batch).await;
    store
        .insert_bulletin(&bulletin("BSA-BIG", "<5.38.0", 0))
        .await
        .unwrap();
    let r = security::fleet(store, day0(), day0(), FleetDimension::Version, false, 1)
        .await
        .unwrap();
    assert_eq!(r.total.servers, 40);
    assert_eq!(r.total.users, 40 * security::COUNT_CAP);
    assert_eq!(r.total.activated_users, 40 * security::COUNT_CAP);
    assert_eq!(r.distributions.users[0].range, "10001+");
    let r = security::exposure(store, None, 1, day0(), false, 1)
        .await
        .unwrap();
    assert_eq!(r.bulletins[0].servers, 40);
    assert_eq!(r.bulletins[0].activated_users, 40 * security::COUNT_CAP);
    let day = r.bulletins[0]
        .timeline
        .iter()
        .find(|d| d.day == day0())
        .unwrap();
    assert_eq!(day.affected_activated_users, 40 * security::COUNT_CAP);
}

pub async fn growth_report_new_and_gone(store: &dyn Store) {
    // Day 0: servers 1,2,3. Day 1: 1,2 (2 is checked three times). Day 2: 1, 4.
    put(
        store,
        0,
        vec![
            check(1, "5.0.0", 1),
            check(2, "5.0.0", 1),
            check(3, "5.0.0", 1),
        ],
    )
    .await;
    put(
        store,
        1,
        vec![
            check(1, "5.0.0", 1),
            check(2, "5.0.0", 1),
            check(2, "5.0.0", 1),
            check(2, "5.0.0", 1),
        ],
    )
    .await;
    let mut t = check(5, "5.0.0", 1);
    t.unit_tests = true;
    put(
        store,
        2,
        vec![check(1, "5.0.0", 1), check(4, "5.0.0", 1), t],
    )
    .await;
    let today = day0() + Days::new(10);
    let r = security::growth(store, day0(), day0() + Days::new(5), false, 2, today)
        .await
        .unwrap();
    let rows: Vec<_> = r.days.iter().map(|d| (d.servers, d.new, d.gone)).collect();
    // Server 3 was last seen on day 0 → gone on day 2; server 2 (day 1) → day 3; 1 and 4 (day 2) → day 4.
    assert_eq!(
        rows,
        vec![
            (3, 3, 0),
            (2, 0, 0),
            (2, 1, 1),
            (0, 0, 1),
            (0, 0, 2),
            (0, 0, 0)
        ]
    );
    let r = security::growth(store, day0(), day0() + Days::new(2), true, 2, today)
        .await
        .unwrap();
    assert_eq!(r.days[2].servers, 3);
    assert_eq!(r.days[2].new, 2);
    // Silence is only "gone" once it has happened.
    let r = security::growth(
        store,
        day0(),
        day0() + Days::new(5),
        false,
        2,
        day0() + Days::new(3),
    )
    .await
    .unwrap();
    assert_eq!(r.days[4].gone, 0);
}

pub async fn exposure_report_and_timeline(store: &dyn Store) {
    store
        .insert_bulletin(&bulletin("BSA-1", ">=5.30.0, <5.37.2", 2))
        .await
        .unwrap();
    let mut retracted = bulletin("BSA-OLD", "<9.0.0", 0);
    retracted.retracted_at = Some(at(1, 0));
    store.insert_bulletin(&retracted).await.unwrap();
    // Days 0..=2: six servers on 5.37.1 (affected), two on 5.37.2. From day 3, servers 1..=4 patch.
    for day in 0..=5u64 {
        let batch = (1..=8)
            .map(|n| {
                let patched = n > 6 || (day >= 3 && n <= 4);
                check(n, if patched { "5.37.2" } else { "5.37.1" }, 100)
            })
            .collect();
        put(store, day, batch).await;
    }
    let as_of = day0() + Days::new(5);
    let r = security::exposure(store, None, 3, as_of, false, 1)
        .await
        .unwrap();
    assert_eq!(r.servers_in_window, 8);
    assert_eq!(
        r.bulletins.len(),
        1,
        "retracted bulletins are left out unless named"
    );
    let b = &r.bulletins[0];
    assert_eq!((b.servers, b.activated_users), (2, 200));
    // Timeline starts a week before publication (clamped to data days when they exist).
    let by_day: Vec<_> = b
        .timeline
        .iter()
        .filter(|d| d.servers_checked > 0)
        .map(|d| (d.day, d.affected_servers))
        .collect();
    assert_eq!(
        by_day,
        (0..=5u64)
            .map(|d| (day0() + Days::new(d), if d >= 3 { 2 } else { 6 }))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        b.timeline.first().unwrap().day,
        day0() + Days::new(2) - Days::new(7)
    );
    // Folding: 2 affected servers are below a threshold of 5.
    let r = security::exposure(store, Some("BSA-1"), 3, as_of, false, 5)
        .await
        .unwrap();
    assert!(r.thresholded);
    assert_eq!(r.bulletins[0].by_version[0].key, "other");
    assert_eq!(r.bulletins[0].servers, 2, "totals are exact");
    // A retracted bulletin named explicitly is reported.
    let r = security::exposure(store, Some("BSA-OLD"), 3, as_of, false, 1)
        .await
        .unwrap();
    assert_eq!(r.bulletins[0].servers, 8);
    assert!(matches!(
        security::exposure(store, Some("nope"), 3, as_of, false, 1).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn dead_letters_listed_newest_first(store: &dyn Store) {
    let dl = |channel: &str, reason: &str| {
        WriteOp::DeadLetter(NewDeadLetter {
            received_at: at(0, 3),
            channel: channel.into(),
            reason: reason.into(),
            payload: format!("payload of {reason}"),
        })
    };
    let outcomes = store
        .write_batch(
            vec![
                dl("security", "invalid:id"),
                dl("security", "invalid:b"),
                dl("mobile", "x"),
            ]
            .into(),
        )
        .await
        .unwrap();
    assert_eq!(outcomes, vec![WriteOutcome::Accepted; 3]);
    let all = store.dead_letters(None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|d| d.reason.as_str()).collect::<Vec<_>>(),
        vec!["x", "invalid:b", "invalid:id"]
    );
    assert_eq!(all[0].received_at, at(0, 3));
    let sec = store.dead_letters(Some("security"), 1).await.unwrap();
    assert_eq!(sec.len(), 1);
    assert_eq!(sec[0].reason, "invalid:b");
    assert_eq!(sec[0].payload, "payload of invalid:b");
}

pub async fn dead_letters_trimmed_per_channel(store: &dyn Store) {
    let dl = |channel: &str, i: usize| {
        WriteOp::DeadLetter(NewDeadLetter {
            received_at: at(0, 3),
            channel: channel.into(),
            reason: format!("r{i}"),
            payload: String::new(),
        })
    };
    let mut ops: Vec<WriteOp> = (0..7).map(|i| dl("security", i)).collect();
    ops.extend((0..2).map(|i| dl("mobile", i)));
    store.write_batch(ops.into()).await.unwrap();
    let mut removed = store.trim_dead_letters(3).await.unwrap();
    removed.sort();
    assert_eq!(removed, vec![("security".to_string(), 4)]);
    let kept = store.dead_letters(Some("security"), 100).await.unwrap();
    assert_eq!(
        kept.iter().map(|d| d.reason.as_str()).collect::<Vec<_>>(),
        vec!["r6", "r5", "r4"],
        "the newest are kept"
    );
    assert_eq!(
        store.dead_letters(Some("mobile"), 100).await.unwrap().len(),
        2
    );
    assert!(store.trim_dead_letters(3).await.unwrap().is_empty());
    store.trim_dead_letters(0).await.unwrap();
    assert!(store.dead_letters(None, 100).await.unwrap().is_empty());
}

pub async fn projects_and_keys(store: &dyn Store) {
    let key_a = "a".repeat(32);
    let key_b = "b".repeat(32);
    let p = store
        .create_project("backend", &key_a, at(0, 0))
        .await
        .unwrap();
    assert!(p.id > 0);
    assert_eq!(p.keys[0].public_key, key_a);
    assert!(matches!(
        store.create_project("backend", &key_b, at(0, 0)).await,
        Err(StoreError::Conflict(_))
    ));
    let q = store
        .create_project("mobile", &key_b, at(0, 1))
        .await
        .unwrap();
    let all = store.projects().await.unwrap();
    assert_eq!(
        all.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        vec!["backend", "mobile"]
    );
    assert_eq!(all[1].keys[0].project_id, q.id);
    let k = store.project_key(&key_a).await.unwrap().unwrap();
    assert!(k.enabled && k.rate_limit_per_minute.is_none());
    assert_eq!(store.project_key(&"c".repeat(32)).await.unwrap(), None);
    let k = store
        .update_key(&key_a, Some(false), Some(120))
        .await
        .unwrap();
    assert!(!k.enabled);
    assert_eq!(k.rate_limit_per_minute, Some(120));
    let k = store.update_key(&key_a, Some(true), None).await.unwrap();
    assert!(k.enabled);
    assert_eq!(
        k.rate_limit_per_minute,
        Some(120),
        "an absent limit leaves it"
    );
    let k = store.update_key(&key_a, None, Some(0)).await.unwrap();
    assert_eq!(k.rate_limit_per_minute, None, "0 clears it");
    assert!(matches!(
        store.update_key(&"c".repeat(32), Some(true), None).await,
        Err(StoreError::NotFound(_))
    ));
}

fn event_op(
    project_id: i64,
    n: u32,
    hash: &str,
    release: &str,
    env: &str,
    server: Option<&str>,
    day: u64,
) -> WriteOp {
    let event = StoredEvent {
        event_id: format!("{n:032x}"),
        timestamp: at(day, 3),
        level: if hash == "h2" {
            Level::Warning
        } else {
            Level::Error
        },
        release: Some(release.into()),
        environment: Some(env.into()),
        message: Some(format!("event {n}")),
        ..Default::default()
    };
    WriteOp::Event(Box::new(EventRecord {
        project_id,
        received_at: at(day, 3) + chrono::Duration::seconds(i64::from(n)),
        event_json: serde_json::to_string(&event).unwrap(),
        event,
        group_hash: hash.into(),
        title: format!("title {hash}"),
        culprit: Some("app in main".into()),
        server_id: server.map(str::to_string),
    }))
}

pub async fn events_group_into_issues(store: &dyn Store) {
    let p = store
        .create_project("backend", &"d".repeat(32), at(0, 0))
        .await
        .unwrap()
        .id;
    let out = store
        .write_batch(
            vec![
                event_op(p, 1, "h1", "1.0", "prod", Some("s1"), 0),
                event_op(p, 2, "h1", "1.0", "prod", Some("s2"), 0),
                event_op(p, 3, "h1", "1.1", "prod", Some("s1"), 1),
                event_op(p, 4, "h2", "1.1", "staging", None, 1),
                event_op(p, 1, "h1", "1.0", "prod", Some("s1"), 0),
            ]
            .into(),
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![
            WriteOutcome::Accepted,
            WriteOutcome::Accepted,
            WriteOutcome::Accepted,
            WriteOutcome::Accepted,
            WriteOutcome::Duplicate
        ]
    );
    // A repeat in a later batch is a duplicate too.
    assert_eq!(
        store
            .write_batch(vec![event_op(p, 3, "h1", "1.1", "prod", None, 1)].into())
            .await
            .unwrap(),
        vec![WriteOutcome::Duplicate]
    );

    let filter = |f: IssueFilter| async move {
        store
            .issues(&IssueFilter { limit: 100, ..f })
            .await
            .unwrap()
    };
    let all = filter(IssueFilter {
        sort: IssueSort::Count,
        ..Default::default()
    })
    .await;
    assert_eq!(all.len(), 2);
    let h1 = &all[0];
    assert_eq!(
        (h1.title.as_str(), h1.count, h1.servers),
        ("title h1", 3, 2)
    );
    assert_eq!(h1.first_seen, at(0, 3) + chrono::Duration::seconds(1));
    assert_eq!(h1.last_seen, at(1, 3) + chrono::Duration::seconds(3));
    assert_eq!(all[1].count, 1);
    assert_eq!(
        filter(IssueFilter {
            release: Some("1.0".into()),
            ..Default::default()
        })
        .await
        .len(),
        1
    );
    assert_eq!(
        filter(IssueFilter {
            environment: Some("staging".into()),
            ..Default::default()
        })
        .await[0]
            .title,
        "title h2"
    );
    assert_eq!(
        filter(IssueFilter {
            level: Some(Level::Warning),
            ..Default::default()
        })
        .await
        .len(),
        1
    );
    assert_eq!(
        filter(IssueFilter {
            project_id: Some(p + 1000),
            ..Default::default()
        })
        .await
        .len(),
        0
    );
    let by_last_seen = filter(IssueFilter::default()).await;
    assert_eq!(
        by_last_seen[0].title, "title h2",
        "h2's event is the newest"
    );

    let d = store.issue(h1.id).await.unwrap().unwrap();
    assert_eq!(d.latest_event.event_id, format!("{:032x}", 3));
    let rel: Vec<_> = d
        .by_release
        .iter()
        .map(|c| (c.key.clone(), c.count))
        .collect();
    assert_eq!(
        rel,
        vec![(Some("1.0".to_string()), 2), (Some("1.1".to_string()), 1)]
    );
    let envs: Vec<_> = d
        .by_environment
        .iter()
        .map(|c| (c.key.clone(), c.count))
        .collect();
    assert_eq!(envs, vec![(Some("prod".to_string()), 3)]);
    let days: Vec<_> = d.by_day.iter().map(|c| (c.key, c.count)).collect();
    assert_eq!(days, vec![(day0(), 2), (day0() + Days::new(1), 1)]);
    let h2 = &all[1];
    let d2 = store.issue(h2.id).await.unwrap().unwrap();
    assert_eq!(
        d2.by_environment
            .iter()
            .map(|c| (c.key.clone(), c.count))
            .collect::<Vec<_>>(),
        vec![(Some("staging".to_string()), 1)]
    );

    // Per issue and day, for the issue list's sparklines: only the asked issues and days.
    let counts = store
        .issue_day_counts(&[h1.id, h2.id, h1.id + 1000], day0(), day0() + Days::new(1))
        .await
        .unwrap();
    let mut expected = vec![
        IssueDayCount {
            issue_id: h1.id,
            day: day0(),
            count: 2,
        },
        IssueDayCount {
            issue_id: h1.id,
            day: day0() + Days::new(1),
            count: 1,
        },
        IssueDayCount {
            issue_id: h2.id,
            day: day0() + Days::new(1),
            count: 1,
        },
    ];
    expected.sort_by_key(|c| (c.issue_id, c.day));
    assert_eq!(counts, expected, "ordered by issue, then day");
    assert_eq!(
        store
            .issue_day_counts(&[h1.id], day0() + Days::new(1), day0() + Days::new(5))
            .await
            .unwrap(),
        vec![IssueDayCount {
            issue_id: h1.id,
            day: day0() + Days::new(1),
            count: 1
        }]
    );
    assert!(
        store
            .issue_day_counts(&[], day0(), day0())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.issue(h1.id + 1000).await.unwrap().is_none());
}

pub async fn api_keys_and_secrets(store: &dyn Store) {
    let a = store
        .create_api_key("android", &"a".repeat(64), "bmk_1234", at(0, 1))
        .await
        .unwrap();
    assert_eq!(a.name, "android");
    assert!(a.revoked_at.is_none());
    assert!(matches!(
        store
            .create_api_key("android", &"b".repeat(64), "bmk_5678", at(0, 2))
            .await,
        Err(StoreError::Conflict(_))
    ));
    store
        .create_api_key("ios", &"c".repeat(64), "bmk_9abc", at(0, 3))
        .await
        .unwrap();
    let names: Vec<_> = store
        .api_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(names, vec!["android", "ios"]);
    assert!(store.api_key_valid(&"a".repeat(64)).await.unwrap());
    assert!(!store.api_key_valid(&"b".repeat(64)).await.unwrap());
    let r = store.revoke_api_key("android", at(1, 0)).await.unwrap();
    assert_eq!(r.revoked_at, Some(at(1, 0)));
    let again = store.revoke_api_key("android", at(2, 0)).await.unwrap();
    assert_eq!(
        again.revoked_at,
        Some(at(1, 0)),
        "the first revocation stays"
    );
    assert!(!store.api_key_valid(&"a".repeat(64)).await.unwrap());
    assert!(store.api_key_valid(&"c".repeat(64)).await.unwrap());
    assert!(matches!(
        store.revoke_api_key("nope", at(2, 0)).await,
        Err(StoreError::NotFound(_))
    ));

    let first = store.secret("device_hash", &[1; 32]).await.unwrap();
    assert_eq!(first, vec![1; 32]);
    let second = store.secret("device_hash", &[2; 32]).await.unwrap();
    assert_eq!(second, vec![1; 32], "the first secret stored is kept");
    assert_eq!(store.secret("other", &[3; 8]).await.unwrap(), vec![3; 8]);
}

fn trace_batch(
    day: u64,
    version: &str,
    device: u32,
    emulator: bool,
    trace: TraceName,
    durs: &[i64],
) -> WriteOp {
    let info = DeviceInfo {
        version: Some(version.into()),
        model: Some(format!("model-{}", device % 2)),
        is_emulator: Some(emulator),
        is_tablet: Some(device.is_multiple_of(3)),
        ..Default::default()
    };
    let ts = at(day, 12).timestamp_micros();
    WriteOp::Traces(Box::new(TraceBatch {
        received_at: at(day, 12),
        context: PerfContext::new(info, Some(format!("{device:016x}{}", "0".repeat(48)))),
        events: durs
            .iter()
            .enumerate()
            .map(|(i, d)| TraceRecord {
                name: trace,
                ts_us: ts + i as i64,
                dur_us: *d,
            })
            .collect(),
    }))
}

pub async fn traces_sketches_and_reports(store: &dyn Store) {
    // Version 1.0: 6 devices, durations 1..=600 ms; version 1.1: 6 devices, 30 % slower; version
    // 0.9: 2 devices (folded); an emulator with very long durations.
    let mut all_10 = Vec::new();
    let mut ops = Vec::new();
    for device in 0..6u32 {
        let durs: Vec<i64> = (0..100)
            .map(|i| (1 + i * 6 + device as i64) * 1000)
            .collect();
        all_10.extend(durs.iter().copied());
        ops.push(trace_batch(
            0,
            "1.0.0",
            device,
            false,
            TraceName::ChannelSwitchLoaded,
            &durs,
        ));
        let slower: Vec<i64> = durs.iter().map(|d| d * 13 / 10).collect();
        ops.push(trace_batch(
            1,
            "1.1.0",
            10 + device,
            false,
            TraceName::ChannelSwitchLoaded,
            &slower,
        ));
    }
    ops.push(trace_batch(
        0,
        "0.9.0",
        20,
        false,
        TraceName::ChannelSwitchLoaded,
        &[5_000; 10],
    ));
    ops.push(trace_batch(
        0,
        "0.9.0",
        21,
        false,
        TraceName::ChannelSwitchLoaded,
        &[5_000; 10],
    ));
    ops.push(trace_batch(
        0,
        "1.0.0",
        30,
        true,
        TraceName::ChannelSwitchLoaded,
        &[500_000_000; 50],
    ));
    ops.push(trace_batch(
        0,
        "1.0.0",
        0,
        false,
        TraceName::TeamSwitch,
        &[1_000],
    ));
    let n = ops.len();
    let outcomes = store.write_batch(ops.into()).await.unwrap();
    assert_eq!(outcomes, vec![WriteOutcome::Accepted; n]);
    assert_eq!(
        store.count_trace_events().await.unwrap(),
        1200 + 20 + 50 + 1
    );

    let q = |by: Option<Dimension>, include_emulators: bool| crate::mobile::PerfQuery {
        trace: TraceName::ChannelSwitchLoaded,
        from: day0(),
        to: day0() + Days::new(1),
        by,
        include_emulators,
        min_group_size: 5,
    };
    let check = |report: beacon_wire::admin::PercentileReport| {
        assert!(report.thresholded, "0.9.0 has 2 devices");
        let v10 = report.groups.iter().find(|g| g.value == "1.0.0").unwrap();
        assert_eq!(v10.count, 600);
        assert_eq!(v10.devices, 6);
        let mut sorted = all_10.clone();
        sorted.sort_unstable();
        for (got, qq) in [(v10.p50_ms, 0.5), (v10.p95_ms, 0.95), (v10.p99_ms, 0.99)] {
            let want = sorted[(qq * (sorted.len() - 1) as f64).floor() as usize] as f64 / 1000.0;
            assert!(
                (got - want).abs() / want <= 0.01 + 1e-9,
                "q{qq}: {got} vs {want}"
            );
        }
        let other = report.groups.last().unwrap();
        assert_eq!(
            (other.value.as_str(), other.count, other.devices),
            ("other", 20, 2)
        );
        report
    };
    let before = check(
        crate::mobile::percentiles(store, &q(Some(Dimension::AppVersion), false))
            .await
            .unwrap(),
    );
    let merged = store.compact_perf().await.unwrap();
    assert!(merged > 0);
    assert_eq!(
        store.compact_perf().await.unwrap(),
        0,
        "nothing left to merge"
    );
    let after = check(
        crate::mobile::percentiles(store, &q(Some(Dimension::AppVersion), false))
            .await
            .unwrap(),
    );
    assert_eq!(before, after, "compaction changes no answer");

    // Ungrouped; emulators only when asked.
    let total = crate::mobile::percentiles(store, &q(None, false))
        .await
        .unwrap();
    assert_eq!(total.groups.len(), 1);
    assert_eq!(total.groups[0].count, 1220);
    let with_emu = crate::mobile::percentiles(store, &q(None, true))
        .await
        .unwrap();
    assert_eq!(with_emu.groups[0].count, 1270);
    assert!(with_emu.groups[0].p99_ms > 400_000.0);
    // Other dimensions: devices whose number is a multiple of 3 are tablets (0, 3, 12, 15, 21).
    let tablet = crate::mobile::percentiles(store, &q(Some(Dimension::Tablet), false))
        .await
        .unwrap();
    let phones = tablet.groups.iter().find(|g| g.value == "phone").unwrap();
    assert_eq!(phones.count, 800 + 10);
    // One day only.
    let mut day1 = q(Some(Dimension::AppVersion), false);
    day1.from = day0() + Days::new(1);
    let r = crate::mobile::percentiles(store, &day1).await.unwrap();
    assert_eq!(r.groups.len(), 1);
    assert_eq!(r.groups[0].value, "1.1.0");
    // Per day, from one read: each day's figures are that day's own report over every group.
    let per_day = crate::mobile::percentiles_per_day(store, &q(Some(Dimension::AppVersion), false))
        .await
        .unwrap();
    assert!(!per_day.is_empty());
    for (day, g) in &per_day {
        let mut one = q(None, false);
        (one.from, one.to) = (*day, *day);
        let alone = crate::mobile::percentiles(store, &one).await.unwrap();
        assert_eq!(alone.groups.len(), 1, "{day}");
        assert_eq!(
            (g.count, g.p50_ms, g.p95_ms),
            (
                alone.groups[0].count,
                alone.groups[0].p50_ms,
                alone.groups[0].p95_ms
            ),
            "{day}"
        );
    }

    let h = crate::mobile::histogram(store, &q(None, false))
        .await
        .unwrap();
    assert_eq!(
        h.groups[0].buckets.iter().map(|b| b.count).sum::<u64>(),
        1220
    );

    let reg = |threshold: f64, min_samples: u64| crate::mobile::RegressionQuery {
        trace: None,
        from: day0(),
        to: day0() + Days::new(1),
        threshold,
        min_samples,
        include_emulators: false,
        min_group_size: 5,
    };
    let r = crate::mobile::regressions(store, &reg(0.1, 100))
        .await
        .unwrap();
    assert!(r.thresholded);
    assert_eq!(r.comparisons.len(), 1, "{r:?}");
    let c = &r.comparisons[0];
    assert_eq!(
        (
            c.trace.as_str(),
            c.version.as_str(),
            c.previous_version.as_str()
        ),
        ("channel:switch_loaded", "1.1.0", "1.0.0")
    );
    assert!(c.flagged && (c.p95_change - 0.3).abs() < 0.03, "{c:?}");
    assert!(
        !crate::mobile::regressions(store, &reg(0.35, 100))
            .await
            .unwrap()
            .comparisons[0]
            .flagged
    );
    let few = crate::mobile::regressions(store, &reg(0.1, 601))
        .await
        .unwrap();
    assert!(!few.comparisons[0].flagged && few.comparisons[0].too_few_samples);

    let raw = store.trace_events(5).await.unwrap();
    assert_eq!(raw.len(), 5);
    assert!(
        raw.iter()
            .all(|t| t.context.info.device_unique_id.is_none() && t.context.device_hash.is_some())
    );
}

pub async fn compaction_keeps_every_event(store: &dyn Store) {
    let mut expected = 0u64;
    for round in 0..6u32 {
        let ops: Vec<WriteOp> = (0..8u32)
            .map(|d| {
                trace_batch(
                    u64::from(round % 2),
                    "2.0.0",
                    d,
                    false,
                    TraceName::PostsLoading,
                    &[1_000 * i64::from(round + 1); 25],
                )
            })
            .collect();
        expected += 8 * 25;
        let (w, c1, c2) = tokio::join!(
            store.write_batch(ops.into()),
            store.compact_perf(),
            store.compact_perf()
        );
        w.unwrap();
        c1.unwrap();
        c2.unwrap();
    }
    let q = crate::mobile::PerfQuery {
        trace: TraceName::PostsLoading,
        from: day0(),
        to: day0() + Days::new(1),
        by: None,
        include_emulators: false,
        min_group_size: 5,
    };
    let before = crate::mobile::percentiles(store, &q).await.unwrap();
    assert_eq!(before.groups[0].count, expected);
    store.compact_perf().await.unwrap();
    let after = crate::mobile::percentiles(store, &q).await.unwrap();
    assert_eq!(after, before);
    let by_day = crate::mobile::percentiles(
        store,
        &crate::mobile::PerfQuery {
            by: Some(Dimension::AppVersion),
            ..q
        },
    )
    .await
    .unwrap();
    assert_eq!(by_day.groups[0].count, expected);
    assert_eq!(by_day.groups[0].devices, 8);
}

/// A token's SHA-256 (hex), as the collector stores it.
fn token_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn ui_session(n: u32, label: &str, created_at: DateTime<Utc>, hours: i64) -> UiSession {
    UiSession {
        id_hash: format!("{n:064x}"),
        token_label: label.into(),
        created_at,
        expires_at: created_at + chrono::Duration::hours(hours),
    }
}

pub async fn ui_sessions_lifecycle(store: &dyn Store) {
    let tok = token_hash("alice's token");
    store
        .add_admin_token(&tok, "alice", at(0, 0))
        .await
        .unwrap();
    let s = ui_session(1, "alice", at(0, 1), 12);
    store.create_ui_session(&s, &tok).await.unwrap();
    let again = store.create_ui_session(&s, &tok).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let ghost = ui_session(2, "ghost", at(0, 1), 12);
    let unknown = store
        .create_ui_session(&ghost, &token_hash("no such token"))
        .await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound(_))),
        "only from a stored token: {unknown:?}"
    );
    assert_eq!(
        store.ui_session(&ghost.id_hash, at(0, 2)).await.unwrap(),
        None
    );

    assert_eq!(
        store.ui_session(&s.id_hash, at(0, 2)).await.unwrap(),
        Some(s.clone())
    );
    // Valid up to its expiry, not at it.
    let last_ms = s.expires_at - chrono::Duration::milliseconds(1);
    assert_eq!(
        store.ui_session(&s.id_hash, last_ms).await.unwrap(),
        Some(s.clone())
    );
    assert_eq!(
        store.ui_session(&s.id_hash, s.expires_at).await.unwrap(),
        None
    );
    assert_eq!(
        store.ui_session(&"f".repeat(64), at(0, 2)).await.unwrap(),
        None
    );

    // Logout.
    assert!(store.delete_ui_session(&s.id_hash).await.unwrap());
    assert!(!store.delete_ui_session(&s.id_hash).await.unwrap());
    assert_eq!(store.ui_session(&s.id_hash, at(0, 2)).await.unwrap(), None);

    // Purge: expiring at hours 3, 5, 5 and 9 of day 1; at hour 5 three are over.
    for (n, hours) in [(10, 3), (11, 5), (12, 5), (13, 9)] {
        store
            .create_ui_session(&ui_session(n, "alice", at(1, 0), hours), &tok)
            .await
            .unwrap();
    }
    assert_eq!(store.purge_ui_sessions(at(1, 5)).await.unwrap(), 3);
    assert_eq!(store.purge_ui_sessions(at(1, 5)).await.unwrap(), 0);
    let kept = ui_session(13, "alice", at(1, 0), 9);
    assert_eq!(
        store.ui_session(&kept.id_hash, at(1, 5)).await.unwrap(),
        Some(kept.clone())
    );
    assert!(
        !store
            .delete_ui_session(&ui_session(11, "", at(1, 0), 0).id_hash)
            .await
            .unwrap()
    );
    assert_eq!(store.purge_ui_sessions(at(2, 0)).await.unwrap(), 1);
    assert_eq!(
        store.ui_session(&kept.id_hash, at(1, 5)).await.unwrap(),
        None
    );
}

pub async fn login_links_lifecycle(store: &dyn Store) {
    let (a, b) = (token_hash("token a"), token_hash("token b"));
    store.add_admin_token(&a, "alice", at(0, 0)).await.unwrap();
    store.add_admin_token(&b, "bob", at(0, 0)).await.unwrap();
    let code = |n: u32| token_hash(&format!("code {n}"));
    let unknown = store
        .create_ui_login_link(&code(0), &token_hash("no such token"), at(0, 1))
        .await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound(_))),
        "only for a stored token: {unknown:?}"
    );
    // Redeemed once: the second time there is nothing.
    store
        .create_ui_login_link(&code(1), &a, at(0, 1))
        .await
        .unwrap();
    assert_eq!(
        store.take_ui_login_link(&code(1), at(0, 0)).await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        store.take_ui_login_link(&code(1), at(0, 0)).await.unwrap(),
        None
    );
    assert_eq!(
        store.take_ui_login_link(&code(0), at(0, 0)).await.unwrap(),
        None
    );
    // Valid up to its expiry, not at it; an expired link is gone after the attempt.
    store
        .create_ui_login_link(&code(2), &a, at(0, 1))
        .await
        .unwrap();
    store
        .create_ui_login_link(&code(3), &a, at(0, 1))
        .await
        .unwrap();
    assert_eq!(
        store.take_ui_login_link(&code(2), at(0, 1)).await.unwrap(),
        None
    );
    let last_ms = at(0, 1) - chrono::Duration::milliseconds(1);
    assert_eq!(
        store.take_ui_login_link(&code(3), last_ms).await.unwrap(),
        Some(a.clone())
    );
    // Revoking the token ends its links; purging removes expired ones.
    store
        .create_ui_login_link(&code(4), &b, at(0, 5))
        .await
        .unwrap();
    store
        .create_ui_login_link(&code(5), &a, at(0, 5))
        .await
        .unwrap();
    store
        .create_ui_login_link(&code(6), &a, at(0, 2))
        .await
        .unwrap();
    assert!(store.revoke_admin_token(&b[..12]).await.unwrap());
    assert_eq!(
        store.take_ui_login_link(&code(4), at(0, 0)).await.unwrap(),
        None
    );
    store.purge_ui_sessions(at(0, 3)).await.unwrap();
    assert_eq!(
        store.take_ui_login_link(&code(6), at(0, 0)).await.unwrap(),
        None,
        "purged"
    );
    assert_eq!(
        store.take_ui_login_link(&code(5), at(0, 3)).await.unwrap(),
        Some(a.clone())
    );
}

pub async fn revoked_token_ends_its_sessions(store: &dyn Store) {
    let (a, b) = (token_hash("token a"), token_hash("token b"));
    store.add_admin_token(&a, "alice", at(0, 0)).await.unwrap();
    store.add_admin_token(&b, "bob", at(0, 0)).await.unwrap();
    let (sa1, sa2) = (
        ui_session(1, "alice", at(0, 1), 12),
        ui_session(2, "alice", at(0, 2), 12),
    );
    let sb = ui_session(3, "bob", at(0, 1), 12);
    for (s, t) in [(&sa1, &a), (&sa2, &a), (&sb, &b)] {
        store.create_ui_session(s, t).await.unwrap();
    }
    assert!(store.revoke_admin_token(&a[..12]).await.unwrap());
    for s in [&sa1, &sa2] {
        assert_eq!(store.ui_session(&s.id_hash, at(0, 3)).await.unwrap(), None);
        // Gone, not hidden: nothing is left to log out or to purge.
        assert!(!store.delete_ui_session(&s.id_hash).await.unwrap());
    }
    assert_eq!(store.purge_ui_sessions(at(9, 0)).await.unwrap(), 1, "bob's");
    let sb2 = ui_session(4, "bob", at(0, 1), 12);
    store.create_ui_session(&sb2, &b).await.unwrap();
    assert_eq!(
        store.ui_session(&sb2.id_hash, at(0, 3)).await.unwrap(),
        Some(sb2),
        "another token's sessions live on"
    );
    let late = store
        .create_ui_session(&ui_session(5, "alice", at(0, 4), 12), &a)
        .await;
    assert!(
        matches!(late, Err(StoreError::NotFound(_))),
        "no session from a revoked token: {late:?}"
    );
}

pub async fn admin_tokens_listed_and_revoked(store: &dyn Store) {
    assert!(store.admin_tokens().await.unwrap().is_empty());
    let (a, b, c) = (token_hash("a"), token_hash("b"), token_hash("c"));
    // Added out of order, one label twice: listed oldest first.
    store.add_admin_token(&b, "ci", at(0, 2)).await.unwrap();
    store.add_admin_token(&a, "cli", at(0, 1)).await.unwrap();
    store.add_admin_token(&c, "cli", at(0, 3)).await.unwrap();
    let info = |h: &str, label: &str, created_at| AdminTokenInfo {
        id: h[..12].to_string(),
        label: label.into(),
        created_at,
    };
    let list = store.admin_tokens().await.unwrap();
    assert_eq!(
        list,
        vec![
            info(&a, "cli", at(0, 1)),
            info(&b, "ci", at(0, 2)),
            info(&c, "cli", at(0, 3))
        ]
    );
    let json = serde_json::to_string(&list).unwrap();
    for h in [&a, &b, &c] {
        assert!(
            !json.contains(&h[..13]),
            "a listing shows 12 characters of a hash"
        );
    }
    assert_eq!(
        store.admin_token_label(&b).await.unwrap().as_deref(),
        Some("ci")
    );
    assert_eq!(store.admin_token_label(&b[..12]).await.unwrap(), None);
    assert_eq!(
        store.admin_token_label(&token_hash("x")).await.unwrap(),
        None
    );

    let upper = a[..12].to_uppercase();
    for bad in [
        "",
        &a[..11],
        &a[..13],
        upper.as_str(),
        "zzzzzzzzzzzz",
        a.as_str(),
    ] {
        let r = store.revoke_admin_token(bad).await;
        assert!(
            matches!(r, Err(StoreError::InvalidInput(_))),
            "{bad:?}: {r:?}"
        );
    }
    assert_eq!(store.admin_token_count().await.unwrap(), 3);
    let unknown = token_hash("unknown");
    assert!(!store.revoke_admin_token(&unknown[..12]).await.unwrap());

    assert!(store.revoke_admin_token(&b[..12]).await.unwrap());
    assert!(!store.admin_token_valid(&b).await.unwrap());
    assert!(
        !store.revoke_admin_token(&b[..12]).await.unwrap(),
        "gone already"
    );
    assert!(store.revoke_admin_token(&a[..12]).await.unwrap());
    assert_eq!(
        store.admin_tokens().await.unwrap(),
        vec![info(&c, "cli", at(0, 3))]
    );
    // The last token stays: nobody could log in without one.
    let last = store.revoke_admin_token(&c[..12]).await;
    match last {
        Err(StoreError::Conflict(m)) => assert!(m.contains("last admin token"), "{m}"),
        other => panic!("the last token was not refused: {other:?}"),
    }
    assert!(store.admin_token_valid(&c).await.unwrap());
    assert_eq!(store.admin_token_count().await.unwrap(), 1);
}

pub async fn ui_sessions_shared_between_stores(store: &dyn Store, other: &dyn Store) {
    let (a, b) = (token_hash("token a"), token_hash("token b"));
    store.add_admin_token(&a, "alice", at(0, 0)).await.unwrap();
    store.add_admin_token(&b, "bob", at(0, 0)).await.unwrap();
    assert!(other.admin_token_valid(&a).await.unwrap());
    // Made through one collector, known to the other; a logout through either ends it for both.
    let s = ui_session(1, "alice", at(0, 1), 12);
    store.create_ui_session(&s, &a).await.unwrap();
    assert_eq!(
        other.ui_session(&s.id_hash, at(0, 2)).await.unwrap(),
        Some(s.clone())
    );
    assert!(other.delete_ui_session(&s.id_hash).await.unwrap());
    assert_eq!(store.ui_session(&s.id_hash, at(0, 2)).await.unwrap(), None);
    // A revocation through one ends the sessions made through the other.
    let (sb, sa) = (
        ui_session(2, "bob", at(0, 1), 12),
        ui_session(3, "alice", at(0, 1), 1),
    );
    other.create_ui_session(&sb, &b).await.unwrap();
    other.create_ui_session(&sa, &a).await.unwrap();
    assert!(store.revoke_admin_token(&b[..12]).await.unwrap());
    assert_eq!(other.ui_session(&sb.id_hash, at(0, 2)).await.unwrap(), None);
    assert_eq!(
        store.ui_session(&sa.id_hash, at(0, 1)).await.unwrap(),
        Some(sa.clone())
    );
    assert_eq!(other.admin_tokens().await.unwrap().len(), 1);
    // Purged through one, gone for both.
    assert_eq!(store.purge_ui_sessions(at(0, 3)).await.unwrap(), 1);
    assert_eq!(other.ui_session(&sa.id_hash, at(0, 1)).await.unwrap(), None);
}

pub async fn token_revocation_races_keep_one_token(store: &dyn Store, other: &dyn Store) {
    // Two collectors each revoke one of the last two tokens at once: one wins, one is refused.
    for round in 0..4u32 {
        let (a, b) = (
            token_hash(&format!("a{round}")),
            token_hash(&format!("b{round}")),
        );
        if round == 0 {
            store.add_admin_token(&a, "a", at(0, 0)).await.unwrap();
        } else {
            // The survivor of the last round is one of the two.
            let survivor = store.admin_tokens().await.unwrap();
            assert_eq!(survivor.len(), 1);
            let keep = survivor[0].id.clone();
            other.add_admin_token(&a, "a", at(0, 0)).await.unwrap();
            assert!(store.revoke_admin_token(&keep).await.unwrap());
        }
        other.add_admin_token(&b, "b", at(0, 0)).await.unwrap();
        let (ra, rb) = tokio::join!(
            store.revoke_admin_token(&a[..12]),
            other.revoke_admin_token(&b[..12])
        );
        let won = [&ra, &rb].iter().filter(|r| matches!(r, Ok(true))).count();
        let refused = [&ra, &rb]
            .iter()
            .filter(|r| matches!(r, Err(StoreError::Conflict(_))))
            .count();
        assert_eq!((won, refused), (1, 1), "round {round}: {ra:?}, {rb:?}");
        assert_eq!(store.admin_token_count().await.unwrap(), 1);
        assert_eq!(other.admin_token_count().await.unwrap(), 1);
    }
}

pub async fn login_links_redeemed_once_across_stores(store: &dyn Store, other: &dyn Store) {
    let a = token_hash("token a");
    store.add_admin_token(&a, "alice", at(0, 0)).await.unwrap();
    // Two collectors redeem the same links at once: each link signs in exactly once.
    for n in 0..20u32 {
        let code = token_hash(&format!("race {n}"));
        store
            .create_ui_login_link(&code, &a, at(1, 0))
            .await
            .unwrap();
        let (x, y) = tokio::join!(
            store.take_ui_login_link(&code, at(0, 1)),
            other.take_ui_login_link(&code, at(0, 1))
        );
        let won = [x.unwrap(), y.unwrap()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>();
        assert_eq!(won, vec![a.clone()], "link {n}");
    }
}

pub fn forget_record(channel: &str, id: &str) -> ForgetRecord {
    ForgetRecord {
        at: at(9, 0),
        by: "ops".into(),
        channel: channel.into(),
        id_hash: token_hash(id),
        checks: 0,
        events: 0,
        trace_events: 0,
        dead_letters: 0,
    }
}

pub async fn forget_a_server_and_a_device(store: &dyn Store) {
    let p = store
        .create_project("app", "k1", at(0, 0))
        .await
        .unwrap()
        .id;
    // Server 1 checks in on days 0..=2, server 2 on day 1; both send errors. Issue "shared" gets
    // events of both; issue "only1" only of server 1.
    for day in 0..3u64 {
        put(store, day, vec![check(1, "5.37.0", 10)]).await;
    }
    put(store, 1, vec![check(2, "5.37.0", 10)]).await;
    let mut ops = Vec::new();
    let mut n = 0;
    for (server, hash, day) in [
        (1, "shared", 0),
        (1, "shared", 1),
        (2, "shared", 1),
        (1, "only1", 2),
        (1, "only1", 2),
    ] {
        n += 1;
        let WriteOp::Event(mut e) = server_error(p, n, Some(server_id(server)), at(day, 5)) else {
            unreachable!()
        };
        e.group_hash = hash.into();
        e.title = hash.into();
        ops.push(WriteOp::Event(e));
    }
    store.write_batch(ops.into()).await.unwrap();
    store
        .write_batch(
            vec![WriteOp::DeadLetter(NewDeadLetter {
                received_at: at(2, 0),
                channel: "security".into(),
                reason: "bad".into(),
                payload: format!("id={}&b=x", server_id(1)),
            })]
            .into(),
        )
        .await
        .unwrap();
    // A device with 3 trace events, another with 2.
    store
        .write_batch(
            vec![
                trace_batch(1, "1.0", 7, false, TraceName::ALL[0], &[1000, 2000, 3000]),
                trace_batch(1, "1.0", 8, false, TraceName::ALL[0], &[1000, 2000]),
            ]
            .into(),
        )
        .await
        .unwrap();

    let forgotten = store
        .forget_server(&server_id(1), forget_record("server", &server_id(1)))
        .await
        .unwrap();
    assert_eq!(
        (forgotten.checks, forgotten.events),
        (3, 4),
        "{forgotten:?}"
    );
    // Only server 2's data is left: one check, one event in "shared" (counts adjusted), no "only1".
    let left = store
        .latest_per_server(day0(), day0() + Days::new(5), true)
        .await
        .unwrap();
    assert_eq!(
        left.iter().map(|s| s.server_id.clone()).collect::<Vec<_>>(),
        [server_id(2)]
    );
    let issues = store
        .issues(&IssueFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(
        (issues[0].title.as_str(), issues[0].count, issues[0].servers),
        ("shared", 1, 1)
    );
    let d = store.issue(issues[0].id).await.unwrap().unwrap();
    assert_eq!(
        d.by_day
            .iter()
            .map(|c| (c.key, c.count))
            .collect::<Vec<_>>(),
        [(day0() + Days::new(1), 1)]
    );
    assert!(
        store
            .dead_letters(None, 100)
            .await
            .unwrap()
            .iter()
            .all(|l| !l.payload.contains(&server_id(1)))
    );

    // The device: its raw events go, the other device's stay; the sketches keep every event.
    let before = crate::mobile::percentiles(
        store,
        &crate::mobile::PerfQuery {
            trace: TraceName::ALL[0],
            from: day0(),
            to: day0() + Days::new(3),
            by: None,
            include_emulators: true,
            min_group_size: 1,
        },
    )
    .await
    .unwrap();
    let device = format!("{:016x}{}", 7, "0".repeat(48));
    let gone = store
        .forget_device(&device, forget_record("device", &device))
        .await
        .unwrap();
    assert_eq!(gone.trace_events, 3);
    assert_eq!(store.count_trace_events().await.unwrap(), 2);
    let left = store.trace_events(100).await.unwrap();
    assert!(
        left.iter()
            .all(|t| t.context.device_hash.as_deref() != Some(device.as_str()))
    );
    let after = crate::mobile::percentiles(
        store,
        &crate::mobile::PerfQuery {
            trace: TraceName::ALL[0],
            from: day0(),
            to: day0() + Days::new(3),
            by: None,
            include_emulators: true,
            min_group_size: 1,
        },
    )
    .await
    .unwrap();
    assert_eq!(before.groups[0].count, 5);
    assert_eq!(
        after.groups[0].count, 5,
        "sketch cells are aggregates and stay"
    );

    // The log: newest first, ids only hashed.
    let log = store.forget_log(10).await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[0].channel.as_str(), log[0].trace_events),
        ("device", 3)
    );
    assert_eq!(
        (
            log[1].channel.as_str(),
            log[1].checks,
            log[1].events,
            log[1].by.as_str()
        ),
        ("server", 3, 4, "ops")
    );
    assert_eq!(log[1].id_hash, token_hash(&server_id(1)));
    assert_eq!(log[1].at, at(9, 0));
    // Forgetting again finds nothing, and says so.
    let again = store
        .forget_server(&server_id(1), forget_record("server", &server_id(1)))
        .await
        .unwrap();
    assert_eq!((again.checks, again.events, again.dead_letters), (0, 0, 0));
}

/// An error event with a `server_id` tag, received at `received_at`.
pub fn server_error(
    project_id: i64,
    n: u32,
    server: Option<String>,
    received_at: DateTime<Utc>,
) -> WriteOp {
    let event = StoredEvent {
        event_id: format!("{n:032x}"),
        timestamp: received_at,
        level: Level::Error,
        release: Some("5.37.0".into()),
        message: Some(format!("event {n}")),
        ..Default::default()
    };
    WriteOp::Event(Box::new(EventRecord {
        project_id,
        received_at,
        event_json: serde_json::to_string(&event).unwrap(),
        event,
        group_hash: "f".repeat(32),
        title: "boom".into(),
        culprit: None,
        server_id: server,
    }))
}

/// `(version, servers, servers with errors)` of the raw query.
async fn health(
    store: &dyn Store,
    from: u64,
    to: u64,
    include_test: bool,
) -> Vec<(String, u64, u64)> {
    store
        .release_health(
            day0() + Days::new(from),
            day0() + Days::new(to),
            include_test,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.version, r.servers, r.servers_with_errors))
        .collect()
}

pub async fn release_health_latest_check_and_error_window(store: &dyn Store) {
    let v = |s: &str, n: u64, e: u64| (s.to_string(), n, e);
    assert!(health(store, 0, 9, true).await.is_empty());
    // Day 0: servers 2 and 11. Day 1: 1..=6 and 10 on 5.37.0, 7..=9 on 5.38.0, test install 12.
    // Day 2: server 10 upgrades to 5.38.0. Day 4 (after the window): server 6 to 5.39.0.
    put(
        store,
        0,
        vec![check(2, "5.37.0", 1), check(11, "5.37.0", 1)],
    )
    .await;
    let mut day1: Vec<_> = (1..=6).chain([10]).map(|n| check(n, "5.37.0", 1)).collect();
    day1.extend((7..=9).map(|n| check(n, "5.38.0", 1)));
    let mut test_install = check(12, "5.37.0", 1);
    test_install.unit_tests = true;
    day1.push(test_install);
    put(store, 1, day1).await;
    put(store, 2, vec![check(10, "5.38.0", 1)]).await;
    put(store, 4, vec![check(6, "5.39.0", 1)]).await;

    let p = store
        .create_project("backend", &"e".repeat(32), at(0, 0))
        .await
        .unwrap()
        .id;
    let q = store
        .create_project("plugins", &"f".repeat(32), at(0, 0))
        .await
        .unwrap()
        .id;
    let sid = |n: u32| Some(server_id(n));
    let ms = chrono::Duration::milliseconds(1);
    let events = vec![
        server_error(p, 1, sid(1), at(2, 5)),
        server_error(p, 2, sid(1), at(2, 6)), // a second one counts once
        server_error(p, 3, sid(2), at(1, 0) - ms), // the last instant before the window
        server_error(p, 4, sid(3), at(4, 0)), // the first instant after it
        server_error(p, 5, sid(4), at(4, 0) - ms), // the last instant in it
        server_error(p, 6, sid(5), at(1, 0)), // the first instant in it
        server_error(p, 7, sid(7), at(3, 12)),
        server_error(q, 8, sid(8), at(2, 12)),   // any project
        server_error(p, 9, sid(10), at(1, 12)),  // before its upgrade: counts for 5.38.0
        server_error(p, 10, sid(11), at(2, 12)), // no check in the window
        server_error(p, 11, sid(12), at(2, 12)), // a test install
        server_error(p, 12, None, at(2, 12)),
        server_error(p, 13, Some("not-a-server-we-know".into()), at(2, 12)),
    ];
    let n = events.len();
    assert_eq!(
        store.write_batch(events.into()).await.unwrap(),
        vec![WriteOutcome::Accepted; n]
    );

    assert_eq!(
        health(store, 1, 3, false).await,
        vec![v("5.37.0", 6, 3), v("5.38.0", 4, 3)]
    );
    assert_eq!(
        health(store, 1, 3, true).await,
        vec![v("5.37.0", 7, 4), v("5.38.0", 4, 3)]
    );
    // Day 2 alone: server 10 at 5.38.0, its error was the day before.
    assert_eq!(health(store, 2, 2, false).await, vec![v("5.38.0", 1, 0)]);
    // Day 0 alone: servers 2 and 11; server 2's error came at the day's last instant.
    assert_eq!(health(store, 0, 0, false).await, vec![v("5.37.0", 2, 1)]);
    // Days 1..=4: server 6 is on 5.39.0 at its latest check, server 3's error is in.
    assert_eq!(
        health(store, 1, 4, false).await,
        vec![v("5.37.0", 5, 4), v("5.38.0", 4, 3), v("5.39.0", 1, 0)]
    );

    let r = security::release_health_report(
        store,
        day0() + Days::new(1),
        day0() + Days::new(3),
        false,
        1,
    )
    .await
    .unwrap();
    assert!(!r.thresholded);
    assert_eq!((r.servers, r.servers_with_errors), (10, 6));
    let rows: Vec<_> = r
        .releases
        .iter()
        .map(|x| (x.version.as_str(), x.servers, x.servers_with_errors))
        .collect();
    assert_eq!(rows, vec![("5.38.0", 4, 3), ("5.37.0", 6, 3)]);
    assert!((r.releases[0].error_free_share - 0.25).abs() < 1e-12);
    assert!((r.releases[1].error_free_share - 0.5).abs() < 1e-12);
}

pub async fn release_health_report_folds_small_releases(store: &dyn Store) {
    let report = |min: u64| {
        security::release_health_report(store, day0(), day0() + Days::new(1), false, min)
    };
    let empty = report(5).await.unwrap();
    assert!(empty.releases.is_empty() && !empty.thresholded && empty.servers == 0);
    // 5 servers on 10.0.0 (2 with errors), 3 on 9.1.0 (1), 1 on 9.0.0 (1).
    let mut batch: Vec<_> = (1..=5).map(|n| check(n, "10.0.0", 1)).collect();
    batch.extend((6..=8).map(|n| check(n, "9.1.0", 1)));
    batch.push(check(9, "9.0.0", 1));
    put(store, 0, batch).await;
    let p = store
        .create_project("backend", &"e".repeat(32), at(0, 0))
        .await
        .unwrap()
        .id;
    let events: Vec<_> = [1u32, 2, 6, 9]
        .iter()
        .map(|&n| server_error(p, n, Some(server_id(n)), at(1, 2)))
        .collect();
    store.write_batch(events.into()).await.unwrap();

    let rows = |r: &beacon_wire::admin::ReleaseHealthReport| -> Vec<(String, u64, u64, f64)> {
        r.releases
            .iter()
            .map(|x| {
                (
                    x.version.clone(),
                    x.servers,
                    x.servers_with_errors,
                    (x.error_free_share * 1e6).round() / 1e6,
                )
            })
            .collect()
    };
    let r = report(5).await.unwrap();
    assert!(r.thresholded);
    assert_eq!(
        (r.servers, r.servers_with_errors),
        (9, 4),
        "totals are exact"
    );
    assert_eq!(
        rows(&r),
        vec![
            ("10.0.0".to_string(), 5, 2, 0.6),
            ("other".to_string(), 4, 2, 0.5)
        ]
    );
    // Newest first by semver (not as text), `other` last.
    let r = report(3).await.unwrap();
    assert!(r.thresholded);
    assert_eq!(
        rows(&r),
        vec![
            ("10.0.0".to_string(), 5, 2, 0.6),
            ("9.1.0".to_string(), 3, 1, 0.666667),
            ("other".to_string(), 1, 1, 0.0)
        ]
    );
    let r = report(1).await.unwrap();
    assert!(!r.thresholded);
    assert_eq!(r.releases.len(), 3);
    assert_eq!(r.releases[2].version, "9.0.0");
    // The JSON the admin API and the dashboard share reads back equal.
    let back: beacon_wire::admin::ReleaseHealthReport =
        serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back, r);
    let bad = security::release_health_report(store, day0() + Days::new(1), day0(), false, 1).await;
    assert!(matches!(bad, Err(StoreError::InvalidInput(_))), "{bad:?}");
}

// --- Report rollups (issue 13): every report the rollups answer equals the raw checks' answer.

/// The checks table as a test knows it: the stored check of each (day, server) — the latest written —
/// and the first day each server was ever seen.
#[derive(Default)]
struct ChecksModel {
    rows: std::collections::BTreeMap<(NaiveDate, String), SecurityCheck>,
    first_seen: std::collections::BTreeMap<String, NaiveDate>,
}

impl ChecksModel {
    fn write(&mut self, day: NaiveDate, c: &SecurityCheck) {
        let first = self.first_seen.entry(c.server_id.clone()).or_insert(day);
        *first = (*first).min(day);
        self.rows.insert((day, c.server_id.clone()), c.clone());
    }

    /// Each server's latest check in `[from, to]` (all servers' when `include_test`).
    fn latest(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        include_test: bool,
    ) -> Vec<security::ServerSnapshot> {
        let mut latest: std::collections::BTreeMap<&str, (NaiveDate, &SecurityCheck)> =
            Default::default();
        for ((day, id), c) in self.rows.range((from, String::new())..) {
            if *day > to {
                break;
            }
            latest.insert(id, (*day, c));
        }
        latest
            .into_values()
            .filter(|(_, c)| include_test || !c.unit_tests)
            .map(|(day, c)| security::ServerSnapshot::of(day, c))
            .collect()
    }

    async fn assert_reports(&self, store: &dyn Store, from: NaiveDate, to: NaiveDate, what: &str) {
        let all = self.latest(NaiveDate::MIN, NaiveDate::MAX, true);
        for include_test in [false, true] {
            let latest = self.latest(from, to, include_test);
            for by in [
                FleetDimension::Version,
                FleetDimension::Edition,
                FleetDimension::Os,
                FleetDimension::Db,
                FleetDimension::Dbv,
            ] {
                assert_eq!(
                    cells_of_store(store, from, to, by, include_test).await,
                    cells_of_servers(&latest, by),
                    "fleet by {by:?} over {from}..{to}, include_test={include_test}: {what}"
                );
            }
            // Release health (no error events here): servers per version at their latest check.
            let mut want: std::collections::BTreeMap<String, u64> = Default::default();
            for s in &latest {
                *want.entry(s.version.clone()).or_default() += 1;
            }
            let got: std::collections::BTreeMap<String, u64> = store
                .release_health(from, to, include_test)
                .await
                .unwrap()
                .into_iter()
                .map(|r| (r.version, r.servers))
                .collect();
            assert_eq!(got, want, "release health over {from}..{to}: {what}");
            // Servers and activated users per (day, version).
            let mut want: std::collections::BTreeMap<(NaiveDate, String), (u64, i64)> =
                Default::default();
            for ((day, _), c) in &self.rows {
                if *day >= from && *day <= to && (include_test || !c.unit_tests) {
                    let e = want.entry((*day, c.version.to_string())).or_default();
                    e.0 += 1;
                    e.1 += security::rollup::capped(c.activated_users);
                }
            }
            let got: std::collections::BTreeMap<(NaiveDate, String), (u64, i64)> = store
                .version_day_counts(from, to, include_test)
                .await
                .unwrap()
                .into_iter()
                .map(|v| ((v.day, v.version), (v.servers, v.activated_users)))
                .collect();
            assert_eq!(got, want, "version day counts over {from}..{to}: {what}");
            // Growth: servers per day, first and last day seen (test installs by their latest check).
            let last_from = from - Days::new(2);
            let raw = store
                .growth_raw(from, to, last_from, include_test)
                .await
                .unwrap();
            let counts = |v: &[security::DayCount]| -> std::collections::BTreeMap<NaiveDate, u64> {
                v.iter().map(|d| (d.day, d.count)).collect()
            };
            let mut servers: std::collections::BTreeMap<NaiveDate, u64> = Default::default();
            for ((day, _), c) in &self.rows {
                if *day >= from && *day <= to && (include_test || !c.unit_tests) {
                    *servers.entry(*day).or_default() += 1;
                }
            }
            let (mut first, mut last): (
                std::collections::BTreeMap<NaiveDate, u64>,
                std::collections::BTreeMap<NaiveDate, u64>,
            ) = Default::default();
            for s in all.iter().filter(|s| include_test || !s.unit_tests) {
                let f = self.first_seen[&s.server_id];
                if f >= from && f <= to {
                    *first.entry(f).or_default() += 1;
                }
                if s.day >= last_from && s.day <= to {
                    *last.entry(s.day).or_default() += 1;
                }
            }
            assert_eq!(counts(&raw.servers), servers, "servers per day: {what}");
            assert_eq!(counts(&raw.first_seen), first, "first seen: {what}");
            assert_eq!(counts(&raw.last_seen), last, "last seen: {what}");
        }
    }
}

/// Two collectors writing checks of the same servers and days at once (PostgreSQL: concurrent
/// transactions on the same rows) leave rollups that agree with the checks they stored.
/// Two collectors writing events of the same issues at once, some with the same event ids: every
/// event id is accepted exactly once across both, and each issue counts exactly its distinct
/// events, servers and days (no lost update, no deadlock that a retry does not resolve).
pub async fn events_from_two_writers_count_once(store: &dyn Store, other: &dyn Store) {
    let p = store
        .create_project("pair", &"e".repeat(32), at(0, 0))
        .await
        .unwrap()
        .id;
    let hashes = ["h1", "h2", "h3", "h4", "h5"];
    // Writer w's batch r: 30 events; ids overlap between the writers (n is shared by both for
    // even n) and each batch touches every issue, in opposite orders.
    let batch = |w: u32, r: u32| -> std::sync::Arc<[WriteOp]> {
        let mut ops: Vec<WriteOp> = (0..30u32)
            .map(|k| {
                let n = if k % 2 == 0 {
                    r * 1000 + k
                } else {
                    r * 1000 + 100 + w * 50 + k
                };
                let hash = hashes[(k as usize) % hashes.len()];
                let server = format!("s{}", k % 7);
                event_op(p, n, hash, "1.0", "prod", Some(&server), u64::from(r % 2))
            })
            .collect();
        if w == 1 {
            ops.reverse();
        }
        ops.into()
    };
    let mut accepted = 0usize;
    let mut total = 0usize;
    for r in 0..6u32 {
        let (a, b) = tokio::join!(
            store.write_batch(batch(0, r)),
            other.write_batch(batch(1, r))
        );
        for o in a.unwrap().into_iter().chain(b.unwrap()) {
            total += 1;
            match o {
                WriteOutcome::Accepted => accepted += 1,
                WriteOutcome::Duplicate => {}
                other => panic!("unexpected outcome {other:?}"),
            }
        }
    }
    // 15 shared ids and 2 × 15 own ids per round.
    assert_eq!(total, 6 * 60);
    assert_eq!(
        accepted,
        6 * 45,
        "each event id accepted once across both writers"
    );
    let issues = store
        .issues(&IssueFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(issues.len(), hashes.len());
    assert_eq!(
        issues.iter().map(|i| i.count).sum::<u64>(),
        accepted as u64,
        "issue counts add up to the accepted events"
    );
    for i in &issues {
        assert_eq!(i.count, 6 * 45 / 5, "{} counts its own events", i.title);
        assert!(i.servers >= 1 && i.servers <= 7);
        let days = store
            .issue_day_counts(&[i.id], day0(), day0() + Days::new(1))
            .await
            .unwrap();
        assert_eq!(
            days.iter().map(|d| d.count).sum::<u64>(),
            i.count,
            "{}: counts per day add up",
            i.title
        );
    }
}

pub async fn report_rollups_hold_under_two_writers(store: &dyn Store, other: &dyn Store) {
    let versions = ["5.37.0", "5.38.1", "10.0.0"];
    let batch = |writer: usize, round: usize, day: u64| -> std::sync::Arc<[WriteOp]> {
        (0..40u32)
            .map(|n| {
                let mut c = check(
                    n,
                    versions[(n as usize + round + writer) % 3],
                    (n + 1) as i64,
                );
                c.unit_tests = (n as usize + writer).is_multiple_of(9);
                c.users = Some([5, 50, 500][(round + writer) % 3]);
                WriteOp::Check(CheckRecord {
                    received_at: at(day, 1)
                        + chrono::Duration::seconds((round * 40 + n as usize) as i64),
                    check: c,
                })
            })
            .collect::<Vec<_>>()
            .into()
    };
    for round in 0..6usize {
        let day = (round / 2) as u64;
        let (a, b) = tokio::join!(
            store.write_batch(batch(0, round, day)),
            other.write_batch(batch(1, round, day))
        );
        a.unwrap();
        b.unwrap();
    }
    // What the checks table holds, read back one day at a time.
    let mut model = ChecksModel::default();
    for day in 0..3u64 {
        let d = day0() + Days::new(day);
        for s in store.latest_per_server(d, d, true).await.unwrap() {
            let mut c = check(0, &s.version, 0);
            c.server_id = s.server_id.clone();
            c.enterprise = s.enterprise;
            c.os = s.os.clone();
            c.db = s.db.clone();
            c.db_version = s.db_version.clone();
            c.teams = s.teams;
            c.users = s.users;
            c.activated_users = s.activated_users;
            c.unit_tests = s.unit_tests;
            model.write(d, &c);
        }
    }
    assert_eq!(model.rows.len(), 120, "40 servers on 3 days");
    let d = |n: u64| day0() + Days::new(n);
    for (from, to) in [(0, 2), (1, 2), (2, 2), (0, 1)] {
        model
            .assert_reports(store, d(from), d(to), "two writers")
            .await;
    }
}

pub async fn report_rollups_match_the_raw_checks(store: &dyn Store) {
    let mut model = ChecksModel::default();
    let versions = ["5.37.0", "5.38.1", "10.0.0", "10.1.0"];
    let variant = |n: u32, day: u64, k: usize| {
        let mut c = check(
            n,
            versions[(n as usize + day as usize + k) % 4],
            (n + k as u32) as i64,
        );
        c.unit_tests = (n + k as u32).is_multiple_of(7);
        c.os = ["linux", "windows"][(day as usize + k) % 2].into();
        c.activated_users = [None, Some(3), Some(security::COUNT_CAP + 5)][(n as usize + k) % 3];
        c
    };
    // Seven days of 30 servers, each on most days; in every batch some check again the same day
    // with other values (version, test install, counts), once in the same batch and once later.
    let mut order = Vec::new();
    for day in 0..7u64 {
        order.push(day);
    }
    order.push(2); // a late batch for day 2, after day 6
    for (pass, day) in order.into_iter().enumerate() {
        let mut batch = Vec::new();
        for n in 0..30u32 {
            if (n as u64 + day) % 5 == 4 && pass < 7 {
                continue; // not every server every day
            }
            batch.push(variant(n, day, pass));
            if n % 6 == 0 {
                batch.push(variant(n, day, pass + 1)); // the same day again, same batch
            }
        }
        for c in &batch {
            model.write(day0() + Days::new(day), c);
        }
        let outcomes = put(store, day, batch).await;
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, WriteOutcome::Accepted | WriteOutcome::Duplicate))
        );
    }
    let d = |n: u64| day0() + Days::new(n);
    // Ranges ending at the newest day (the rollups answer) and before it (the raw checks do).
    let ranges = [(0, 6), (3, 6), (6, 6), (0, 4), (2, 2), (5, 8)];
    for (from, to) in ranges {
        model
            .assert_reports(store, d(from), d(to), "after the writes")
            .await;
    }
    // A forgotten server leaves every report.
    store
        .forget_server(&server_id(6), forget_record("server", &server_id(6)))
        .await
        .unwrap();
    model.rows.retain(|(_, id), _| *id != server_id(6));
    model.first_seen.remove(&server_id(6));
    for (from, to) in ranges {
        model
            .assert_reports(store, d(from), d(to), "after forget")
            .await;
    }
    // Retention: days 0-2 expire; servers seen only then leave, the others keep their first day.
    let policy = RetentionPolicy {
        checks_days: 4,
        ..RetentionPolicy::FOREVER
    };
    store.apply_retention(&policy, d(7), false).await.unwrap();
    model.rows.retain(|(day, _), _| *day >= d(3));
    let left: std::collections::BTreeSet<String> =
        model.rows.keys().map(|(_, id)| id.clone()).collect();
    model.first_seen.retain(|id, _| left.contains(id));
    for (from, to) in ranges {
        model
            .assert_reports(store, d(from), d(to), "after retention")
            .await;
    }
}

// --- Retention (issue 14): cases over `Store::apply_retention` and `Store::retention_status`.

use crate::retention::{RetentionChannel, RetentionPolicy, RetentionRun};

/// Trace events counted by the sketches of `[from, to]` (every device, emulators included).
async fn sketched_events(store: &dyn Store, from: u64, to: u64) -> u64 {
    let q = crate::mobile::PerfQuery {
        trace: TraceName::ChannelSwitchLoaded,
        from: day0() + Days::new(from),
        to: day0() + Days::new(to),
        by: None,
        include_emulators: true,
        min_group_size: 1,
    };
    crate::mobile::percentiles(store, &q)
        .await
        .unwrap()
        .groups
        .iter()
        .map(|g| g.count)
        .sum()
}

fn removed(run: &RetentionRun, channel: RetentionChannel) -> u64 {
    run.channels
        .iter()
        .find(|c| c.channel == channel)
        .expect("every channel is in a run")
        .removed
}

async fn status_of(
    store: &dyn Store,
    channel: RetentionChannel,
) -> crate::retention::RetentionStatus {
    store
        .retention_status()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.channel == channel)
        .expect("every channel has a status")
}

/// A dead letter received on `day`.
fn letter(day: u64, n: usize) -> WriteOp {
    WriteOp::DeadLetter(NewDeadLetter {
        received_at: at(day, 3),
        channel: "security".into(),
        reason: format!("invalid:{n}"),
        payload: format!("payload {n}"),
    })
}

/// Ten days of every channel; a policy removes the days before each channel's cutoff and nothing of
/// the cutoff day or later; a dry run counts exactly what the run then removes; issues go with their
/// last event, the others keep their lifetime counts.
pub async fn retention_removes_only_expired_days(store: &dyn Store) {
    let today = day0() + Days::new(9);
    // An empty run first: PostgreSQL makes the day partitions around `today`, so that this case
    // covers both dropped partitions and rows deleted from the default partition.
    let empty = store
        .apply_retention(&RetentionPolicy::default(), today, false)
        .await
        .unwrap();
    assert!(empty.channels.iter().all(|c| c.removed == 0), "{empty:?}");
    let p = store
        .create_project("backend", &"r".repeat(32), at(0, 0))
        .await
        .unwrap()
        .id;
    for day in 0..10u64 {
        put(
            store,
            day,
            vec![check(1, "5.37.0", 10), check(2, "5.37.0", 10)],
        )
        .await;
        let n = day as u32;
        let mut ops = vec![
            event_op(p, 100 + n, "h1", "1.0", "prod", Some("s1"), day),
            trace_batch(
                day,
                "1.0.0",
                n,
                false,
                TraceName::ChannelSwitchLoaded,
                &[1_000; 10],
            ),
            letter(day, day as usize),
        ];
        if day < 3 {
            ops.push(event_op(p, 200 + n, "h2", "1.0", "prod", None, day));
        }
        store.write_batch(ops.into()).await.unwrap();
    }
    store.compact_perf().await.unwrap();
    assert_eq!(sketched_events(store, 0, 9).await, 100);
    let policy = RetentionPolicy {
        checks_days: 5,
        events_days: 5,
        trace_events_days: 3,
        sketches_days: 7,
        dead_letters_days: 1,
    };
    let sketch_rows = status_of(store, RetentionChannel::Sketches).await.rows;

    let dry = store.apply_retention(&policy, today, true).await.unwrap();
    assert!(dry.dry_run);
    assert_eq!(removed(&dry, RetentionChannel::Checks), 8, "days 0-3");
    assert_eq!(removed(&dry, RetentionChannel::Events), 7, "days 0-3");
    assert_eq!(removed(&dry, RetentionChannel::TraceEvents), 60, "days 0-5");
    assert_eq!(removed(&dry, RetentionChannel::DeadLetters), 8, "days 0-7");
    assert!(removed(&dry, RetentionChannel::Sketches) > 0, "days 0-1");
    assert_eq!(dry.issues_removed, 1, "h2's events are all on days 0-2");
    let cutoff = |c| dry.channels.iter().find(|o| o.channel == c).unwrap().cutoff;
    assert_eq!(
        cutoff(RetentionChannel::Checks),
        Some(day0() + Days::new(4))
    );
    assert_eq!(
        cutoff(RetentionChannel::Sketches),
        Some(day0() + Days::new(2))
    );
    // A dry run removes nothing.
    assert_eq!(store.count_checks().await.unwrap(), 20);
    assert_eq!(store.count_trace_events().await.unwrap(), 100);
    assert_eq!(
        status_of(store, RetentionChannel::Sketches).await.rows,
        sketch_rows
    );

    let run = store.apply_retention(&policy, today, false).await.unwrap();
    assert!(!run.dry_run);
    assert_eq!(run.today, today);
    assert_eq!(
        run.channels, dry.channels,
        "the dry run counted what the run removed"
    );
    assert_eq!(run.issues_removed, 1);

    // What is left starts exactly at each cutoff.
    for (channel, rows, oldest) in [
        (RetentionChannel::Checks, 12, 4),
        (RetentionChannel::Events, 6, 4),
        (RetentionChannel::TraceEvents, 40, 6),
        (RetentionChannel::DeadLetters, 2, 8),
    ] {
        let s = status_of(store, channel).await;
        assert_eq!(s.rows, rows, "{channel}");
        assert_eq!(s.oldest_day, Some(day0() + Days::new(oldest)), "{channel}");
    }
    let sketches = status_of(store, RetentionChannel::Sketches).await;
    assert_eq!(sketches.oldest_day, Some(day0() + Days::new(2)));
    assert_eq!(
        sketches.rows,
        sketch_rows - removed(&run, RetentionChannel::Sketches)
    );
    assert_eq!(store.count_checks().await.unwrap(), 12);
    assert_eq!(store.count_trace_events().await.unwrap(), 40);
    // Sketches outlive the raw events they were made from.
    assert_eq!(sketched_events(store, 0, 1).await, 0);
    assert_eq!(sketched_events(store, 2, 9).await, 80);
    let letters = store.dead_letters(None, 100).await.unwrap();
    assert_eq!(letters.len(), 2);
    assert!(letters.iter().all(|d| d.received_at >= at(8, 0)));

    // h1 keeps its lifetime count and first seen; h2, all of whose events expired, is gone.
    let issues = store
        .issues(&IssueFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(issues.len(), 1, "{issues:?}");
    let h1 = &issues[0];
    assert_eq!((h1.title.as_str(), h1.count), ("title h1", 10));
    assert_eq!(h1.first_seen, at(0, 3) + chrono::Duration::seconds(100));
    let detail = store.issue(h1.id).await.unwrap().unwrap();
    assert_eq!(detail.latest_event.event_id, format!("{:032x}", 109));
    assert_eq!(detail.by_day.iter().map(|c| c.count).sum::<u64>(), 10);
    // An event id stays a duplicate while its event is kept, on any later day.
    let again = store
        .write_batch(vec![event_op(p, 104, "h1", "1.0", "prod", None, 9)].into())
        .await
        .unwrap();
    assert_eq!(again, vec![WriteOutcome::Duplicate]);

    // A second run finds nothing; keeping forever removes nothing.
    let second = store.apply_retention(&policy, today, false).await.unwrap();
    assert!(second.channels.iter().all(|c| c.removed == 0), "{second:?}");
    assert_eq!(second.issues_removed, 0);
    let forever = store
        .apply_retention(&RetentionPolicy::FOREVER, today + Days::new(3650), false)
        .await
        .unwrap();
    assert!(
        forever
            .channels
            .iter()
            .all(|c| c.removed == 0 && c.cutoff.is_none())
    );
    assert_eq!(store.count_checks().await.unwrap(), 12);
}

/// Raw trace events whose cells are not in the sketches yet are never lost to retention: reports
/// count them before and after; once folded, they expire like the others, and events written
/// afterwards are counted.
pub async fn retention_keeps_every_trace_event_in_the_sketches(store: &dyn Store) {
    let today = day0() + Days::new(9);
    let ops: Vec<WriteOp> = (0..4u32)
        .map(|d| {
            trace_batch(
                0,
                "1.0.0",
                d,
                false,
                TraceName::ChannelSwitchLoaded,
                &[2_000; 25],
            )
        })
        .collect();
    store.write_batch(ops.into()).await.unwrap();
    let policy = RetentionPolicy {
        trace_events_days: 1,
        ..RetentionPolicy::FOREVER
    };
    store.apply_retention(&policy, today, false).await.unwrap();
    assert_eq!(sketched_events(store, 0, 9).await, 100);
    store.compact_perf().await.unwrap();
    assert_eq!(sketched_events(store, 0, 9).await, 100);
    store.apply_retention(&policy, today, false).await.unwrap();
    assert_eq!(store.count_trace_events().await.unwrap(), 0);
    assert_eq!(sketched_events(store, 0, 9).await, 100);
    // New events after the table was emptied: counted once, folded or not.
    store
        .write_batch(
            vec![trace_batch(
                9,
                "1.0.0",
                7,
                false,
                TraceName::ChannelSwitchLoaded,
                &[3_000; 10],
            )]
            .into(),
        )
        .await
        .unwrap();
    assert_eq!(sketched_events(store, 9, 9).await, 10);
    store.compact_perf().await.unwrap();
    assert_eq!(sketched_events(store, 9, 9).await, 10);
    assert_eq!(store.count_trace_events().await.unwrap(), 10);
}

/// A purge of several batches while another collector writes today's data: every item younger
/// than its retention is still there afterwards, and two collectors applying retention at once
/// either both succeed or one is told another holds it.
pub async fn retention_under_load_loses_nothing_young(store: &dyn Store, other: &dyn Store) {
    let today = day0() + Days::new(9);
    store
        .apply_retention(&RetentionPolicy::default(), today, false)
        .await
        .unwrap();
    let p = store
        .create_project("load", &"l".repeat(32), at(0, 0))
        .await
        .unwrap()
        .id;
    // Old data: 6,000 checks, 1,500 events, 6,000 trace events on days 0-2.
    for round in 0..6u32 {
        let day = u64::from(round % 3);
        let checks: Vec<WriteOp> = (0..1000u32)
            .map(|i| {
                WriteOp::Check(CheckRecord {
                    received_at: at(day, 1),
                    check: check(round * 1000 + i, "5.37.0", 1),
                })
            })
            .collect();
        store.write_batch(checks.into()).await.unwrap();
        let mut ops: Vec<WriteOp> = (0..250u32)
            .map(|i| event_op(p, 10_000 + round * 250 + i, "old", "1.0", "prod", None, day))
            .collect();
        ops.push(trace_batch(
            day,
            "1.0.0",
            round,
            false,
            TraceName::ChannelSwitchLoaded,
            &[1_000; 1000],
        ));
        store.write_batch(ops.into()).await.unwrap();
    }
    store.compact_perf().await.unwrap();
    let policy = RetentionPolicy {
        checks_days: 1,
        events_days: 1,
        trace_events_days: 1,
        sketches_days: 0,
        dead_letters_days: 1,
    };
    // Today's data, written by the other collector while both purge.
    let write = async {
        for round in 0..20u32 {
            let mut ops: Vec<WriteOp> = (0..20u32)
                .map(|i| {
                    WriteOp::Check(CheckRecord {
                        received_at: at(9, 1),
                        check: check(100_000 + round * 20 + i, "5.37.0", 1),
                    })
                })
                .collect();
            ops.extend(
                (0..5u32)
                    .map(|i| event_op(p, 50_000 + round * 5 + i, "new", "1.0", "prod", None, 9)),
            );
            ops.push(trace_batch(
                9,
                "1.0.0",
                100 + round,
                false,
                TraceName::ChannelSwitchLoaded,
                &[1_000; 50],
            ));
            other.write_batch(ops.into()).await.unwrap();
        }
    };
    let (_, a, b) = tokio::join!(
        write,
        store.apply_retention(&policy, today, false),
        other.apply_retention(&policy, today, false)
    );
    for r in [&a, &b] {
        assert!(
            matches!(r, Ok(_) | Err(StoreError::Conflict(_))),
            "a run fails only because another holds it: {r:?}"
        );
    }
    // Whatever ran concurrently, one more run removes the rest of the old data.
    store.apply_retention(&policy, today, false).await.unwrap();
    other.compact_perf().await.unwrap();
    store.compact_perf().await.unwrap();
    assert_eq!(store.count_checks().await.unwrap(), 400);
    assert_eq!(status_of(store, RetentionChannel::Events).await.rows, 100);
    assert_eq!(store.count_trace_events().await.unwrap(), 1000);
    assert_eq!(sketched_events(store, 9, 9).await, 1000);
    // Sketches are kept forever here: the old days' are whole.
    assert_eq!(sketched_events(store, 0, 2).await, 6000);
    let issues = store
        .issues(&IssueFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(
        (issues[0].title.as_str(), issues[0].count),
        ("title new", 100)
    );
}

// --- Alerts (issue 16): rules, episodes, the outbox.

fn alert_rule_row(name: &str, kind: AlertKind) -> NewAlertRuleRow {
    NewAlertRuleRow {
        name: name.into(),
        kind,
        destination: DestinationKind::Webhook,
        url: "http://127.0.0.1:9/hook/secret-path".into(),
        secret: Some("ab".repeat(32)),
        params: AlertParams::default().resolve(kind).unwrap(),
        created_at: at(0, 0),
    }
}

fn finding(key: &str) -> Finding {
    Finding {
        key: key.into(),
        text: format!("finding {key}"),
        ui_path: Some(format!("/ui/issues/{key}")),
        cli: format!("beacon issues show {key}"),
        details: serde_json::json!({ "key": key }),
    }
}

/// Rules are stored whole (URL and secret), named uniquely, listed by id and removed with their
/// state; a removed rule's pending notifications are cancelled and stay in the history.
pub async fn alert_rules_round_trip(store: &dyn Store) {
    let a = store
        .create_alert_rule(&alert_rule_row("spikes", AlertKind::IssueSpike))
        .await
        .unwrap();
    assert_eq!(a.url, "http://127.0.0.1:9/hook/secret-path");
    assert_eq!(a.secret.as_deref(), Some("ab".repeat(32).as_str()));
    assert_eq!(a.params.factor, Some(10.0));
    assert_eq!(a.created_at, at(0, 0));
    assert!(matches!(
        store
            .create_alert_rule(&alert_rule_row("spikes", AlertKind::FleetDrop))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let b = store
        .create_alert_rule(&alert_rule_row("fleet", AlertKind::FleetDrop))
        .await
        .unwrap();
    let listed = store.alert_rules().await.unwrap();
    assert_eq!(listed, vec![a.clone(), b.clone()]);
    assert_eq!(store.alert_rule(b.id).await.unwrap(), Some(b.clone()));
    assert_eq!(
        store.alert_rule(b.id + 100).await.unwrap(),
        None,
        "an unknown id"
    );
    assert_eq!(b.listed(0).url, "http://127.0.0.1:9/…");

    assert_eq!(
        store
            .record_alert_findings(a.id, at(1, 0), &[finding("7")])
            .await
            .unwrap(),
        1
    );
    assert!(store.delete_alert_rule(a.id).await.unwrap());
    assert!(!store.delete_alert_rule(a.id).await.unwrap());
    assert!(store.alert_states(a.id).await.unwrap().is_empty());
    let history = store.alert_history(Some(a.id), 10).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].status, DeliveryStatus::Cancelled);
    assert_eq!(history[0].rule_name, "spikes");
    // A removed rule enqueues nothing and its notifications are never claimed.
    assert_eq!(
        store
            .record_alert_findings(a.id, at(1, 1), &[finding("8")])
            .await
            .unwrap(),
        0
    );
    assert!(
        store
            .claim_alert_notifications(at(2, 0), at(2, 1), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.alert_rules().await.unwrap(), vec![b]);
}

/// A key fires once per episode: a repeat finding enqueues nothing, a key no longer found is
/// resolved, and finding it again opens the next episode.
pub async fn alert_episodes_fire_once_and_resolve(store: &dyn Store) {
    let r = store
        .create_alert_rule(&alert_rule_row("new issues", AlertKind::NewIssue))
        .await
        .unwrap();
    let record = |hour: u32, keys: &[&str]| {
        let findings: Vec<Finding> = keys.iter().map(|k| finding(k)).collect();
        async move {
            store
                .record_alert_findings(r.id, at(1, hour), &findings)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        record(0, &["1", "2", "1"]).await,
        2,
        "a key found twice counts once"
    );
    assert_eq!(record(1, &["1", "2"]).await, 0);
    assert_eq!(record(2, &["2"]).await, 0);
    let states = store.alert_states(r.id).await.unwrap();
    assert_eq!(
        states
            .iter()
            .map(|s| (s.episode_key.as_str(), s.episode, s.firing, s.since))
            .collect::<Vec<_>>(),
        vec![("1", 1, false, at(1, 2)), ("2", 1, true, at(1, 0))]
    );
    assert_eq!(record(3, &["1", "2", "3"]).await, 2);
    let history = store.alert_history(Some(r.id), 10).await.unwrap();
    assert_eq!(
        history
            .iter()
            .map(|d| (d.episode_key.as_str(), d.episode, d.status))
            .collect::<Vec<_>>(),
        vec![
            ("3", 1, DeliveryStatus::Pending),
            ("1", 2, DeliveryStatus::Pending),
            ("2", 1, DeliveryStatus::Pending),
            ("1", 1, DeliveryStatus::Pending),
        ]
    );
    assert_eq!(history[1].text, "finding 1");
    assert_eq!(history[1].created_at, at(1, 3));
    assert_eq!(history[1].next_at, Some(at(1, 3)));
    assert_eq!(store.alert_history(None, 2).await.unwrap().len(), 2);
}

/// Senders lease due notifications: a leased one is not claimed again until its lease runs out,
/// a failed attempt is due again at its retry time, a stale attempt's outcome is ignored, and a
/// delivered or failed notification is never claimed again.
pub async fn alert_outbox_leases_and_retries(store: &dyn Store) {
    let r = store
        .create_alert_rule(&alert_rule_row("exposure", AlertKind::Exposure))
        .await
        .unwrap();
    store
        .record_alert_findings(r.id, at(1, 0), &[finding("a"), finding("b")])
        .await
        .unwrap();
    let t = at(1, 0);
    let lease = chrono::Duration::minutes(2);
    let claimed = store
        .claim_alert_notifications(t, t + lease, 1)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "the limit holds");
    let a = &claimed[0];
    assert_eq!((a.episode_key.as_str(), a.episode, a.attempts), ("a", 1, 1));
    assert_eq!(a.rule, r);
    assert_eq!(a.details, serde_json::json!({ "key": "a" }));
    assert_eq!(a.ui_path.as_deref(), Some("/ui/issues/a"));
    // `a` is leased: only `b` is left.
    let b = store
        .claim_alert_notifications(t, t + lease, 10)
        .await
        .unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].episode_key, "b");
    // `b` fails: due again in a minute.
    let retry = AttemptOutcome::Retry {
        error: "connection refused".into(),
        next_at: t + chrono::Duration::minutes(1),
    };
    assert!(
        store
            .finish_alert_notification(b[0].id, 1, t, &retry)
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_alert_notifications(t + chrono::Duration::seconds(30), t + lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let t1 = t + chrono::Duration::minutes(1);
    let b2 = store
        .claim_alert_notifications(t1, t1 + lease, 10)
        .await
        .unwrap();
    assert_eq!(b2.len(), 1);
    assert_eq!((b2[0].id, b2[0].attempts), (b[0].id, 2));
    // The first attempt's outcome, late, changes nothing.
    assert!(
        !store
            .finish_alert_notification(b[0].id, 1, t1, &AttemptOutcome::Delivered)
            .await
            .unwrap()
    );
    assert!(
        store
            .finish_alert_notification(b[0].id, 2, t1, &AttemptOutcome::Delivered)
            .await
            .unwrap()
    );
    // `a`'s sender died: after its lease, `a` is claimed again.
    let t2 = t + lease;
    let a2 = store
        .claim_alert_notifications(t2, t2 + lease, 10)
        .await
        .unwrap();
    assert_eq!(a2.len(), 1);
    assert_eq!((a2[0].id, a2[0].attempts), (a.id, 2));
    let failed = AttemptOutcome::Failed {
        error: "http 500".into(),
    };
    assert!(
        store
            .finish_alert_notification(a.id, 2, t2, &failed)
            .await
            .unwrap()
    );
    let later = t + chrono::Duration::days(1);
    assert!(
        store
            .claim_alert_notifications(later, later + lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let history = store.alert_history(None, 10).await.unwrap();
    let b_row = history.iter().find(|d| d.episode_key == "b").unwrap();
    assert_eq!(
        (
            b_row.status,
            b_row.attempts,
            b_row.delivered_at,
            b_row.next_at
        ),
        (DeliveryStatus::Delivered, 2, Some(t1), None)
    );
    assert_eq!(b_row.last_error.as_deref(), Some("connection refused"));
    assert_eq!(b_row.last_attempt_at, Some(t1));
    let a_row = history.iter().find(|d| d.episode_key == "a").unwrap();
    assert_eq!(
        (a_row.status, a_row.attempts, a_row.last_error.as_deref()),
        (DeliveryStatus::Failed, 2, Some("http 500"))
    );
}

/// A test notification is episode 0, leased to its sender at once, and may be repeated.
pub async fn alert_tests_are_recorded(store: &dyn Store) {
    let r = store
        .create_alert_rule(&alert_rule_row("drop", AlertKind::FleetDrop))
        .await
        .unwrap();
    let t = at(2, 0);
    let sample = crate::alerts::sample(&r);
    let one = store
        .create_alert_test(r.id, t, &sample, t + chrono::Duration::minutes(2))
        .await
        .unwrap();
    let two = store
        .create_alert_test(r.id, t, &sample, t + chrono::Duration::minutes(2))
        .await
        .unwrap();
    assert_ne!(one.id, two.id);
    assert_eq!(
        (one.episode, one.attempts, one.episode_key.as_str()),
        (0, 1, "test")
    );
    assert!(
        store
            .claim_alert_notifications(t, t, 10)
            .await
            .unwrap()
            .is_empty(),
        "a test is leased to its sender"
    );
    let failed = AttemptOutcome::Failed {
        error: "http 404".into(),
    };
    assert!(
        store
            .finish_alert_notification(one.id, 1, t, &failed)
            .await
            .unwrap()
    );
    assert!(
        store
            .finish_alert_notification(two.id, 1, t, &AttemptOutcome::Delivered)
            .await
            .unwrap()
    );
    let history = store.alert_history(Some(r.id), 10).await.unwrap();
    assert_eq!(
        history.iter().map(|d| d.status).collect::<Vec<_>>(),
        vec![DeliveryStatus::Delivered, DeliveryStatus::Failed]
    );
    assert!(matches!(
        store.create_alert_test(r.id + 100, t, &sample, t).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Events per issue in a half-open range of receipt times.
pub async fn issue_event_counts_by_receipt_time(store: &dyn Store) {
    let p = store
        .create_project("spiky", &"s".repeat(32), at(0, 0))
        .await
        .unwrap()
        .id;
    // Events 1..=5 of h1 at day 0, 03:00:0n; event 6 of h2.
    let ops: Vec<WriteOp> = (1..=5)
        .map(|n| event_op(p, n, "h1", "1.0", "prod", None, 0))
        .chain([event_op(p, 6, "h2", "1.0", "prod", None, 0)])
        .collect();
    store.write_batch(ops.into()).await.unwrap();
    let issues = store
        .issues(&IssueFilter {
            sort: IssueSort::Count,
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let (h1, h2) = (issues[0].id, issues[1].id);
    let s = |n: i64| at(0, 3) + chrono::Duration::seconds(n);
    let counts = store
        .issue_event_counts(&[h1, h2, h2 + 100], s(2), s(6))
        .await
        .unwrap();
    assert_eq!(counts, vec![(h1, 4)], "seconds 2, 3, 4, 5 of h1; 6 is out");
    let counts = store
        .issue_event_counts(&[h2, h1], s(0), s(7))
        .await
        .unwrap();
    let mut want = vec![(h1, 5), (h2, 1)];
    want.sort();
    assert_eq!(counts, want);
    assert!(
        store
            .issue_event_counts(&[], s(0), s(7))
            .await
            .unwrap()
            .is_empty()
    );
    let too_many: Vec<i64> = (0..=crate::MAX_ISSUE_IDS as i64).collect();
    assert!(matches!(
        store.issue_event_counts(&too_many, s(0), s(7)).await,
        Err(StoreError::InvalidInput(_))
    ));
}

/// Old history goes: notifications no longer pending and resolved state before the cutoff;
/// pending notifications and firing keys stay, and a purged key fires again from episode 1.
pub async fn alert_history_purged_before_a_cutoff(store: &dyn Store) {
    let r = store
        .create_alert_rule(&alert_rule_row("old", AlertKind::NewIssue))
        .await
        .unwrap();
    // Day 1: a and b fire; a is delivered. Day 2: a resolves (b keeps firing). Day 3: c fires.
    store
        .record_alert_findings(r.id, at(1, 0), &[finding("a"), finding("b")])
        .await
        .unwrap();
    let claimed = store
        .claim_alert_notifications(at(1, 0), at(1, 1), 10)
        .await
        .unwrap();
    let a = claimed.iter().find(|c| c.episode_key == "a").unwrap();
    store
        .finish_alert_notification(a.id, 1, at(1, 0), &AttemptOutcome::Delivered)
        .await
        .unwrap();
    let b = claimed.iter().find(|c| c.episode_key == "b").unwrap();
    let retry = AttemptOutcome::Retry {
        error: "down".into(),
        next_at: at(1, 1),
    };
    store
        .finish_alert_notification(b.id, 1, at(1, 0), &retry)
        .await
        .unwrap();
    store
        .record_alert_findings(r.id, at(2, 0), &[finding("b")])
        .await
        .unwrap();
    store
        .record_alert_findings(r.id, at(3, 0), &[finding("b"), finding("c")])
        .await
        .unwrap();
    assert_eq!(store.purge_alert_history(at(3, 0)).await.unwrap(), 1);
    let history = store.alert_history(Some(r.id), 10).await.unwrap();
    let keys: Vec<&str> = history.iter().map(|d| d.episode_key.as_str()).collect();
    assert_eq!(keys, vec!["c", "b"], "b is still pending");
    let states = store.alert_states(r.id).await.unwrap();
    let keys: Vec<&str> = states.iter().map(|s| s.episode_key.as_str()).collect();
    assert_eq!(keys, vec!["b", "c"]);
    assert_eq!(
        store
            .record_alert_findings(r.id, at(4, 0), &[finding("a"), finding("b"), finding("c")])
            .await
            .unwrap(),
        1
    );
    let history = store.alert_history(Some(r.id), 10).await.unwrap();
    assert_eq!(
        (history[0].episode_key.as_str(), history[0].episode),
        ("a", 1)
    );
}

/// Two collectors recording the same evaluation at once enqueue its notification once, and two
/// senders claiming at once lease it once. On PostgreSQL one evaluator holds the lock at a time.
pub async fn alert_episode_enqueued_once_across_stores(store: &dyn Store, other: &dyn Store) {
    let r = store
        .create_alert_rule(&alert_rule_row("shared", AlertKind::IssueSpike))
        .await
        .unwrap();
    for round in 0..10u32 {
        let findings = vec![finding(&format!("k{round}")), finding("steady")];
        let (a, b) = tokio::join!(
            store.record_alert_findings(r.id, at(1, round), &findings),
            other.record_alert_findings(r.id, at(1, round), &findings),
        );
        let expected = if round == 0 { 2 } else { 1 };
        assert_eq!(a.unwrap() + b.unwrap(), expected, "round {round}");
    }
    let history = store.alert_history(Some(r.id), 100).await.unwrap();
    assert_eq!(history.len(), 11);
    let t = at(2, 0);
    let lease = t + chrono::Duration::minutes(2);
    let (a, b) = tokio::join!(
        store.claim_alert_notifications(t, lease, 100),
        other.claim_alert_notifications(t, lease, 100),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 11);
    let mut ids: Vec<i64> = a.iter().chain(&b).map(|c| c.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 11, "a notification leased twice");

    let held = store
        .try_lock_alerts()
        .await
        .unwrap()
        .expect("the first lock");
    if store.backend() == "postgres" {
        assert!(other.try_lock_alerts().await.unwrap().is_none());
        held.release().await;
        let again = other.try_lock_alerts().await.unwrap().expect("released");
        // Dropped without release (a cancelled evaluation): its session closes, the lock is free.
        drop(again);
        let mut free = None;
        for _ in 0..50 {
            free = store.try_lock_alerts().await.unwrap();
            if free.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        free.expect("the dropped lock is freed").release().await;
    } else {
        held.release().await;
    }
}

#[cfg(test)]
mod tests {
    /// The case names listed in [`conformance_suite!`](crate::conformance_suite), in order: the
    /// one-store cases, then the cases over two stores on one database.
    fn listed(src: &str) -> Vec<&str> {
        // Every list opening with `opening` in the macro (the suite has a block of cases per theme).
        let src = &src[..src
            .find("pub trait Available")
            .expect("the end of the macro")];
        let list = |opening: &str| {
            let mut names = Vec::new();
            let mut rest = src;
            while let Some(at) = rest.find(opening) {
                let start = at + opening.len();
                let end = start + rest[start..].find(");").expect("the end of the list");
                names.extend(
                    rest[start..end]
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty()),
                );
                rest = &rest[end..];
            }
            assert!(!names.is_empty(), "the suite's lists of cases");
            names
        };
        let mut all = list("(@cases $make;");
        all.extend(list("(@pairs $make, $reopen;"));
        all
    }

    /// The case functions of this file: `pub async fn NAME(store: &dyn Store)`, and
    /// `pub async fn NAME(store: &dyn Store, other: &dyn Store)` over two stores.
    fn defined(src: &str) -> Vec<&str> {
        src.lines()
            .filter_map(|l| l.strip_prefix("pub async fn "))
            .filter_map(|l| {
                l.strip_suffix("(store: &dyn Store) {")
                    .or_else(|| l.strip_suffix("(store: &dyn Store, other: &dyn Store) {"))
            })
            .collect()
    }

    /// A case function missing from the list would never run, silently; a listed name without a
    /// function would not compile, but is checked too.
    #[test]
    fn every_case_function_is_listed_once() {
        let src = include_str!("conformance.rs");
        let (listed, defined) = (listed(src), defined(src));
        assert!(defined.len() >= 25, "case functions not found: {defined:?}");
        let missing: Vec<_> = defined.iter().filter(|d| !listed.contains(d)).collect();
        let unknown: Vec<_> = listed.iter().filter(|l| !defined.contains(l)).collect();
        assert!(
            missing.is_empty() && unknown.is_empty(),
            "add to conformance_suite!: {missing:?}; listed without a case function: {unknown:?}"
        );
        let mut unique = listed.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), listed.len(), "a case is listed twice");
    }
}
