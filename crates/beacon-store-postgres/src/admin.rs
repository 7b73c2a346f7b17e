//! Admin data on PostgreSQL: admin tokens and dead letters.

use crate::{PgStore, map_err};
use beacon_store::{NewDeadLetter, Result};
use beacon_wire::admin::DeadLetter;
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
