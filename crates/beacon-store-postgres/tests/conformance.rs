//! The storage conformance suite over PostgreSQL: a fresh schema per test, dropped afterwards.
//!
//! Needs `BEACON_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/beacon_test`). Without
//! it the cases are skipped with a message, unless `BEACON_REQUIRE_POSTGRES=1` (as `scripts/test`
//! sets), which turns a missing or unreachable server into a failure.

use beacon_store::Store;
use beacon_store_postgres::{PgConfig, PgStore};

struct Fresh {
    store: PgStore,
    admin: PgConfig,
    schema: String,
}

impl std::ops::Deref for Fresh {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        &self.store
    }
}

impl Drop for Fresh {
    fn drop(&mut self) {
        let (admin, schema) = (self.admin.clone(), self.schema.clone());
        // Drop is not async: drop the schema from a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok((client, conn)) = admin.connect(tokio_postgres::NoTls).await {
                    tokio::spawn(conn);
                    let _ = client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await;
                }
            });
        })
        .join();
    }
}

async fn fresh() -> Option<Fresh> {
    let required = std::env::var("BEACON_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
    let Ok(url) = std::env::var("BEACON_TEST_POSTGRES_URL") else {
        assert!(!required, "BEACON_REQUIRE_POSTGRES=1 but BEACON_TEST_POSTGRES_URL is not set");
        eprintln!(
            "postgres conformance suite skipped: set BEACON_TEST_POSTGRES_URL=postgres://USER@HOST:PORT/DB to run it"
        );
        return None;
    };
    let admin: PgConfig = url.parse().expect("BEACON_TEST_POSTGRES_URL is a postgres url");
    let (client, conn) = match admin.connect(tokio_postgres::NoTls).await {
        Ok(c) => c,
        Err(e) if !required => {
            eprintln!("postgres conformance suite skipped: cannot connect to {url}: {e}");
            return None;
        }
        Err(e) => panic!("cannot connect to {url}: {e}"),
    };
    tokio::spawn(conn);
    let schema = format!("beacon_t_{:016x}", rand::random::<u64>());
    client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.expect("create schema");
    let mut config = admin.clone();
    config.options(format!("-c search_path={schema}"));
    let store = PgStore::connect_with(config).await.expect("connect store");
    Some(Fresh { store, admin, schema })
}

beacon_store::conformance_suite!(fresh());
