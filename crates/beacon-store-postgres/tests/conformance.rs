//! The storage conformance suite over PostgreSQL: a fresh database per test (the test kit's
//! `TestPg`), dropped afterwards.
//!
//! Needs `BEACON_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/postgres`). Without
//! it the cases are skipped with a message, unless `BEACON_REQUIRE_POSTGRES=1` (as `scripts/test`
//! sets), which turns a missing or unreachable server into a failure.

use beacon_store::Store;
use beacon_store_postgres::PgStore;
use beacon_testkit::TestPg;

/// A store on a database of its own; the store closes before the database is dropped.
struct Fresh {
    store: PgStore,
    _pg: TestPg,
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
    Some(Fresh { store, _pg: pg })
}

beacon_store::conformance_suite!(fresh());
