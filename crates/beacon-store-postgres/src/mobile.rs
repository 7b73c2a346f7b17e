//! The mobile channel on PostgreSQL: trace events, their sketch deltas and rows, and compaction.

use crate::{PgStore, map_err};
use beacon_store::mobile::sketch::Cell;
use beacon_store::mobile::{PerfContext, PerfRow, PerfSelect, StoredTrace, TraceBatch, cells_of};
use beacon_store::{Result, StoreError};
use beacon_wire::mobile::{DeviceInfo, TraceName};
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::HashMap;
use tokio_postgres::{Client, Transaction};

/// `pg_try_advisory_xact_lock` key of compaction: one compactor at a time across collectors.
const COMPACT_LOCK: i64 = 0x0062_6561_636f_6e01;

/// Deltas taken per statement while compacting.
const COMPACT_CHUNK: i64 = 20_000;

/// Stores the batches' contexts, raw events and one sketch delta per key they touch.
pub(crate) async fn write_traces(
    tx: &Transaction<'_>,
    batches: &[&TraceBatch],
) -> std::result::Result<(), tokio_postgres::Error> {
    if batches.is_empty() {
        return Ok(());
    }
    // Contexts sorted by id, so concurrent batches take row locks in one order.
    let mut contexts: Vec<(&PerfContext, DateTime<Utc>)> = batches
        .iter()
        .map(|b| (&b.context, b.received_at))
        .collect();
    contexts.sort_by_key(|(c, _)| c.id);
    contexts.dedup_by_key(|(c, _)| c.id);
    let ids: Vec<i64> = contexts.iter().map(|(c, _)| c.id).collect();
    let hashes: Vec<Option<&str>> = contexts
        .iter()
        .map(|(c, _)| c.device_hash.as_deref())
        .collect();
    let infos: Vec<String> = contexts
        .iter()
        .map(|(c, _)| serde_json::to_string(&c.info).expect("device info serialises"))
        .collect();
    let seen: Vec<DateTime<Utc>> = contexts.iter().map(|(_, t)| *t).collect();
    tx.execute(
        "INSERT INTO perf_contexts (id, device_hash, info, first_seen) \
         SELECT i, h, f::jsonb, s FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[]) AS t(i, h, f, s) \
         ON CONFLICT (id) DO NOTHING",
        &[&ids, &hashes, &infos, &seen],
    )
    .await?;

    let n: usize = batches.iter().map(|b| b.events.len()).sum();
    let (mut ts, mut trace, mut dur, mut ctx) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for b in batches {
        for e in &b.events {
            ts.push(e.ts_us);
            trace.push(e.name.code());
            dur.push(e.dur_us);
            ctx.push(b.context.id);
        }
    }
    tx.execute(
        "INSERT INTO trace_events (ts, trace, dur, context) \
         SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::bigint[], $4::bigint[])",
        &[&ts, &trace, &dur, &ctx],
    )
    .await?;

    let cells = cells_of(batches.iter().copied());
    let (mut tr, mut dim, mut day, mut emu, mut value, mut cell) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for (k, c) in cells {
        tr.push(k.trace.code());
        dim.push(k.dim.code());
        day.push(k.day);
        emu.push(k.emulator);
        value.push(k.value);
        cell.push(c.encode());
    }
    tx.execute(
        "INSERT INTO perf_deltas (trace, dim, day, emulator, value, cell) \
         SELECT * FROM unnest($1::smallint[], $2::smallint[], $3::date[], $4::boolean[], $5::text[], $6::bytea[])",
        &[&tr, &dim, &day, &emu, &value, &cell],
    )
    .await?;
    Ok(())
}

type Key = (i16, i16, NaiveDate, bool, String);

fn decode(bytes: &[u8]) -> Result<Cell> {
    Cell::decode(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Merges every visible delta into its key's sketch row. `DELETE … RETURNING` takes exactly the
/// deltas it merges, so a delta committed meanwhile waits for the next round; the advisory lock keeps
/// a second compactor out (it returns 0 at once).
async fn compact(client: &mut deadpool_postgres::Client) -> Result<u64> {
    let tx = client.transaction().await.map_err(map_err)?;
    let locked: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&COMPACT_LOCK])
        .await
        .map_err(map_err)?
        .get(0);
    if !locked {
        return Ok(0);
    }
    // In chunks, so memory stays bounded by the number of keys, not of deltas.
    let mut merged: HashMap<Key, Cell> = HashMap::new();
    let mut n = 0u64;
    loop {
        let rows = tx
            .query(
                "DELETE FROM perf_deltas WHERE ctid IN (SELECT ctid FROM perf_deltas LIMIT $1) \
                 RETURNING trace, dim, day, emulator, value, cell",
                &[&COMPACT_CHUNK],
            )
            .await
            .map_err(map_err)?;
        let got = rows.len() as i64;
        n += got as u64;
        for r in rows {
            let key: Key = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
            merged.entry(key).or_default().merge(&decode(r.get(5))?);
        }
        if got < COMPACT_CHUNK {
            break;
        }
    }
    if n == 0 {
        return Ok(0);
    }
    let mut keys: Vec<Key> = merged.keys().cloned().collect();
    keys.sort();
    let (mut tr, mut dim, mut day, mut emu, mut value) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for k in &keys {
        tr.push(k.0);
        dim.push(k.1);
        day.push(k.2);
        emu.push(k.3);
        value.push(k.4.clone());
    }
    let old = tx
        .query(
            "SELECT s.trace, s.dim, s.day, s.emulator, s.value, s.cell FROM perf_sketches s \
             JOIN unnest($1::smallint[], $2::smallint[], $3::date[], $4::boolean[], $5::text[]) AS k(t, d, y, e, v) \
             ON s.trace = k.t AND s.dim = k.d AND s.day = k.y AND s.emulator = k.e AND s.value = k.v",
            &[&tr, &dim, &day, &emu, &value],
        )
        .await
        .map_err(map_err)?;
    for r in old {
        let key: Key = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        if let Some(c) = merged.get_mut(&key) {
            c.merge(&decode(r.get(5))?);
        }
    }
    let cells: Vec<Vec<u8>> = keys.iter().map(|k| merged[k].encode()).collect();
    tx.execute(
        "INSERT INTO perf_sketches (trace, dim, day, emulator, value, cell) \
         SELECT * FROM unnest($1::smallint[], $2::smallint[], $3::date[], $4::boolean[], $5::text[], $6::bytea[]) \
         ON CONFLICT (trace, dim, day, emulator, value) DO UPDATE SET cell = excluded.cell",
        &[&tr, &dim, &day, &emu, &value, &cells],
    )
    .await
    .map_err(map_err)?;
    tx.commit().await.map_err(map_err)?;
    Ok(n)
}

async fn rows(client: &Client, sel: &PerfSelect) -> Result<Vec<PerfRow>> {
    let traces: Vec<i16> = match sel.trace {
        Some(t) => vec![t.code()],
        None => TraceName::ALL.iter().map(|t| t.code()).collect(),
    };
    // One statement: compacted rows and pending deltas from one snapshot.
    let rows = client
        .query(
            "SELECT trace, day, value, cell FROM perf_sketches \
               WHERE trace = ANY($1) AND dim = $2 AND day BETWEEN $3 AND $4 AND ($5 OR NOT emulator) \
             UNION ALL \
             SELECT trace, day, value, cell FROM perf_deltas \
               WHERE trace = ANY($1) AND dim = $2 AND day BETWEEN $3 AND $4 AND ($5 OR NOT emulator)",
            &[&traces, &sel.dim.code(), &sel.from, &sel.to, &sel.include_emulators],
        )
        .await
        .map_err(map_err)?;
    rows.into_iter()
        .map(|r| {
            let code: i16 = r.get(0);
            Ok(PerfRow {
                trace: TraceName::from_code(code)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown trace code {code}")))?,
                day: r.get(1),
                value: r.get(2),
                cell: decode(r.get(3))?,
            })
        })
        .collect()
}

async fn trace_events_on(client: &Client, limit: u32) -> Result<Vec<StoredTrace>> {
    let rows = client
        .query(
            "SELECT e.ts, e.trace, e.dur, c.device_hash, c.info::text FROM trace_events e \
             JOIN perf_contexts c ON c.id = e.context ORDER BY e.ts DESC LIMIT $1",
            &[&i64::from(limit)],
        )
        .await
        .map_err(map_err)?;
    rows.into_iter()
        .map(|r| {
            let code: i16 = r.get(1);
            let info: DeviceInfo =
                serde_json::from_str(r.get(4)).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok(StoredTrace {
                ts_us: r.get(0),
                trace: TraceName::from_code(code)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown trace code {code}")))?,
                dur_us: r.get(2),
                context: PerfContext::new(info, r.get(3)),
            })
        })
        .collect()
}

pub(crate) async fn perf_rows(s: &PgStore, select: &PerfSelect) -> Result<Vec<PerfRow>> {
    rows(&**s.client().await?, select).await
}

pub(crate) async fn compact_perf(s: &PgStore) -> Result<u64> {
    compact(&mut s.client().await?).await
}

pub(crate) async fn count_trace_events(s: &PgStore) -> Result<u64> {
    let row = s
        .client()
        .await?
        .query_one("SELECT count(*) FROM trace_events", &[])
        .await
        .map_err(map_err)?;
    Ok(row.get::<_, i64>(0) as u64)
}

pub(crate) async fn trace_events(s: &PgStore, limit: u32) -> Result<Vec<StoredTrace>> {
    trace_events_on(&**s.client().await?, limit).await
}
