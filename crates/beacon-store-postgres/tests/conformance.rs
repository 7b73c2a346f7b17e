//! The storage conformance suite over PostgreSQL: a fresh schema per test, dropped afterwards.
//!
//! Needs `BEACON_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/beacon_test`). Without
//! it the cases are skipped with a message, unless `BEACON_REQUIRE_POSTGRES=1` (as `scripts/test`
//! sets), which turns a missing or unreachable server into a failure.

use beacon_store::conformance::bulletin;
use beacon_store::{Store, StoreError};
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
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                match admin.connect(tokio_postgres::NoTls).await {
                    Ok((client, conn)) => {
                        tokio::spawn(conn);
                        if let Err(e) = client
                            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                            .await
                        {
                            eprintln!("cannot drop test schema {schema}: {e}");
                        }
                    }
                    Err(e) => eprintln!("cannot drop test schema {schema}: {e}"),
                }
            });
        })
        .join();
    }
}

/// Tells, once per run and past the test harness's output capture, that the suite did not run.
fn say_skipped(why: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "\nNOTE: the PostgreSQL conformance suite was SKIPPED ({why}).\n      \
             Run it with BEACON_TEST_POSTGRES_URL=postgres://USER@HOST:PORT/DB cargo test \
             (scripts/test does this against 127.0.0.1:5432).\n"
        );
    });
}

async fn fresh() -> Option<Fresh> {
    let required = std::env::var("BEACON_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
    let Ok(url) = std::env::var("BEACON_TEST_POSTGRES_URL") else {
        assert!(
            !required,
            "BEACON_REQUIRE_POSTGRES=1 but BEACON_TEST_POSTGRES_URL is not set"
        );
        say_skipped("BEACON_TEST_POSTGRES_URL is not set");
        return None;
    };
    let admin: PgConfig = url
        .parse()
        .expect("BEACON_TEST_POSTGRES_URL is a postgres url");
    let (client, conn) = match admin.connect(tokio_postgres::NoTls).await {
        Ok(c) => c,
        Err(e) if !required => {
            say_skipped(&format!("cannot connect to {url}: {e}"));
            return None;
        }
        Err(e) => panic!("cannot connect to {url}: {e}"),
    };
    tokio::spawn(conn);
    let schema = format!("beacon_t_{:016x}", rand::random::<u64>());
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .expect("create schema");
    let mut config = admin.clone();
    config.options(format!("-c search_path={schema}"));
    let store = PgStore::connect_with(config, None)
        .await
        .expect("connect store");
    Some(Fresh {
        store,
        admin,
        schema,
    })
}

beacon_store::conformance_suite!(fresh());

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
    let mut config = f.admin.clone();
    config.options(format!("-c search_path={}", f.schema));
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    // A severity this version does not know.
    client
        .execute(
            "UPDATE bulletins SET severity = 'apocalyptic' WHERE id = 'BSA-1'",
            &[],
        )
        .await
        .unwrap();
    let one = f.bulletin("BSA-1").await;
    assert!(matches!(one, Err(StoreError::Corrupt(_))), "{one:?}");
    let all = f.bulletins().await;
    assert!(matches!(all, Err(StoreError::Corrupt(_))), "{all:?}");
}
