//! The storage conformance suite over PostgreSQL: a fresh database per test (the test kit's
//! `TestPg`), dropped afterwards.
//!
//! Needs `BEACON_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/postgres`). Without
//! it the cases are skipped with a message, unless `BEACON_REQUIRE_POSTGRES=1` (as `scripts/test`
//! sets), which turns a missing or unreachable server into a failure.

use beacon_store::conformance::bulletin;
use beacon_store::{Store, StoreError};
use beacon_store_postgres::PgStore;
use beacon_testkit::TestPg;

/// A store on a database of its own; the store closes before the database is dropped.
struct Fresh {
    store: PgStore,
    pg: TestPg,
}

impl std::ops::Deref for Fresh {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        &self.store
    }
}

async fn fresh() -> Option<Fresh> {
    let pg = TestPg::from_env()?;
    let store = PgStore::connect(&pg.url).await.expect("connect store");
    Some(Fresh { store, pg })
}

/// A second store on the same database, as a second collector would connect.
async fn reopen(f: &Fresh) -> Box<dyn Store> {
    Box::new(
        PgStore::connect(&f.pg.url)
            .await
            .expect("connect a second store"),
    )
}

beacon_store::conformance_suite!(fresh(), reopen);

/// A stored row this version cannot read back is `Corrupt`: a fault to look into, neither the
/// caller's input nor a passing outage.
#[tokio::test]
async fn a_corrupt_row_reads_back_as_corrupt() {
    let Some(f) = fresh().await else {
        return;
    };
    f.insert_bulletin(&bulletin("BSA-1", "<6.0.0", 0))
        .await
        .unwrap();
    // A severity this version does not know.
    f.pg.exec("UPDATE bulletins SET severity = 'apocalyptic' WHERE id = 'BSA-1'");
    let one = f.bulletin("BSA-1").await;
    assert!(matches!(one, Err(StoreError::Corrupt(_))), "{one:?}");
    let all = f.bulletins().await;
    assert!(matches!(all, Err(StoreError::Corrupt(_))), "{all:?}");
}

/// With `autovacuum` off, `maintain` vacuums and analyses the tables updated in place (their dead
/// row versions go, the planner's statistics are fresh); with it on, it leaves them to the server.
#[tokio::test]
async fn maintenance_vacuums_the_rollups_when_autovacuum_is_off() {
    use beacon_store::WriteOp;
    use beacon_store::conformance::{at, check};
    use beacon_store::security::CheckRecord;
    let Some(f) = fresh().await else {
        return;
    };
    // 50 servers checking in on 4 days: every check updates its server's `server_latest` row.
    for day in 0..4u64 {
        let ops: Vec<WriteOp> = (0..50u32)
            .map(|n| {
                WriteOp::Check(CheckRecord {
                    received_at: at(day, 1),
                    check: check(n, "5.37.0", 3),
                })
            })
            .collect();
        f.write_batch(ops.into()).await.unwrap();
    }
    let autovacuum = f.pg.strings("SELECT current_setting('autovacuum')");
    let vacuumed = "SELECT count(*) FROM pg_stat_user_tables WHERE last_vacuum IS NOT NULL \
                    AND relname IN ('server_latest', 'latest_cells', 'check_days', 'first_days')";
    assert_eq!(f.pg.count(vacuumed), 0);
    let ran = f.maintain().await.unwrap();
    if autovacuum == ["off"] {
        assert!(ran, "autovacuum is off: maintenance must run");
        assert_eq!(f.pg.count(vacuumed), 4, "each rollup vacuumed");
        let analysed = f.pg.count(
            "SELECT count(*) FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL \
             AND relname = 'server_latest'",
        );
        assert_eq!(analysed, 1);
        // A second collector's run while one holds the lock does nothing; alone, it runs again.
        let other = reopen(&f).await;
        assert!(other.maintain().await.unwrap());
    } else {
        assert!(!ran, "autovacuum is on: the server does it");
        assert_eq!(f.pg.count(vacuumed), 0);
    }
}

/// `error_cells` (release health's erring servers) stays equal to what it summarises — each
/// server's newest day in `error_days` beside its latest check — while two collectors write checks
/// and events of the same servers concurrently (a server's first error before, with and after its
/// first check; upgrades moving erring servers between versions), and after forget and retention;
/// and release health from it equals the report computed from the raw rows.
#[tokio::test]
async fn error_cells_follow_checks_events_forget_and_retention_under_two_writers() {
    use beacon_store::WriteOp;
    use beacon_store::conformance::{at, check, day0, forget_record, server_error, server_id};
    use beacon_store::retention::RetentionPolicy;
    use beacon_store::security::CheckRecord;
    use chrono::Days;
    let Some(f) = fresh().await else {
        return;
    };
    let other = reopen(&f).await;
    let p = f
        .create_project("backend", &"e".repeat(32), at(0, 0))
        .await
        .unwrap()
        .id;
    let versions = ["5.37.0", "5.38.0", "5.39.0"];
    let mut event_n = 0u32;
    for day in 0..6u64 {
        for round in 0..4u32 {
            // Writer A: checks of a third of the servers (some new), with events of others;
            // writer B: events of servers A is checking in (some for the first time), and checks.
            let mut a = Vec::new();
            let mut b = Vec::new();
            for n in 0..40u32 {
                let k = (n + round + day as u32) % 3;
                let v = versions[((n as u64 + day) % 3) as usize];
                let c = WriteOp::Check(CheckRecord {
                    received_at: at(day, round + 1),
                    check: check(n + 10 * day as u32, v, 1),
                });
                event_n += 1;
                let e = server_error(
                    p,
                    event_n,
                    Some(server_id(n + 10 * day as u32 + round)),
                    at(day, round + 2),
                );
                match k {
                    0 => {
                        a.push(c);
                        b.push(e);
                    }
                    1 => {
                        b.push(c);
                        a.push(e);
                    }
                    _ => {
                        a.push(e);
                        a.push(c);
                    }
                }
            }
            let (ra, rb) = tokio::join!(f.write_batch(a.into()), other.write_batch(b.into()));
            ra.unwrap();
            rb.unwrap();
        }
    }
    // A new server's first check and its first error event at the same moment, many times: the
    // race the new-server locks close (each side must see the other's committed row).
    for n in 1000..1150u32 {
        event_n += 1;
        let c = WriteOp::Check(CheckRecord {
            received_at: at(5, 20),
            check: check(n, versions[(n % 3) as usize], 1),
        });
        let e = server_error(p, event_n, Some(server_id(n)), at(5, 20));
        let (ra, rb) = tokio::join!(
            f.write_batch(vec![c].into()),
            other.write_batch(vec![e].into())
        );
        ra.unwrap();
        rb.unwrap();
    }
    let consistent = |when: &str| {
        let wrong_last = f.pg.count(
            "SELECT count(*) FROM server_latest l WHERE l.last_error_day IS DISTINCT FROM \
             (SELECT max(e.day) FROM error_days e WHERE e.server_id = l.server_id)",
        );
        assert_eq!(
            wrong_last, 0,
            "{when}: last_error_day is each server's newest error day"
        );
        let cells = f.pg.strings(
            "SELECT coalesce(string_agg(concat_ws(' ', day, version, unit_tests, last_error_day, \
             servers), ',' ORDER BY day, version, unit_tests, last_error_day), '') \
             FROM error_cells",
        );
        let expected = f.pg.strings(
            "SELECT coalesce(string_agg(concat_ws(' ', day, version, unit_tests, last_error_day, \
             n), ',' ORDER BY day, version, unit_tests, last_error_day), '') FROM \
             (SELECT day, version, unit_tests, last_error_day, count(*) AS n FROM server_latest \
              WHERE last_error_day IS NOT NULL GROUP BY 1, 2, 3, 4) c",
        );
        assert_eq!(
            cells, expected,
            "{when}: error_cells summarise server_latest"
        );
        assert_ne!(cells, [""], "{when}: some servers erred");
    };
    let raw_health = |from: u64, to: u64| {
        f.pg.strings(&format!(
            "SELECT coalesce(string_agg(concat_ws(' ', version, n, w), ',' ORDER BY version), '') \
             FROM (SELECT c.version, count(*) AS n, count(*) FILTER (WHERE EXISTS (SELECT 1 \
             FROM error_days e WHERE e.server_id = c.server_id AND e.day BETWEEN '{a}' AND '{b}')) \
             AS w FROM (SELECT DISTINCT ON (server_id) * FROM checks WHERE day BETWEEN '{a}' \
             AND '{b}' ORDER BY server_id, day DESC) c WHERE NOT c.unit_tests GROUP BY 1) r",
            a = day0() + Days::new(from),
            b = day0() + Days::new(to),
        ))
    };
    let health = |from: u64, to: u64| {
        let f = &f;
        async move {
            let rows = f
                .release_health(day0() + Days::new(from), day0() + Days::new(to), false)
                .await
                .unwrap();
            vec![
                rows.iter()
                    .map(|r| format!("{} {} {}", r.version, r.servers, r.servers_with_errors))
                    .collect::<Vec<_>>()
                    .join(","),
            ]
        }
    };
    consistent("after the writes");
    for from in [0, 2, 5] {
        assert_eq!(
            health(from, 5).await,
            raw_health(from, 5),
            "days {from}..=5"
        );
    }
    for n in [3, 17, 42] {
        f.forget_server(&server_id(n), forget_record("server", &server_id(n)))
            .await
            .unwrap();
    }
    consistent("after forget");
    assert_eq!(health(0, 5).await, raw_health(0, 5), "after forget");
    // Events kept 3 days on day 5: error days 0 and 1 go; checks kept 4 days: days 0 and 1 go.
    let policy = RetentionPolicy {
        checks_days: 4,
        events_days: 3,
        ..RetentionPolicy::FOREVER
    };
    f.apply_retention(&policy, day0() + Days::new(5), false)
        .await
        .unwrap();
    consistent("after retention");
    for from in [2, 3, 5] {
        assert_eq!(
            health(from, 5).await,
            raw_health(from, 5),
            "days {from}..=5 after retention"
        );
    }
}

/// Migration 15 fills `error_cells` and `last_error_day` from a database written before it: the
/// data is written, the step undone, and a second connection applies it again.
#[tokio::test]
async fn migration_15_fills_error_cells_from_error_days() {
    use beacon_store::WriteOp;
    use beacon_store::conformance::{at, check, server_error, server_id};
    use beacon_store::security::CheckRecord;
    let Some(f) = fresh().await else {
        return;
    };
    let p = f
        .create_project("backend", &"e".repeat(32), at(0, 0))
        .await
        .unwrap()
        .id;
    let mut ops = Vec::new();
    for n in 0..30u32 {
        ops.push(WriteOp::Check(CheckRecord {
            received_at: at(1, 1),
            check: check(n, if n % 2 == 0 { "5.37.0" } else { "5.38.0" }, 1),
        }));
        if n % 3 == 0 {
            ops.push(server_error(
                p,
                n,
                Some(server_id(n)),
                at(u64::from(n % 2), 3),
            ));
        }
    }
    f.write_batch(ops.into()).await.unwrap();
    let before = health_0_1(&f.store).await;
    assert_eq!(
        before,
        vec![("5.37.0".to_string(), 15, 5), ("5.38.0".to_string(), 15, 5)]
    );
    f.pg.exec(
        "DROP TABLE error_cells; DROP INDEX error_days_server; \
         ALTER TABLE server_latest DROP COLUMN last_error_day; \
         DELETE FROM schema_migrations WHERE version = 15",
    );
    let again = PgStore::connect(&f.pg.url).await.unwrap();
    assert_eq!(
        f.pg.count("SELECT count(*) FROM schema_migrations WHERE version = 15"),
        1
    );
    assert_eq!(f.pg.count("SELECT sum(servers)::int8 FROM error_cells"), 10);
    assert_eq!(
        f.pg.count("SELECT count(*) FROM server_latest WHERE last_error_day = DATE '2026-03-02'"),
        5
    );
    drop(again);
    assert_eq!(health_0_1(&f.store).await, before);
}

/// `(version, servers, erring)` of release health over days 0..=1, test installs left out.
async fn health_0_1(store: &dyn Store) -> Vec<(String, u64, u64)> {
    let day0 = beacon_store::conformance::day0();
    store
        .release_health(day0, day0 + chrono::Days::new(1), false)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.version, r.servers, r.servers_with_errors))
        .collect()
}
