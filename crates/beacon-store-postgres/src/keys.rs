//! Keys on PostgreSQL: DSN project keys, mobile API keys, and the collector's secrets.

use crate::{PgStore, map_err};
use beacon_store::{Result, StoreError};
use beacon_wire::admin::{ApiKeyInfo, KeyInfo};
use chrono::{DateTime, Utc};
use tokio_postgres::Client;

pub(crate) fn key_from_row(r: &tokio_postgres::Row) -> KeyInfo {
    KeyInfo {
        public_key: r.get(0),
        project_id: r.get(1),
        enabled: r.get(2),
        rate_limit_per_minute: r.get::<_, Option<i32>>(3).map(|v| v as u32),
        dsn: None,
    }
}

fn api_key_from_row(r: &tokio_postgres::Row) -> ApiKeyInfo {
    ApiKeyInfo {
        name: r.get(0),
        prefix: r.get(1),
        created_at: r.get(2),
        revoked_at: r.get(3),
    }
}

async fn create_api_key_on(
    client: &Client,
    name: &str,
    hash: &str,
    prefix: &str,
    at: DateTime<Utc>,
) -> Result<ApiKeyInfo> {
    client
        .execute(
            "INSERT INTO api_keys (name, key_hash, prefix, created_at) VALUES ($1, $2, $3, $4)",
            &[&name, &hash, &prefix, &at],
        )
        .await
        .map_err(|e| match map_err(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("an api key named {name:?} exists"))
            }
            other => other,
        })?;
    Ok(ApiKeyInfo {
        name: name.to_string(),
        prefix: prefix.to_string(),
        created_at: at,
        revoked_at: None,
    })
}

async fn api_keys_on(client: &Client) -> Result<Vec<ApiKeyInfo>> {
    Ok(client
        .query(
            "SELECT name, prefix, created_at, revoked_at FROM api_keys ORDER BY created_at, name",
            &[],
        )
        .await
        .map_err(map_err)?
        .iter()
        .map(api_key_from_row)
        .collect())
}

async fn revoke_api_key_on(client: &Client, name: &str, at: DateTime<Utc>) -> Result<ApiKeyInfo> {
    client
        .query_opt(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $2) WHERE name = $1 \
             RETURNING name, prefix, created_at, revoked_at",
            &[&name, &at],
        )
        .await
        .map_err(map_err)?
        .map(|r| api_key_from_row(&r))
        .ok_or_else(|| StoreError::NotFound(format!("no api key named {name:?}")))
}

async fn api_key_valid_on(client: &Client, hash: &str) -> Result<bool> {
    Ok(client
        .query_opt(
            "SELECT 1 FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
            &[&hash],
        )
        .await
        .map_err(map_err)?
        .is_some())
}

async fn secret_on(client: &Client, name: &str, candidate: &[u8]) -> Result<Vec<u8>> {
    client
        .execute(
            "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&name, &candidate],
        )
        .await
        .map_err(map_err)?;
    Ok(client
        .query_one("SELECT value FROM secrets WHERE name = $1", &[&name])
        .await
        .map_err(map_err)?
        .get(0))
}

pub(crate) async fn project_key(s: &PgStore, public_key: &str) -> Result<Option<KeyInfo>> {
    Ok(s
        .client()
        .await?
        .query_opt(
            "SELECT public_key, project_id, enabled, rate_limit_per_minute FROM project_keys WHERE public_key = $1",
            &[&public_key],
        )
        .await
        .map_err(map_err)?
        .as_ref()
        .map(key_from_row))
}

pub(crate) async fn update_key(
    s: &PgStore,
    public_key: &str,
    enabled: Option<bool>,
    rate_limit: Option<u32>,
) -> Result<KeyInfo> {
    let limit: Option<Option<i32>> = rate_limit.map(|l| (l > 0).then_some(l as i32));
    let row = s
        .client()
        .await?
        .query_opt(
            "UPDATE project_keys SET enabled = coalesce($2, enabled), \
             rate_limit_per_minute = CASE WHEN $3 THEN $4 ELSE rate_limit_per_minute END \
             WHERE public_key = $1 RETURNING public_key, project_id, enabled, rate_limit_per_minute",
            &[&public_key, &enabled, &limit.is_some(), &limit.flatten()],
        )
        .await
        .map_err(map_err)?
        .ok_or_else(|| StoreError::NotFound(format!("key {public_key}")))?;
    Ok(key_from_row(&row))
}

pub(crate) async fn create_api_key(
    s: &PgStore,
    name: &str,
    key_hash: &str,
    prefix: &str,
    at: DateTime<Utc>,
) -> Result<ApiKeyInfo> {
    create_api_key_on(&**s.client().await?, name, key_hash, prefix, at).await
}

pub(crate) async fn api_keys(s: &PgStore) -> Result<Vec<ApiKeyInfo>> {
    api_keys_on(&**s.client().await?).await
}

pub(crate) async fn revoke_api_key(
    s: &PgStore,
    name: &str,
    at: DateTime<Utc>,
) -> Result<ApiKeyInfo> {
    revoke_api_key_on(&**s.client().await?, name, at).await
}

pub(crate) async fn api_key_valid(s: &PgStore, key_hash: &str) -> Result<bool> {
    api_key_valid_on(&**s.client().await?, key_hash).await
}

pub(crate) async fn secret(s: &PgStore, name: &str, candidate: &[u8]) -> Result<Vec<u8>> {
    secret_on(&**s.client().await?, name, candidate).await
}
