//! Retention on SQLite: expired rows are removed in small transactions on the writer connection (a
//! group commit queued meanwhile runs between two of them), then the file is shrunk with
//! `PRAGMA incremental_vacuum` (the database is in `auto_vacuum=INCREMENTAL` mode, see
//! [`ensure_incremental_vacuum`]).
//!
//! How each channel finds its expired rows without an index on time:
//! * `checks` and `perf_sketches` are keyed by day: a range of their key;
//! * `events` and `trace_events` are rowid tables whose rowids grow with commits (one writer), so
//!   they are walked in rowid order, a chunk per transaction, from the oldest row. Error events are
//!   stamped with the time of receipt: the walk stops at the first chunk holding a row that has not
//!   expired. A trace event carries the device's timestamp, which may lie up to
//!   [`TRACE_TS_SPREAD_US`] from its receipt: the walk stops at the first chunk whose timestamps are
//!   all that far past the cutoff (nothing later can have expired). Trace events past the sketch
//!   watermark (`perf_watermark`, see `mobile.rs`) are never removed: their cells are not folded
//!   yet and a crash must find them;
//! * `dead_letters` by id, oldest first;
//! * issues whose `last_seen` is before the events' cutoff (all their events expired) go with
//!   their `issue_counts` and `issue_servers`.

use crate::{SqliteStore, day_from, day_num, map_err, run};
use beacon_store::Result;
use beacon_store::retention::{
    BATCH_ROWS, EVENT_BATCH_ROWS, RetentionChannel, RetentionOutcome, RetentionPolicy,
    RetentionRun, RetentionStatus, TRACE_TS_SPREAD_US, midnight, midnight_us,
};
use chrono::NaiveDate;
use rusqlite::{Connection, OptionalExtension, params};

/// Pages `PRAGMA incremental_vacuum` returns to the file system per transaction (8 MiB of 4 KiB pages).
const VACUUM_PAGES: i64 = 2_048;

/// The table of a channel (its indexes count towards its bytes).
fn table(channel: RetentionChannel) -> &'static str {
    match channel {
        RetentionChannel::Checks => "checks",
        RetentionChannel::Events => "events",
        RetentionChannel::TraceEvents => "trace_events",
        RetentionChannel::Sketches => "perf_sketches",
        RetentionChannel::DeadLetters => "dead_letters",
    }
}

/// Switches the database to `auto_vacuum=INCREMENTAL`, so that pages freed by retention can be
/// given back to the file system. A new database only needs the pragma; an existing one (made by
/// a release before retention) is rewritten once by `VACUUM`, which takes about as long as copying
/// the file and needs that much free disk. Runs at open, before any other connection exists.
pub(crate) fn ensure_incremental_vacuum(conn: &Connection) -> Result<()> {
    let mode = |c: &Connection| -> Result<i64> {
        c.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .map_err(map_err)
    };
    if mode(conn)? == 2 {
        return Ok(());
    }
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(map_err)?;
    conn.execute_batch("PRAGMA auto_vacuum=INCREMENTAL")
        .map_err(map_err)?;
    if mode(conn)? != 2 {
        if tables > 0 {
            tracing::info!(
                "rewriting the sqlite database once (VACUUM) to turn on incremental auto-vacuum, \
                 so that retention can shrink the file"
            );
        }
        conn.execute_batch("VACUUM").map_err(map_err)?;
    }
    Ok(())
}

pub(crate) async fn status(s: &SqliteStore) -> Result<Vec<RetentionStatus>> {
    run(&s.reader, |c| {
        RetentionChannel::ALL
            .iter()
            .map(|channel| channel_status(c, *channel))
            .collect()
    })
    .await
}

fn channel_status(c: &Connection, channel: RetentionChannel) -> Result<RetentionStatus> {
    let sql = match channel {
        RetentionChannel::Checks => "SELECT min(day), count(*) FROM checks",
        // Times of receipt in ms, timestamps in µs: made into days below.
        RetentionChannel::Events => "SELECT min(received_at), count(*) FROM events",
        RetentionChannel::TraceEvents => "SELECT min(ts), count(*) FROM trace_events",
        RetentionChannel::Sketches => "SELECT min(day), count(*) FROM perf_sketches",
        RetentionChannel::DeadLetters => "SELECT min(received_at), count(*) FROM dead_letters",
    };
    let (oldest, rows): (Option<i64>, i64) = c
        .query_row(sql, [], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(map_err)?;
    let oldest_day = oldest.map(|v| match channel {
        RetentionChannel::Checks | RetentionChannel::Sketches => day_from(v),
        RetentionChannel::Events | RetentionChannel::DeadLetters => {
            day_from(v.div_euclid(86_400_000))
        }
        RetentionChannel::TraceEvents => day_from(v.div_euclid(86_400_000_000)),
    });
    // dbstat (compiled into the bundled SQLite): the pages of the table and of its indexes.
    let bytes: i64 = c
        .query_row(
            "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE aggregate = TRUE AND name IN \
             (SELECT name FROM sqlite_schema WHERE tbl_name = ?1)",
            [table(channel)],
            |r| r.get(0),
        )
        .map_err(map_err)?;
    Ok(RetentionStatus {
        channel,
        retention_days: 0,
        oldest_day,
        rows: rows as u64,
        bytes: bytes.max(0) as u64,
    })
}

pub(crate) async fn apply(
    s: &SqliteStore,
    policy: &RetentionPolicy,
    today: NaiveDate,
    dry_run: bool,
) -> Result<RetentionRun> {
    let mut channels = Vec::new();
    let mut issues_removed = 0;
    for (channel, cutoff) in policy.cutoffs(today) {
        let removed = match cutoff {
            None => 0,
            Some(cut) if dry_run => run(&s.reader, move |c| count_expired(c, channel, cut)).await?,
            Some(cut) => purge(s, channel, cut).await?,
        };
        if channel == RetentionChannel::Checks
            && let Some(cut) = cutoff
            && !dry_run
        {
            purge_check_rollups(s, cut).await?;
        }
        if channel == RetentionChannel::Events
            && let Some(cut) = cutoff
        {
            issues_removed = if dry_run {
                run(&s.reader, move |c| {
                    c.query_row(
                        "SELECT count(*) FROM issues WHERE last_seen < ?1",
                        [midnight(cut).timestamp_millis()],
                        |r| r.get::<_, i64>(0),
                    )
                    .map(|n| n as u64)
                    .map_err(map_err)
                })
                .await?
            } else {
                purge_issues(s, cut).await?
            };
        }
        channels.push(RetentionOutcome {
            channel,
            retention_days: policy.days(channel),
            cutoff,
            removed,
        });
    }
    if !dry_run && (issues_removed > 0 || channels.iter().any(|c| c.removed > 0)) {
        shrink(s).await?;
    }
    Ok(RetentionRun {
        dry_run,
        today,
        channels,
        issues_removed,
    })
}

/// Removes the report rollups of expired checks: the `check_days` rows of their days, and the
/// servers whose latest check expired (they have no check left). First days of the servers that stay
/// are kept: "new" in the growth report means first seen ever.
async fn purge_check_rollups(s: &SqliteStore, cut: NaiveDate) -> Result<()> {
    run(&s.writer, move |c| {
        let tx = c
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(map_err)?;
        tx.execute("DELETE FROM check_days WHERE day < ?1", [day_num(cut)])
            .map_err(map_err)?;
        tx.execute(
            "UPDATE first_days SET servers = servers - g.n FROM \
             (SELECT first_day, unit_tests, count(*) AS n FROM server_latest WHERE day < ?1 \
              GROUP BY first_day, unit_tests) g \
             WHERE first_days.day = g.first_day AND first_days.unit_tests = g.unit_tests",
            [day_num(cut)],
        )
        .map_err(map_err)?;
        tx.execute("DELETE FROM first_days WHERE servers <= 0", [])
            .map_err(map_err)?;
        tx.execute("DELETE FROM server_latest WHERE day < ?1", [day_num(cut)])
            .map_err(map_err)?;
        tx.execute("DELETE FROM latest_cells WHERE day < ?1", [day_num(cut)])
            .map_err(map_err)?;
        tx.commit().map_err(map_err)
    })
    .await
}

/// What one batch did: rows removed, and where the next batch starts (`None`: the channel is done).
struct Step {
    removed: u64,
    next: Option<i64>,
}

async fn purge(s: &SqliteStore, channel: RetentionChannel, cut: NaiveDate) -> Result<u64> {
    let mut from = 0i64;
    let mut total = 0;
    loop {
        let step = run(&s.writer, move |c| {
            // IMMEDIATE: the batch reads before it writes; a deferred transaction would fail at
            // once (not wait) if another connection wrote in between.
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(map_err)?;
            let step = batch(&tx, channel, cut, from)?;
            tx.commit().map_err(map_err)?;
            Ok(step)
        })
        .await?;
        total += step.removed;
        match step.next {
            Some(next) => from = next,
            None => return Ok(total),
        }
    }
}

/// Removes one batch of `channel`'s rows from before `cut`; `from` is the rowid (or id) the walk
/// reached.
fn batch(
    tx: &rusqlite::Transaction<'_>,
    channel: RetentionChannel,
    cut: NaiveDate,
    from: i64,
) -> Result<Step> {
    let limit = BATCH_ROWS as i64;
    let keyed = |sql: &str, bound: i64, limit: i64| -> Result<Step> {
        let n = tx.execute(sql, params![bound, limit]).map_err(map_err)? as u64;
        Ok(Step {
            removed: n,
            next: (n == limit as u64).then_some(0),
        })
    };
    match channel {
        RetentionChannel::Checks => keyed(
            "DELETE FROM checks WHERE (day, server_id) IN \
             (SELECT day, server_id FROM checks WHERE day < ?1 ORDER BY day LIMIT ?2)",
            day_num(cut),
            limit,
        ),
        RetentionChannel::Sketches => keyed(
            "DELETE FROM perf_sketches WHERE (trace, dim, day, emulator, value) IN \
             (SELECT trace, dim, day, emulator, value FROM perf_sketches WHERE day < ?1 LIMIT ?2)",
            day_num(cut),
            EVENT_BATCH_ROWS as i64,
        ),
        RetentionChannel::DeadLetters => keyed(
            "DELETE FROM dead_letters WHERE id IN \
             (SELECT id FROM dead_letters WHERE received_at < ?1 ORDER BY id LIMIT ?2)",
            midnight(cut).timestamp_millis(),
            EVENT_BATCH_ROWS as i64,
        ),
        RetentionChannel::Events => {
            let cut_ms = midnight(cut).timestamp_millis();
            let limit = EVENT_BATCH_ROWS as i64;
            // The next chunk in rowid order: its last rowid, its size, whether all of it expired.
            let (last, rows, all_expired): (Option<i64>, i64, Option<bool>) = tx
                .query_row(
                    "SELECT max(rowid), count(*), min(received_at < ?2) FROM \
                     (SELECT rowid, received_at FROM events WHERE rowid > ?1 ORDER BY rowid LIMIT ?3)",
                    params![from, cut_ms, limit],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .map_err(map_err)?;
            let Some(last) = last else {
                return Ok(Step {
                    removed: 0,
                    next: None,
                });
            };
            let n = tx
                .execute(
                    "DELETE FROM events WHERE rowid > ?1 AND rowid <= ?2 AND received_at < ?3",
                    params![from, last, cut_ms],
                )
                .map_err(map_err)? as u64;
            // Times of receipt grow with rowids: past a row that has not expired, none has.
            let more = rows == limit && all_expired == Some(true);
            Ok(Step {
                removed: n,
                next: more.then_some(last),
            })
        }
        RetentionChannel::TraceEvents => {
            let cut_us = midnight_us(cut);
            // Events past the watermark are not in the sketches yet: never removed.
            let watermark: i64 = tx
                .query_row(
                    "SELECT value FROM meta WHERE key = 'perf_watermark'",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .map_err(map_err)?
                .unwrap_or(0);
            let (last, rows, min_ts): (Option<i64>, i64, Option<i64>) = tx
                .query_row(
                    "SELECT max(rowid), count(*), min(ts) FROM \
                     (SELECT rowid, ts FROM trace_events WHERE rowid > ?1 AND rowid <= ?2 \
                      ORDER BY rowid LIMIT ?3)",
                    params![from, watermark, limit],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .map_err(map_err)?;
            let Some(last) = last else {
                return Ok(Step {
                    removed: 0,
                    next: None,
                });
            };
            let n = tx
                .execute(
                    "DELETE FROM trace_events WHERE rowid > ?1 AND rowid <= ?2 AND ts < ?3",
                    params![from, last, cut_us],
                )
                .map_err(map_err)? as u64;
            keep_rowids_growing(tx, watermark)?;
            let more = rows == limit
                && min_ts.is_some_and(|t| t < cut_us.saturating_add(TRACE_TS_SPREAD_US));
            Ok(Step {
                removed: n,
                next: more.then_some(last),
            })
        }
    }
}

/// SQLite gives a new row the largest rowid plus one: had the newest folded events been removed, new
/// events would get rowids at or below the watermark, and a crash would never fold them. So the
/// watermark comes down to the largest rowid left (every row up to it is folded; none lies between).
/// Rows past the watermark are never removed, so while any are pending this changes nothing.
fn keep_rowids_growing(tx: &rusqlite::Transaction<'_>, watermark: i64) -> Result<()> {
    let max: i64 = tx
        .query_row(
            "SELECT coalesce(max(rowid), 0) FROM trace_events",
            [],
            |r| r.get(0),
        )
        .map_err(map_err)?;
    if max < watermark {
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'perf_watermark'",
            [max],
        )
        .map_err(map_err)?;
    }
    Ok(())
}

/// Issues whose last event has expired, with their counts and servers, a batch per transaction.
async fn purge_issues(s: &SqliteStore, cut: NaiveDate) -> Result<u64> {
    let cut_ms = midnight(cut).timestamp_millis();
    let mut total = 0;
    loop {
        let n = run(&s.writer, move |c| {
            // IMMEDIATE: the batch reads before it writes; a deferred transaction would fail at
            // once (not wait) if another connection wrote in between.
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(map_err)?;
            let ids: Vec<i64> = tx
                .prepare_cached("SELECT id FROM issues WHERE last_seen < ?1 LIMIT ?2")
                .map_err(map_err)?
                .query_map(params![cut_ms, EVENT_BATCH_ROWS as i64], |r| r.get(0))
                .map_err(map_err)?
                .collect::<rusqlite::Result<_>>()
                .map_err(map_err)?;
            for id in &ids {
                for sql in [
                    "DELETE FROM issue_counts WHERE issue_id = ?1",
                    "DELETE FROM issue_servers WHERE issue_id = ?1",
                    "DELETE FROM issues WHERE id = ?1",
                ] {
                    tx.prepare_cached(sql)
                        .map_err(map_err)?
                        .execute([id])
                        .map_err(map_err)?;
                }
            }
            tx.commit().map_err(map_err)?;
            Ok(ids.len() as u64)
        })
        .await?;
        total += n;
        if n < EVENT_BATCH_ROWS as u64 {
            return Ok(total);
        }
    }
}

/// Rows of `channel` a purge with this cutoff would remove.
fn count_expired(c: &Connection, channel: RetentionChannel, cut: NaiveDate) -> Result<u64> {
    let (sql, bound) = match channel {
        RetentionChannel::Checks => ("SELECT count(*) FROM checks WHERE day < ?1", day_num(cut)),
        RetentionChannel::Sketches => (
            "SELECT count(*) FROM perf_sketches WHERE day < ?1",
            day_num(cut),
        ),
        RetentionChannel::Events => (
            "SELECT count(*) FROM events WHERE received_at < ?1",
            midnight(cut).timestamp_millis(),
        ),
        RetentionChannel::DeadLetters => (
            "SELECT count(*) FROM dead_letters WHERE received_at < ?1",
            midnight(cut).timestamp_millis(),
        ),
        RetentionChannel::TraceEvents => (
            "SELECT count(*) FROM trace_events WHERE ts < ?1 AND rowid <= \
             coalesce((SELECT value FROM meta WHERE key = 'perf_watermark'), 0)",
            midnight_us(cut),
        ),
    };
    c.query_row(sql, [bound], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
        .map_err(map_err)
}

/// Gives the pages freed by a purge back to the file system, a few MiB per transaction.
async fn shrink(s: &SqliteStore) -> Result<()> {
    let mut before = i64::MAX;
    loop {
        let free = run(&s.writer, |c| {
            let mode: i64 = c
                .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
                .map_err(map_err)?;
            if mode != 2 {
                return Ok(0);
            }
            c.execute_batch(&format!("PRAGMA incremental_vacuum({VACUUM_PAGES})"))
                .map_err(map_err)?;
            c.query_row("PRAGMA freelist_count", [], |r| r.get::<_, i64>(0))
                .map_err(map_err)
        })
        .await?;
        // Done, or no progress (another connection holds the pages): stop either way.
        if free == 0 || free >= before {
            return Ok(());
        }
        before = free;
    }
}
