//! The Sentry channel on PostgreSQL: events, the issues they are grouped into, and projects.

use crate::keys::key_from_row;
use crate::{PgStore, map_err};
use beacon_store::{EventRecord, IssueDayCount, Result, StoreError, WriteOutcome, check_issue_ids};
use beacon_wire::admin::{
    CountBy, IssueDetail, IssueFilter, IssueSort, IssueSummary, KeyInfo, ProjectInfo,
};
use beacon_wire::sentry::Level;
use chrono::{DateTime, NaiveDate, Utc};

pub(crate) async fn write_event(
    tx: &tokio_postgres::Transaction<'_>,
    r: &EventRecord,
) -> std::result::Result<WriteOutcome, tokio_postgres::Error> {
    let e = &r.event;
    let level = e.level.as_str();
    // Its key first: a repeat (same project and event id, on any day) changes nothing. The key
    // lives in `event_ids`, not in `events`, whose unique keys would have to include the day it is
    // partitioned by.
    let inserted = tx
        .execute(
            "INSERT INTO event_ids (project_id, event_id, received_at) VALUES ($1, $2, $3) \
             ON CONFLICT (project_id, event_id) DO NOTHING",
            &[&r.project_id, &e.event_id, &r.received_at],
        )
        .await?;
    if inserted == 0 {
        return Ok(WriteOutcome::Duplicate);
    }
    let issue_id: i64 = tx
        .query_one(
            "INSERT INTO issues (project_id, group_hash, title, culprit, level, first_seen, last_seen, count) \
             VALUES ($1, $2, $3, $4, $5, $6, $6, 1) ON CONFLICT (project_id, group_hash) DO UPDATE SET \
             last_seen = greatest(issues.last_seen, excluded.last_seen), \
             first_seen = least(issues.first_seen, excluded.first_seen), \
             count = issues.count + 1, level = excluded.level RETURNING id",
            &[&r.project_id, &r.group_hash, &r.title, &r.culprit, &level, &r.received_at],
        )
        .await?
        .get(0);
    let payload = &r.event_json;
    tx.execute(
        "INSERT INTO events (project_id, event_id, issue_id, received_at, timestamp, level, release, \
         environment, server_id, payload) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[&r.project_id, &e.event_id, &issue_id, &r.received_at, &e.timestamp, &level, &e.release, &e.environment, &r.server_id, &payload],
    )
    .await?;
    tx.execute(
        "INSERT INTO issue_counts (issue_id, day, release, environment, count) VALUES ($1, $2, $3, $4, 1) \
         ON CONFLICT (issue_id, day, release, environment) DO UPDATE SET count = issue_counts.count + 1",
        &[&issue_id, &r.received_at.date_naive(), &e.release.as_deref().unwrap_or(""), &e.environment.as_deref().unwrap_or("")],
    )
    .await?;
    if let Some(server) = &r.server_id {
        tx.execute(
            "INSERT INTO issue_servers (issue_id, server_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&issue_id, server],
        )
        .await?;
        // The days each server sent errors on: release health's erring servers.
        tx.execute(
            "INSERT INTO error_days (day, server_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&r.received_at.date_naive(), server],
        )
        .await?;
    }
    Ok(WriteOutcome::Accepted)
}

const ISSUE_COLUMNS: &str = "i.id, i.project_id, i.title, i.culprit, i.level, i.first_seen, i.last_seen, i.count, \
     (SELECT count(*) FROM issue_servers s WHERE s.issue_id = i.id)";

fn issue_from_row(r: &tokio_postgres::Row) -> Result<IssueSummary> {
    let level: String = r.get(4);
    Ok(IssueSummary {
        id: r.get(0),
        project_id: r.get(1),
        title: r.get(2),
        culprit: r.get(3),
        level: serde_json::from_value(serde_json::Value::String(level))
            .map_err(|e| StoreError::Corrupt(format!("issue level: {e}")))?,
        first_seen: r.get(5),
        last_seen: r.get(6),
        count: r.get::<_, i64>(7) as u64,
        servers: r.get::<_, i64>(8) as u64,
    })
}

pub(crate) async fn create_project(
    s: &PgStore,
    name: &str,
    public_key: &str,
    at: DateTime<Utc>,
) -> Result<ProjectInfo> {
    let mut client = s.client().await?;
    let tx = client.transaction().await.map_err(map_err)?;
    let id: i64 = tx
        .query_one(
            "INSERT INTO projects (name, created_at) VALUES ($1, $2) RETURNING id",
            &[&name, &at],
        )
        .await
        .map_err(|e| match map_err(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!("project {name:?} exists")),
            other => other,
        })?
        .get(0);
    tx.execute(
        "INSERT INTO project_keys (public_key, project_id, created_at) VALUES ($1, $2, $3)",
        &[&public_key, &id, &at],
    )
    .await
    .map_err(map_err)?;
    tx.commit().await.map_err(map_err)?;
    Ok(ProjectInfo {
        id,
        name: name.to_string(),
        created_at: at,
        keys: vec![KeyInfo {
            public_key: public_key.to_string(),
            project_id: id,
            enabled: true,
            rate_limit_per_minute: None,
            dsn: None,
        }],
    })
}

pub(crate) async fn projects(s: &PgStore) -> Result<Vec<ProjectInfo>> {
    let client = s.client().await?;
    let mut projects: Vec<ProjectInfo> = client
        .query("SELECT id, name, created_at FROM projects ORDER BY id", &[])
        .await
        .map_err(map_err)?
        .iter()
        .map(|r| ProjectInfo {
            id: r.get(0),
            name: r.get(1),
            created_at: r.get(2),
            keys: Vec::new(),
        })
        .collect();
    for row in client
        .query(
            "SELECT public_key, project_id, enabled, rate_limit_per_minute FROM project_keys ORDER BY created_at, public_key",
            &[],
        )
        .await
        .map_err(map_err)?
    {
        let key = key_from_row(&row);
        if let Some(p) = projects.iter_mut().find(|p| p.id == key.project_id) {
            p.keys.push(key);
        }
    }
    Ok(projects)
}

pub(crate) async fn issues(s: &PgStore, f: &IssueFilter) -> Result<Vec<IssueSummary>> {
    let order = match f.sort {
        IssueSort::LastSeen => "i.last_seen DESC, i.id DESC",
        IssueSort::Count => "i.count DESC, i.id DESC",
    };
    let rows = s
        .client()
        .await?
        .query(
            &format!(
                "SELECT {ISSUE_COLUMNS} FROM issues i WHERE ($1::int8 IS NULL OR i.project_id = $1) \
                 AND ($2::text IS NULL OR i.level = $2) \
                 AND ($3::text IS NULL OR EXISTS (SELECT 1 FROM issue_counts c WHERE c.issue_id = i.id AND c.release = $3)) \
                 AND ($4::text IS NULL OR EXISTS (SELECT 1 FROM issue_counts c WHERE c.issue_id = i.id AND c.environment = $4)) \
                 ORDER BY {order} LIMIT $5"
            ),
            &[&f.project_id, &f.level.map(Level::as_str), &f.release, &f.environment, &i64::from(f.limit.max(1))],
        )
        .await
        .map_err(map_err)?;
    rows.iter().map(issue_from_row).collect()
}

pub(crate) async fn issue(s: &PgStore, id: i64) -> Result<Option<IssueDetail>> {
    let client = s.client().await?;
    let Some(row) = client
        .query_opt(
            &format!("SELECT {ISSUE_COLUMNS} FROM issues i WHERE i.id = $1"),
            &[&id],
        )
        .await
        .map_err(map_err)?
    else {
        return Ok(None);
    };
    let issue = issue_from_row(&row)?;
    let payload: String = client
        .query_one(
            "SELECT payload FROM events WHERE issue_id = $1 ORDER BY received_at DESC LIMIT 1",
            &[&id],
        )
        .await
        .map_err(map_err)?
        .get(0);
    let latest_event =
        serde_json::from_str(&payload).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let by_release = client
        .query(
            "SELECT release, sum(count)::int8 FROM issue_counts WHERE issue_id = $1 GROUP BY release ORDER BY release",
            &[&id],
        )
        .await
        .map_err(map_err)?
        .iter()
        .map(|r| {
            let release: String = r.get(0);
            CountBy { key: (!release.is_empty()).then_some(release), count: r.get::<_, i64>(1) as u64 }
        })
        .collect();
    let by_environment = client
        .query(
            "SELECT environment, sum(count)::int8 FROM issue_counts WHERE issue_id = $1 GROUP BY environment ORDER BY environment",
            &[&id],
        )
        .await
        .map_err(map_err)?
        .iter()
        .map(|r| {
            let environment: String = r.get(0);
            CountBy { key: (!environment.is_empty()).then_some(environment), count: r.get::<_, i64>(1) as u64 }
        })
        .collect();
    let by_day = client
        .query("SELECT day, sum(count)::int8 FROM issue_counts WHERE issue_id = $1 GROUP BY day ORDER BY day", &[&id])
        .await
        .map_err(map_err)?
        .iter()
        .map(|r| CountBy { key: r.get(0), count: r.get::<_, i64>(1) as u64 })
        .collect();
    Ok(Some(IssueDetail {
        issue,
        latest_event,
        by_release,
        by_environment,
        by_day,
    }))
}

pub(crate) async fn issue_day_counts(
    s: &PgStore,
    ids: &[i64],
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<IssueDayCount>> {
    check_issue_ids(ids)?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = s
        .client()
        .await?
        .query(
            "SELECT issue_id, day, sum(count)::int8 FROM issue_counts \
             WHERE issue_id = ANY($1) AND day BETWEEN $2 AND $3 \
             GROUP BY issue_id, day ORDER BY issue_id, day",
            &[&ids, &from, &to],
        )
        .await
        .map_err(map_err)?;
    Ok(rows
        .iter()
        .map(|r| IssueDayCount {
            issue_id: r.get(0),
            day: r.get(1),
            count: r.get::<_, i64>(2).max(0) as u64,
        })
        .collect())
}
