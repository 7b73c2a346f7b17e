//! Dashboard sessions on SQLite: rows of `ui_sessions`, each tied to its admin token by the token's
//! hash (a foreign key that deletes the session with the token).

use crate::{SqliteStore, map_err, ms, run, time_from};
use beacon_store::ui::UiSession;
use beacon_store::{Result, StoreError};
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

pub(crate) async fn create_ui_session(
    s: &SqliteStore,
    session: &UiSession,
    token_hash: &str,
) -> Result<()> {
    let (session, token_hash) = (session.clone(), token_hash.to_string());
    run(&s.writer, move |c| {
        // Only from a token that exists at this instant (no window for a revoked one).
        let n = c
            .execute(
                "INSERT INTO ui_sessions (id_hash, token_hash, token_label, created_at, expires_at) \
                 SELECT ?1, token_hash, ?3, ?4, ?5 FROM admin_tokens WHERE token_hash = ?2",
                params![
                    session.id_hash,
                    token_hash,
                    session.token_label,
                    ms(session.created_at),
                    ms(session.expires_at)
                ],
            )
            .map_err(|e| match map_err(e) {
                StoreError::Conflict(_) => StoreError::Conflict("session id taken".into()),
                other => other,
            })?;
        if n == 0 {
            return Err(StoreError::NotFound(
                "admin token of the session (revoked?)".into(),
            ));
        }
        Ok(())
    })
    .await
}

pub(crate) async fn ui_session(
    s: &SqliteStore,
    id_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<UiSession>> {
    let id_hash = id_hash.to_string();
    // A point read on every dashboard request: the lookup connection, never behind a report.
    run(&s.lookup, move |c| {
        let row = c
            .prepare_cached(
                "SELECT s.id_hash, s.token_label, s.created_at, s.expires_at FROM ui_sessions s \
                 JOIN admin_tokens t ON t.token_hash = s.token_hash \
                 WHERE s.id_hash = ?1 AND s.expires_at > ?2",
            )
            .map_err(map_err)?
            .query_row(params![id_hash, ms(now)], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .optional()
            .map_err(map_err)?;
        row.map(|(id_hash, token_label, created, expires)| {
            Ok(UiSession {
                id_hash,
                token_label,
                created_at: time_from(created)?,
                expires_at: time_from(expires)?,
            })
        })
        .transpose()
    })
    .await
}

pub(crate) async fn delete_ui_session(s: &SqliteStore, id_hash: &str) -> Result<bool> {
    let id_hash = id_hash.to_string();
    run(&s.writer, move |c| {
        c.execute("DELETE FROM ui_sessions WHERE id_hash = ?1", [id_hash])
            .map(|n| n > 0)
            .map_err(map_err)
    })
    .await
}

pub(crate) async fn purge_ui_sessions(s: &SqliteStore, now: DateTime<Utc>) -> Result<u64> {
    run(&s.writer, move |c| {
        c.execute(
            "DELETE FROM ui_login_links WHERE expires_at <= ?1",
            [ms(now)],
        )
        .map_err(map_err)?;
        c.execute("DELETE FROM ui_sessions WHERE expires_at <= ?1", [ms(now)])
            .map(|n| n as u64)
            .map_err(map_err)
    })
    .await
}

pub(crate) async fn create_ui_login_link(
    s: &SqliteStore,
    code_hash: &str,
    token_hash: &str,
    expires_at: DateTime<Utc>,
) -> Result<()> {
    let (code_hash, token_hash) = (code_hash.to_string(), token_hash.to_string());
    run(&s.writer, move |c| {
        let n = c
            .execute(
                "INSERT INTO ui_login_links (code_hash, token_hash, expires_at) \
                 SELECT ?1, token_hash, ?3 FROM admin_tokens WHERE token_hash = ?2",
                params![code_hash, token_hash, ms(expires_at)],
            )
            .map_err(map_err)?;
        if n == 0 {
            return Err(StoreError::NotFound("admin token of the login link".into()));
        }
        Ok(())
    })
    .await
}

pub(crate) async fn take_ui_login_link(
    s: &SqliteStore,
    code_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>> {
    let code_hash = code_hash.to_string();
    // One DELETE on the one writer connection: of two redemptions, only one sees the row.
    run(&s.writer, move |c| {
        let token: Option<(String, i64)> = c
            .query_row(
                "DELETE FROM ui_login_links WHERE code_hash = ?1 RETURNING token_hash, expires_at",
                [code_hash],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(map_err)?;
        Ok(token.and_then(|(hash, expires)| (expires > ms(now)).then_some(hash)))
    })
    .await
}
