//! Deletion requests on PostgreSQL: a server's checks and error events, a device's raw trace events,
//! and the deletion log. After the deleting transaction commits, the affected tables are vacuumed so
//! the dead row versions are cleared from their pages (a plain `VACUUM`: no table lock). WAL segments
//! not yet recycled, base backups and `pg_dump` files taken before still hold the id.

use crate::{PgStore, map_err};
use beacon_store::Result;
use beacon_store::security::rollup::{CellMoves, DayContribution, RollupDelta};
use beacon_wire::admin::ForgetRecord;
use chrono::NaiveDate;

const LOG_INSERT: &str = "INSERT INTO forget_log (at, by, channel, id_hash, checks, events, trace_events, dead_letters) \
                          VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

fn counts(r: &ForgetRecord) -> [i64; 4] {
    [r.checks, r.events, r.trace_events, r.dead_letters]
        .map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

async fn vacuum(s: &PgStore, tables: &str) {
    let result = match s.client().await {
        Ok(c) => c
            .batch_execute(&format!("VACUUM {tables}"))
            .await
            .map_err(map_err),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, tables, "vacuum after a deletion failed; autovacuum will clear the rows");
    }
}

/// Removes the dead letters whose payload contains `id` and logs the deletion, in `tx`; returns how
/// many dead letters went.
async fn finish(
    tx: &tokio_postgres::Transaction<'_>,
    id: &str,
    record: &ForgetRecord,
) -> Result<u64> {
    let letters = tx
        .execute(
            "DELETE FROM dead_letters WHERE strpos(payload, $1) > 0",
            &[&id],
        )
        .await
        .map_err(map_err)?;
    let logged = ForgetRecord {
        dead_letters: letters,
        ..record.clone()
    };
    let [checks, events, traces, letters_n] = counts(&logged);
    tx.execute(
        LOG_INSERT,
        &[
            &logged.at,
            &logged.by,
            &logged.channel,
            &logged.id_hash,
            &checks,
            &events,
            &traces,
            &letters_n,
        ],
    )
    .await
    .map_err(map_err)?;
    Ok(letters)
}

pub(crate) async fn forget_server(
    s: &PgStore,
    server_id: &str,
    mut record: ForgetRecord,
) -> Result<ForgetRecord> {
    let mut client = s.client().await?;
    let tx = client.transaction().await.map_err(map_err)?;
    let gone = tx
        .query(
            "WITH gone AS (DELETE FROM events WHERE server_id = $1 RETURNING issue_id, \
               (received_at AT TIME ZONE 'UTC')::date AS day, coalesce(release, '') AS release, \
               coalesce(environment, '') AS environment) \
             SELECT issue_id, day, release, environment, count(*)::int8 FROM gone GROUP BY 1, 2, 3, 4",
            &[&server_id],
        )
        .await
        .map_err(map_err)?;
    let mut per_issue: std::collections::HashMap<i64, i64> = Default::default();
    for row in &gone {
        let (issue, day, release, environment, n): (i64, NaiveDate, String, String, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        *per_issue.entry(issue).or_default() += n;
        record.events += n as u64;
        tx.execute(
            "UPDATE issue_counts SET count = count - $5 \
             WHERE issue_id = $1 AND day = $2 AND release = $3 AND environment = $4",
            &[&issue, &day, &release, &environment, &n],
        )
        .await
        .map_err(map_err)?;
    }
    tx.execute("DELETE FROM issue_counts WHERE count <= 0", &[])
        .await
        .map_err(map_err)?;
    for (issue, n) in &per_issue {
        let left: i64 = tx
            .query_one(
                "UPDATE issues SET count = count - $2 WHERE id = $1 RETURNING count",
                &[issue, n],
            )
            .await
            .map_err(map_err)?
            .get(0);
        // An issue whose every event was this server's goes with them.
        if left <= 0 {
            for sql in [
                "DELETE FROM issue_counts WHERE issue_id = $1",
                "DELETE FROM issue_servers WHERE issue_id = $1",
                "DELETE FROM issues WHERE id = $1",
            ] {
                tx.execute(sql, &[issue]).await.map_err(map_err)?;
            }
        }
    }
    for sql in [
        "DELETE FROM issue_servers WHERE server_id = $1",
        "DELETE FROM error_days WHERE server_id = $1",
    ] {
        tx.execute(sql, &[&server_id]).await.map_err(map_err)?;
    }
    let removed = tx
        .query(
            "DELETE FROM checks WHERE server_id = $1 \
             RETURNING day, version, unit_tests, activated_users",
            &[&server_id],
        )
        .await
        .map_err(map_err)?;
    record.checks = removed.len() as u64;
    let mut delta = RollupDelta::default();
    for r in &removed {
        delta.removed(&DayContribution {
            day: r.get(0),
            version: r.get(1),
            unit_tests: r.get(2),
            activated_users: r.get(3),
        });
    }
    crate::security::apply_rollup(&tx, &delta)
        .await
        .map_err(map_err)?;
    let latest = tx
        .query_opt(
            &format!(
                "DELETE FROM server_latest WHERE server_id = $1 \
                 RETURNING first_day, {}, last_error_day",
                crate::security::SNAPSHOT_COLUMNS
            ),
            &[&server_id],
        )
        .await
        .map_err(map_err)?;
    if let Some(row) = latest {
        let mut cells = CellMoves::default();
        let snapshot = crate::security::snapshot_from(&row, 1);
        cells.removed((row.get(0), &snapshot));
        crate::security::apply_cells(&tx, &cells)
            .await
            .map_err(map_err)?;
        let mut error_cells = crate::errcells::ErrorCellMoves::default();
        error_cells.removed(&snapshot, row.get(12));
        crate::errcells::apply(&tx, &error_cells)
            .await
            .map_err(map_err)?;
    }
    record.dead_letters = finish(&tx, server_id, &record).await?;
    tx.commit().await.map_err(map_err)?;
    drop(client);
    vacuum(
        s,
        "events, issue_counts, issue_servers, error_days, issues, checks, check_days, server_latest, latest_cells, error_cells, first_days, dead_letters",
    )
    .await;
    Ok(record)
}

pub(crate) async fn forget_device(
    s: &PgStore,
    device_hash: &str,
    mut record: ForgetRecord,
) -> Result<ForgetRecord> {
    let mut client = s.client().await?;
    let tx = client.transaction().await.map_err(map_err)?;
    record.trace_events = tx
        .execute(
            "DELETE FROM trace_events WHERE context IN \
             (SELECT id FROM perf_contexts WHERE device_hash = $1)",
            &[&device_hash],
        )
        .await
        .map_err(map_err)?;
    tx.execute(
        "DELETE FROM perf_contexts WHERE device_hash = $1",
        &[&device_hash],
    )
    .await
    .map_err(map_err)?;
    record.dead_letters = finish(&tx, device_hash, &record).await?;
    tx.commit().await.map_err(map_err)?;
    drop(client);
    vacuum(s, "trace_events, perf_contexts, dead_letters").await;
    Ok(record)
}

pub(crate) async fn forget_log(s: &PgStore, limit: u32) -> Result<Vec<ForgetRecord>> {
    let rows = s
        .client()
        .await?
        .query(
            "SELECT at, by, channel, id_hash, checks, events, trace_events, dead_letters \
             FROM forget_log ORDER BY id DESC LIMIT $1",
            &[&i64::from(limit.max(1))],
        )
        .await
        .map_err(map_err)?;
    Ok(rows
        .iter()
        .map(|r| ForgetRecord {
            at: r.get(0),
            by: r.get(1),
            channel: r.get(2),
            id_hash: r.get(3),
            checks: r.get::<_, i64>(4) as u64,
            events: r.get::<_, i64>(5) as u64,
            trace_events: r.get::<_, i64>(6) as u64,
            dead_letters: r.get::<_, i64>(7) as u64,
        })
        .collect())
}
