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
