//! What the collector says and sets on its host at start: private data files, warnings for loose
//! modes and for clear text beyond loopback (read from the collector's own log).

use crate::util::*;
use beacon_testkit::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// The log lines written on this thread while a capture is installed.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<Captured>> = const { std::cell::RefCell::new(None) };
}

/// Writes to the capture installed on the writing thread, if any.
struct ThreadWriter;

impl std::io::Write for ThreadWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(c) = &*c.borrow() {
                c.0.lock().unwrap().extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Uninstalls the capture when dropped.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        CAPTURE.with(|c| c.borrow_mut().take());
    }
}

impl Captured {
    /// One process-wide subscriber (INFO and up, for every test of this binary), whose lines go to
    /// the capture of the thread that logs. A global subscriber, not a scoped one: a scoped default
    /// races with callsites registered on other threads (tracing caches a callsite's interest
    /// process-wide), which now and then lost a line.
    fn install(&self) -> Installed {
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_writer(|| ThreadWriter)
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in this test binary");
        });
        CAPTURE.with(|c| *c.borrow_mut() = Some(self.clone()));
        Installed
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn a_new_data_directory_and_its_database_are_private() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("new/data");
    let log = Captured::default();
    let _guard = log.install();
    let c = TestCollector::start_with(|cfg| cfg.server.data_dir = data.clone()).await;
    // The checks went through the writer, so the WAL and shared-memory files exist.
    let r = c
        .security(&mattermost_query(&server_id(1), "5.37.0", 1))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&root.path().join("new")), 0o700);
    for f in ["beacon.db", "beacon.db-wal", "beacon.db-shm"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    let text = log.text();
    assert!(!text.contains("chmod"), "{text}");
    assert!(!text.contains("without TLS"), "{text}");
    assert!(text.contains("connection cap"), "{text}");
    c.stop().await;
}

#[tokio::test]
async fn loose_modes_are_warned_about_and_left_alone() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A database made by an earlier version, world-readable.
    drop(beacon_store_sqlite::SqliteStore::open(&data.join("beacon.db")).unwrap());
    std::fs::set_permissions(
        data.join("beacon.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let log = Captured::default();
    let _guard = log.install();
    let c = TestCollector::start_with(|cfg| cfg.server.data_dir = data.clone()).await;
    let text = log.text();
    assert!(
        text.contains(&format!("chmod 700 {}", data.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("chmod 600 {}", data.join("beacon.db").display())),
        "{text}"
    );
    assert_eq!(mode(&data), 0o755);
    assert_eq!(mode(&data.join("beacon.db")), 0o644);
    c.stop().await;
}

#[tokio::test]
async fn clear_text_beyond_loopback_is_warned_about() {
    let log = Captured::default();
    let _guard = log.install();
    let c = TestCollector::start_with(|cfg| cfg.server.listen = "0.0.0.0:0".into()).await;
    let text = log.text();
    assert!(
        text.contains("WARN") && text.contains("without TLS"),
        "{text}"
    );
    c.stop().await;
}
