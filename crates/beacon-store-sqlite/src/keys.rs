//! Keys on SQLite: DSN project keys, mobile API keys, and the collector's secrets.

use crate::{SqliteStore, map_err, ms, run, time_from};
use beacon_store::{Result, StoreError};
use beacon_wire::admin::{ApiKeyInfo, KeyInfo};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

pub(crate) fn key_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyInfo> {
    Ok(KeyInfo {
        public_key: r.get(0)?,
        project_id: r.get(1)?,
        enabled: r.get(2)?,
        rate_limit_per_minute: r.get(3)?,
        dsn: None,
    })
}

fn api_key_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, i64, Option<i64>)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn finish_key(
    (name, prefix, created, revoked): (String, String, i64, Option<i64>),
) -> Result<ApiKeyInfo> {
    Ok(ApiKeyInfo {
        name,
        prefix,
        created_at: time_from(created)?,
        revoked_at: revoked.map(time_from).transpose()?,
    })
}

fn create_api_key_on(
    conn: &Connection,
    name: &str,
    hash: &str,
    prefix: &str,
    at: i64,
) -> Result<ApiKeyInfo> {
    conn.execute(
        "INSERT INTO api_keys (name, key_hash, prefix, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![name, hash, prefix, at],
    )
    .map_err(|e| match map_err(e) {
        StoreError::Conflict(_) => {
            StoreError::Conflict(format!("an api key named {name:?} exists"))
        }
        other => other,
    })?;
    finish_key((name.to_string(), prefix.to_string(), at, None))
}

fn api_keys_on(conn: &Connection) -> Result<Vec<ApiKeyInfo>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT name, prefix, created_at, revoked_at FROM api_keys ORDER BY created_at, name",
        )
        .map_err(map_err)?;
    let rows = stmt
        .query_map([], api_key_from_row)
        .map_err(map_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(map_err)?;
    rows.into_iter().map(finish_key).collect()
}

fn revoke_api_key_on(conn: &Connection, name: &str, at: i64) -> Result<ApiKeyInfo> {
    conn.execute(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?2) WHERE name = ?1",
        params![name, at],
    )
    .map_err(map_err)?;
    let row = conn
        .query_row(
            "SELECT name, prefix, created_at, revoked_at FROM api_keys WHERE name = ?1",
            [name],
            api_key_from_row,
        )
        .optional()
        .map_err(map_err)?
        .ok_or_else(|| StoreError::NotFound(format!("no api key named {name:?}")))?;
    finish_key(row)
}

fn api_key_valid_on(conn: &Connection, hash: &str) -> Result<bool> {
    conn.query_row(
        "SELECT 1 FROM api_keys WHERE key_hash = ?1 AND revoked_at IS NULL",
        [hash],
        |_| Ok(()),
    )
    .optional()
    .map(|o| o.is_some())
    .map_err(map_err)
}

fn secret_on(conn: &Connection, name: &str, candidate: &[u8]) -> Result<Vec<u8>> {
    conn.execute(
        "INSERT OR IGNORE INTO secrets (name, value) VALUES (?1, ?2)",
        params![name, candidate],
    )
    .map_err(map_err)?;
    conn.query_row("SELECT value FROM secrets WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .map_err(map_err)
}

pub(crate) async fn project_key(s: &SqliteStore, public_key: &str) -> Result<Option<KeyInfo>> {
    let key = public_key.to_string();
    run(&s.lookup, move |c| {
        c.query_row(
            "SELECT public_key, project_id, enabled, rate_limit_per_minute FROM project_keys WHERE public_key = ?1",
            [key],
            key_from_row,
        )
        .optional()
        .map_err(map_err)
    })
    .await
}

pub(crate) async fn update_key(
    s: &SqliteStore,
    public_key: &str,
    enabled: Option<bool>,
    rate_limit: Option<u32>,
) -> Result<KeyInfo> {
    let key = public_key.to_string();
    run(&s.writer, move |c| {
        let tx = c.transaction().map_err(map_err)?;
        if let Some(e) = enabled {
            tx.execute("UPDATE project_keys SET enabled = ?2 WHERE public_key = ?1", params![key, e]).map_err(map_err)?;
        }
        if let Some(limit) = rate_limit {
            let limit = (limit > 0).then_some(limit);
            tx.execute("UPDATE project_keys SET rate_limit_per_minute = ?2 WHERE public_key = ?1", params![key, limit])
                .map_err(map_err)?;
        }
        let info = tx
            .query_row(
                "SELECT public_key, project_id, enabled, rate_limit_per_minute FROM project_keys WHERE public_key = ?1",
                [&key],
                key_from_row,
            )
            .optional()
            .map_err(map_err)?
            .ok_or_else(|| StoreError::NotFound(format!("key {key}")))?;
        tx.commit().map_err(map_err)?;
        Ok(info)
    })
    .await
}

pub(crate) async fn create_api_key(
    s: &SqliteStore,
    name: &str,
    key_hash: &str,
    prefix: &str,
    at: DateTime<Utc>,
) -> Result<ApiKeyInfo> {
    let (name, hash, prefix) = (name.to_string(), key_hash.to_string(), prefix.to_string());
    run(&s.writer, move |c| {
        create_api_key_on(c, &name, &hash, &prefix, ms(at))
    })
    .await
}

pub(crate) async fn api_keys(s: &SqliteStore) -> Result<Vec<ApiKeyInfo>> {
    run(&s.reader, |c| api_keys_on(c)).await
}

pub(crate) async fn revoke_api_key(
    s: &SqliteStore,
    name: &str,
    at: DateTime<Utc>,
) -> Result<ApiKeyInfo> {
    let name = name.to_string();
    run(&s.writer, move |c| revoke_api_key_on(c, &name, ms(at))).await
}

pub(crate) async fn api_key_valid(s: &SqliteStore, key_hash: &str) -> Result<bool> {
    let hash = key_hash.to_string();
    run(&s.lookup, move |c| api_key_valid_on(c, &hash)).await
}

pub(crate) async fn secret(s: &SqliteStore, name: &str, candidate: &[u8]) -> Result<Vec<u8>> {
    let (name, candidate) = (name.to_string(), candidate.to_vec());
    run(&s.writer, move |c| secret_on(c, &name, &candidate)).await
}
