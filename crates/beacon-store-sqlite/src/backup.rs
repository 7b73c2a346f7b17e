//! Backup and restore of a SQLite store: `beacon backup` and `beacon restore`.
//!
//! A backup is SQLite's online backup API run in one step: one read transaction copies every page,
//! so the copy is the database as of one instant (every transaction committed before the backup
//! began is in it) while the collector keeps writing to the WAL. The copy is written to a temporary
//! file beside the target, synced, given mode 0600 and renamed into place, so a crash never leaves
//! half a backup under the target's name.

use crate::migrations;
use beacon_store::{Result, StoreError};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};

/// What a backup or restore copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Database pages copied.
    pub pages: u64,
    /// Bytes of the resulting file.
    pub bytes: u64,
}

fn unavailable(what: &str, path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{what} {}: {e}", path.display()))
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Creates `path` empty with mode 0600 (replacing a leftover temporary file).
fn private_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|e| unavailable("cannot create", path, e))
}

/// Copies every page of `from` (open) into a new database file at `tmp`, then syncs it.
fn copy_into(from: &Connection, tmp: &Path) -> Result<u64> {
    private_file(tmp)?;
    let mut to = Connection::open(tmp).map_err(|e| unavailable("cannot open", tmp, e))?;
    let pages = {
        let backup = rusqlite::backup::Backup::new(from, &mut to)
            .map_err(|e| unavailable("cannot start the backup into", tmp, e))?;
        // One step of every page: one read transaction, one instant of the source. (Steps of a
        // few pages would restart whenever the collector commits in between.)
        backup
            .step(-1)
            .map_err(|e| unavailable("cannot copy into", tmp, e))?;
        backup.progress().pagecount
    };
    // The copy is a rollback-journal database on its own: no WAL to carry around.
    to.execute_batch("PRAGMA journal_mode=DELETE")
        .map_err(|e| unavailable("cannot finish", tmp, e))?;
    drop(to);
    std::fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| unavailable("cannot sync", tmp, e))?;
    Ok(u64::try_from(pages).unwrap_or(0))
}

/// Renames `tmp` to `target` and syncs the directory, so the new name survives a crash.
fn publish(tmp: &Path, target: &Path) -> Result<u64> {
    std::fs::rename(tmp, target).map_err(|e| unavailable("cannot move the copy to", target, e))?;
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| unavailable("cannot sync", dir, e))?;
    }
    std::fs::metadata(target)
        .map(|m| m.len())
        .map_err(|e| unavailable("cannot read", target, e))
}

/// Takes the shared lock every open store holds on its database file (see [`restore`]).
pub(crate) fn lock_shared(db: &Path) -> Result<std::fs::File> {
    let f = std::fs::File::open(db).map_err(|e| unavailable("cannot open", db, e))?;
    match f.try_lock_shared() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Unavailable(format!(
            "{} is being restored (beacon restore); try again when it is done",
            db.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(unavailable("cannot lock", db, e)),
    }
}

/// Backs up the store at `db` (which a collector may be writing) to `out`. Refuses to overwrite an
/// existing `out` unless `force`.
pub fn backup(db: &Path, out: &Path, force: bool) -> Result<Copied> {
    if !db.is_file() {
        return Err(StoreError::NotFound(format!(
            "no sqlite store at {}",
            db.display()
        )));
    }
    if out.exists() && !force {
        return Err(StoreError::Conflict(format!(
            "{} exists; give --force to replace it",
            out.display()
        )));
    }
    let from = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| unavailable("cannot open", db, e))?;
    from.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(crate::map_err)?;
    check_beacon_database(&from, db)?;
    let tmp = with_suffix(out, ".partial");
    let pages = copy_into(&from, &tmp).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    let bytes = publish(&tmp, out)?;
    Ok(Copied { pages, bytes })
}

/// A Beacon store's schema version at most this build's, and an intact file.
fn check_beacon_database(c: &Connection, path: &Path) -> Result<i64> {
    let version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| unavailable("cannot read", path, e))?;
    let has_meta: bool = c
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
            [],
            |r| r.get(0),
        )
        .map_err(|e| unavailable("cannot read", path, e))?;
    if version < 1 || !has_meta {
        return Err(StoreError::InvalidInput(format!(
            "{} is not a beacon store",
            path.display()
        )));
    }
    if version > migrations::LATEST {
        return Err(StoreError::InvalidInput(format!(
            "{} has schema version {version}, newer than this build's {}: use a newer beacon",
            path.display(),
            migrations::LATEST
        )));
    }
    Ok(version)
}

/// True when the store at `db` holds any collected data or configuration (checks, events, trace
/// events, bulletins, projects, API keys, or more than its first admin token).
fn holds_data(c: &Connection) -> rusqlite::Result<bool> {
    c.query_row(
        "SELECT EXISTS (SELECT 1 FROM checks) OR EXISTS (SELECT 1 FROM events) \
         OR EXISTS (SELECT 1 FROM trace_events) OR EXISTS (SELECT 1 FROM bulletins) \
         OR EXISTS (SELECT 1 FROM projects) OR EXISTS (SELECT 1 FROM api_keys) \
         OR (SELECT count(*) FROM admin_tokens) > 1",
        [],
        |r| r.get(0),
    )
}

/// Restores the backup `file` as the store `db`. Refuses when `db` holds data unless `force`, and
/// always when a process has the store open (a running collector: stop it first).
/// The backup is checked first (an intact beacon store, `PRAGMA integrity_check`); the store's old
/// `-wal` and `-shm` files are removed with it.
pub fn restore(file: &Path, db: &Path, force: bool) -> Result<Copied> {
    let from = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| unavailable("cannot open", file, e))?;
    check_beacon_database(&from, file)?;
    let integrity: String = from
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| unavailable("cannot check", file, e))?;
    if integrity != "ok" {
        return Err(StoreError::Corrupt(format!(
            "{} fails its integrity check: {integrity}",
            file.display()
        )));
    }
    // The store being replaced: no process may have it open (every open store holds a shared lock
    // on its file; this exclusive one waits for none and keeps new ones out until the copy is in
    // place), and it must be empty unless forced.
    let existing = if db.exists() {
        let lock = std::fs::File::open(db).map_err(|e| unavailable("cannot open", db, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Conflict(format!(
                    "{} is in use (a running collector?); stop it before restoring",
                    db.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(unavailable("cannot lock", db, e)),
        }
        let c = Connection::open(db).map_err(|e| unavailable("cannot open", db, e))?;
        let busy = holds_data(&c).unwrap_or(true);
        drop(c);
        if busy && !force {
            return Err(StoreError::Conflict(format!(
                "{} holds data; give --force to replace it with the backup",
                db.display()
            )));
        }
        Some(lock)
    } else {
        None
    };
    let tmp = with_suffix(db, ".restoring");
    let pages = copy_into(&from, &tmp).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    // The old store's WAL files go before the copy takes its name; the lock (on the old file) last.
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(with_suffix(db, suffix));
    }
    let bytes = publish(&tmp, db)?;
    drop(existing);
    Ok(Copied { pages, bytes })
}
