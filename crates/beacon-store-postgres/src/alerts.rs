//! Alerts on PostgreSQL: rules, episode state and the notification outbox (see
//! `beacon_store::alerts`), for several collectors on one database. Recording an evaluation locks
//! the rule's row first (`FOR UPDATE`), so two evaluations of one rule take turns; the outbox's
//! partial unique index on `(rule_id, episode_key, episode)` keeps one notification per episode
//! whatever happens; senders lease due rows with `FOR UPDATE SKIP LOCKED`. Evaluating is one
//! collector's job at a time: the session advisory lock [`ALERTS_LOCK`], held on a connection of
//! its own until released.

use crate::{PgStore, map_err};
use beacon_store::alerts::{
    AlertState, AttemptOutcome, ClaimedNotification, Finding, NewAlertRuleRow, StoredAlertRule,
};
use beacon_store::{AlertLock, Result, StoreError};
use beacon_wire::alert::{AlertDelivery, AlertKind, DeliveryStatus, DestinationKind};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use std::collections::HashSet;
use tokio_postgres::Row;

/// Session advisory lock of the alert evaluator: one collector at a time.
const ALERTS_LOCK: i64 = 0x0062_6561_636f_6e03;

const RULE_COLUMNS: &str =
    "r.id, r.name, r.kind, r.destination, r.url, r.secret, r.params, r.created_at";

fn corrupt(what: &str, v: &str) -> StoreError {
    StoreError::Corrupt(format!("alert {what} {v:?} is unknown"))
}

fn rule_from(r: &Row) -> Result<StoredAlertRule> {
    let (kind, destination, params): (String, String, String) = (r.get(2), r.get(3), r.get(6));
    Ok(StoredAlertRule {
        id: r.get(0),
        name: r.get(1),
        kind: AlertKind::parse(&kind).ok_or_else(|| corrupt("kind", &kind))?,
        destination: DestinationKind::parse(&destination)
            .ok_or_else(|| corrupt("destination", &destination))?,
        url: r.get(4),
        secret: r.get(5),
        params: serde_json::from_str(&params).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created_at: r.get(7),
    })
}

async fn rule_on(c: &impl GenericClient, id: i64, lock: bool) -> Result<Option<StoredAlertRule>> {
    let sql = format!(
        "SELECT {RULE_COLUMNS} FROM alert_rules r WHERE r.id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    c.query_opt(&sql, &[&id])
        .await
        .map_err(map_err)?
        .as_ref()
        .map(rule_from)
        .transpose()
}

pub(crate) async fn create_rule(s: &PgStore, rule: &NewAlertRuleRow) -> Result<StoredAlertRule> {
    let params =
        serde_json::to_string(&rule.params).map_err(|e| StoreError::InvalidInput(e.to_string()))?;
    let row = s
        .client()
        .await?
        .query_one(
            &format!(
                "INSERT INTO alert_rules AS r (name, kind, destination, url, secret, params, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {RULE_COLUMNS}"
            ),
            &[
                &rule.name,
                &rule.kind.as_str(),
                &rule.destination.as_str(),
                &rule.url,
                &rule.secret,
                &params,
                &rule.created_at,
            ],
        )
        .await
        .map_err(|e| match map_err(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("an alert rule named {:?} exists", rule.name))
            }
            other => other,
        })?;
    rule_from(&row)
}

pub(crate) async fn rules(s: &PgStore) -> Result<Vec<StoredAlertRule>> {
    s.client()
        .await?
        .query(
            &format!("SELECT {RULE_COLUMNS} FROM alert_rules r ORDER BY r.id"),
            &[],
        )
        .await
        .map_err(map_err)?
        .iter()
        .map(rule_from)
        .collect()
}

pub(crate) async fn rule(s: &PgStore, id: i64) -> Result<Option<StoredAlertRule>> {
    rule_on(&s.client().await?, id, false).await
}

pub(crate) async fn delete_rule(s: &PgStore, id: i64) -> Result<bool> {
    let mut client = s.client().await?;
    let tx = client.transaction().await.map_err(map_err)?;
    tx.execute(
        "UPDATE alert_outbox SET status = 'cancelled', next_at = NULL, lease_until = NULL \
         WHERE rule_id = $1 AND status = 'pending'",
        &[&id],
    )
    .await
    .map_err(map_err)?;
    tx.execute("DELETE FROM alert_state WHERE rule_id = $1", &[&id])
        .await
        .map_err(map_err)?;
    let n = tx
        .execute("DELETE FROM alert_rules WHERE id = $1", &[&id])
        .await
        .map_err(map_err)?;
    tx.commit().await.map_err(map_err)?;
    Ok(n > 0)
}

async fn states_on(c: &impl GenericClient, rule_id: i64) -> Result<Vec<AlertState>> {
    Ok(c.query(
        "SELECT episode_key, episode, firing, since FROM alert_state WHERE rule_id = $1 \
         ORDER BY episode_key",
        &[&rule_id],
    )
    .await
    .map_err(map_err)?
    .iter()
    .map(|r| AlertState {
        episode_key: r.get(0),
        episode: r.get(1),
        firing: r.get(2),
        since: r.get(3),
    })
    .collect())
}

pub(crate) async fn states(s: &PgStore, rule_id: i64) -> Result<Vec<AlertState>> {
    states_on(&s.client().await?, rule_id).await
}

pub(crate) async fn record_findings(
    s: &PgStore,
    rule_id: i64,
    now: DateTime<Utc>,
    findings: &[Finding],
) -> Result<u64> {
    let mut client = s.client().await?;
    let tx = client.transaction().await.map_err(map_err)?;
    // The rule's row, locked: evaluations of one rule by several collectors take turns.
    let Some(rule) = rule_on(&tx, rule_id, true).await? else {
        return Ok(0);
    };
    let states = states_on(&tx, rule_id).await?;
    let mut enqueued = 0;
    let mut seen = HashSet::new();
    for f in findings {
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
             VALUES ($1, $2, $3, TRUE, $4) ON CONFLICT (rule_id, episode_key) DO UPDATE \
             SET episode = excluded.episode, firing = TRUE, since = excluded.since",
            &[&rule_id, &f.key, &episode, &now],
        )
        .await
        .map_err(map_err)?;
        let details = f.details.to_string();
        enqueued += tx
            .execute(
                "INSERT INTO alert_outbox (rule_id, rule_name, episode_key, episode, created_at, \
                 text, ui_path, cli, details, status, attempts, next_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', 0, $5) \
                 ON CONFLICT (rule_id, episode_key, episode) WHERE episode > 0 DO NOTHING",
                &[
                    &rule_id, &rule.name, &f.key, &episode, &now, &f.text, &f.ui_path, &f.cli,
                    &details,
                ],
            )
            .await
            .map_err(map_err)?;
    }
    for st in states
        .iter()
        .filter(|st| st.firing && !seen.contains(st.episode_key.as_str()))
    {
        tx.execute(
            "UPDATE alert_state SET firing = FALSE, since = $3 WHERE rule_id = $1 AND episode_key = $2",
            &[&rule_id, &st.episode_key, &now],
        )
        .await
        .map_err(map_err)?;
    }
    tx.commit().await.map_err(map_err)?;
    Ok(enqueued)
}

const CLAIM_COLUMNS: &str =
    "id, rule_id, episode_key, episode, created_at, text, ui_path, cli, details, attempts";

fn claim_from(rule: StoredAlertRule, r: &Row) -> Result<ClaimedNotification> {
    let details: String = r.get(8);
    Ok(ClaimedNotification {
        id: r.get(0),
        rule,
        episode_key: r.get(2),
        episode: r.get(3),
        created_at: r.get(4),
        text: r.get(5),
        ui_path: r.get(6),
        cli: r.get(7),
        details: serde_json::from_str(&details).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        attempts: r.get::<_, i32>(9).max(0) as u32,
    })
}

pub(crate) async fn create_test(
    s: &PgStore,
    rule_id: i64,
    now: DateTime<Utc>,
    f: &Finding,
    lease_until: DateTime<Utc>,
) -> Result<ClaimedNotification> {
    let client = s.client().await?;
    let rule = rule_on(&client, rule_id, false)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("alert rule {rule_id}")))?;
    let details = f.details.to_string();
    let row = client
        .query_one(
            &format!(
                "INSERT INTO alert_outbox (rule_id, rule_name, episode_key, episode, created_at, \
                 text, ui_path, cli, details, status, attempts, next_at, lease_until, last_attempt_at) \
                 VALUES ($1, $2, $3, 0, $4, $5, $6, $7, $8, 'pending', 1, $4, $9, $4) \
                 RETURNING {CLAIM_COLUMNS}"
            ),
            &[
                &rule_id,
                &rule.name,
                &f.key,
                &now,
                &f.text,
                &f.ui_path,
                &f.cli,
                &details,
                &lease_until,
            ],
        )
        .await
        .map_err(map_err)?;
    claim_from(rule, &row)
}

pub(crate) async fn claim(
    s: &PgStore,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<ClaimedNotification>> {
    let mut client = s.client().await?;
    let tx = client.transaction().await.map_err(map_err)?;
    let rows = tx
        .query(
            &format!(
                "UPDATE alert_outbox SET lease_until = $2, attempts = attempts + 1, last_attempt_at = $1 \
                 WHERE id IN (SELECT id FROM alert_outbox WHERE status = 'pending' AND next_at <= $1 \
                 AND (lease_until IS NULL OR lease_until <= $1) ORDER BY next_at, id LIMIT $3 \
                 FOR UPDATE SKIP LOCKED) RETURNING {CLAIM_COLUMNS}"
            ),
            &[&now, &lease_until, &i64::from(limit)],
        )
        .await
        .map_err(map_err)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let rule_id: i64 = r.get(1);
        match rule_on(&tx, rule_id, false).await? {
            Some(rule) => out.push(claim_from(rule, r)?),
            None => {
                let id: i64 = r.get(0);
                tx.execute(
                    "UPDATE alert_outbox SET status = 'cancelled', next_at = NULL, lease_until = NULL \
                     WHERE id = $1",
                    &[&id],
                )
                .await
                .map_err(map_err)?;
            }
        }
    }
    tx.commit().await.map_err(map_err)?;
    out.sort_by_key(|c| c.id);
    Ok(out)
}

pub(crate) async fn finish(
    s: &PgStore,
    id: i64,
    attempts: u32,
    at: DateTime<Utc>,
    outcome: &AttemptOutcome,
) -> Result<bool> {
    let (status, next_at, delivered_at, error): (&str, _, _, Option<String>) = match outcome {
        AttemptOutcome::Delivered => ("delivered", None, Some(at), None),
        AttemptOutcome::Retry { error, next_at } => {
            ("pending", Some(*next_at), None, Some(error.clone()))
        }
        AttemptOutcome::Failed { error } => ("failed", None, None, Some(error.clone())),
    };
    let attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
    let n = s
        .client()
        .await?
        .execute(
            "UPDATE alert_outbox SET status = $3, next_at = $4, delivered_at = $5, \
             last_error = coalesce($6, last_error), lease_until = NULL \
             WHERE id = $1 AND attempts = $2 AND status = 'pending'",
            &[&id, &attempts, &status, &next_at, &delivered_at, &error],
        )
        .await
        .map_err(map_err)?;
    Ok(n > 0)
}

pub(crate) async fn history(
    s: &PgStore,
    rule_id: Option<i64>,
    limit: u32,
) -> Result<Vec<AlertDelivery>> {
    s.client()
        .await?
        .query(
            "SELECT id, rule_id, rule_name, episode_key, episode, created_at, status, attempts, \
             last_attempt_at, next_at, delivered_at, last_error, text FROM alert_outbox \
             WHERE ($1::int8 IS NULL OR rule_id = $1) ORDER BY id DESC LIMIT $2",
            &[&rule_id, &i64::from(limit)],
        )
        .await
        .map_err(map_err)?
        .iter()
        .map(|r| {
            let status: String = r.get(6);
            Ok(AlertDelivery {
                id: r.get(0),
                rule_id: r.get(1),
                rule_name: r.get(2),
                episode_key: r.get(3),
                episode: r.get(4),
                created_at: r.get(5),
                status: DeliveryStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
                attempts: r.get::<_, i32>(7).max(0) as u32,
                last_attempt_at: r.get(8),
                next_at: if status == "pending" { r.get(9) } else { None },
                delivered_at: r.get(10),
                last_error: r.get(11),
                text: r.get(12),
            })
        })
        .collect()
}

pub(crate) async fn purge(s: &PgStore, before: DateTime<Utc>) -> Result<u64> {
    let mut client = s.client().await?;
    let tx = client.transaction().await.map_err(map_err)?;
    let n = tx
        .execute(
            "DELETE FROM alert_outbox WHERE status <> 'pending' AND created_at < $1",
            &[&before],
        )
        .await
        .map_err(map_err)?;
    tx.execute(
        "DELETE FROM alert_state WHERE NOT firing AND since < $1",
        &[&before],
    )
    .await
    .map_err(map_err)?;
    tx.commit().await.map_err(map_err)?;
    Ok(n)
}

pub(crate) async fn issue_event_counts(
    s: &PgStore,
    ids: &[i64],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(i64, u64)>> {
    beacon_store::check_issue_ids(ids)?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(s.client()
        .await?
        .query(
            "SELECT issue_id, count(*) FROM events WHERE issue_id = ANY($1) \
             AND received_at >= $2 AND received_at < $3 GROUP BY issue_id ORDER BY issue_id",
            &[&ids, &from, &to],
        )
        .await
        .map_err(map_err)?
        .iter()
        .map(|r| (r.get(0), r.get::<_, i64>(1).max(0) as u64))
        .collect())
}

/// The evaluator's advisory lock, held by the session of the connection kept here.
struct PgAlertLock(Option<deadpool_postgres::Object>);

#[async_trait::async_trait]
impl AlertLock for PgAlertLock {
    async fn release(mut self: Box<Self>) {
        if let Some(client) = self.0.take() {
            let unlocked = client
                .query_one("SELECT pg_advisory_unlock($1)", &[&ALERTS_LOCK])
                .await
                .map(|r| r.get::<_, bool>(0));
            if !matches!(unlocked, Ok(true)) {
                // The session may still hold the lock: close it rather than give it to the pool.
                drop(deadpool_postgres::Object::take(client));
            }
        }
    }
}

impl Drop for PgAlertLock {
    fn drop(&mut self) {
        // Dropped without `release` (a cancelled evaluation): closing the session frees the lock.
        if let Some(client) = self.0.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

pub(crate) async fn try_lock(s: &PgStore) -> Result<Option<Box<dyn AlertLock>>> {
    let client = s.client().await?;
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&ALERTS_LOCK])
        .await
        .map_err(map_err)?
        .get(0);
    Ok(locked.then(|| Box::new(PgAlertLock(Some(client))) as Box<dyn AlertLock>))
}
