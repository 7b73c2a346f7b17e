//! The test kit: what every crate's tests need to stand up Beacon, in one place.
//!
//! - [`TestCollector`]: a collector in this process on `127.0.0.1:0` (SQLite in a temporary
//!   directory, or a [`TestPg`] database), with a builder for the knobs tests set.
//! - [`BeaconProcess`]: `beacon serve` as a child process (optionally under `ulimit`s), ready once
//!   it prints its address, killed when dropped.
//! - [`TestPg`]: a fresh database on the test PostgreSQL server (`BEACON_TEST_POSTGRES_URL`),
//!   dropped when dropped.
//! - [`TestTls`]: a test CA and a certificate it signed for `localhost` and `127.0.0.1`.
//! - [`Admin`] and the blocking [`get_admin`] / [`post_admin`] / [`create_project`] /
//!   [`create_api_key`]: the admin API calls tests repeat, authenticated with [`ADMIN_TOKEN`].
//! - [`Forwarder`]: loopback TCP forwarders, a CONNECT proxy and misbehaving TLS servers that count
//!   their connections.
//! - [`WebhookReceiver`]: a loopback webhook receiver recording alert notifications (signatures
//!   checked with [`Received::signed_with`]); it can be stopped and started again on its port.
//! - [`wait_until`] / [`wait_until_blocking`]: bounded polling.
//! - [`browser::Browser`] (feature `browser`): headless Chromium over WebDriver for the dashboard's
//!   tests: navigation, forms, tables, JavaScript errors, screenshots, downloads with its cookies.
//!
//! Dev-only (`publish = false`): helpers panic with a message rather than return errors, except
//! where the benchmark binary uses them ([`TestPg::create`], [`spawn_until`]).

mod admin;
#[cfg(feature = "browser")]
pub mod browser;
#[cfg(feature = "collector")]
mod collector;
mod net;
mod pg;
mod process;
mod tls;
mod webhook;

pub use admin::{Admin, Project, create_api_key, create_project, get_admin, post_admin};
#[cfg(feature = "collector")]
pub use collector::{CollectorBuilder, TestCollector, noon};
pub use net::{Fault, Forwarder, connect_proxy, fault_server, forwarder};
pub use pg::TestPg;
pub use process::{BeaconProcess, ChildGuard, ServeBuilder, spawn_until};
pub use tls::{TestTls, generate as generate_certificates};
pub use webhook::{Received, WebhookReceiver};

use std::future::Future;
use std::time::Duration;

/// The admin token of every collector the tests start.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// Installs the `ring` crypto provider as the process default (idempotent).
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Runs `fut` to completion on a runtime of its own, on a thread of its own: usable from plain
/// tests and from inside another runtime alike.
pub fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("test runtime")
                .block_on(fut)
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// Waits (bounded: 20 s in 10 ms steps) until `cond` holds.
pub async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..2000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Waits on this thread (bounded: `limit`, in 10 ms steps) until `cond` holds.
pub fn wait_until_blocking(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let steps = limit.as_millis().div_ceil(10).max(1);
    for _ in 0..steps {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}");
}

/// Lets in-flight work settle: a few scheduler turns and a short pause (used before asserting that
/// something did *not* happen; the assertion does not depend on how long this takes).
pub async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every crate's integration tests form one binary (`tests/tests.rs`, `autotests = false`): a
    /// file under `tests/` that no `mod` and no `[[test]]` names would silently never run.
    #[test]
    fn every_test_file_is_part_of_a_test_binary() {
        let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut missing = Vec::new();
        for krate in std::fs::read_dir(crates).unwrap() {
            let krate = krate.unwrap().path();
            let tests = krate.join("tests");
            let Ok(files) = std::fs::read_dir(&tests) else {
                continue;
            };
            let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
            let root = std::fs::read_to_string(tests.join("tests.rs")).unwrap_or_default();
            for file in files {
                let path = file.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let Some(module) = name.strip_suffix(".rs") else {
                    continue;
                };
                let declared = name == "tests.rs"
                    || root.contains(&format!("mod {module};"))
                    || manifest.contains(&format!("path = \"tests/{name}\""));
                if !declared {
                    missing.push(path.display().to_string());
                }
            }
        }
        assert!(
            missing.is_empty(),
            "not in any test binary (add `mod …;` to tests/tests.rs): {missing:?}"
        );
    }
}
