//! Admin data on PostgreSQL: admin tokens and dead letters.

use crate::{PgStore, map_err};
use beacon_store::ui::{admin_token_id, check_admin_token_id, choose_token_to_revoke};
use beacon_store::{NewDeadLetter, Result};
use beacon_wire::admin::{AdminTokenInfo, DeadLetter};
use chrono::{DateTime, Utc};

pub(crate) async fn write_dead_letters(
    tx: &tokio_postgres::Transaction<'_>,
    letters: &[&NewDeadLetter],
) -> std::result::Result<(), tokio_postgres::Error> {
    if letters.is_empty() {
        return Ok(());
    }
    let at: Vec<DateTime<Utc>> = letters.iter().map(|d| d.received_at).collect();
    let channel: Vec<&str> = letters.iter().map(|d| d.channel.as_str()).collect();
    let reason: Vec<&str> = letters.iter().map(|d| d.reason.as_str()).collect();
    let payload: Vec<&str> = letters.iter().map(|d| d.payload.as_str()).collect();
    // WITH ORDINALITY + ORDER BY: ids follow the order given.
    tx.execute(
        "INSERT INTO dead_letters (received_at, channel, reason, payload) \
         SELECT a, c, r, p FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[]) \
         WITH ORDINALITY AS t(a, c, r, p, n) ORDER BY n",
        &[&at, &channel, &reason, &payload],
    )
    .await?;
    Ok(())
}

pub(crate) async fn add_admin_token(
    s: &PgStore,
    token_hash: &str,
    label: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    s.client()
        .await?
        .execute(
            "INSERT INTO admin_tokens (token_hash, label, created_at) VALUES ($1, $2, $3)",
            &[&token_hash, &label, &at],
        )
        .await
        .map_err(map_err)?;
    Ok(())
}

pub(crate) async fn admin_token_count(s: &PgStore) -> Result<u64> {
    let row = s
        .client()
        .await?
        .query_one("SELECT count(*) FROM admin_tokens", &[])
        .await
        .map_err(map_err)?;
    Ok(row.get::<_, i64>(0) as u64)
}

pub(crate) async fn admin_token_valid(s: &PgStore, token_hash: &str) -> Result<bool> {
    Ok(s.client()
        .await?
        .query_opt(
            "SELECT 1 FROM admin_tokens WHERE token_hash = $1",
            &[&token_hash],
        )
        .await
        .map_err(map_err)?
        .is_some())
}

pub(crate) async fn admin_tokens(s: &PgStore) -> Result<Vec<AdminTokenInfo>> {
    let rows = s
        .client()
        .await?
        .query(
            "SELECT token_hash, label, created_at FROM admin_tokens ORDER BY created_at, token_hash",
            &[],
        )
        .await
        .map_err(map_err)?;
    Ok(rows
        .iter()
        .map(|r| AdminTokenInfo {
            id: admin_token_id(r.get(0)),
            label: r.get(1),
            created_at: r.get(2),
        })
        .collect())
}

pub(crate) async fn admin_token_label(s: &PgStore, token_hash: &str) -> Result<Option<String>> {
    Ok(s.client()
        .await?
        .query_opt(
            "SELECT label FROM admin_tokens WHERE token_hash = $1",
            &[&token_hash],
        )
        .await
        .map_err(map_err)?
        .map(|r| r.get(0)))
}

pub(crate) async fn revoke_admin_token(s: &PgStore, id: &str) -> Result<bool> {
    check_admin_token_id(id)?;
    let mut client = s.client().await?;
    let tx = client.transaction().await.map_err(map_err)?;
    // Every token row locked: a revocation from another collector waits here, then sees this one's
    // outcome, so two at once never remove the last two tokens.
    let rows = tx
        .query(
            "SELECT token_hash FROM admin_tokens ORDER BY token_hash FOR UPDATE",
            &[],
        )
        .await
        .map_err(map_err)?;
    let hashes: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let Some(hash) = choose_token_to_revoke(id, hashes.iter().map(String::as_str))? else {
        return Ok(false);
    };
    tx.execute("DELETE FROM ui_sessions WHERE token_hash = $1", &[&hash])
        .await
        .map_err(map_err)?;
    tx.execute("DELETE FROM admin_tokens WHERE token_hash = $1", &[&hash])
        .await
        .map_err(map_err)?;
    tx.commit().await.map_err(map_err)?;
    Ok(true)
}

pub(crate) async fn dead_letters(
    s: &PgStore,
    channel: Option<&str>,
    limit: u32,
) -> Result<Vec<DeadLetter>> {
    let rows = s
        .client()
        .await?
        .query(
            "SELECT id, received_at, channel, reason, payload FROM dead_letters \
             WHERE $1::text IS NULL OR channel = $1 ORDER BY id DESC LIMIT $2",
            &[&channel, &i64::from(limit)],
        )
        .await
        .map_err(map_err)?;
    Ok(rows
        .iter()
        .map(|r| DeadLetter {
            id: r.get(0),
            received_at: r.get(1),
            channel: r.get(2),
            reason: r.get(3),
            payload: r.get(4),
        })
        .collect())
}

pub(crate) async fn trim_dead_letters(s: &PgStore, keep: u64) -> Result<Vec<(String, u64)>> {
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    let client = s.client().await?;
    let channels = client
        .query("SELECT DISTINCT channel FROM dead_letters", &[])
        .await
        .map_err(map_err)?;
    let mut removed = Vec::new();
    for row in channels {
        let channel: String = row.get(0);
        let n = client
            .execute(
                "DELETE FROM dead_letters WHERE channel = $1 AND id <= \
                 (SELECT id FROM dead_letters WHERE channel = $1 \
                  ORDER BY id DESC LIMIT 1 OFFSET $2)",
                &[&channel, &keep],
            )
            .await
            .map_err(map_err)?;
        if n > 0 {
            removed.push((channel, n));
        }
    }
    Ok(removed)
}
