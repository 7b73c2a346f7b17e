//! Mobile API keys, secrets and trace events on SQLite.

use crate::{day_from, day_num, map_err, ms, time_from};
use beacon_store::perf::{PerfContext, PerfRow, PerfSelect, StoredTrace, TraceBatch, cells_of};
use beacon_store::sketch::Cell;
use beacon_store::{Result, StoreError};
use beacon_wire::admin::ApiKeyInfo;
use beacon_wire::mobile::{DeviceInfo, TraceName};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::collections::HashMap;

/// Rows per multi-row `INSERT` of raw trace events (4 parameters each).
const EVENT_CHUNK: usize = 200;

static INSERT_EVENTS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    (0..=EVENT_CHUNK)
        .map(|rows| {
            let values: Vec<String> = (0..rows)
                .map(|r| {
                    format!(
                        "(?{}, ?{}, ?{}, ?{})",
                        r * 4 + 1,
                        r * 4 + 2,
                        r * 4 + 3,
                        r * 4 + 4
                    )
                })
                .collect();
            format!(
                "INSERT INTO trace_events (ts, trace, dur, context) VALUES {}",
                values.join(", ")
            )
        })
        .collect()
});

/// Stores the batches' contexts, raw events and one sketch delta per key they touch.
pub(crate) fn write_traces(tx: &Transaction<'_>, batches: &[&TraceBatch]) -> Result<()> {
    if batches.is_empty() {
        return Ok(());
    }
    {
        let mut ctx = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO perf_contexts (id, device_hash, info, first_seen) VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(map_err)?;
        for b in batches {
            let info = serde_json::to_string(&b.context.info)
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
            ctx.execute(params![
                b.context.id,
                b.context.device_hash,
                info,
                ms(b.received_at)
            ])
            .map_err(map_err)?;
        }
    }
    let rows: Vec<(i64, i16, i64, i64)> = batches
        .iter()
        .flat_map(|b| {
            b.events
                .iter()
                .map(|e| (e.ts_us, e.name.code(), e.dur_us, b.context.id))
        })
        .collect();
    for chunk in rows.chunks(EVENT_CHUNK) {
        let mut stmt = tx
            .prepare_cached(&INSERT_EVENTS[chunk.len()])
            .map_err(map_err)?;
        let params: Vec<&dyn rusqlite::ToSql> = chunk
            .iter()
            .flat_map(|(ts, trace, dur, ctx)| {
                [
                    ts as &dyn rusqlite::ToSql,
                    trace as &dyn rusqlite::ToSql,
                    dur as &dyn rusqlite::ToSql,
                    ctx as &dyn rusqlite::ToSql,
                ]
            })
            .collect();
        stmt.execute(params.as_slice()).map_err(map_err)?;
    }
    let mut delta = tx
        .prepare_cached(
            "INSERT INTO perf_deltas (trace, dim, day, emulator, value, cell) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(map_err)?;
    for (key, cell) in cells_of(batches.iter().copied()) {
        delta
            .execute(params![
                key.trace.code(),
                key.dim.code(),
                day_num(key.day),
                key.emulator,
                key.value,
                cell.encode()
            ])
            .map_err(map_err)?;
    }
    Ok(())
}

type Key = (i16, i16, i64, bool, String);

/// Merges every delta into its key's sketch row, in one transaction.
pub(crate) fn compact(conn: &mut Connection) -> Result<u64> {
    let tx = conn.transaction().map_err(map_err)?;
    let mut merged: HashMap<Key, Cell> = HashMap::new();
    let mut n = 0u64;
    {
        let mut stmt = tx
            .prepare_cached(
                "DELETE FROM perf_deltas RETURNING trace, dim, day, emulator, value, cell",
            )
            .map_err(map_err)?;
        let mut rows = stmt.query([]).map_err(map_err)?;
        while let Some(r) = rows.next().map_err(map_err)? {
            let key: Key = (
                r.get(0).map_err(map_err)?,
                r.get(1).map_err(map_err)?,
                r.get(2).map_err(map_err)?,
                r.get(3).map_err(map_err)?,
                r.get(4).map_err(map_err)?,
            );
            let cell = decode(
                r.get_ref(5)
                    .map_err(map_err)?
                    .as_blob()
                    .map_err(|e| StoreError::Invalid(e.to_string()))?,
            )?;
            merged.entry(key).or_default().merge(&cell);
            n += 1;
        }
    }
    {
        let mut get = tx
            .prepare_cached(
                "SELECT cell FROM perf_sketches WHERE trace = ?1 AND dim = ?2 AND day = ?3 AND emulator = ?4 AND value = ?5",
            )
            .map_err(map_err)?;
        let mut put = tx
            .prepare_cached(
                "INSERT INTO perf_sketches (trace, dim, day, emulator, value, cell) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (trace, dim, day, emulator, value) DO UPDATE SET cell = excluded.cell",
            )
            .map_err(map_err)?;
        for ((trace, dim, day, emulator, value), mut cell) in merged {
            let old: Option<Vec<u8>> = get
                .query_row(params![trace, dim, day, emulator, value], |r| r.get(0))
                .optional()
                .map_err(map_err)?;
            if let Some(old) = old {
                cell.merge(&decode(&old)?);
            }
            put.execute(params![trace, dim, day, emulator, value, cell.encode()])
                .map_err(map_err)?;
        }
    }
    tx.commit().map_err(map_err)?;
    Ok(n)
}

fn decode(bytes: &[u8]) -> Result<Cell> {
    Cell::decode(bytes).map_err(|e| StoreError::Invalid(e.to_string()))
}

fn trace_from(code: i16) -> Result<TraceName> {
    TraceName::from_code(code)
        .ok_or_else(|| StoreError::Invalid(format!("unknown trace code {code}")))
}

pub(crate) fn rows(conn: &Connection, sel: &PerfSelect) -> Result<Vec<PerfRow>> {
    let traces: Vec<TraceName> = match sel.trace {
        Some(t) => vec![t],
        None => TraceName::ALL.to_vec(),
    };
    let tx = conn.unchecked_transaction().map_err(map_err)?;
    let mut out = Vec::new();
    for table in ["perf_sketches", "perf_deltas"] {
        let mut stmt = tx
            .prepare_cached(&format!(
                "SELECT day, value, cell FROM {table} WHERE trace = ?1 AND dim = ?2 AND day BETWEEN ?3 AND ?4 \
                 AND (?5 OR emulator = 0)"
            ))
            .map_err(map_err)?;
        for trace in &traces {
            let mut rows = stmt
                .query(params![
                    trace.code(),
                    sel.dim.code(),
                    day_num(sel.from),
                    day_num(sel.to),
                    sel.include_emulators
                ])
                .map_err(map_err)?;
            while let Some(r) = rows.next().map_err(map_err)? {
                let blob = r
                    .get_ref(2)
                    .map_err(map_err)?
                    .as_blob()
                    .map_err(|e| StoreError::Invalid(e.to_string()))?;
                out.push(PerfRow {
                    trace: *trace,
                    day: day_from(r.get(0).map_err(map_err)?),
                    value: r.get(1).map_err(map_err)?,
                    cell: decode(blob)?,
                });
            }
        }
    }
    tx.finish().map_err(map_err)?;
    Ok(out)
}

pub(crate) fn trace_events(conn: &Connection, limit: u32) -> Result<Vec<StoredTrace>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT e.ts, e.trace, e.dur, c.device_hash, c.info FROM trace_events e \
             JOIN perf_contexts c ON c.id = e.context ORDER BY e.rowid DESC LIMIT ?1",
        )
        .map_err(map_err)?;
    let rows = stmt
        .query_map([limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i16>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, String>(4)?,
            ))
        })
        .map_err(map_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(map_err)?;
    rows.into_iter()
        .map(|(ts_us, trace, dur_us, hash, info)| {
            let info: DeviceInfo =
                serde_json::from_str(&info).map_err(|e| StoreError::Invalid(e.to_string()))?;
            Ok(StoredTrace {
                ts_us,
                trace: trace_from(trace)?,
                dur_us,
                context: PerfContext::new(info, hash),
            })
        })
        .collect()
}

fn key_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, i64, Option<i64>)> {
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

pub(crate) fn create_api_key(
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

pub(crate) fn api_keys(conn: &Connection) -> Result<Vec<ApiKeyInfo>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT name, prefix, created_at, revoked_at FROM api_keys ORDER BY created_at, name",
        )
        .map_err(map_err)?;
    let rows = stmt
        .query_map([], key_from_row)
        .map_err(map_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(map_err)?;
    rows.into_iter().map(finish_key).collect()
}

pub(crate) fn revoke_api_key(conn: &Connection, name: &str, at: i64) -> Result<ApiKeyInfo> {
    conn.execute(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?2) WHERE name = ?1",
        params![name, at],
    )
    .map_err(map_err)?;
    let row = conn
        .query_row(
            "SELECT name, prefix, created_at, revoked_at FROM api_keys WHERE name = ?1",
            [name],
            key_from_row,
        )
        .optional()
        .map_err(map_err)?
        .ok_or_else(|| StoreError::NotFound(format!("no api key named {name:?}")))?;
    finish_key(row)
}

pub(crate) fn api_key_valid(conn: &Connection, hash: &str) -> Result<bool> {
    conn.query_row(
        "SELECT 1 FROM api_keys WHERE key_hash = ?1 AND revoked_at IS NULL",
        [hash],
        |_| Ok(()),
    )
    .optional()
    .map(|o| o.is_some())
    .map_err(map_err)
}

pub(crate) fn secret(conn: &Connection, name: &str, candidate: &[u8]) -> Result<Vec<u8>> {
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
