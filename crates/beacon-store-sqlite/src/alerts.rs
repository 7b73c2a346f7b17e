//! Alerts on SQLite: rules, episode state and the notification outbox (see `beacon_store::alerts`).
//! Every change runs on the writer under `BEGIN IMMEDIATE`, so evaluations and claims are
//! serialised whatever the number of callers; the outbox's partial unique index on
//! `(rule_id, episode_key, episode)` keeps one notification per episode.

use crate::{SqliteStore, map_err, ms, run, time_from};
use beacon_store::alerts::{
    AlertState, AttemptOutcome, ClaimedNotification, Finding, NewAlertRuleRow, StoredAlertRule,
};
use beacon_store::{AlertLock, Result, StoreError};
use beacon_wire::alert::{AlertDelivery, AlertKind, DeliveryStatus, DestinationKind};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::collections::HashSet;

const RULE_COLUMNS: &str =
    "r.id, r.name, r.kind, r.destination, r.url, r.secret, r.params, r.created_at";

fn corrupt(what: &str, v: &str) -> StoreError {
    StoreError::Corrupt(format!("alert {what} {v:?} is unknown"))
}

type RuleRow = (
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    i64,
);

fn rule_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RuleRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn finish_rule(
    (id, name, kind, destination, url, secret, params, created): RuleRow,
) -> Result<StoredAlertRule> {
    Ok(StoredAlertRule {
        id,
        name,
        kind: AlertKind::parse(&kind).ok_or_else(|| corrupt("kind", &kind))?,
        destination: DestinationKind::parse(&destination)
            .ok_or_else(|| corrupt("destination", &destination))?,
        url,
        secret,
        params: serde_json::from_str(&params).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created_at: time_from(created)?,
    })
}

fn rule_on(c: &Connection, id: i64) -> Result<Option<StoredAlertRule>> {
    c.query_row(
        &format!("SELECT {RULE_COLUMNS} FROM alert_rules r WHERE r.id = ?1"),
        [id],
        rule_row,
    )
    .optional()
    .map_err(map_err)?
    .map(finish_rule)
    .transpose()
}

pub(crate) async fn create_rule(
    s: &SqliteStore,
    rule: &NewAlertRuleRow,
) -> Result<StoredAlertRule> {
    let rule = rule.clone();
    let params =
        serde_json::to_string(&rule.params).map_err(|e| StoreError::InvalidInput(e.to_string()))?;
    run(&s.writer, move |c| {
        c.execute(
            "INSERT INTO alert_rules (name, kind, destination, url, secret, params, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                rule.name,
                rule.kind.as_str(),
                rule.destination.as_str(),
                rule.url,
                rule.secret,
                params,
                ms(rule.created_at)
            ],
        )
        .map_err(|e| match map_err(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("an alert rule named {:?} exists", rule.name))
            }
            other => other,
        })?;
        let id = c.last_insert_rowid();
        rule_on(c, id)?.ok_or_else(|| StoreError::Corrupt("the rule just stored is gone".into()))
    })
    .await
}

pub(crate) async fn rules(s: &SqliteStore) -> Result<Vec<StoredAlertRule>> {
    run(&s.reader, |c| {
        let mut stmt = c
            .prepare_cached(&format!(
                "SELECT {RULE_COLUMNS} FROM alert_rules r ORDER BY r.id"
            ))
            .map_err(map_err)?;
        let rows = stmt
            .query_map([], rule_row)
            .map_err(map_err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(map_err)?;
        rows.into_iter().map(finish_rule).collect()
    })
    .await
}

pub(crate) async fn rule(s: &SqliteStore, id: i64) -> Result<Option<StoredAlertRule>> {
    run(&s.reader, move |c| rule_on(c, id)).await
}

pub(crate) async fn delete_rule(s: &SqliteStore, id: i64) -> Result<bool> {
    run(&s.writer, move |c| {
        let tx = c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        tx.execute(
            "UPDATE alert_outbox SET status = 'cancelled', next_at = NULL, lease_until = NULL \
             WHERE rule_id = ?1 AND status = 'pending'",
            [id],
        )
        .map_err(map_err)?;
        tx.execute("DELETE FROM alert_state WHERE rule_id = ?1", [id])
            .map_err(map_err)?;
        let n = tx
            .execute("DELETE FROM alert_rules WHERE id = ?1", [id])
            .map_err(map_err)?;
        tx.commit().map_err(map_err)?;
        Ok(n > 0)
    })
    .await
}

fn states_on(c: &Connection, rule_id: i64) -> Result<Vec<AlertState>> {
    let mut stmt = c
        .prepare_cached(
            "SELECT episode_key, episode, firing, since FROM alert_state WHERE rule_id = ?1 \
             ORDER BY episode_key",
        )
        .map_err(map_err)?;
    let rows = stmt
        .query_map([rule_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, bool>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .map_err(map_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(map_err)?;
    rows.into_iter()
        .map(|(episode_key, episode, firing, since)| {
            Ok(AlertState {
                episode_key,
                episode,
                firing,
                since: time_from(since)?,
            })
        })
        .collect()
}

pub(crate) async fn states(s: &SqliteStore, rule_id: i64) -> Result<Vec<AlertState>> {
    run(&s.reader, move |c| states_on(c, rule_id)).await
}

fn json(v: &serde_json::Value) -> String {
    v.to_string()
}

pub(crate) async fn record_findings(
    s: &SqliteStore,
    rule_id: i64,
    now: DateTime<Utc>,
    findings: &[Finding],
) -> Result<u64> {
    let findings = findings.to_vec();
    run(&s.writer, move |c| {
        let tx = c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        let Some(rule) = rule_on(&tx, rule_id)? else {
            return Ok(0);
        };
        let states = states_on(&tx, rule_id)?;
        let at = ms(now);
        let mut enqueued = 0;
        let mut seen = HashSet::new();
        for f in &findings {
            if !seen.insert(f.key.as_str()) {
                continue;
            }
            let state = states.iter().find(|st| st.episode_key == f.key);
            if state.is_some_and(|st| st.firing) {
                continue;
            }
            let episode = state.map_or(1, |st| st.episode + 1);
            tx.execute(
                "INSERT INTO alert_state (rule_id, episode_key, episode, firing, since) \
                 VALUES (?1, ?2, ?3, 1, ?4) ON CONFLICT (rule_id, episode_key) DO UPDATE \
                 SET episode = excluded.episode, firing = 1, since = excluded.since",
                params![rule_id, f.key, episode, at],
            )
            .map_err(map_err)?;
            enqueued += tx
                .execute(
                    "INSERT OR IGNORE INTO alert_outbox (rule_id, rule_name, episode_key, episode, \
                     created_at, text, ui_path, cli, details, status, attempts, next_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending', 0, ?5)",
                    params![
                        rule_id,
                        rule.name,
                        f.key,
                        episode,
                        at,
                        f.text,
                        f.ui_path,
                        f.cli,
                        json(&f.details)
                    ],
                )
                .map_err(map_err)? as u64;
        }
        for st in states.iter().filter(|st| st.firing && !seen.contains(st.episode_key.as_str())) {
            tx.execute(
                "UPDATE alert_state SET firing = 0, since = ?3 WHERE rule_id = ?1 AND episode_key = ?2",
                params![rule_id, st.episode_key, at],
            )
            .map_err(map_err)?;
        }
        tx.commit().map_err(map_err)?;
        Ok(enqueued)
    })
    .await
}

const CLAIM_COLUMNS: &str = "o.id, o.episode_key, o.episode, o.created_at, o.text, o.ui_path, \
     o.cli, o.details, o.attempts";

type ClaimRow = (
    i64,
    String,
    i64,
    i64,
    String,
    Option<String>,
    String,
    String,
    u32,
);

fn claim_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ClaimRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

fn finish_claim(
    rule: StoredAlertRule,
    (id, episode_key, episode, created, text, ui_path, cli, details, attempts): ClaimRow,
) -> Result<ClaimedNotification> {
    Ok(ClaimedNotification {
        id,
        rule,
        episode_key,
        episode,
        created_at: time_from(created)?,
        text,
        ui_path,
        cli,
        details: serde_json::from_str(&details).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        attempts,
    })
}

pub(crate) async fn create_test(
    s: &SqliteStore,
    rule_id: i64,
    now: DateTime<Utc>,
    f: &Finding,
    lease_until: DateTime<Utc>,
) -> Result<ClaimedNotification> {
    let f = f.clone();
    run(&s.writer, move |c| {
        let tx = c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        let rule = rule_on(&tx, rule_id)?
            .ok_or_else(|| StoreError::NotFound(format!("alert rule {rule_id}")))?;
        let at = ms(now);
        tx.execute(
            "INSERT INTO alert_outbox (rule_id, rule_name, episode_key, episode, created_at, text, \
             ui_path, cli, details, status, attempts, next_at, lease_until, last_attempt_at) \
             VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7, ?8, 'pending', 1, ?4, ?9, ?4)",
            params![
                rule_id,
                rule.name,
                f.key,
                at,
                f.text,
                f.ui_path,
                f.cli,
                json(&f.details),
                ms(lease_until)
            ],
        )
        .map_err(map_err)?;
        let id = tx.last_insert_rowid();
        let row = tx
            .query_row(
                &format!("SELECT {CLAIM_COLUMNS} FROM alert_outbox o WHERE o.id = ?1"),
                [id],
                claim_row,
            )
            .map_err(map_err)?;
        tx.commit().map_err(map_err)?;
        finish_claim(rule, row)
    })
    .await
}

pub(crate) async fn claim(
    s: &SqliteStore,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<ClaimedNotification>> {
    run(&s.writer, move |c| {
        let tx = c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        let (at, until) = (ms(now), ms(lease_until));
        let ids: Vec<i64> = {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT id FROM alert_outbox WHERE status = 'pending' AND next_at <= ?1 \
                     AND (lease_until IS NULL OR lease_until <= ?1) ORDER BY next_at, id LIMIT ?2",
                )
                .map_err(map_err)?;
            stmt.query_map(params![at, limit], |r| r.get(0))
                .map_err(map_err)?
                .collect::<rusqlite::Result<_>>()
                .map_err(map_err)?
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            tx.execute(
                "UPDATE alert_outbox SET lease_until = ?2, attempts = attempts + 1, \
                 last_attempt_at = ?3 WHERE id = ?1",
                params![id, until, at],
            )
            .map_err(map_err)?;
            let (rule_id, row): (i64, ClaimRow) = tx
                .query_row(
                    &format!(
                        "SELECT o.rule_id, {CLAIM_COLUMNS} FROM alert_outbox o WHERE o.id = ?1"
                    ),
                    [id],
                    |r| {
                        Ok((
                            r.get(0)?,
                            (
                                r.get(1)?,
                                r.get(2)?,
                                r.get(3)?,
                                r.get(4)?,
                                r.get(5)?,
                                r.get(6)?,
                                r.get(7)?,
                                r.get(8)?,
                                r.get(9)?,
                            ),
                        ))
                    },
                )
                .map_err(map_err)?;
            match rule_on(&tx, rule_id)? {
                Some(rule) => out.push(finish_claim(rule, row)?),
                None => {
                    tx.execute(
                        "UPDATE alert_outbox SET status = 'cancelled', next_at = NULL, \
                         lease_until = NULL WHERE id = ?1",
                        [id],
                    )
                    .map_err(map_err)?;
                }
            }
        }
        tx.commit().map_err(map_err)?;
        Ok(out)
    })
    .await
}

/// The columns an outcome sets.
struct OutcomeColumns {
    status: &'static str,
    next_at: Option<i64>,
    delivered_at: Option<i64>,
    error: Option<String>,
}

fn outcome_columns(at: DateTime<Utc>, outcome: &AttemptOutcome) -> OutcomeColumns {
    let (status, next_at, delivered_at, error) = match outcome {
        AttemptOutcome::Delivered => ("delivered", None, Some(ms(at)), None),
        AttemptOutcome::Retry { error, next_at } => {
            ("pending", Some(ms(*next_at)), None, Some(error.clone()))
        }
        AttemptOutcome::Failed { error } => ("failed", None, None, Some(error.clone())),
    };
    OutcomeColumns {
        status,
        next_at,
        delivered_at,
        error,
    }
}

pub(crate) async fn finish(
    s: &SqliteStore,
    id: i64,
    attempts: u32,
    at: DateTime<Utc>,
    outcome: &AttemptOutcome,
) -> Result<bool> {
    let o = outcome_columns(at, outcome);
    run(&s.writer, move |c| {
        let n = c
            .execute(
                "UPDATE alert_outbox SET status = ?3, next_at = ?4, delivered_at = ?5, \
                 last_error = coalesce(?6, last_error), lease_until = NULL \
                 WHERE id = ?1 AND attempts = ?2 AND status = 'pending'",
                params![id, attempts, o.status, o.next_at, o.delivered_at, o.error],
            )
            .map_err(map_err)?;
        Ok(n > 0)
    })
    .await
}

pub(crate) async fn history(
    s: &SqliteStore,
    rule_id: Option<i64>,
    limit: u32,
) -> Result<Vec<AlertDelivery>> {
    run(&s.reader, move |c| {
        let mut stmt = c
            .prepare_cached(
                "SELECT id, rule_id, rule_name, episode_key, episode, created_at, status, attempts, \
                 last_attempt_at, next_at, delivered_at, last_error, text FROM alert_outbox \
                 WHERE (?1 IS NULL OR rule_id = ?1) ORDER BY id DESC LIMIT ?2",
            )
            .map_err(map_err)?;
        type Row = (
            i64,
            i64,
            String,
            String,
            i64,
            i64,
            String,
            u32,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<String>,
            String,
        );
        let rows = stmt
            .query_map(params![rule_id, limit], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    r.get(10)?,
                    r.get(11)?,
                    r.get(12)?,
                ))
            })
            .map_err(map_err)?
            .collect::<rusqlite::Result<Vec<Row>>>()
            .map_err(map_err)?;
        rows.into_iter()
            .map(|r| {
                let opt = |v: Option<i64>| v.map(time_from).transpose();
                Ok(AlertDelivery {
                    id: r.0,
                    rule_id: r.1,
                    rule_name: r.2,
                    episode_key: r.3,
                    episode: r.4,
                    created_at: time_from(r.5)?,
                    status: DeliveryStatus::parse(&r.6).ok_or_else(|| corrupt("status", &r.6))?,
                    attempts: r.7,
                    last_attempt_at: opt(r.8)?,
                    next_at: if r.6 == "pending" { opt(r.9)? } else { None },
                    delivered_at: opt(r.10)?,
                    last_error: r.11,
                    text: r.12,
                })
            })
            .collect()
    })
    .await
}

pub(crate) async fn purge(s: &SqliteStore, before: DateTime<Utc>) -> Result<u64> {
    let at = ms(before);
    run(&s.writer, move |c| {
        let tx = c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        let n = tx
            .execute(
                "DELETE FROM alert_outbox WHERE status <> 'pending' AND created_at < ?1",
                [at],
            )
            .map_err(map_err)?;
        tx.execute(
            "DELETE FROM alert_state WHERE firing = 0 AND since < ?1",
            [at],
        )
        .map_err(map_err)?;
        tx.commit().map_err(map_err)?;
        Ok(n as u64)
    })
    .await
}

pub(crate) async fn issue_event_counts(
    s: &SqliteStore,
    ids: &[i64],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(i64, u64)>> {
    beacon_store::check_issue_ids(ids)?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids = serde_json::to_string(ids).map_err(|e| StoreError::InvalidInput(e.to_string()))?;
    run(&s.reader, move |c| {
        let mut stmt = c
            .prepare_cached(
                "SELECT issue_id, count(*) FROM events \
                 WHERE issue_id IN (SELECT value FROM json_each(?1)) \
                 AND received_at >= ?2 AND received_at < ?3 GROUP BY issue_id ORDER BY issue_id",
            )
            .map_err(map_err)?;
        stmt.query_map(params![ids, ms(from), ms(to)], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
        })
        .map_err(map_err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(map_err)
    })
    .await
}

/// One SQLite database serves one collector: every change above is serialised on its writer, so
/// the lock only has to exist.
pub(crate) struct NoLock;

#[async_trait::async_trait]
impl AlertLock for NoLock {
    async fn release(self: Box<Self>) {}
}
