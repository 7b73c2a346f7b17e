//! The storage conformance suite over SQLite: a fresh database file per test.

use beacon_store::Store;
use beacon_store_sqlite::SqliteStore;

/// A store and the temporary directory holding its file, removed when the test ends.
struct Fresh {
    store: SqliteStore,
    _dir: tempfile::TempDir,
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
    Some(Fresh { store, _dir: dir })
}

beacon_store::conformance_suite!(fresh());
