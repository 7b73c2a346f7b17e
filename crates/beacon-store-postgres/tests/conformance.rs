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
