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
