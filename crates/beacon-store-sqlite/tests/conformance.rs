//! The storage conformance suite over SQLite: a fresh database file per test.

use beacon_store::conformance::bulletin;
use beacon_store::{Store, StoreError};
use beacon_store_sqlite::SqliteStore;

/// A store and the temporary directory holding its file, removed when the test ends.
struct Fresh {
    store: SqliteStore,
    dir: tempfile::TempDir,
}

impl std::ops::Deref for Fresh {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        &self.store
    }
}

async fn fresh() -> Option<Fresh> {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("beacon.db")).expect("open sqlite");
    Some(Fresh { store, dir })
}

/// A second store on the same file, as a second process would open it.
async fn reopen(f: &Fresh) -> Box<dyn Store> {
    Box::new(SqliteStore::open(&f.dir.path().join("beacon.db")).expect("open sqlite again"))
}

beacon_store::conformance_suite!(fresh(), reopen);

/// A stored row this version cannot read back is `Corrupt`: a fault to look into, neither the
/// caller's input nor a passing outage.
#[tokio::test]
async fn a_corrupt_row_reads_back_as_corrupt() {
    let f = fresh().await.expect("sqlite is always available");
    f.insert_bulletin(&bulletin("BSA-1", "<6.0.0", 0))
        .await
        .unwrap();
    let raw = rusqlite::Connection::open(f.dir.path().join("beacon.db")).unwrap();
    // A severity this version does not know.
    raw.execute(
        "UPDATE bulletins SET severity = 'apocalyptic' WHERE id = 'BSA-1'",
        [],
    )
    .unwrap();
    let one = f.bulletin("BSA-1").await;
    assert!(matches!(one, Err(StoreError::Corrupt(_))), "{one:?}");
    let all = f.bulletins().await;
    assert!(matches!(all, Err(StoreError::Corrupt(_))), "{all:?}");
    // A value of the wrong type: text where a timestamp (milliseconds) belongs.
    raw.execute(
        "UPDATE bulletins SET severity = 'high', published_at = 'yesterday' WHERE id = 'BSA-1'",
        [],
    )
    .unwrap();
    let one = f.bulletin("BSA-1").await;
    assert!(matches!(one, Err(StoreError::Corrupt(_))), "{one:?}");
}
