//! `beacon backup` and `beacon restore`: a SQLite store copied while the collector runs, and put
//! back into a data directory. PostgreSQL stores are backed up with PostgreSQL's own tools.

use crate::StoreArgs;
use anyhow::{Context, Result, bail};
use beacon_collector::config::StoreUrl;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct BackupArgs {
    /// The backup file to write (mode 0600).
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing file at --out.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// A file written by `beacon backup`.
    file: PathBuf,
    /// Replace a store that holds data.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    store: StoreArgs,
}

/// The SQLite database file the configuration names; an error for PostgreSQL.
fn sqlite_path(args: &StoreArgs, what: &str) -> Result<PathBuf> {
    let config = args.load()?;
    match config
        .store_url()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?
    {
        StoreUrl::Sqlite(path) => Ok(path),
        StoreUrl::Postgres(_) => bail!(
            "beacon {what} works on SQLite stores; for PostgreSQL use pg_dump and pg_restore (see the README's \"Data lifecycle\")"
        ),
    }
}

fn size(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

pub async fn backup(a: BackupArgs) -> Result<()> {
    let db = sqlite_path(&a.store, "backup")?;
    let (out, force) = (a.out.clone(), a.force);
    let copied = tokio::task::spawn_blocking(move || {
        beacon_store_sqlite::backup::backup(&db, &out, force)
            .with_context(|| format!("cannot back up {}", db.display()))
    })
    .await??;
    eprintln!(
        "backed up {} pages ({}) to {}",
        copied.pages,
        size(copied.bytes),
        a.out.display()
    );
    Ok(())
}

pub async fn restore(a: RestoreArgs) -> Result<()> {
    let db = sqlite_path(&a.store, "restore")?;
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        beacon_collector::host::create_private_dir(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let (file, target, force) = (a.file.clone(), db.clone(), a.force);
    let copied = tokio::task::spawn_blocking(move || {
        beacon_store_sqlite::backup::restore(&file, &target, force)
            .with_context(|| format!("cannot restore {}", file.display()))
    })
    .await??;
    eprintln!(
        "restored {} pages ({}) into {}",
        copied.pages,
        size(copied.bytes),
        Path::new(&db).display()
    );
    Ok(())
}
