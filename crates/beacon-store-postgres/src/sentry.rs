//! The Sentry channel on PostgreSQL: events, the issues they are grouped into, and projects.

use crate::keys::key_from_row;
use crate::{PgStore, map_err};
use beacon_store::{EventRecord, IssueDayCount, Result, StoreError, WriteOutcome, check_issue_ids};
use beacon_wire::admin::{
    CountBy, IssueDetail, IssueFilter, IssueSort, IssueSummary, KeyInfo, ProjectInfo,
};
use beacon_wire::sentry::Level;
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Writes a batch's error events in a fixed number of statements, whatever their number: their
/// keys (a repeat — same project and event id, on any day, or twice in the batch — is `Duplicate`
/// and changes nothing), one upsert per issue with the batch's events of it counted together, the
/// events' rows, and the counts per (issue, day, release, environment), servers per issue and erring
/// servers per day aggregated in memory. Rows are written in key order, so concurrent batches of two
/// collectors lock issue and count rows in one order. Outcomes are in `events`' order.
pub(crate) async fn write_events(
    tx: &tokio_postgres::Transaction<'_>,
    events: &[&EventRecord],
) -> std::result::Result<Vec<WriteOutcome>, tokio_postgres::Error> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    // Keys first. The key lives in `event_ids`, not in `events`, whose unique keys would have to
    // include the day it is partitioned by. Within one statement a repeated key is inserted once.
    let projects: Vec<i64> = events.iter().map(|r| r.project_id).collect();
    let ids: Vec<&str> = events.iter().map(|r| r.event.event_id.as_str()).collect();
    let received: Vec<DateTime<Utc>> = events.iter().map(|r| r.received_at).collect();
    let new: HashSet<(i64, String)> = tx
        .query(
            "INSERT INTO event_ids (project_id, event_id, received_at)              SELECT * FROM unnest($1::int8[], $2::text[], $3::timestamptz[])              ON CONFLICT (project_id, event_id) DO NOTHING RETURNING project_id, event_id",
            &[&projects, &ids, &received],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut seen = HashSet::new();
    let outcomes: Vec<WriteOutcome> = events
        .iter()
        .map(|r| {
            let key = (r.project_id, r.event.event_id.clone());
            if new.contains(&key) && seen.insert(key) {
                WriteOutcome::Accepted
            } else {
                WriteOutcome::Duplicate
            }
        })
        .collect();
    let accepted: Vec<&EventRecord> = events
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| **o == WriteOutcome::Accepted)
        .map(|(r, _)| *r)
        .collect();
    if accepted.is_empty() {
        return Ok(outcomes);
    }

    // One upsert row per issue: the first event's title and culprit (what a new issue shows), the
    // last one's level, the batch's first and last time and its count.
    struct IssueRow<'a> {
        title: &'a str,
        culprit: Option<&'a str>,
        level: &'static str,
        first: DateTime<Utc>,
        last: DateTime<Utc>,
        count: i64,
    }
    let mut groups: BTreeMap<(i64, &str), IssueRow<'_>> = BTreeMap::new();
    for r in &accepted {
        let level = r.event.level.as_str();
        groups
            .entry((r.project_id, r.group_hash.as_str()))
            .and_modify(|g| {
                g.level = level;
                g.first = g.first.min(r.received_at);
                g.last = g.last.max(r.received_at);
                g.count += 1;
            })
            .or_insert(IssueRow {
                title: &r.title,
                culprit: r.culprit.as_deref(),
                level,
                first: r.received_at,
                last: r.received_at,
                count: 1,
            });
    }
    let (mut g_project, mut g_hash, mut g_title, mut g_culprit) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut g_level, mut g_first, mut g_last, mut g_count) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((project, hash), g) in &groups {
        g_project.push(*project);
        g_hash.push(*hash);
        g_title.push(g.title);
        g_culprit.push(g.culprit);
        g_level.push(g.level);
        g_first.push(g.first);
        g_last.push(g.last);
        g_count.push(g.count);
    }
    let issue_ids: HashMap<(i64, String), i64> = tx
        .query(
            "INSERT INTO issues (project_id, group_hash, title, culprit, level, first_seen, last_seen, count)              SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[],              $6::timestamptz[], $7::timestamptz[], $8::int8[])              ON CONFLICT (project_id, group_hash) DO UPDATE SET              last_seen = greatest(issues.last_seen, excluded.last_seen),              first_seen = least(issues.first_seen, excluded.first_seen),              count = issues.count + excluded.count, level = excluded.level              RETURNING project_id, group_hash, id",
            &[&g_project, &g_hash, &g_title, &g_culprit, &g_level, &g_first, &g_last, &g_count],
        )
        .await?
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();
    let issue_of = |r: &EventRecord| {
        issue_ids
            .get(&(r.project_id, r.group_hash.clone()))
            .copied()
            .unwrap_or_default()
    };

    // The events' rows.
    let n = accepted.len();
    let (mut e_project, mut e_id, mut e_issue, mut e_received) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut e_timestamp, mut e_level, mut e_release, mut e_environment) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut e_server, mut e_payload) = (Vec::with_capacity(n), Vec::with_capacity(n));
    // Aggregates: counts per (issue, day, release, environment), servers per issue, erring
    // servers per day.
    let mut counts: BTreeMap<(i64, NaiveDate, &str, &str), i64> = BTreeMap::new();
    let mut issue_servers: BTreeSet<(i64, &str)> = BTreeSet::new();
    let mut error_days: BTreeSet<(NaiveDate, &str)> = BTreeSet::new();
    for r in &accepted {
        let e = &r.event;
        let issue = issue_of(r);
        let day = r.received_at.date_naive();
        e_project.push(r.project_id);
        e_id.push(e.event_id.as_str());
        e_issue.push(issue);
        e_received.push(r.received_at);
        e_timestamp.push(e.timestamp);
        e_level.push(e.level.as_str());
        e_release.push(e.release.as_deref());
        e_environment.push(e.environment.as_deref());
        e_server.push(r.server_id.as_deref());
        e_payload.push(r.event_json.as_str());
        *counts
            .entry((
                issue,
                day,
                e.release.as_deref().unwrap_or(""),
                e.environment.as_deref().unwrap_or(""),
            ))
            .or_default() += 1;
        if let Some(server) = r.server_id.as_deref() {
            issue_servers.insert((issue, server));
            // The days each server sent errors on: release health's erring servers.
            error_days.insert((day, server));
        }
    }
    tx.execute(
        "INSERT INTO events (project_id, event_id, issue_id, received_at, timestamp, level, release,          environment, server_id, payload)          SELECT * FROM unnest($1::int8[], $2::text[], $3::int8[], $4::timestamptz[],          $5::timestamptz[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])",
        &[&e_project, &e_id, &e_issue, &e_received, &e_timestamp, &e_level, &e_release, &e_environment, &e_server, &e_payload],
    )
    .await?;
    let (mut c_issue, mut c_day, mut c_release, mut c_env, mut c_count) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((issue, day, release, env), count) in counts {
        c_issue.push(issue);
        c_day.push(day);
        c_release.push(release);
        c_env.push(env);
        c_count.push(count);
    }
    tx.execute(
        "INSERT INTO issue_counts (issue_id, day, release, environment, count)          SELECT * FROM unnest($1::int8[], $2::date[], $3::text[], $4::text[], $5::int8[])          ON CONFLICT (issue_id, day, release, environment)          DO UPDATE SET count = issue_counts.count + excluded.count",
        &[&c_issue, &c_day, &c_release, &c_env, &c_count],
    )
    .await?;
    if !issue_servers.is_empty() {
        let (s_issue, s_server): (Vec<i64>, Vec<&str>) = issue_servers.into_iter().unzip();
        tx.execute(
            "INSERT INTO issue_servers (issue_id, server_id)              SELECT * FROM unnest($1::int8[], $2::text[]) ON CONFLICT DO NOTHING",
            &[&s_issue, &s_server],
        )
        .await?;
        let (d_day, d_server): (Vec<NaiveDate>, Vec<&str>) = error_days.into_iter().unzip();
        tx.execute(
            "INSERT INTO error_days (day, server_id)              SELECT * FROM unnest($1::date[], $2::text[]) ON CONFLICT DO NOTHING",
            &[&d_day, &d_server],
        )
        .await?;
        // Each server's newest error day of the batch, for release health's `error_cells`.
        let mut newest: BTreeMap<&str, NaiveDate> = BTreeMap::new();
        for (day, server) in d_day.iter().zip(&d_server) {
            let e = newest.entry(server).or_insert(*day);
            *e = (*e).max(*day);
        }
        crate::errcells::mark_erring(tx, &newest).await?;
    }
    Ok(outcomes)
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
