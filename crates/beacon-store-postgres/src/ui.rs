//! Dashboard sessions on PostgreSQL: rows of `ui_sessions`, shared by every collector on the
//! database, each tied to its admin token by the token's hash (a foreign key that deletes the
//! session with the token).

use crate::{PgStore, map_err};
use beacon_store::ui::UiSession;
use beacon_store::{Result, StoreError};
use chrono::{DateTime, Utc};
use tokio_postgres::error::SqlState;

pub(crate) async fn create_ui_session(
    s: &PgStore,
    session: &UiSession,
    token_hash: &str,
) -> Result<()> {
    // Only from a token that exists: a revocation committed meanwhile fails the foreign key.
    let n = s
        .client()
        .await?
        .execute(
            "INSERT INTO ui_sessions (id_hash, token_hash, token_label, created_at, expires_at) \
             SELECT $1, token_hash, $3, $4, $5 FROM admin_tokens WHERE token_hash = $2",
            &[
                &session.id_hash,
                &token_hash,
                &session.token_label,
                &session.created_at,
                &session.expires_at,
            ],
        )
        .await
        .map_err(|e| {
            if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
                return StoreError::NotFound("admin token of the session (revoked?)".into());
            }
            match map_err(e) {
                StoreError::Conflict(_) => StoreError::Conflict("session id taken".into()),
                other => other,
            }
        })?;
    if n == 0 {
        return Err(StoreError::NotFound(
            "admin token of the session (revoked?)".into(),
        ));
    }
    Ok(())
}

pub(crate) async fn ui_session(
    s: &PgStore,
    id_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<UiSession>> {
    let row = s
        .client()
        .await?
        .query_opt(
            "SELECT s.id_hash, s.token_label, s.created_at, s.expires_at FROM ui_sessions s \
             JOIN admin_tokens t ON t.token_hash = s.token_hash \
             WHERE s.id_hash = $1 AND s.expires_at > $2",
            &[&id_hash, &now],
        )
        .await
        .map_err(map_err)?;
    Ok(row.map(|r| UiSession {
        id_hash: r.get(0),
        token_label: r.get(1),
        created_at: r.get(2),
        expires_at: r.get(3),
    }))
}

pub(crate) async fn delete_ui_session(s: &PgStore, id_hash: &str) -> Result<bool> {
    let n = s
        .client()
        .await?
        .execute("DELETE FROM ui_sessions WHERE id_hash = $1", &[&id_hash])
        .await
        .map_err(map_err)?;
    Ok(n > 0)
}

pub(crate) async fn purge_ui_sessions(s: &PgStore, now: DateTime<Utc>) -> Result<u64> {
    let client = s.client().await?;
    client
        .execute("DELETE FROM ui_login_links WHERE expires_at <= $1", &[&now])
        .await
        .map_err(map_err)?;
    client
        .execute("DELETE FROM ui_sessions WHERE expires_at <= $1", &[&now])
        .await
        .map_err(map_err)
}

pub(crate) async fn create_ui_login_link(
    s: &PgStore,
    code_hash: &str,
    token_hash: &str,
    expires_at: DateTime<Utc>,
) -> Result<()> {
    let not_found = || StoreError::NotFound("admin token of the login link".into());
    let n = s
        .client()
        .await?
        .execute(
            "INSERT INTO ui_login_links (code_hash, token_hash, expires_at) \
             SELECT $1, token_hash, $3 FROM admin_tokens WHERE token_hash = $2",
            &[&code_hash, &token_hash, &expires_at],
        )
        .await
        .map_err(|e| {
            if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
                return not_found();
            }
            map_err(e)
        })?;
    if n == 0 {
        return Err(not_found());
    }
    Ok(())
}

pub(crate) async fn take_ui_login_link(
    s: &PgStore,
    code_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>> {
    // One DELETE … RETURNING: of two redemptions at once, only one gets the row.
    let row = s
        .client()
        .await?
        .query_opt(
            "DELETE FROM ui_login_links WHERE code_hash = $1 RETURNING token_hash, expires_at",
            &[&code_hash],
        )
        .await
        .map_err(map_err)?;
    Ok(row.and_then(|r| {
        let expires: DateTime<Utc> = r.get(1);
        (expires > now).then(|| r.get(0))
    }))
}
