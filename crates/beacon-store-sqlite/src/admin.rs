//! Admin data on SQLite: admin tokens and dead letters.

use crate::{SqliteStore, map_err, ms, run, time_from};
use beacon_store::{NewDeadLetter, Result, WriteOutcome};
use beacon_wire::admin::DeadLetter;
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
