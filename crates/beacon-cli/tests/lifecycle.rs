//! Data lifecycle through the binary: `beacon backup` while the collector takes load, `beacon restore`
//! into another data directory.

use crate::util::*;
use beacon_testkit::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("BEACON_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn a_backup_under_load_restores_every_item_acknowledged_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), &[("BEACON_ADMIN_TOKEN", ADMIN_TOKEN)]);
    let acked = Arc::new(AtomicU64::new(0));
    // The load runs before, during and after the backup.
    let senders = load(&server.url, 4, 3_000, 0, acked.clone());
    wait_for(&acked, 500);
    // Every check acknowledged by now must be in the backup: ids are recorded by the senders in
    // order, so those below each sender's count at this instant were acknowledged before it.
    let before = acked.load(Ordering::SeqCst);
    let outdir = tempfile::tempdir().unwrap();
    let out = outdir.path().join("backup.db");
    let backup = run(&[
        "backup",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let during = acked.load(Ordering::SeqCst);
    assert!(
        backup.status.success(),
        "backup failed: {}",
        text(&backup.stderr)
    );
    assert!(
        text(&backup.stderr).contains("backed up"),
        "{}",
        text(&backup.stderr)
    );
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600,
        "a backup holds token hashes and the device secret"
    );
    for s in senders {
        s.join().unwrap();
    }
    let total = acked.load(Ordering::SeqCst);
    assert!(total > during, "the load went on after the backup");
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    // A second backup to the same file is refused without --force.
    let again = run(&[
        "backup",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("--force"),
        "{}",
        text(&again.stderr)
    );

    // Restore into a new directory: every check acknowledged before the backup began is there.
    let restored = tempfile::tempdir().unwrap();
    let target = restored.path().join("data");
    let r = run(&[
        "restore",
        out.to_str().unwrap(),
        "--data-dir",
        target.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "restore failed: {}", text(&r.stderr));
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let stored = stored_ids(&target);
    let mut per_sender: Vec<Vec<u64>> = vec![Vec::new(); 4];
    for id in &stored {
        per_sender[(id / 1_000_000) as usize].push(id % 1_000_000);
    }
    // Each sender sends ids 0, 1, 2 … in order and stops at its first failure: the backup holds,
    // per sender, a prefix — and together at least the checks acknowledged before it began.
    let mut in_backup = 0u64;
    for (t, ids) in per_sender.iter_mut().enumerate() {
        ids.sort_unstable();
        let prefix = ids
            .iter()
            .enumerate()
            .take_while(|(i, v)| *i as u64 == **v)
            .count();
        assert_eq!(prefix, ids.len(), "sender {t}: a gap in the backup");
        in_backup += ids.len() as u64;
    }
    assert!(
        in_backup >= before,
        "the backup holds {in_backup} checks, {before} were acknowledged before it began"
    );
    assert!(
        in_backup <= during.max(before) + 4,
        "not more than was acknowledged by its end"
    );

    // The restored store serves: a collector starts on it and reports the checks.
    let mut server = serve(&target, &[("BEACON_ADMIN_TOKEN", ADMIN_TOKEN)]);
    let ready = client()
        .get(format!("{}/readyz", server.url))
        .send()
        .unwrap();
    assert_eq!(ready.status(), 200);
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    // A store that holds data is not replaced without --force; with it, it is.
    let r = run(&[
        "restore",
        out.to_str().unwrap(),
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!r.status.success());
    assert!(
        text(&r.stderr).contains("holds data"),
        "{}",
        text(&r.stderr)
    );
    let r = run(&[
        "restore",
        out.to_str().unwrap(),
        "--force",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", text(&r.stderr));
    assert_eq!(stored_ids(dir.path()).len() as u64, in_backup);
}

#[test]
fn restore_refuses_a_running_store_and_files_that_are_not_backups() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), &[("BEACON_ADMIN_TOKEN", ADMIN_TOKEN)]);
    let data = dir.path().to_path_buf();
    let outdir = tempfile::tempdir().unwrap();
    let out = outdir.path().join("b.db");
    let b = run(&[
        "backup",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(b.status.success(), "{}", text(&b.stderr));
    // The collector holds the store: a restore over it is refused, even with --force.
    let r = run(&[
        "restore",
        out.to_str().unwrap(),
        "--force",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    assert!(!r.status.success());
    assert!(text(&r.stderr).contains("in use"), "{}", text(&r.stderr));

    let junk = outdir.path().join("junk.db");
    std::fs::write(&junk, b"not a database at all, just text").unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let r = run(&[
        "restore",
        junk.to_str().unwrap(),
        "--data-dir",
        fresh.path().to_str().unwrap(),
    ]);
    assert!(!r.status.success());
    assert!(!fresh.path().join("beacon.db").exists(), "nothing written");
    // PostgreSQL stores are backed up with PostgreSQL's tools.
    let r = run(&[
        "backup",
        "--store",
        "postgres://postgres@127.0.0.1:5432/x",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!r.status.success());
    assert!(text(&r.stderr).contains("pg_dump"), "{}", text(&r.stderr));
}

const SERVER_CANARY: &str = "canaryserverq7x2k9m4p0w8z1";
const DEVICE_CANARY: &str = "CANARY-UDID-5b2e9c1d-forget-me-0a7f";

/// Sends the canaries through every channel of the collector at `url`: checks of the canary server
/// (and of a server that stays), an error event tagged with the canary server, a dead letter naming
/// it, and trace events of the canary device (and of a device that stays).
fn send_canaries(url: &str) {
    let http = client();
    for id in [SERVER_CANARY, "keepserver0000000000000001"] {
        let q = format!("auc=5&b=5.37.0.1&be=false&db=postgres&id={id}&os=linux&tc=1&uc=9&ut=0");
        assert_eq!(
            http.get(format!("{url}/security?{q}"))
                .send()
                .unwrap()
                .status(),
            200
        );
    }
    // A malformed check naming the canary: a dead letter.
    let bad = format!("id={SERVER_CANARY}&b=not-a-version");
    assert_eq!(
        http.get(format!("{url}/security?{bad}"))
            .send()
            .unwrap()
            .status(),
        400
    );
    let p = create_project(url, "app");
    for (n, server) in [(1, SERVER_CANARY), (2, "keepserver0000000000000001")] {
        let event = serde_json::json!({"event_id": format!("{n:032x}"), "message": "boom", "level": "error",
            "platform": "go", "release": "5.37.0", "tags": {"server_id": server}});
        let r = http
            .post(format!("{url}/api/{}/store/", p.id))
            .header(
                "x-sentry-auth",
                format!("Sentry sentry_key={}, sentry_version=7", p.key),
            )
            .body(event.to_string())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let key = create_api_key(url, "app");
    for device in [DEVICE_CANARY, "KEEP-DEVICE-0001"] {
        let now_us = chrono::Utc::now().timestamp_micros();
        let events: Vec<serde_json::Value> = (0..5)
            .map(|i| {
                serde_json::json!({"cat": "react-native", "ph": "X", "name": "team:switch",
                "ts": now_us - 60_000_000 + i, "dur": 30_000 + i, "pid": 0, "tid": 5, "args": {}})
            })
            .collect();
        let body = serde_json::json!({"data": {"trace_events": events, "device_info": {
            "api_level": 34, "brand": "samsung", "manufacturer": "samsung", "model": "SM-S911",
            "device_unique_id": device, "is_emulator": false, "is_tablet": false, "country": "DE",
            "system_name": "Android", "system_version": "14", "server_version": "10.2.0", "app_version": "2.20.0"}}});
        let r = http
            .post(format!("{url}/v1/mobile/metrics"))
            .header("x-api-key", &key)
            .body(body.to_string())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    }
}

/// `beacon forget` for the canary server and device; returns the two answers.
fn forget_canaries(url: &str) -> (serde_json::Value, serde_json::Value) {
    let json = |args: &[&str]| -> serde_json::Value {
        let o = beacon(args, url);
        assert!(o.status.success(), "{}", text(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let server = json(&["forget", "--server", SERVER_CANARY, "--format", "json"]);
    let device = json(&["forget", "--device", DEVICE_CANARY, "--format", "json"]);
    let log = json(&["forget", "--log", "--format", "json"]);
    assert_eq!(log.as_array().unwrap().len(), 2, "{log}");
    assert_eq!(log[0]["channel"], "device");
    assert_eq!(log[1]["channel"], "server");
    assert!(!log.to_string().contains(SERVER_CANARY) && !log.to_string().contains(DEVICE_CANARY));
    (server[0].clone(), device[0].clone())
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn forgotten_ids_are_gone_from_the_sqlite_files() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[("BEACON_ADMIN_TOKEN", ADMIN_TOKEN)]);
    send_canaries(&server.url);
    let db = dir.path().join("beacon.db");
    let files = || {
        let mut all = std::fs::read(&db).unwrap();
        if let Ok(wal) = std::fs::read(dir.path().join("beacon.db-wal")) {
            all.extend(wal);
        }
        all
    };
    let device_hashes = rusqlite_device_hashes(&db);
    assert_eq!(device_hashes.len(), 2);
    // Before: the server id and the device's hash are stored (the raw device id never is).
    let before = files();
    assert!(
        contains(&before, SERVER_CANARY),
        "the canary was not stored: the test proves nothing"
    );
    assert!(device_hashes.iter().all(|h| contains(&before, h)));
    assert!(!contains(&before, DEVICE_CANARY));

    let (s, d) = forget_canaries(&server.url);
    assert_eq!(
        (s["checks"].as_u64(), s["events"].as_u64()),
        (Some(1), Some(1)),
        "{s}"
    );
    assert!(s["dead_letters"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(d["trace_events"].as_u64(), Some(5), "{d}");
    // While the collector still runs: nothing of either id in the database file or its WAL.
    let after = files();
    for canary in [SERVER_CANARY, DEVICE_CANARY] {
        assert!(
            !contains(&after, canary),
            "{canary} is still in the database files"
        );
    }
    // Of the two devices' hashes, the forgotten one's is gone and the other's stays.
    let left: Vec<&String> = device_hashes
        .iter()
        .filter(|h| contains(&after, h))
        .collect();
    assert_eq!(left.len(), 1, "device hashes still in the files: {left:?}");
    // The rest stays.
    assert!(contains(&after, "keepserver0000000000000001"));
    let fleet = get_admin(&server.url, "/reports/fleet?include_test=true");
    assert_eq!(fleet["total"]["servers"], 1);
}

/// The stored device hashes, read through a read-only connection that is closed again at once (a
/// reader holding a snapshot would keep the WAL from being truncated).
fn rusqlite_device_hashes(db: &std::path::Path) -> Vec<String> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let mut stmt = c
        .prepare("SELECT DISTINCT device_hash FROM perf_contexts WHERE device_hash IS NOT NULL")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn forgotten_ids_are_gone_from_a_postgres_dump() {
    let Some(db) = TestPg::from_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = serve_on(&db, dir.path());
    send_canaries(&server.url);
    let before = db.dump();
    assert!(
        before.contains(SERVER_CANARY),
        "the canary was not stored: the test proves nothing"
    );
    let (s, d) = forget_canaries(&server.url);
    assert_eq!(
        (s["checks"].as_u64(), s["events"].as_u64()),
        (Some(1), Some(1)),
        "{s}"
    );
    assert_eq!(d["trace_events"].as_u64(), Some(5), "{d}");
    let after = db.dump();
    assert!(!after.contains(SERVER_CANARY));
    assert!(!after.contains(DEVICE_CANARY));
    assert!(after.contains("keepserver0000000000000001"));
    assert!(after.contains("forget_log"), "the log is in the dump");
}
