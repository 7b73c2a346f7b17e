//! Housekeeping PostgreSQL's autovacuum would do, for servers where it is off.
//!
//! The report rollups (`check_days`, `server_latest`, `latest_cells`, `first_days`), issues and
//! their counts, and the sketch rows and deltas are updated in place with every check, event and
//! compaction: each update leaves a dead row version behind. With `autovacuum` on (PostgreSQL's
//! default) the server vacuums and analyses them itself and [`run`] does nothing. With it off, the
//! dead rows pile up (about 730,000 behind 86,000 live rows of `server_latest` after nine days of
//! 80,000 servers) and every report that reads them slows down, and the statistics the planner
//! chooses its plans by go stale; so the collector does it, one collector at a time (a session
//! advisory lock).

use crate::{PgStore, map_err};
use beacon_store::Result;

/// `pg_try_advisory_lock` key of maintenance: one collector at a time.
const MAINTAIN_LOCK: i64 = 0x0062_6561_636f_6e03;

/// The tables updated in place: small (their size follows distinct cells, issues and servers,
/// not the raw rows), so a vacuum of them takes milliseconds to a second.
pub(crate) const UPDATED_IN_PLACE: &str = "check_days, server_latest, latest_cells, error_cells, first_days, \
     error_days, issues, issue_counts, issue_servers, perf_sketches, perf_deltas, perf_contexts";

/// Vacuums and analyses [`UPDATED_IN_PLACE`] when `autovacuum` is off and no other collector is
/// doing it; returns whether it ran.
pub(crate) async fn run(s: &PgStore) -> Result<bool> {
    let client = s.client().await?;
    let autovacuum: String = client
        .query_one("SELECT current_setting('autovacuum')", &[])
        .await
        .map_err(map_err)?
        .get(0);
    if autovacuum == "on" {
        return Ok(false);
    }
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&MAINTAIN_LOCK])
        .await
        .map_err(map_err)?
        .get(0);
    if !locked {
        return Ok(false);
    }
    // VACUUM cannot run in a transaction: the simple protocol sends it alone.
    let result = client
        .batch_execute(&format!("VACUUM (ANALYZE) {UPDATED_IN_PLACE}"))
        .await
        .map_err(map_err);
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MAINTAIN_LOCK])
        .await;
    if result.is_err() || unlocked.is_err() {
        // The session may still hold the lock: close it rather than give it back to the pool.
        drop(deadpool_postgres::Object::take(client));
    }
    result.map(|_| true)
}
