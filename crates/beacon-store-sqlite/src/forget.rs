//! Deletion requests on SQLite: a server's checks and error events, a device's raw trace events, and
//! the deletion log.
//!
//! Deletions run with `PRAGMA secure_delete=ON` (freed cells are overwritten with zeros, in table and
//! index pages alike), and a `wal_checkpoint(TRUNCATE)` follows, so the old page images in the WAL go
//! too: the id cannot be read back from `beacon.db` or `beacon.db-wal` afterwards. Backups taken
//! before still hold it.

use crate::{SqliteStore, day_from, map_err, ms, run, time_from};
use beacon_store::Result;
use beacon_store::security::rollup::{CellMoves, DayContribution, RollupDelta};
use beacon_wire::admin::ForgetRecord;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;

/// Raw trace events scanned per transaction of a device deletion (the table has no index by
/// device): ingestion's group commits run between two of them.
const TRACE_SCAN_ROWS: i64 = 250_000;

fn day_from_ms(received_ms: i64) -> i64 {
    received_ms.div_euclid(86_400_000)
}

/// Runs `f` with `secure_delete` on, then checkpoints the WAL away (a few tries while readers
/// finish with older snapshots).
fn securely<T>(c: &mut Connection, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
    c.execute_batch("PRAGMA secure_delete=ON")
        .map_err(map_err)?;
    let out = f(c);
    let off = c.execute_batch("PRAGMA secure_delete=OFF").map_err(map_err);
    out.and_then(|v| off.map(|()| v))
}

fn truncate_wal(c: &Connection) -> Result<()> {
    for _ in 0..50 {
        let busy: i64 = c
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .map_err(map_err)?;
        if busy == 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    tracing::warn!(
        "the WAL was not truncated after a deletion: readers held it; the next checkpoint will"
    );
    Ok(())
}

fn log(c: &Connection, r: &ForgetRecord) -> Result<()> {
    c.execute(
        "INSERT INTO forget_log (at, by, channel, id_hash, checks, events, trace_events, dead_letters) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            ms(r.at),
            r.by,
            r.channel,
            r.id_hash,
            r.checks as i64,
            r.events as i64,
            r.trace_events as i64,
            r.dead_letters as i64
        ],
    )
    .map_err(map_err)?;
    Ok(())
}

fn dead_letters_naming(c: &Connection, id: &str) -> Result<u64> {
    c.execute(
        "DELETE FROM dead_letters WHERE instr(payload, ?1) > 0",
        [id],
    )
    .map(|n| n as u64)
    .map_err(map_err)
}

pub(crate) async fn forget_server(
    s: &SqliteStore,
    server_id: &str,
    mut record: ForgetRecord,
) -> Result<ForgetRecord> {
    let id = server_id.to_string();
    run(&s.writer, move |c| {
        let record = securely(c, |c| {
            let tx = c.transaction().map_err(map_err)?;
            // Error events: counts per issue and per (issue, day, release, environment) to take off.
            let mut per_issue: HashMap<i64, i64> = HashMap::new();
            let mut per_cell: HashMap<(i64, i64, String, String), i64> = HashMap::new();
            {
                let mut stmt = tx
                    .prepare(
                        "SELECT issue_id, received_at, coalesce(release, ''), coalesce(environment, '') \
                         FROM events WHERE server_id = ?1",
                    )
                    .map_err(map_err)?;
                let rows = stmt
                    .query_map([&id], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get(2)?, r.get(3)?))
                    })
                    .map_err(map_err)?;
                for row in rows {
                    let (issue, received, release, environment): (i64, i64, String, String) =
                        row.map_err(map_err)?;
                    *per_issue.entry(issue).or_default() += 1;
                    *per_cell
                        .entry((issue, day_from_ms(received), release, environment))
                        .or_default() += 1;
                }
            }
            record.events = tx
                .execute("DELETE FROM events WHERE server_id = ?1", [&id])
                .map_err(map_err)? as u64;
            for ((issue, day, release, environment), n) in &per_cell {
                tx.execute(
                    "UPDATE issue_counts SET count = count - ?5 \
                     WHERE issue_id = ?1 AND day = ?2 AND release = ?3 AND environment = ?4",
                    params![issue, day, release, environment, n],
                )
                .map_err(map_err)?;
            }
            tx.execute("DELETE FROM issue_counts WHERE count <= 0", [])
                .map_err(map_err)?;
            for (issue, n) in &per_issue {
                tx.execute(
                    "UPDATE issues SET count = count - ?2 WHERE id = ?1",
                    params![issue, n],
                )
                .map_err(map_err)?;
                // An issue whose every event was this server's goes with them.
                let left: i64 = tx
                    .query_row("SELECT count FROM issues WHERE id = ?1", [issue], |r| r.get(0))
                    .map_err(map_err)?;
                if left <= 0 {
                    tx.execute("DELETE FROM issue_counts WHERE issue_id = ?1", [issue])
                        .map_err(map_err)?;
                    tx.execute("DELETE FROM issue_servers WHERE issue_id = ?1", [issue])
                        .map_err(map_err)?;
                    tx.execute("DELETE FROM issues WHERE id = ?1", [issue])
                        .map_err(map_err)?;
                }
            }
            tx.execute("DELETE FROM issue_servers WHERE server_id = ?1", [&id])
                .map_err(map_err)?;
            let span: Option<(i64, i64)> = tx
                .query_row(
                    "SELECT first_day, day FROM server_latest WHERE server_id = ?1",
                    [&id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(map_err)?;
            // Checks are keyed by (day, server_id): one point delete per day of the server's life
            // (`server_latest` knows its first and last day); without it, a scan.
            let mut delta = RollupDelta::default();
            let mut removed = |rows: &mut rusqlite::Rows<'_>| -> Result<u64> {
                let mut n = 0;
                while let Some(r) = rows.next().map_err(map_err)? {
                    delta.removed(&DayContribution {
                        day: day_from(r.get(0).map_err(map_err)?),
                        version: r.get(1).map_err(map_err)?,
                        unit_tests: r.get(2).map_err(map_err)?,
                        activated_users: r.get(3).map_err(map_err)?,
                    });
                    n += 1;
                }
                Ok(n)
            };
            const RETURNING: &str = "RETURNING day, version, unit_tests, activated_users";
            let mut checks = 0u64;
            match span {
                Some((first, last)) => {
                    let mut del = tx
                        .prepare_cached(&format!(
                            "DELETE FROM checks WHERE day = ?1 AND server_id = ?2 {RETURNING}"
                        ))
                        .map_err(map_err)?;
                    for day in first..=last {
                        checks += removed(&mut del.query(params![day, &id]).map_err(map_err)?)?;
                    }
                }
                None => {
                    let mut del = tx
                        .prepare(&format!(
                            "DELETE FROM checks WHERE server_id = ?1 {RETURNING}"
                        ))
                        .map_err(map_err)?;
                    checks += removed(&mut del.query([&id]).map_err(map_err)?)?;
                }
            }
            record.checks = checks;
            crate::security::apply_rollup(&tx, &delta)?;
            let latest = tx
                .query_row(
                    &format!(
                        "DELETE FROM server_latest WHERE server_id = ?1 RETURNING first_day, {}",
                        crate::security::SNAPSHOT_COLUMNS
                    ),
                    [&id],
                    |r| Ok((day_from(r.get(0)?), crate::security::snapshot_from(r, 1)?)),
                )
                .optional()
                .map_err(map_err)?;
            if let Some((first, latest)) = latest {
                let mut cells = CellMoves::default();
                cells.removed((first, &latest));
                crate::security::apply_cells(&tx, &cells)?;
            }
            record.dead_letters = dead_letters_naming(&tx, &id)?;
            log(&tx, &record)?;
            tx.commit().map_err(map_err)?;
            Ok(record)
        })?;
        truncate_wal(c)?;
        Ok(record)
    })
    .await
}

pub(crate) async fn forget_device(
    s: &SqliteStore,
    device_hash: &str,
    mut record: ForgetRecord,
) -> Result<ForgetRecord> {
    let hash = device_hash.to_string();
    let (contexts, max_rowid) = {
        let hash = hash.clone();
        run(&s.writer, move |c| {
            let mut stmt = c
                .prepare("SELECT id FROM perf_contexts WHERE device_hash = ?1")
                .map_err(map_err)?;
            let ids = stmt
                .query_map([&hash], |r| r.get::<_, i64>(0))
                .map_err(map_err)?
                .collect::<rusqlite::Result<Vec<i64>>>()
                .map_err(map_err)?;
            let max: i64 = c
                .query_row(
                    "SELECT coalesce(max(rowid), 0) FROM trace_events",
                    [],
                    |r| r.get(0),
                )
                .map_err(map_err)?;
            Ok((ids, max))
        })
        .await?
    };
    let ids = serde_json::to_string(&contexts).expect("ids as JSON");
    // Events committed after this point carry a context id from the list too: the last pass goes
    // to the end of the table, whatever it is then.
    let mut from = 0i64;
    while !contexts.is_empty() {
        let ids = ids.clone();
        let to = from + TRACE_SCAN_ROWS;
        let last = to >= max_rowid;
        let n = run(&s.writer, move |c| {
            securely(c, |c| {
                let sql = if last {
                    "DELETE FROM trace_events WHERE rowid > ?2 \
                     AND context IN (SELECT value FROM json_each(?1))"
                } else {
                    "DELETE FROM trace_events WHERE rowid > ?2 AND rowid <= ?3 \
                     AND context IN (SELECT value FROM json_each(?1))"
                };
                let n = if last {
                    c.execute(sql, params![ids, from])
                } else {
                    c.execute(sql, params![ids, from, to])
                };
                n.map(|n| n as u64).map_err(map_err)
            })
        })
        .await?;
        record.trace_events += n;
        if last {
            break;
        }
        from = to;
    }
    run(&s.writer, move |c| {
        let record = securely(c, |c| {
            let tx = c.transaction().map_err(map_err)?;
            tx.execute("DELETE FROM perf_contexts WHERE device_hash = ?1", [&hash])
                .map_err(map_err)?;
            record.dead_letters = dead_letters_naming(&tx, &hash)?;
            log(&tx, &record)?;
            tx.commit().map_err(map_err)?;
            Ok(record)
        })?;
        truncate_wal(c)?;
        Ok(record)
    })
    .await
}

pub(crate) async fn forget_log(s: &SqliteStore, limit: u32) -> Result<Vec<ForgetRecord>> {
    run(&s.reader, move |c| {
        let mut stmt = c
            .prepare_cached(
                "SELECT at, by, channel, id_hash, checks, events, trace_events, dead_letters \
                 FROM forget_log ORDER BY id DESC LIMIT ?1",
            )
            .map_err(map_err)?;
        let rows = stmt
            .query_map([i64::from(limit.max(1))], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    ForgetRecord {
                        at: chrono::DateTime::UNIX_EPOCH,
                        by: r.get(1)?,
                        channel: r.get(2)?,
                        id_hash: r.get(3)?,
                        checks: r.get::<_, i64>(4)? as u64,
                        events: r.get::<_, i64>(5)? as u64,
                        trace_events: r.get::<_, i64>(6)? as u64,
                        dead_letters: r.get::<_, i64>(7)? as u64,
                    },
                ))
            })
            .map_err(map_err)?;
        rows.map(|r| {
            let (at, mut rec) = r.map_err(map_err)?;
            rec.at = time_from(at)?;
            Ok(rec)
        })
        .collect()
    })
    .await
}
