//! Versioned schema migrations, tracked in `PRAGMA user_version`. Append only: never edit a released step.

use crate::map_err;
use beacon_store::{Result, StoreError};
use rusqlite::Connection;

/// Step `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: security checks, servers, bulletins, admin tokens, dead letters.
    "CREATE TABLE checks (
        server_id TEXT NOT NULL,
        day INTEGER NOT NULL,            -- days since 1970-01-01, UTC
        received_at INTEGER NOT NULL,    -- unix ms
        version TEXT NOT NULL,           -- X.Y.Z
        build TEXT,
        enterprise INTEGER NOT NULL,
        os TEXT NOT NULL,
        db TEXT NOT NULL,
        db_version TEXT,
        teams INTEGER,
        users INTEGER,
        activated_users INTEGER,
        unit_tests INTEGER NOT NULL,
        last_check_ms INTEGER,
        checks_that_day INTEGER NOT NULL DEFAULT 1,
        PRIMARY KEY (day, server_id)     -- day first: every report reads a range of days
    ) WITHOUT ROWID;
    -- First and last day of every server, rolled up from checks when a report needs it.
    CREATE TABLE servers (
        server_id TEXT PRIMARY KEY,
        first_day INTEGER NOT NULL,
        last_day INTEGER NOT NULL,
        unit_tests INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    CREATE TABLE bulletins (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        severity TEXT NOT NULL,
        affected TEXT NOT NULL,
        fixed_in TEXT,
        body TEXT NOT NULL,
        published_at INTEGER NOT NULL,
        retracted_at INTEGER
    );
    CREATE TABLE admin_tokens (
        token_hash TEXT PRIMARY KEY,
        label TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        received_at INTEGER NOT NULL,
        channel TEXT NOT NULL,
        reason TEXT NOT NULL,
        payload TEXT NOT NULL
    );",
    // 2: error reporting: projects, keys, issues, events and their counts.
    "CREATE TABLE projects (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE project_keys (
        public_key TEXT PRIMARY KEY,
        project_id INTEGER NOT NULL REFERENCES projects (id),
        enabled INTEGER NOT NULL DEFAULT 1,
        rate_limit_per_minute INTEGER,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE issues (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project_id INTEGER NOT NULL REFERENCES projects (id),
        group_hash TEXT NOT NULL,
        title TEXT NOT NULL,
        culprit TEXT,
        level TEXT NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        count INTEGER NOT NULL,
        UNIQUE (project_id, group_hash)
    );
    -- A rowid table: rows carry a few KiB of JSON, which WITHOUT ROWID tables handle poorly.
    CREATE TABLE events (
        project_id INTEGER NOT NULL,
        event_id TEXT NOT NULL,
        issue_id INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        timestamp INTEGER NOT NULL,
        level TEXT NOT NULL,
        release TEXT,
        environment TEXT,
        server_id TEXT,
        payload TEXT NOT NULL,          -- the scrubbed StoredEvent, JSON
        UNIQUE (project_id, event_id)
    );
    CREATE INDEX events_by_issue ON events (issue_id, received_at);
    CREATE TABLE issue_counts (
        issue_id INTEGER NOT NULL,
        day INTEGER NOT NULL,
        release TEXT NOT NULL,          -- '' when the event had none
        environment TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (issue_id, day, release, environment)
    ) WITHOUT ROWID;
    CREATE TABLE issue_servers (
        issue_id INTEGER NOT NULL,
        server_id TEXT NOT NULL,
        PRIMARY KEY (issue_id, server_id)
    ) WITHOUT ROWID;",
    // 3: mobile API keys, collector secrets, trace events and their sketches.
    "CREATE TABLE secrets (
        name TEXT PRIMARY KEY,
        value BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE api_keys (
        name TEXT PRIMARY KEY,
        key_hash TEXT NOT NULL UNIQUE,  -- SHA-256 hex; the key is shown once
        prefix TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    );
    -- A device as one batch described it, pseudonymised; id is a content hash.
    CREATE TABLE perf_contexts (
        id INTEGER PRIMARY KEY,
        device_hash TEXT,               -- HMAC of device_unique_id; the raw value is never stored
        info TEXT NOT NULL,             -- the other device_info keys, JSON
        first_seen INTEGER NOT NULL
    );
    -- Raw events: no index, append only (drill-down and retention read them in rowid order).
    CREATE TABLE trace_events (
        ts INTEGER NOT NULL,            -- unix µs
        trace INTEGER NOT NULL,         -- TraceName code
        dur INTEGER NOT NULL,           -- µs
        context INTEGER NOT NULL
    );
    -- One merged sketch per key. Cells of newer events wait in the writer's memory and are folded in
    -- every few seconds; meta 'perf_watermark' is the newest trace_events rowid folded in, so events
    -- past it are re-folded from trace_events after a crash.
    CREATE TABLE perf_sketches (
        trace INTEGER NOT NULL,
        dim INTEGER NOT NULL,           -- Dimension code
        day INTEGER NOT NULL,
        emulator INTEGER NOT NULL,
        value TEXT NOT NULL,
        cell BLOB NOT NULL,
        PRIMARY KEY (trace, dim, day, emulator, value)
    ) WITHOUT ROWID;",
    // 4: dead letters are trimmed per channel, oldest first.
    "CREATE INDEX dead_letters_channel_id ON dead_letters (channel, id);",
    // 5: dashboard sessions, each tied to the admin token it was made from (revoking the token
    // deletes them; `PRAGMA foreign_keys=ON` on every connection).
    "CREATE TABLE ui_sessions (
        id_hash TEXT PRIMARY KEY,       -- SHA-256 hex of the session id; the id is only in the cookie
        token_hash TEXT NOT NULL REFERENCES admin_tokens (token_hash) ON DELETE CASCADE,
        token_label TEXT NOT NULL,
        created_at INTEGER NOT NULL,    -- unix ms
        expires_at INTEGER NOT NULL     -- unix ms
    );
    CREATE INDEX ui_sessions_token ON ui_sessions (token_hash);
    CREATE INDEX ui_sessions_expires ON ui_sessions (expires_at);",
    // 6: release health looks up each server's error events in a range of days.
    "CREATE INDEX events_by_server ON events (server_id, received_at) WHERE server_id IS NOT NULL;",
    // 7: one-time dashboard login links (`beacon demo` prints one), tied to their admin token.
    "CREATE TABLE ui_login_links (
        code_hash TEXT PRIMARY KEY,     -- SHA-256 hex of the code; the code is only in the link
        token_hash TEXT NOT NULL REFERENCES admin_tokens (token_hash) ON DELETE CASCADE,
        expires_at INTEGER NOT NULL     -- unix ms
    );
    CREATE INDEX ui_login_links_token ON ui_login_links (token_hash);",
    // 8: the log of deletion requests (`beacon forget`): ids only as their SHA-256.
    "CREATE TABLE forget_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,            -- unix ms
        by TEXT NOT NULL,               -- the admin token's label, or 'agent'
        channel TEXT NOT NULL,          -- 'server' or 'device'
        id_hash TEXT NOT NULL,
        checks INTEGER NOT NULL,
        events INTEGER NOT NULL,
        trace_events INTEGER NOT NULL,
        dead_letters INTEGER NOT NULL
    );",
    // 9: report rollups kept by every write to `checks` (see `beacon_store::security::rollup`):
    // servers and capped activated users per (day, version, test install), and each server's latest
    // check with its first day — which replaces `servers`, rolled up when a report asked. Filled from
    // the checks (and the first days) already stored.
    "CREATE TABLE check_days (
        day INTEGER NOT NULL,
        version TEXT NOT NULL,
        unit_tests INTEGER NOT NULL,
        servers INTEGER NOT NULL,
        activated_users INTEGER NOT NULL,   -- sum of activated_users capped at 10^9, NULL as 0
        PRIMARY KEY (day, version, unit_tests)
    ) WITHOUT ROWID;
    INSERT INTO check_days
        SELECT day, version, unit_tests, count(*),
        coalesce(sum(CASE WHEN activated_users > 1000000000 THEN 1000000000 ELSE activated_users END), 0)
        FROM checks GROUP BY day, version, unit_tests;
    CREATE TABLE server_latest (
        server_id TEXT PRIMARY KEY,
        first_day INTEGER NOT NULL,
        day INTEGER NOT NULL,               -- the day of the latest check; its columns follow
        version TEXT NOT NULL,
        enterprise INTEGER NOT NULL,
        os TEXT NOT NULL,
        db TEXT NOT NULL,
        db_version TEXT,
        teams INTEGER,
        users INTEGER,
        activated_users INTEGER,
        unit_tests INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO server_latest
        SELECT c.server_id, min(m.first_day, coalesce(s.first_day, m.first_day)), c.day, c.version,
        c.enterprise, c.os, c.db, c.db_version, c.teams, c.users, c.activated_users, c.unit_tests
        FROM checks c
        JOIN (SELECT server_id, min(day) AS first_day, max(day) AS day FROM checks GROUP BY server_id) m
          ON c.server_id = m.server_id AND c.day = m.day
        LEFT JOIN servers s ON s.server_id = c.server_id;
    -- The servers of server_latest per day of their latest check and every fleet dimension and size
    -- bucket (NULL stored as chr(1) / -1: key columns cannot be NULL), with capped sums.
    CREATE TABLE latest_cells (
        day INTEGER NOT NULL,
        version TEXT NOT NULL,
        enterprise INTEGER NOT NULL,
        os TEXT NOT NULL,
        db TEXT NOT NULL,
        db_version TEXT NOT NULL,
        users_bucket INTEGER NOT NULL,
        activated_users_bucket INTEGER NOT NULL,
        teams_bucket INTEGER NOT NULL,
        unit_tests INTEGER NOT NULL,
        servers INTEGER NOT NULL,
        users INTEGER NOT NULL,
        activated_users INTEGER NOT NULL,
        teams INTEGER NOT NULL,
        PRIMARY KEY (day, version, enterprise, os, db, db_version, users_bucket,
                     activated_users_bucket, teams_bucket, unit_tests)
    ) WITHOUT ROWID;
    INSERT INTO latest_cells
        SELECT day, version, enterprise, os, db, coalesce(db_version, char(1)),
        CASE WHEN users IS NULL THEN -1 WHEN users = 0 THEN 0 WHEN users BETWEEN 1 AND 10 THEN 1 WHEN users BETWEEN 11 AND 100 THEN 11 WHEN users BETWEEN 101 AND 1000 THEN 101 WHEN users BETWEEN 1001 AND 10000 THEN 1001 ELSE 10001 END,
        CASE WHEN activated_users IS NULL THEN -1 WHEN activated_users = 0 THEN 0 WHEN activated_users BETWEEN 1 AND 10 THEN 1 WHEN activated_users BETWEEN 11 AND 100 THEN 11 WHEN activated_users BETWEEN 101 AND 1000 THEN 101 WHEN activated_users BETWEEN 1001 AND 10000 THEN 1001 ELSE 10001 END,
        CASE WHEN teams IS NULL THEN -1 WHEN teams = 0 THEN 0 WHEN teams BETWEEN 1 AND 10 THEN 1 WHEN teams BETWEEN 11 AND 100 THEN 11 WHEN teams BETWEEN 101 AND 1000 THEN 101 WHEN teams BETWEEN 1001 AND 10000 THEN 1001 ELSE 10001 END,
        unit_tests, count(*), coalesce(sum(CASE WHEN users > 1000000000 THEN 1000000000 ELSE users END), 0), coalesce(sum(CASE WHEN activated_users > 1000000000 THEN 1000000000 ELSE activated_users END), 0), coalesce(sum(CASE WHEN teams > 1000000000 THEN 1000000000 ELSE teams END), 0)
        FROM server_latest GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10;
    CREATE INDEX server_latest_day ON server_latest (day);
    CREATE INDEX server_latest_first_day ON server_latest (first_day);
    DROP TABLE servers;
    DELETE FROM meta WHERE key = 'servers_rollup_day';",
    // 10: servers per first day seen and test install (of their latest check): the growth
    // report's new servers without reading `server_latest`. Filled from it.
    "CREATE TABLE first_days (
        day INTEGER NOT NULL,
        unit_tests INTEGER NOT NULL,
        servers INTEGER NOT NULL,
        PRIMARY KEY (day, unit_tests)
    ) WITHOUT ROWID;
    INSERT INTO first_days SELECT first_day, unit_tests, count(*) FROM server_latest GROUP BY 1, 2;",
    // 11: alerts: rules, the episode state of each key a rule has seen, and the outbox of
    // notifications (also their history), one per (rule, key, episode): tests have episode 0.
    "CREATE TABLE alert_rules (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        destination TEXT NOT NULL,
        url TEXT NOT NULL,
        secret TEXT,
        params TEXT NOT NULL,           -- JSON, every parameter of the kind
        created_at INTEGER NOT NULL
    );
    CREATE TABLE alert_state (
        rule_id INTEGER NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
        episode_key TEXT NOT NULL,
        episode INTEGER NOT NULL,
        firing INTEGER NOT NULL,
        since INTEGER NOT NULL,
        PRIMARY KEY (rule_id, episode_key)
    ) WITHOUT ROWID;
    CREATE TABLE alert_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        rule_id INTEGER NOT NULL,       -- no foreign key: history outlives its rule
        rule_name TEXT NOT NULL,
        episode_key TEXT NOT NULL,
        episode INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        text TEXT NOT NULL,
        ui_path TEXT,
        cli TEXT NOT NULL,
        details TEXT NOT NULL,          -- JSON
        status TEXT NOT NULL,           -- pending, delivered, failed, cancelled
        attempts INTEGER NOT NULL,
        next_at INTEGER,
        lease_until INTEGER,
        last_attempt_at INTEGER,
        delivered_at INTEGER,
        last_error TEXT
    );
    CREATE UNIQUE INDEX alert_outbox_episode ON alert_outbox (rule_id, episode_key, episode) WHERE episode > 0;
    CREATE INDEX alert_outbox_due ON alert_outbox (next_at) WHERE status = 'pending';",
];

/// The schema version this build writes.
pub const LATEST: i64 = MIGRATIONS.len() as i64;

pub fn apply(conn: &mut Connection) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(map_err)?;
    let current: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(map_err)?;
    if current > LATEST {
        return Err(StoreError::Corrupt(format!(
            "database schema version {current} is newer than this beacon knows ({LATEST}); upgrade beacon"
        )));
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.execute_batch(step).map_err(map_err)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(map_err)?;
        tracing::info!(version = i + 1, "applied sqlite schema migration");
    }
    tx.commit().map_err(map_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database made by an earlier release (schema 4, with a token and an event) upgrades in place:
    /// its token can make a session, and deleting the token deletes the session.
    #[test]
    fn a_version_4_database_upgrades_with_its_data() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA foreign_keys=ON").unwrap();
        for step in &MIGRATIONS[..4] {
            conn.execute_batch(step).unwrap();
        }
        conn.pragma_update(None, "user_version", 4).unwrap();
        conn.execute_batch(
            "INSERT INTO admin_tokens VALUES ('h1', 'initial', 0);
             INSERT INTO events (project_id, event_id, issue_id, received_at, timestamp, level, \
             server_id, payload) VALUES (1, 'e1', 1, 5, 5, 'error', 's1', '{}');",
        )
        .unwrap();
        apply(&mut conn).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, LATEST);
        conn.execute(
            "INSERT INTO ui_sessions VALUES ('s', 'h1', 'initial', 0, 10)",
            [],
        )
        .unwrap();
        let orphan = conn.execute(
            "INSERT INTO ui_sessions VALUES ('t', 'no such token', 'x', 0, 10)",
            [],
        );
        assert!(orphan.is_err(), "a session needs its token");
        conn.execute("DELETE FROM admin_tokens WHERE token_hash = 'h1'", [])
            .unwrap();
        let left: i64 = conn
            .query_row("SELECT count(*) FROM ui_sessions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0, "the session went with its token");
        // Applying again changes nothing.
        apply(&mut conn).unwrap();
    }

    /// A version-8 database (checks and the old `servers` rollup) upgrades with its report rollups
    /// filled: each server's latest check and first day (the earlier of its checks' and the old
    /// rollup's), and servers per (day, version, test install) with capped activated users.
    #[test]
    fn a_version_8_database_gets_its_report_rollups() {
        let mut conn = Connection::open_in_memory().unwrap();
        for step in &MIGRATIONS[..8] {
            conn.execute_batch(step).unwrap();
        }
        conn.pragma_update(None, "user_version", 8).unwrap();
        conn.execute_batch(
            "INSERT INTO checks (server_id, day, received_at, version, enterprise, os, db, \
             activated_users, unit_tests) VALUES \
             ('a', 10, 0, '1.0.0', 0, 'linux', 'postgres', 5, 0), \
             ('a', 12, 0, '1.1.0', 1, 'linux', 'postgres', 7, 0), \
             ('b', 12, 0, '1.1.0', 0, 'windows', 'mysql', 3000000000, 1), \
             ('c', 11, 0, '1.0.0', 0, 'linux', 'postgres', NULL, 0);
             INSERT INTO servers VALUES ('a', 3, 12, 0), ('b', 12, 12, 1);
             INSERT INTO meta VALUES ('servers_rollup_day', 12);",
        )
        .unwrap();
        apply(&mut conn).unwrap();
        let latest: Vec<(String, i64, i64, String, bool, i64)> = conn
            .prepare(
                "SELECT server_id, first_day, day, version, enterprise, unit_tests \
                 FROM server_latest ORDER BY server_id",
            )
            .unwrap()
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            latest,
            vec![
                ("a".into(), 3, 12, "1.1.0".into(), true, 0),
                ("b".into(), 12, 12, "1.1.0".into(), false, 1),
                ("c".into(), 11, 11, "1.0.0".into(), false, 0),
            ]
        );
        let days: Vec<(i64, String, i64, i64, i64)> = conn
            .prepare("SELECT * FROM check_days ORDER BY day, version, unit_tests")
            .unwrap()
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            days,
            vec![
                (10, "1.0.0".into(), 0, 1, 5),
                (11, "1.0.0".into(), 0, 1, 0),
                (12, "1.1.0".into(), 0, 1, 7),
                (12, "1.1.0".into(), 1, 1, 1_000_000_000),
            ]
        );
        let old: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'servers'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(old, 0, "the old rollup is gone");
        let cells: (i64, i64, i64) = conn
            .query_row(
                "SELECT sum(servers), count(*), sum(db_version = char(1)) FROM latest_cells",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(
            cells,
            (3, 3, 3),
            "one cell per server here, no database version known"
        );
    }
}
