//! Admin data on SQLite: admin tokens and dead letters.

use crate::{SqliteStore, map_err, ms, run, time_from};
use beacon_store::ui::{admin_token_id, check_admin_token_id, choose_token_to_revoke};
use beacon_store::{NewDeadLetter, Result, WriteOutcome};
use beacon_wire::admin::{AdminTokenInfo, DeadLetter};
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

pub(crate) fn write_dead_letter(
    tx: &rusqlite::Transaction<'_>,
    d: &NewDeadLetter,
) -> Result<WriteOutcome> {
    tx.prepare_cached(
        "INSERT INTO dead_letters (received_at, channel, reason, payload) VALUES (?1, ?2, ?3, ?4)",
    )
    .map_err(map_err)?
    .execute(params![ms(d.received_at), d.channel, d.reason, d.payload])
    .map_err(map_err)?;
    Ok(WriteOutcome::Accepted)
}

pub(crate) async fn add_admin_token(
    s: &SqliteStore,
    token_hash: &str,
    label: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    let (hash, label) = (token_hash.to_string(), label.to_string());
    run(&s.writer, move |c| {
        c.execute(
            "INSERT INTO admin_tokens (token_hash, label, created_at) VALUES (?1, ?2, ?3)",
            params![hash, label, ms(at)],
        )
        .map_err(map_err)?;
        Ok(())
    })
    .await
}

pub(crate) async fn admin_token_count(s: &SqliteStore) -> Result<u64> {
    run(&s.reader, |c| {
        c.query_row("SELECT count(*) FROM admin_tokens", [], |r| {
            r.get::<_, i64>(0)
        })
        .map(|n| n as u64)
        .map_err(map_err)
    })
    .await
}

pub(crate) async fn admin_token_valid(s: &SqliteStore, token_hash: &str) -> Result<bool> {
    let hash = token_hash.to_string();
    run(&s.lookup, move |c| {
        c.query_row(
            "SELECT 1 FROM admin_tokens WHERE token_hash = ?1",
            [hash],
            |_| Ok(()),
        )
        .optional()
        .map(|o| o.is_some())
        .map_err(map_err)
    })
    .await
}

pub(crate) async fn admin_tokens(s: &SqliteStore) -> Result<Vec<AdminTokenInfo>> {
    run(&s.lookup, |c| {
        let mut stmt = c
            .prepare_cached(
                "SELECT token_hash, label, created_at FROM admin_tokens \
                 ORDER BY created_at, token_hash",
            )
            .map_err(map_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(map_err)?;
        rows.map(|r| {
            let (hash, label, at) = r.map_err(map_err)?;
            Ok(AdminTokenInfo {
                id: admin_token_id(&hash),
                label,
                created_at: time_from(at)?,
            })
        })
        .collect()
    })
    .await
}

pub(crate) async fn admin_token_label(s: &SqliteStore, token_hash: &str) -> Result<Option<String>> {
    let hash = token_hash.to_string();
    run(&s.lookup, move |c| {
        c.query_row(
            "SELECT label FROM admin_tokens WHERE token_hash = ?1",
            [hash],
            |r| r.get(0),
        )
        .optional()
        .map_err(map_err)
    })
    .await
}

pub(crate) async fn revoke_admin_token(s: &SqliteStore, id: &str) -> Result<bool> {
    check_admin_token_id(id)?;
    let id = id.to_string();
    run(&s.writer, move |c| {
        // IMMEDIATE: the write lock from the first read, so that two stores on one file (two
        // processes) never both see two tokens and each revoke one.
        let tx = c
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(map_err)?;
        let hashes = tx
            .prepare_cached("SELECT token_hash FROM admin_tokens")
            .map_err(map_err)?
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(map_err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(map_err)?;
        let Some(hash) = choose_token_to_revoke(&id, hashes.iter().map(String::as_str))? else {
            return Ok(false);
        };
        tx.execute("DELETE FROM ui_sessions WHERE token_hash = ?1", [hash])
            .map_err(map_err)?;
        tx.execute("DELETE FROM admin_tokens WHERE token_hash = ?1", [hash])
            .map_err(map_err)?;
        tx.commit().map_err(map_err)?;
        Ok(true)
    })
    .await
}

pub(crate) async fn dead_letters(
    s: &SqliteStore,
    channel: Option<&str>,
    limit: u32,
) -> Result<Vec<DeadLetter>> {
    let channel = channel.map(str::to_string);
    run(&s.reader, move |c| {
        let mut stmt = c
            .prepare_cached(
                "SELECT id, received_at, channel, reason, payload FROM dead_letters \
                 WHERE ?1 IS NULL OR channel = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(map_err)?;
        let rows = stmt
            .query_map(params![channel, limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                ))
            })
            .map_err(map_err)?;
        rows.map(|r| {
            let (id, at, channel, reason, payload) = r.map_err(map_err)?;
            Ok(DeadLetter {
                id,
                received_at: time_from(at)?,
                channel,
                reason,
                payload,
            })
        })
        .collect()
    })
    .await
}

pub(crate) async fn trim_dead_letters(s: &SqliteStore, keep: u64) -> Result<Vec<(String, u64)>> {
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    run(&s.writer, move |c| {
        let channels = c
            .prepare_cached("SELECT DISTINCT channel FROM dead_letters")
            .map_err(map_err)?
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(map_err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(map_err)?;
        let mut removed = Vec::new();
        for channel in channels {
            let n = c
                .prepare_cached(
                    "DELETE FROM dead_letters WHERE channel = ?1 AND id <= \
                     (SELECT id FROM dead_letters WHERE channel = ?1 \
                      ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                )
                .map_err(map_err)?
                .execute(params![channel, keep])
                .map_err(map_err)?;
            if n > 0 {
                removed.push((channel, n as u64));
            }
        }
        Ok(removed)
    })
    .await
}
