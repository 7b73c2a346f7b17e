//! Helpers of the binary's tests: `beacon serve` from this crate's binary (the test kit's
//! `BeaconProcess`), the CLI, checks sent under load, and what the SQLite store holds.

use beacon_testkit::{ADMIN_TOKEN, BeaconProcess, TestPg, install_crypto, wait_until_blocking};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The `beacon` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_beacon");

/// Starts `beacon serve` (this crate's binary) on a free loopback port with `envs`; returns once it
/// prints its address.
pub fn serve(data_dir: &Path, envs: &[(&str, &str)]) -> BeaconProcess {
    BeaconProcess::serve(BIN, data_dir).envs(envs).start()
}

/// Starts `beacon serve` with the admin token, storing in `db`.
pub fn serve_on(db: &TestPg, data_dir: &Path) -> BeaconProcess {
    BeaconProcess::serve(BIN, data_dir)
        .admin_token()
        .postgres(db)
        .start()
}

pub fn client() -> reqwest::blocking::Client {
    install_crypto();
    reqwest::blocking::Client::new()
}

pub fn query(n: u64) -> String {
    format!("auc=5&b=5.37.0.1&be=false&db=postgres&id={n:0>26}&os=linux&tc=1&uc=9&ut=0")
}

pub fn beacon(args: &[&str], url: &str) -> Output {
    Command::new(BIN)
        .args(args)
        .env("BEACON_URL", url)
        .env("BEACON_TOKEN", ADMIN_TOKEN)
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

/// Waits (bounded: 30 s) until `n` checks were acknowledged.
pub fn wait_for(acked: &AtomicU64, n: u64) {
    wait_until_blocking(
        &format!("load to reach {n} acknowledged checks"),
        Duration::from_secs(30),
        || acked.load(Ordering::SeqCst) >= n,
    );
}
