//! `error_cells`: the servers of `server_latest` that sent error events, counted per (day of their
//! latest check, its version, test install, day of their last error event). Release health reads
//! its erring servers here — a few hundred cells — instead of joining `error_days` (one row per
//! erring server and day) with `server_latest` (one row per server).
//!
//! `server_latest.last_error_day` holds each server's newest day in `error_days`; whoever changes
//! it or the row's (day, version, unit_tests) moves the server between cells in the same
//! transaction:
//! * the check writer ([`crate::security`]), when a server's latest check changes, and when it
//!   inserts a new server (its last error day read from `error_days`);
//! * the event writer ([`mark_erring`]), when a server sends errors on a newer day;
//! * forget, and retention (expired latest checks leave with their cells; expired error days
//!   reset `last_error_day`).
//!
//! The one race rows alone cannot close: a server's first check inserted while an event writer
//! that recorded its first error day has not committed (neither statement sees the other's row).
//! Both writers take [`BUCKETS`] transaction advisory locks over the servers not yet in
//! `server_latest` before they look, so one of them always sees the other's committed row.

use beacon_store::security::ServerSnapshot;
use chrono::NaiveDate;
use std::collections::BTreeMap;

/// Advisory lock class of the new-server buckets (`pg_advisory_xact_lock(class, bucket)`).
const LOCK_CLASS: i32 = 0x6265_6163;
/// Server ids hash into this many lock buckets: few locks per transaction, whatever its size.
pub(crate) const BUCKETS: i32 = 64;

/// A key of `error_cells`: latest check's day, version, test install; last error day.
type Key = (NaiveDate, String, bool, NaiveDate);

/// Changes to `error_cells`, applied in key order (one lock order for every collector).
#[derive(Debug, Default)]
pub(crate) struct ErrorCellMoves(BTreeMap<Key, i64>);

impl ErrorCellMoves {
    fn add(&mut self, s: &ServerSnapshot, last_error: NaiveDate, n: i64) {
        *self
            .0
            .entry((s.day, s.version.clone(), s.unit_tests, last_error))
            .or_default() += n;
    }

    /// A server that erred on `last_error` (if ever) entered `server_latest` as `s`.
    pub(crate) fn inserted(&mut self, s: &ServerSnapshot, last_error: Option<NaiveDate>) {
        if let Some(d) = last_error {
            self.add(s, d, 1);
        }
    }

    /// A server's latest check went from `old` to `new`; its last error day stays.
    pub(crate) fn moved(
        &mut self,
        old: &ServerSnapshot,
        new: &ServerSnapshot,
        last_error: Option<NaiveDate>,
    ) {
        if let Some(d) = last_error {
            self.add(old, d, -1);
            self.add(new, d, 1);
        }
    }

    /// A server left `server_latest`.
    pub(crate) fn removed(&mut self, s: &ServerSnapshot, last_error: Option<NaiveDate>) {
        if let Some(d) = last_error {
            self.add(s, d, -1);
        }
    }
}

/// Applies the moves; cells left with no server go.
pub(crate) async fn apply(
    tx: &tokio_postgres::Transaction<'_>,
    moves: &ErrorCellMoves,
) -> Result<(), tokio_postgres::Error> {
    let changes: Vec<(&Key, &i64)> = moves.0.iter().filter(|(_, n)| **n != 0).collect();
    if changes.is_empty() {
        return Ok(());
    }
    let day: Vec<NaiveDate> = changes.iter().map(|(k, _)| k.0).collect();
    let version: Vec<&str> = changes.iter().map(|(k, _)| k.1.as_str()).collect();
    let ut: Vec<bool> = changes.iter().map(|(k, _)| k.2).collect();
    let led: Vec<NaiveDate> = changes.iter().map(|(k, _)| k.3).collect();
    let n: Vec<i64> = changes.iter().map(|(_, n)| **n).collect();
    tx.execute(
        "INSERT INTO error_cells AS t (day, version, unit_tests, last_error_day, servers) \
         SELECT * FROM unnest($1::date[], $2::text[], $3::bool[], $4::date[], $5::int8[]) \
         ON CONFLICT (day, version, unit_tests, last_error_day) \
         DO UPDATE SET servers = t.servers + excluded.servers",
        &[&day, &version, &ut, &led, &n],
    )
    .await?;
    if n.iter().any(|n| *n < 0) {
        delete_empty(tx, &day, &version, &ut, &led).await?;
    }
    Ok(())
}

async fn delete_empty(
    tx: &tokio_postgres::Transaction<'_>,
    day: &[NaiveDate],
    version: &[&str],
    ut: &[bool],
    led: &[NaiveDate],
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "DELETE FROM error_cells t USING unnest($1::date[], $2::text[], $3::bool[], $4::date[]) \
         AS k (day, version, unit_tests, last_error_day) WHERE t.day = k.day \
         AND t.version = k.version AND t.unit_tests = k.unit_tests \
         AND t.last_error_day = k.last_error_day AND t.servers <= 0",
        &[&day, &version, &ut, &led],
    )
    .await?;
    Ok(())
}

/// Takes the bucket locks of those of `ids` not in `server_latest` yet (see the module docs).
pub(crate) async fn lock_new_servers(
    tx: &tokio_postgres::Transaction<'_>,
    ids: &[&str],
) -> Result<(), tokio_postgres::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    tx.execute(
        "SELECT pg_advisory_xact_lock($2, b) FROM (SELECT DISTINCT hashtext(i) & ($3 - 1) AS b \
         FROM unnest($1::text[]) AS i WHERE NOT EXISTS \
         (SELECT 1 FROM server_latest l WHERE l.server_id = i) ORDER BY 1) AS buckets",
        &[&ids, &LOCK_CLASS, &BUCKETS],
    )
    .await?;
    Ok(())
}

/// Records that each server sent errors on its day (one entry per server, its newest day of the
/// batch): servers in `server_latest` whose last error day is older move to their new cell.
/// Servers that never checked in are left alone; their first check reads `error_days`.
pub(crate) async fn mark_erring(
    tx: &tokio_postgres::Transaction<'_>,
    servers: &BTreeMap<&str, NaiveDate>,
) -> Result<(), tokio_postgres::Error> {
    if servers.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = servers.keys().copied().collect();
    let days: Vec<NaiveDate> = servers.values().copied().collect();
    lock_new_servers(tx, &ids).await?;
    let emptied = tx
        .query(
            "WITH s AS (SELECT * FROM unnest($1::text[], $2::date[]) AS s (server_id, d)), \
             old AS (SELECT l.server_id, l.day, l.version, l.unit_tests, l.last_error_day AS was, \
               s.d FROM server_latest l JOIN s ON l.server_id = s.server_id \
               WHERE l.last_error_day IS NULL OR l.last_error_day < s.d \
               ORDER BY l.server_id FOR UPDATE OF l), \
             upd AS (UPDATE server_latest l SET last_error_day = o.d FROM old o \
               WHERE l.server_id = o.server_id), \
             moves AS (SELECT day, version, unit_tests, was AS led, -1 AS n FROM old \
               WHERE was IS NOT NULL UNION ALL SELECT day, version, unit_tests, d, 1 FROM old), \
             agg AS (SELECT day, version, unit_tests, led, sum(n)::int8 FROM moves \
               GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4) \
             INSERT INTO error_cells AS t (day, version, unit_tests, last_error_day, servers) \
             SELECT * FROM agg ON CONFLICT (day, version, unit_tests, last_error_day) \
             DO UPDATE SET servers = t.servers + excluded.servers \
             RETURNING t.day, t.version, t.unit_tests, t.last_error_day, t.servers",
            &[&ids, &days],
        )
        .await?;
    let emptied: Vec<_> = emptied.iter().filter(|r| r.get::<_, i64>(4) <= 0).collect();
    if !emptied.is_empty() {
        let day: Vec<NaiveDate> = emptied.iter().map(|r| r.get(0)).collect();
        let version: Vec<&str> = emptied.iter().map(|r| r.get(1)).collect();
        let ut: Vec<bool> = emptied.iter().map(|r| r.get(2)).collect();
        let led: Vec<NaiveDate> = emptied.iter().map(|r| r.get(3)).collect();
        delete_empty(tx, &day, &version, &ut, &led).await?;
    }
    Ok(())
}
