//! Versioned schema migrations, recorded in `schema_migrations` and applied under an advisory lock,
//! so collectors starting at once against one database do not race. Append only.

use crate::map_err;
use beacon_store::{Result, StoreError};

/// Any fixed number; `pg_advisory_lock` keys are database-wide.
const LOCK_KEY: i64 = 0x6265_6163_6f6e; // "beacon"

/// Step `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: security checks, server rollup, bulletins, admin tokens, dead letters.
    "CREATE TABLE checks (
        day DATE NOT NULL,               -- UTC day of receipt
        server_id TEXT NOT NULL,
        received_at TIMESTAMPTZ NOT NULL,
        version TEXT NOT NULL,           -- X.Y.Z
        build TEXT,
        enterprise BOOLEAN NOT NULL,
        os TEXT NOT NULL,
        db TEXT NOT NULL,
        db_version TEXT,
        teams BIGINT,
        users BIGINT,
        activated_users BIGINT,
        unit_tests BOOLEAN NOT NULL,
        last_check_ms BIGINT,
        checks_that_day INTEGER NOT NULL DEFAULT 1,
        PRIMARY KEY (day, server_id)     -- the de-duplication rule, for every collector at once
    );
    -- First and last day of every server, rolled up from checks when a report needs it.
    CREATE TABLE servers (
        server_id TEXT PRIMARY KEY,
        first_day DATE NOT NULL,
        last_day DATE NOT NULL,
        unit_tests BOOLEAN NOT NULL
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
    CREATE TABLE bulletins (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        severity TEXT NOT NULL,
        affected TEXT NOT NULL,
        fixed_in TEXT,
        body TEXT NOT NULL,
        published_at TIMESTAMPTZ NOT NULL,
        retracted_at TIMESTAMPTZ
    );
    CREATE TABLE admin_tokens (
        token_hash TEXT PRIMARY KEY,
        label TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE dead_letters (
        id BIGSERIAL PRIMARY KEY,
        received_at TIMESTAMPTZ NOT NULL,
        channel TEXT NOT NULL,
        reason TEXT NOT NULL,
        payload TEXT NOT NULL
    );",
    // 2: error reporting: projects, keys, issues, events and their counts.
    "CREATE TABLE projects (
        id BIGSERIAL PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE project_keys (
        public_key TEXT PRIMARY KEY,
        project_id BIGINT NOT NULL REFERENCES projects (id),
        enabled BOOLEAN NOT NULL DEFAULT true,
        rate_limit_per_minute INTEGER,
        created_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE issues (
        id BIGSERIAL PRIMARY KEY,
        project_id BIGINT NOT NULL REFERENCES projects (id),
        group_hash TEXT NOT NULL,
        title TEXT NOT NULL,
        culprit TEXT,
        level TEXT NOT NULL,
        first_seen TIMESTAMPTZ NOT NULL,
        last_seen TIMESTAMPTZ NOT NULL,
        count BIGINT NOT NULL,
        UNIQUE (project_id, group_hash)
    );
    CREATE TABLE events (
        project_id BIGINT NOT NULL,
        event_id TEXT NOT NULL,
        issue_id BIGINT NOT NULL,
        received_at TIMESTAMPTZ NOT NULL,
        timestamp TIMESTAMPTZ NOT NULL,
        level TEXT NOT NULL,
        release TEXT,
        environment TEXT,
        server_id TEXT,
        payload TEXT NOT NULL,
        PRIMARY KEY (project_id, event_id)
    );
    CREATE INDEX events_by_issue ON events (issue_id, received_at);
    CREATE TABLE issue_counts (
        issue_id BIGINT NOT NULL,
        day DATE NOT NULL,
        release TEXT NOT NULL,
        environment TEXT NOT NULL,
        count BIGINT NOT NULL,
        PRIMARY KEY (issue_id, day, release, environment)
    );
    CREATE TABLE issue_servers (
        issue_id BIGINT NOT NULL,
        server_id TEXT NOT NULL,
        PRIMARY KEY (issue_id, server_id)
    );",
    // 3: mobile API keys, collector secrets, trace events and their sketches.
    "CREATE TABLE secrets (
        name TEXT PRIMARY KEY,
        value BYTEA NOT NULL
    );
    CREATE TABLE api_keys (
        name TEXT PRIMARY KEY,
        key_hash TEXT NOT NULL UNIQUE,  -- SHA-256 hex; the key is shown once
        prefix TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        revoked_at TIMESTAMPTZ
    );
    -- A device as one batch described it, pseudonymised; id is a content hash.
    CREATE TABLE perf_contexts (
        id BIGINT PRIMARY KEY,
        device_hash TEXT,               -- HMAC of device_unique_id; the raw value is never stored
        info JSONB NOT NULL,
        first_seen TIMESTAMPTZ NOT NULL
    );
    -- Raw events: a heap without indexes, append only.
    CREATE TABLE trace_events (
        ts BIGINT NOT NULL,             -- unix µs
        trace SMALLINT NOT NULL,        -- TraceName code
        dur BIGINT NOT NULL,            -- µs
        context BIGINT NOT NULL
    );
    -- One merged sketch per key; deltas wait in perf_deltas until compacted.
    CREATE TABLE perf_sketches (
        trace SMALLINT NOT NULL,
        dim SMALLINT NOT NULL,
        day DATE NOT NULL,
        emulator BOOLEAN NOT NULL,
        value TEXT NOT NULL,
        cell BYTEA NOT NULL,
        PRIMARY KEY (trace, dim, day, emulator, value)
    );
    CREATE TABLE perf_deltas (
        trace SMALLINT NOT NULL,
        dim SMALLINT NOT NULL,
        day DATE NOT NULL,
        emulator BOOLEAN NOT NULL,
        value TEXT NOT NULL,
        cell BYTEA NOT NULL
    );
    CREATE INDEX perf_deltas_by_key ON perf_deltas (trace, dim, day);",
    // 4: dead letters are trimmed per channel, oldest first.
    "CREATE INDEX dead_letters_channel_id ON dead_letters (channel, id);",
    // 5: dashboard sessions, each tied to the admin token it was made from (revoking the token
    // deletes them).
    "CREATE TABLE ui_sessions (
        id_hash TEXT PRIMARY KEY,       -- SHA-256 hex of the session id; the id is only in the cookie
        token_hash TEXT NOT NULL REFERENCES admin_tokens (token_hash) ON DELETE CASCADE,
        token_label TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX ui_sessions_token ON ui_sessions (token_hash);
    CREATE INDEX ui_sessions_expires ON ui_sessions (expires_at);",
    // 6: release health looks up each server's error events in a range of days.
    "CREATE INDEX events_by_server ON events (server_id, received_at) WHERE server_id IS NOT NULL;",
    // 7: one-time dashboard login links (`beacon demo` prints one), tied to their admin token.
    "CREATE TABLE ui_login_links (
        code_hash TEXT PRIMARY KEY,     -- SHA-256 hex of the code; the code is only in the link
        token_hash TEXT NOT NULL REFERENCES admin_tokens (token_hash) ON DELETE CASCADE,
        expires_at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX ui_login_links_token ON ui_login_links (token_hash);",
];

pub const LATEST: i32 = MIGRATIONS.len() as i32;

pub async fn apply(client: &mut tokio_postgres::Client) -> Result<()> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(map_err)?;
    let result = apply_locked(client).await;
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await
        .map_err(map_err);
    result.and(unlock.map(|_| ()))
}

async fn apply_locked(client: &mut tokio_postgres::Client) -> Result<()> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(map_err)?;
    let current: i32 = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(map_err)?
        .get(0);
    if current > LATEST {
        return Err(StoreError::Corrupt(format!(
            "database schema version {current} is newer than this beacon knows ({LATEST}); upgrade beacon"
        )));
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i32 + 1;
        let tx = client.transaction().await.map_err(map_err)?;
        tx.batch_execute(step).await.map_err(map_err)?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        tracing::info!(version, "applied postgres schema migration");
    }
    Ok(())
}
