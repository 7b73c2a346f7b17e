//! The Sentry channel on SQLite: events, the issues they are grouped into, and projects.

use crate::keys::key_from_row;
use crate::{SqliteStore, day_from, day_num, map_err, ms, run, time_from};
use beacon_store::{EventRecord, IssueDayCount, Result, StoreError, WriteOutcome, check_issue_ids};
use beacon_wire::admin::{
    CountBy, IssueDetail, IssueFilter, IssueSort, IssueSummary, KeyInfo, ProjectInfo,
};
use beacon_wire::sentry::Level;
use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{OptionalExtension, params};

fn level_from(s: &str) -> rusqlite::Result<Level> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// Writes a batch's events: one insert per event (a repeat of a (project, event id) is ignored and
/// reported as a duplicate), then the issue bookkeeping once per issue, day, release and server of
/// the batch rather than once per event — error bursts are mostly one issue.
pub(crate) fn write_events(
    tx: &rusqlite::Transaction<'_>,
    recs: &[&EventRecord],
) -> Result<Vec<WriteOutcome>> {
    use std::collections::BTreeMap;
    let mut out = Vec::with_capacity(recs.len());
    // Inserted rows per (project, group hash), in order.
    let mut groups: BTreeMap<(i64, &str), Vec<(i64, &EventRecord)>> = BTreeMap::new();
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO events (project_id, event_id, issue_id, received_at, timestamp, level, \
                 release, environment, server_id, payload) VALUES (?1, ?2, 0, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .map_err(map_err)?;
        for r in recs {
            let e = &r.event;
            let n = insert
                .execute(params![
                    r.project_id,
                    e.event_id,
                    ms(r.received_at),
                    ms(e.timestamp),
                    e.level.as_str(),
                    e.release,
                    e.environment,
                    r.server_id,
                    r.event_json
                ])
                .map_err(map_err)?;
            if n == 0 {
                out.push(WriteOutcome::Duplicate);
            } else {
                out.push(WriteOutcome::Accepted);
                groups
                    .entry((r.project_id, r.group_hash.as_str()))
                    .or_default()
                    .push((tx.last_insert_rowid(), r));
            }
        }
    }
    for ((project_id, hash), events) in groups {
        let (first, last) = (
            events.first().expect("non-empty").1,
            events.last().expect("non-empty").1,
        );
        let issue_id: i64 = tx
            .prepare_cached(
                "INSERT INTO issues (project_id, group_hash, title, culprit, level, first_seen, last_seen, count) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (project_id, group_hash) DO UPDATE SET \
                 last_seen = max(last_seen, excluded.last_seen), first_seen = min(first_seen, excluded.first_seen), \
                 count = count + excluded.count, level = excluded.level RETURNING id",
            )
            .map_err(map_err)?
            .query_row(
                params![
                    project_id,
                    hash,
                    first.title,
                    first.culprit,
                    last.event.level.as_str(),
                    ms(first.received_at),
                    ms(last.received_at),
                    events.len() as i64
                ],
                |row| row.get(0),
            )
            .map_err(map_err)?;
        let mut set_issue = tx
            .prepare_cached("UPDATE events SET issue_id = ?1 WHERE rowid = ?2")
            .map_err(map_err)?;
        let mut counts: BTreeMap<(i64, &str, &str), i64> = BTreeMap::new();
        let mut servers: Vec<&str> = Vec::new();
        for (rowid, r) in &events {
            set_issue
                .execute(params![issue_id, rowid])
                .map_err(map_err)?;
            let e = &r.event;
            *counts
                .entry((
                    day_num(r.received_at.date_naive()),
                    e.release.as_deref().unwrap_or(""),
                    e.environment.as_deref().unwrap_or(""),
                ))
                .or_default() += 1;
            if let Some(s) = r.server_id.as_deref()
                && !servers.contains(&s)
            {
                servers.push(s);
            }
        }
        let mut count = tx
            .prepare_cached(
                "INSERT INTO issue_counts (issue_id, day, release, environment, count) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (issue_id, day, release, environment) DO UPDATE SET count = count + excluded.count",
            )
            .map_err(map_err)?;
        for ((day, release, environment), n) in counts {
            count
                .execute(params![issue_id, day, release, environment, n])
                .map_err(map_err)?;
        }
        let mut server = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO issue_servers (issue_id, server_id) VALUES (?1, ?2)",
            )
            .map_err(map_err)?;
        for s in servers {
            server.execute(params![issue_id, s]).map_err(map_err)?;
        }
    }
    Ok(out)
}

const ISSUE_COLUMNS: &str = "i.id, i.project_id, i.title, i.culprit, i.level, i.first_seen, i.last_seen, i.count, \
     (SELECT count(*) FROM issue_servers s WHERE s.issue_id = i.id)";

fn issue_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(IssueSummary, i64, i64)> {
    let level: String = r.get(4)?;
    Ok((
        IssueSummary {
            id: r.get(0)?,
            project_id: r.get(1)?,
            title: r.get(2)?,
            culprit: r.get(3)?,
            level: level_from(&level)?,
            first_seen: DateTime::<Utc>::MIN_UTC,
            last_seen: DateTime::<Utc>::MIN_UTC,
            count: r.get::<_, i64>(7)? as u64,
            servers: r.get::<_, i64>(8)? as u64,
        },
        r.get(5)?,
        r.get(6)?,
    ))
}

fn finish_issue((mut i, first, last): (IssueSummary, i64, i64)) -> Result<IssueSummary> {
    i.first_seen = time_from(first)?;
    i.last_seen = time_from(last)?;
    Ok(i)
}

pub(crate) async fn create_project(
    s: &SqliteStore,
    name: &str,
    public_key: &str,
    at: DateTime<Utc>,
) -> Result<ProjectInfo> {
    let (name, key) = (name.to_string(), public_key.to_string());
    run(&s.writer, move |c| {
        let tx = c.transaction().map_err(map_err)?;
        let id: i64 = tx
            .query_row(
                "INSERT INTO projects (name, created_at) VALUES (?1, ?2) RETURNING id",
                params![name, ms(at)],
                |r| r.get(0),
            )
            .map_err(|e| match map_err(e) {
                StoreError::Conflict(_) => StoreError::Conflict(format!("project {name:?} exists")),
                other => other,
            })?;
        tx.execute(
            "INSERT INTO project_keys (public_key, project_id, created_at) VALUES (?1, ?2, ?3)",
            params![key, id, ms(at)],
        )
        .map_err(map_err)?;
        tx.commit().map_err(map_err)?;
        Ok(ProjectInfo {
            id,
            name,
            created_at: time_from(ms(at))?,
            keys: vec![KeyInfo {
                public_key: key,
                project_id: id,
                enabled: true,
                rate_limit_per_minute: None,
                dsn: None,
            }],
        })
    })
    .await
}

pub(crate) async fn projects(s: &SqliteStore) -> Result<Vec<ProjectInfo>> {
    run(&s.reader, |c| {
        let mut projects: Vec<ProjectInfo> = {
            let mut stmt = c.prepare_cached("SELECT id, name, created_at FROM projects ORDER BY id").map_err(map_err)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))
                .map_err(map_err)?;
            rows.map(|r| {
                let (id, name, at) = r.map_err(map_err)?;
                Ok(ProjectInfo { id, name, created_at: time_from(at)?, keys: Vec::new() })
            })
            .collect::<Result<_>>()?
        };
        let mut stmt = c
            .prepare_cached(
                "SELECT public_key, project_id, enabled, rate_limit_per_minute FROM project_keys ORDER BY created_at, public_key",
            )
            .map_err(map_err)?;
        for key in stmt.query_map([], key_from_row).map_err(map_err)? {
            let key = key.map_err(map_err)?;
            if let Some(p) = projects.iter_mut().find(|p| p.id == key.project_id) {
                p.keys.push(key);
            }
        }
        Ok(projects)
    })
    .await
}

pub(crate) async fn issues(s: &SqliteStore, f: &IssueFilter) -> Result<Vec<IssueSummary>> {
    let f = f.clone();
    run(&s.reader, move |c| {
        let order = match f.sort {
            IssueSort::LastSeen => "i.last_seen DESC, i.id DESC",
            IssueSort::Count => "i.count DESC, i.id DESC",
        };
        let mut stmt = c
            .prepare_cached(&format!(
                "SELECT {ISSUE_COLUMNS} FROM issues i WHERE (?1 IS NULL OR i.project_id = ?1) \
                 AND (?2 IS NULL OR i.level = ?2) \
                 AND (?3 IS NULL OR EXISTS (SELECT 1 FROM issue_counts c WHERE c.issue_id = i.id AND c.release = ?3)) \
                 AND (?4 IS NULL OR EXISTS (SELECT 1 FROM issue_counts c WHERE c.issue_id = i.id AND c.environment = ?4)) \
                 ORDER BY {order} LIMIT ?5"
            ))
            .map_err(map_err)?;
        let rows = stmt
            .query_map(
                params![f.project_id, f.level.map(Level::as_str), f.release, f.environment, f.limit.max(1)],
                issue_from_row,
            )
            .map_err(map_err)?;
        rows.map(|r| r.map_err(map_err).and_then(finish_issue)).collect()
    })
    .await
}

pub(crate) async fn issue(s: &SqliteStore, id: i64) -> Result<Option<IssueDetail>> {
    run(&s.reader, move |c| {
        let Some(issue) = c
            .query_row(&format!("SELECT {ISSUE_COLUMNS} FROM issues i WHERE i.id = ?1"), [id], issue_from_row)
            .optional()
            .map_err(map_err)?
        else {
            return Ok(None);
        };
        let issue = finish_issue(issue)?;
        let payload: String = c
            .query_row(
                "SELECT payload FROM events WHERE issue_id = ?1 ORDER BY received_at DESC LIMIT 1",
                [id],
                |r| r.get(0),
            )
            .map_err(map_err)?;
        let latest_event = serde_json::from_str(&payload).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut stmt = c
            .prepare_cached("SELECT release, sum(count) FROM issue_counts WHERE issue_id = ?1 GROUP BY release ORDER BY release")
            .map_err(map_err)?;
        let by_release = stmt
            .query_map([id], |r| {
                let release: String = r.get(0)?;
                Ok(CountBy { key: (!release.is_empty()).then_some(release), count: r.get::<_, i64>(1)? as u64 })
            })
            .map_err(map_err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(map_err)?;
        let mut stmt = c
            .prepare_cached("SELECT environment, sum(count) FROM issue_counts WHERE issue_id = ?1 GROUP BY environment ORDER BY environment")
            .map_err(map_err)?;
        let by_environment = stmt
            .query_map([id], |r| {
                let environment: String = r.get(0)?;
                Ok(CountBy { key: (!environment.is_empty()).then_some(environment), count: r.get::<_, i64>(1)? as u64 })
            })
            .map_err(map_err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(map_err)?;
        let mut stmt = c
            .prepare_cached("SELECT day, sum(count) FROM issue_counts WHERE issue_id = ?1 GROUP BY day ORDER BY day")
            .map_err(map_err)?;
        let by_day = stmt
            .query_map([id], |r| Ok(CountBy { key: day_from(r.get(0)?), count: r.get::<_, i64>(1)? as u64 }))
            .map_err(map_err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(map_err)?;
        Ok(Some(IssueDetail { issue, latest_event, by_release, by_environment, by_day }))
    })
    .await
}

pub(crate) async fn issue_day_counts(
    s: &SqliteStore,
    ids: &[i64],
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<IssueDayCount>> {
    check_issue_ids(ids)?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // The ids as one JSON array parameter: one statement whatever their number.
    let ids = serde_json::to_string(ids).map_err(|e| StoreError::InvalidInput(e.to_string()))?;
    run(&s.reader, move |c| {
        let mut stmt = c
            .prepare_cached(
                "SELECT issue_id, day, sum(count) FROM issue_counts \
                 WHERE issue_id IN (SELECT value FROM json_each(?1)) AND day BETWEEN ?2 AND ?3 \
                 GROUP BY issue_id, day ORDER BY issue_id, day",
            )
            .map_err(map_err)?;
        stmt.query_map(params![ids, day_num(from), day_num(to)], |r| {
            Ok(IssueDayCount {
                issue_id: r.get(0)?,
                day: day_from(r.get(1)?),
                count: r.get::<_, i64>(2)?.max(0) as u64,
            })
        })
        .map_err(map_err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(map_err)
    })
    .await
}
