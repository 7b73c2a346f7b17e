//! A fresh database per use on the test PostgreSQL server.
//!
//! The server is `BEACON_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/postgres`;
//! trust auth). Without it, [`TestPg::from_env`] skips with a note on stderr, unless
//! `BEACON_REQUIRE_POSTGRES=1` (as `scripts/test` sets), which turns a missing or unreachable server
//! into a failure.

use crate::block_on;
use std::collections::HashSet;

/// A database of its own on the test server, dropped (`WITH (FORCE)`) when this is dropped. Every
/// method runs on a thread and runtime of its own, so it can be used from plain and async tests.
pub struct TestPg {
    /// The URL of the server's admin database, as given.
    pub admin_url: String,
    /// The database's name.
    pub name: String,
    /// `postgres://USER[:PASSWORD]@HOST:PORT/NAME`
    pub url: String,
}

/// Tells, once per run and past the test harness's output capture, that PostgreSQL tests did not run.
fn say_skipped(why: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "\nNOTE: PostgreSQL tests SKIPPED ({why}).\n      \
             Run them with BEACON_TEST_POSTGRES_URL=postgres://USER@HOST:PORT/DB cargo test \
             (scripts/test does this against 127.0.0.1:5432).\n"
        );
    });
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

impl TestPg {
    /// A fresh database on the server named by `BEACON_TEST_POSTGRES_URL`; `None` (with a note)
    /// when that is not set or not reachable, unless `BEACON_REQUIRE_POSTGRES=1`.
    pub fn from_env() -> Option<TestPg> {
        let required = std::env::var("BEACON_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
        let Ok(admin_url) = std::env::var("BEACON_TEST_POSTGRES_URL") else {
            assert!(
                !required,
                "BEACON_REQUIRE_POSTGRES=1 but BEACON_TEST_POSTGRES_URL is not set"
            );
            say_skipped("BEACON_TEST_POSTGRES_URL is not set");
            return None;
        };
        match TestPg::create(&admin_url, "beacon_t") {
            Ok(pg) => Some(pg),
            Err(e) if !required => {
                say_skipped(&format!("cannot use {admin_url}: {e}"));
                None
            }
            Err(e) => panic!("cannot use {admin_url}: {e}"),
        }
    }

    /// A fresh database named `{prefix}_{random}` on the server at `admin_url`.
    pub fn create(admin_url: &str, prefix: &str) -> Result<TestPg, tokio_postgres::Error> {
        let config: tokio_postgres::Config = admin_url.parse()?;
        let name = format!("{prefix}_{:016x}", rand::random::<u64>());
        block_on(async {
            connect(admin_url)
                .await?
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
        })?;
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            other => panic!("tcp host expected in {admin_url}, got {other:?}"),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config.get_user().unwrap_or("postgres");
        let password = config
            .get_password()
            .map(|p| format!(":{}", String::from_utf8_lossy(p)))
            .unwrap_or_default();
        Ok(TestPg {
            url: format!("postgres://{user}{password}@{host}:{port}/{name}"),
            admin_url: admin_url.to_string(),
            name,
        })
    }

    /// Runs statements in the server's admin database (e.g. to stop or start the server's users).
    pub fn admin_sql(&self, sql: &str) {
        block_on(async {
            connect(&self.admin_url)
                .await
                .unwrap()
                .batch_execute(sql)
                .await
        })
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Runs statements in the test database.
    pub fn exec(&self, sql: &str) {
        block_on(async { connect(&self.url).await.unwrap().batch_execute(sql).await })
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The first column of every row, as text.
    pub fn strings(&self, sql: &str) -> Vec<String> {
        block_on(async {
            let rows = connect(&self.url).await.unwrap().query(sql, &[]).await;
            rows.unwrap_or_else(|e| panic!("{sql}: {e}"))
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect()
        })
    }

    /// The one `bigint` the query answers.
    pub fn count(&self, sql: &str) -> i64 {
        block_on(async {
            let row = connect(&self.url).await.unwrap().query_one(sql, &[]).await;
            row.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
        })
    }

    /// An outage of this database: no new connections, the existing ones terminated.
    pub fn refuse_connections(&self) {
        self.admin_sql(&format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS false",
            self.name
        ));
        self.admin_sql(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
            self.name
        ));
    }

    /// The end of [`TestPg::refuse_connections`].
    pub fn allow_connections(&self) {
        self.admin_sql(&format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
            self.name
        ));
    }

    /// `pg_dump` of the database (asserts it succeeded).
    pub fn dump(&self) -> String {
        let out = std::process::Command::new("pg_dump")
            .arg(&self.url)
            .output()
            .expect("pg_dump runs");
        assert!(
            out.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The server ids of the stored checks, as numbers.
    pub fn stored_server_ids(&self) -> HashSet<u64> {
        self.strings("SELECT server_id FROM checks")
            .iter()
            .map(|s| s.parse().unwrap())
            .collect()
    }
}

impl Drop for TestPg {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let result = block_on(async { connect(&self.admin_url).await?.batch_execute(&sql).await });
        if let Err(e) = result {
            eprintln!("cannot drop test database {}: {e}", self.name);
        }
    }
}
