//! The mobile channel on SQLite: trace events, their sketch rows, and compaction.

use crate::{SqliteStore, day_from, day_num, map_err, ms, run};
use beacon_store::mobile::sketch::Cell;
use beacon_store::mobile::{
    CellAccumulator, CellKey, PerfContext, PerfRow, PerfSelect, StoredTrace, TraceBatch,
};
use beacon_store::{Result, StoreError};
use beacon_wire::mobile::{DeviceInfo, TraceName, TraceRecord};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::collections::HashMap;
use std::sync::Mutex;

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

/// Sketch cells of committed trace events not yet folded into `perf_sketches`.
///
/// SQLite has one writer, so `trace_events` rowids grow with commits: the cells of every event up to
/// `max_rowid` are either in `perf_sketches` (up to the stored watermark) or here. Folding them in
/// every few seconds, instead of writing per transaction, keeps the write path at one raw row per
/// event; a crash loses only this memory, and [`recover`] rebuilds it from `trace_events`.
#[derive(Default)]
pub(crate) struct Pending {
    cells: CellAccumulator,
    max_rowid: i64,
    events: u64,
}

/// Pending events past which a write folds them in at once (bounds the memory they hold).
const FOLD_EVENTS: u64 = 2_000_000;

impl Pending {
    /// Takes in the batches of a committed transaction whose newest event has `max_rowid`.
    pub(crate) fn absorb(&mut self, batches: &[&TraceBatch], max_rowid: i64) {
        for b in batches {
            self.cells.add(b);
            self.events += b.events.len() as u64;
        }
        self.max_rowid = self.max_rowid.max(max_rowid);
    }

    pub(crate) fn due(&self) -> bool {
        self.events >= FOLD_EVENTS
    }
}

/// Stores the batches' contexts and raw events; returns the newest event's rowid, for
/// [`Pending::absorb`] once the transaction commits.
pub(crate) fn write_traces(tx: &Transaction<'_>, batches: &[&TraceBatch]) -> Result<Option<i64>> {
    if batches.is_empty() {
        return Ok(None);
    }
    {
        let mut ctx = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO perf_contexts (id, device_hash, info, first_seen) VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(map_err)?;
        for b in batches {
            let info = serde_json::to_string(&b.context.info).expect("device info serialises");
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
    Ok(Some(tx.last_insert_rowid()))
}

type Key = (i16, i16, i64, bool, String);

fn watermark(tx: &Transaction<'_>) -> Result<i64> {
    Ok(tx
        .query_row(
            "SELECT value FROM meta WHERE key = 'perf_watermark'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(map_err)?
        .unwrap_or(0))
}

/// Merges cells into their `perf_sketches` rows and moves the watermark, in `tx`.
fn fold_into<'a>(
    tx: &Transaction<'_>,
    cells: impl Iterator<Item = (CellKey, &'a Cell)>,
    max_rowid: i64,
) -> Result<()> {
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
    for (k, cell) in cells {
        let mut cell = cell.clone();
        let key: Key = (
            k.trace.code(),
            k.dim.code(),
            day_num(k.day),
            k.emulator,
            k.value,
        );
        let old: Option<Vec<u8>> = get
            .query_row(params![key.0, key.1, key.2, key.3, key.4], |r| r.get(0))
            .optional()
            .map_err(map_err)?;
        if let Some(old) = old {
            cell.merge(&decode(&old)?);
        }
        put.execute(params![key.0, key.1, key.2, key.3, key.4, cell.encode()])
            .map_err(map_err)?;
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('perf_watermark', ?1) \
         ON CONFLICT (key) DO UPDATE SET value = max(meta.value, excluded.value)",
        [max_rowid],
    )
    .map_err(map_err)?;
    Ok(())
}

/// Folds the pending cells into `perf_sketches` in one transaction; returns the events folded. The
/// lock is held throughout, so a report never sees them both in the table and in memory.
pub(crate) fn fold_pending(conn: &mut Connection, pending: &Mutex<Pending>) -> Result<u64> {
    let mut p = pending.lock().map_err(|_| crate::poisoned())?;
    if p.events == 0 {
        return Ok(0);
    }
    let tx = conn.transaction().map_err(map_err)?;
    fold_into(&tx, p.cells.iter(), p.max_rowid)?;
    tx.commit().map_err(map_err)?;
    let n = p.events;
    *p = Pending::default();
    Ok(n)
}

/// After a crash: folds every trace event past the watermark (those whose cells were only in memory).
pub(crate) fn recover(conn: &mut Connection) -> Result<u64> {
    let tx = conn.transaction().map_err(map_err)?;
    let from = watermark(&tx)?;
    let mut batches: Vec<TraceBatch> = Vec::new();
    let mut max_rowid = from;
    {
        let mut stmt = tx
            .prepare(
                "SELECT e.rowid, e.ts, e.trace, e.dur, c.device_hash, c.info FROM trace_events e \
                 JOIN perf_contexts c ON c.id = e.context WHERE e.rowid > ?1 ORDER BY e.rowid",
            )
            .map_err(map_err)?;
        let mut rows = stmt.query([from]).map_err(map_err)?;
        let mut contexts: HashMap<(Option<String>, String), PerfContext> = HashMap::new();
        while let Some(r) = rows.next().map_err(map_err)? {
            max_rowid = r.get(0).map_err(map_err)?;
            let hash: Option<String> = r.get(4).map_err(map_err)?;
            let info: String = r.get(5).map_err(map_err)?;
            let context = match contexts.get(&(hash.clone(), info.clone())) {
                Some(c) => c.clone(),
                None => {
                    let parsed: DeviceInfo = serde_json::from_str(&info)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    let c = PerfContext::new(parsed, hash.clone());
                    contexts.insert((hash, info), c.clone());
                    c
                }
            };
            let record = TraceRecord {
                ts_us: r.get(1).map_err(map_err)?,
                name: trace_from(r.get(2).map_err(map_err)?)?,
                dur_us: r.get(3).map_err(map_err)?,
            };
            match batches.last_mut() {
                Some(b) if b.context.id == context.id => b.events.push(record),
                _ => batches.push(TraceBatch {
                    received_at: chrono::Utc::now(),
                    context,
                    events: vec![record],
                }),
            }
        }
    }
    let n: u64 = batches.iter().map(|b| b.events.len() as u64).sum();
    if n > 0 {
        let mut acc = CellAccumulator::default();
        batches.iter().for_each(|b| acc.add(b));
        fold_into(&tx, acc.iter(), max_rowid)?;
        tracing::info!(
            events = n,
            "folded trace events left unfolded by an unclean stop"
        );
    }
    tx.commit().map_err(map_err)?;
    Ok(n)
}

fn decode(bytes: &[u8]) -> Result<Cell> {
    Cell::decode(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn trace_from(code: i16) -> Result<TraceName> {
    TraceName::from_code(code)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown trace code {code}")))
}

/// The sketch rows of a report: the table's, plus the pending cells (read under one lock).
fn rows(conn: &Connection, pending: &Mutex<Pending>, sel: &PerfSelect) -> Result<Vec<PerfRow>> {
    let traces: Vec<TraceName> = match sel.trace {
        Some(t) => vec![t],
        None => TraceName::ALL.to_vec(),
    };
    let p = pending.lock().map_err(|_| crate::poisoned())?;
    let mut out = Vec::new();
    let mut stmt = conn
        .prepare_cached(
            "SELECT day, value, cell FROM perf_sketches WHERE trace = ?1 AND dim = ?2 AND day BETWEEN ?3 AND ?4 \
             AND (?5 OR emulator = 0)",
        )
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
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            out.push(PerfRow {
                trace: *trace,
                day: day_from(r.get(0).map_err(map_err)?),
                value: r.get(1).map_err(map_err)?,
                cell: decode(blob)?,
            });
        }
    }
    out.extend(
        p.cells
            .iter()
            .filter(|(k, _)| {
                traces.contains(&k.trace)
                    && k.dim == sel.dim
                    && (sel.from..=sel.to).contains(&k.day)
                    && (sel.include_emulators || !k.emulator)
            })
            .map(|(k, c)| PerfRow {
                trace: k.trace,
                day: k.day,
                value: k.value.clone(),
                cell: c.clone(),
            }),
    );
    Ok(out)
}

fn trace_events_on(conn: &Connection, limit: u32) -> Result<Vec<StoredTrace>> {
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
                serde_json::from_str(&info).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok(StoredTrace {
                ts_us,
                trace: trace_from(trace)?,
                dur_us,
                context: PerfContext::new(info, hash),
            })
        })
        .collect()
}

pub(crate) async fn perf_rows(s: &SqliteStore, select: &PerfSelect) -> Result<Vec<PerfRow>> {
    let (select, pending) = (select.clone(), s.pending.clone());
    run(&s.reader, move |c| rows(c, &pending, &select)).await
}

pub(crate) async fn compact_perf(s: &SqliteStore) -> Result<u64> {
    let pending = s.pending.clone();
    run(&s.writer, move |c| fold_pending(c, &pending)).await
}

pub(crate) async fn count_trace_events(s: &SqliteStore) -> Result<u64> {
    run(&s.reader, |c| {
        c.query_row("SELECT count(*) FROM trace_events", [], |r| {
            r.get::<_, i64>(0)
        })
        .map(|n| n as u64)
        .map_err(map_err)
    })
    .await
}

pub(crate) async fn trace_events(s: &SqliteStore, limit: u32) -> Result<Vec<StoredTrace>> {
    run(&s.reader, move |c| trace_events_on(c, limit)).await
}
