//! Helpers shared by the binary's tests: spawn `beacon serve`, send checks, read the store.
#![allow(dead_code)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub const BIN: &str = env!("CARGO_BIN_EXE_beacon");
pub const TOKEN: &str = "cli-test-admin-token-0123456789";

pub struct Server {
    pub child: Child,
    pub url: String,
    pub stdout_lines: Vec<String>,
}

impl Drop for Server {
    /// A failing test never leaves a collector running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `beacon serve` on a free loopback port; returns once it prints its address.
pub fn serve(data_dir: &Path, envs: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("BEACON_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut server = Server {
        child: cmd.spawn().expect("spawn beacon serve"),
        url: String::new(),
        stdout_lines: Vec::new(),
    };
    let mut reader = BufReader::new(server.child.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).unwrap();
        assert!(
            n > 0,
            "beacon serve exited early: {:?}",
            server.stdout_lines
        );
        if let Some(url) = line.trim().strip_prefix("beacon collector listening on ") {
            server.url = url.to_string();
            // Keep draining stdout so the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in reader.lines() {});
            return server;
        }
        server.stdout_lines.push(line);
    }
}

pub fn client() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::new()
}

pub fn query(n: u64) -> String {
    format!("auc=5&b=5.37.0.1&be=false&db=postgres&id={n:0>26}&os=linux&tc=1&uc=9&ut=0")
}

pub fn beacon(args: &[&str], url: &str) -> Output {
    Command::new(BIN)
        .args(args)
        .env("BEACON_URL", url)
        .env("BEACON_TOKEN", TOKEN)
        .env("BEACON_LOG", "warn")
        .output()
        .unwrap()
}

pub fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// Sends checks from `threads` senders until `stop` says so or `max` each; returns acknowledged ids.
pub fn load(
    url: &str,
    threads: u64,
    max: u64,
    base: u64,
    acked: Arc<AtomicU64>,
) -> Vec<std::thread::JoinHandle<Vec<u64>>> {
    (0..threads)
        .map(|t| {
            let url = url.to_string();
            let acked = acked.clone();
            std::thread::spawn(move || {
                let http = client();
                let mut ok = Vec::new();
                for i in 0..max {
                    let n = base + t * 1_000_000 + i;
                    match http.get(format!("{url}/security?{}", query(n))).send() {
                        Ok(r) if r.status() == 200 => {
                            ok.push(n);
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => break,
                    }
                }
                ok
            })
        })
        .collect()
}

pub fn stored_ids(data_dir: &Path) -> std::collections::HashSet<u64> {
    use beacon_store::Store;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = beacon_store_sqlite::SqliteStore::open(&data_dir.join("beacon.db")).unwrap();
        let today = chrono::Utc::now().date_naive();
        store
            .latest_per_server(today - chrono::Days::new(1), today, true)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.server_id.parse().unwrap())
            .collect()
    })
}

pub fn wait_for(acked: &AtomicU64, n: u64) {
    for _ in 0..3000 {
        if acked.load(Ordering::SeqCst) >= n {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("load did not reach {n} acknowledged checks");
}

/// A database of its own on the test server, dropped at the end.
pub struct TestDb {
    pub rt: tokio::runtime::Runtime,
    pub admin: tokio_postgres::Client,
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub fn create() -> Option<TestDb> {
        let required = std::env::var("BEACON_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
        let Ok(base) = std::env::var("BEACON_TEST_POSTGRES_URL") else {
            assert!(
                !required,
                "BEACON_REQUIRE_POSTGRES=1 but BEACON_TEST_POSTGRES_URL is not set"
            );
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "NOTE: PostgreSQL collector tests SKIPPED: set BEACON_TEST_POSTGRES_URL=postgres://USER@HOST:PORT/DB"
            );
            return None;
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let admin = rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to {base}: {e}"));
            tokio::spawn(conn);
            client
        });
        let name = format!("beacon_t_{:016x}", rand::random::<u64>());
        rt.block_on(admin.batch_execute(&format!("CREATE DATABASE {name}")))
            .unwrap();
        let config: tokio_postgres::Config = base.parse().unwrap();
        let host = match &config.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            other => panic!("tcp host expected, got {other:?}"),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config.get_user().unwrap_or("postgres");
        let url = format!("postgres://{user}@{host}:{port}/{name}");
        Some(TestDb {
            rt,
            admin,
            name,
            url,
        })
    }

    pub fn sql(&self, sql: &str) {
        self.rt
            .block_on(self.admin.batch_execute(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub fn stored_server_ids(&self) -> HashSet<u64> {
        self.rt.block_on(async {
            self.connect()
                .await
                .query("SELECT server_id FROM checks", &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, String>(0).parse().unwrap())
                .collect()
        })
    }

    /// A connection to the test database (not the server's admin database).
    async fn connect(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    }

    /// Runs statements in the test database.
    pub fn exec(&self, sql: &str) {
        self.rt.block_on(async {
            self.connect()
                .await
                .batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        })
    }

    /// The first column of every row, as text.
    pub fn strings(&self, sql: &str) -> Vec<String> {
        self.rt.block_on(async {
            let rows = self.connect().await.query(sql, &[]).await.unwrap();
            rows.iter().map(|r| r.get::<_, String>(0)).collect()
        })
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.rt.block_on(async {
            self.connect()
                .await
                .query_one(sql, &[])
                .await
                .unwrap()
                .get(0)
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = self.rt.block_on(self.admin.batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )));
    }
}
