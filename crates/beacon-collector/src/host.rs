//! What the collector checks and sets on its host at start: the open-files limit (and the connection
//! cap it allows), the modes of the data directory and the SQLite files, and whether it listens on
//! the network in clear text.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// File descriptors kept out of the connection cap: the database files and connections, the listener,
/// the runtime's own descriptors, log files, and descriptors in flight while a connection is refused.
pub const FD_RESERVE: u64 = 128;

/// Over-cap connections answered `503` at once, each for up to [`crate::http::REFUSAL_DEADLINE`];
/// beyond these an over-cap connection is closed without an answer. Counted in the fd budget.
pub const REFUSAL_SLOTS: u64 = 64;

/// The open-files limit before and after [`raise_open_files_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    pub before: u64,
    pub after: u64,
    /// The hard limit; `None` when unlimited.
    pub hard: Option<u64>,
}

/// Raises the soft open-files limit to the hard limit (a service gets a soft limit of 1,024 by
/// default, far below what a busy collector needs) and logs what it did.
pub fn raise_open_files_limit() -> OpenFiles {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    // `None` is unlimited. Linux caps open files at `fs.nr_open` (1,048,576 by default) whatever the
    // hard limit says, so an unlimited hard limit is aimed at that.
    let before = limit.current.unwrap_or(u64::MAX);
    let hard = limit.maximum;
    let target = hard.unwrap_or(1 << 20);
    if target <= before {
        tracing::info!(limit = before, "open-files limit is at its hard limit");
        return OpenFiles {
            before,
            after: before,
            hard,
        };
    }
    let mut raised = limit;
    raised.current = Some(target);
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            tracing::info!(
                from = before,
                to = target,
                "open-files limit raised to the hard limit"
            );
            OpenFiles {
                before,
                after: target,
                hard,
            }
        }
        Err(e) => {
            tracing::warn!(limit = before, hard = target, error = %e, "cannot raise the open-files limit");
            OpenFiles {
                before,
                after: before,
                hard,
            }
        }
    }
}

/// The connection cap to use: the configured one, lowered to what `open_files` leaves after
/// [`FD_RESERVE`] and [`REFUSAL_SLOTS`] (at least 1). The second value says whether it was lowered.
pub fn connection_cap(configured: u64, open_files: u64) -> (u64, bool) {
    let allowed = open_files.saturating_sub(FD_RESERVE + REFUSAL_SLOTS).max(1);
    if configured > allowed {
        (allowed, true)
    } else {
        (configured, false)
    }
}

/// Clear text on a reachable address: admin tokens and client keys would cross the network readable.
pub fn exposed_without_tls(addr: SocketAddr, tls: bool) -> bool {
    !tls && !addr.ip().is_loopback()
}

/// Mode bits for a new data directory: the owner only.
pub const DIR_MODE: u32 = 0o700;
/// Mode bits for a new database file; SQLite gives its `-wal` and `-shm` files the database's mode.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) with mode 0700; an existing directory is left as it is.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

/// Creates an empty database file with mode 0600 when none exists, so that SQLite (which would
/// create it 0644 less the umask) and its `-wal`/`-shm` files, which copy its mode, are private.
/// An existing file is left as it is.
pub fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// One warning per path that others than the owner may read, write or enter: the directory holding
/// the database, the database and its `-wal` and `-shm` files (those that exist). Modes are only
/// checked, never changed: an operator may have opened them on purpose (a backup group, say).
pub fn loose_permissions(db: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match db.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    let mut paths = vec![(dir, true)];
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        paths.push((PathBuf::from(p), false));
    }
    let mut warnings = Vec::new();
    for (path, is_dir) in paths {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            let (want, what) = if is_dir {
                (DIR_MODE, "directory holding the database")
            } else {
                (FILE_MODE, "database file")
            };
            warnings.push(format!(
                "{what} {} has mode {mode:04o}: other users may read it, and the database holds the \
                 device-hash secret and token hashes; run `chmod {want:o} {}`",
                path.display(),
                path.display()
            ));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn connection_cap_stays_within_the_open_files_limit() {
        assert_eq!(connection_cap(10_000, 1_048_576), (10_000, false));
        assert_eq!(connection_cap(10_000, 1024), (1024 - 192, true));
        assert_eq!(connection_cap(500, 1024), (500, false));
        assert_eq!(connection_cap(10_000, 100), (1, true));
    }

    #[test]
    fn exposure_is_clear_text_off_loopback() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(exposed_without_tls(a("0.0.0.0:8080"), false));
        assert!(exposed_without_tls(a("[::]:8080"), false));
        assert!(exposed_without_tls(a("10.1.2.3:8080"), false));
        assert!(!exposed_without_tls(a("0.0.0.0:8080"), true));
        assert!(!exposed_without_tls(a("127.0.0.1:8080"), false));
        assert!(!exposed_without_tls(a("127.0.0.2:8080"), false));
        assert!(!exposed_without_tls(a("[::1]:8080"), false));
    }

    #[test]
    fn new_files_are_private_and_loose_ones_are_named() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        create_private_dir(&dir).unwrap();
        let db = dir.join("beacon.db");
        create_private_file(&db).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&root.path().join("a")), 0o700);
        assert_eq!(mode(&db), 0o600);
        assert!(loose_permissions(&db).is_empty());

        // An operator's modes are left alone but named.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join("beacon.db-wal"), b"").unwrap();
        std::fs::set_permissions(
            dir.join("beacon.db-wal"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        create_private_dir(&dir).unwrap();
        create_private_file(&db).unwrap();
        assert_eq!(mode(&dir), 0o755);
        let w = loose_permissions(&db);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("0755") && w[0].contains("chmod 700"), "{w:?}");
        assert!(
            w[1].contains("beacon.db-wal") && w[1].contains("chmod 600"),
            "{w:?}"
        );
    }
}
