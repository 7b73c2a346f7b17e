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
    // 8: the log of deletion requests (`beacon forget`): ids only as their SHA-256.
    "CREATE TABLE forget_log (
        id BIGSERIAL PRIMARY KEY,
        at TIMESTAMPTZ NOT NULL,
        by TEXT NOT NULL,               -- the admin token's label, or 'agent'
        channel TEXT NOT NULL,          -- 'server' or 'device'
        id_hash TEXT NOT NULL,
        checks BIGINT NOT NULL,
        events BIGINT NOT NULL,
        trace_events BIGINT NOT NULL,
        dead_letters BIGINT NOT NULL
    );",
    // 9: retention. checks, events and trace_events become partitioned by UTC day (expired days are
    // dropped whole); an existing database is converted in place: each table is renamed, re-created
    // partitioned with a partition per day it holds (and a default partition), copied, dropped.
    // Error events are de-duplicated by event_ids, whose key needs no day.
    r#"CREATE FUNCTION beacon_day_partition(parent text, day date) RETURNS boolean
    LANGUAGE plpgsql AS $f$
    DECLARE
        name text := parent || '_p' || to_char(day, 'YYYYMMDD');
        lo text;
        hi text;
    BEGIN
        IF to_regclass(name) IS NOT NULL THEN
            RETURN false;
        END IF;
        IF parent = 'checks' THEN
            lo := quote_literal(to_char(day, 'YYYY-MM-DD'));
            hi := quote_literal(to_char(day + 1, 'YYYY-MM-DD'));
        ELSIF parent = 'events' THEN
            lo := quote_literal(to_char(day, 'YYYY-MM-DD') || ' 00:00:00+00');
            hi := quote_literal(to_char(day + 1, 'YYYY-MM-DD') || ' 00:00:00+00');
        ELSIF parent = 'trace_events' THEN
            lo := ((day - DATE '1970-01-01')::bigint * 86400000000)::text;
            hi := ((day + 1 - DATE '1970-01-01')::bigint * 86400000000)::text;
        ELSE
            RAISE EXCEPTION 'no day partitions for %', parent;
        END IF;
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%s) TO (%s)',
                       name, parent, lo, hi);
        RETURN true;
    END
    $f$;

    ALTER TABLE checks RENAME TO checks_unpartitioned;
    ALTER INDEX checks_pkey RENAME TO checks_unpartitioned_pkey;
    CREATE TABLE checks (LIKE checks_unpartitioned INCLUDING DEFAULTS) PARTITION BY RANGE (day);
    ALTER TABLE checks ADD PRIMARY KEY (day, server_id);
    CREATE TABLE checks_default PARTITION OF checks DEFAULT;

    ALTER TABLE events RENAME TO events_unpartitioned;
    ALTER INDEX events_pkey RENAME TO events_unpartitioned_pkey;
    ALTER INDEX events_by_issue RENAME TO events_unpartitioned_by_issue;
    ALTER INDEX events_by_server RENAME TO events_unpartitioned_by_server;
    CREATE TABLE events (LIKE events_unpartitioned INCLUDING DEFAULTS) PARTITION BY RANGE (received_at);
    CREATE INDEX events_by_issue ON events (issue_id, received_at);
    CREATE INDEX events_by_server ON events (server_id, received_at) WHERE server_id IS NOT NULL;
    CREATE TABLE events_default PARTITION OF events DEFAULT;
    -- The default partitions hold few rows (those of days without a partition); retention deletes
    -- theirs in batches, which these indexes (on them alone) keep from scanning the partition.
    CREATE INDEX events_default_received_at ON events_default (received_at);
    CREATE TABLE event_ids (
        project_id BIGINT NOT NULL,
        event_id TEXT NOT NULL,
        received_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (project_id, event_id)
    );

    ALTER TABLE trace_events RENAME TO trace_events_unpartitioned;
    CREATE TABLE trace_events (LIKE trace_events_unpartitioned INCLUDING DEFAULTS) PARTITION BY RANGE (ts);
    CREATE TABLE trace_events_default PARTITION OF trace_events DEFAULT;
    CREATE INDEX trace_events_default_ts ON trace_events_default (ts);

    DO $d$
    DECLARE
        d date;
    BEGIN
        FOR d IN SELECT DISTINCT day FROM checks_unpartitioned LOOP
            PERFORM beacon_day_partition('checks', d);
        END LOOP;
        FOR d IN SELECT DISTINCT (received_at AT TIME ZONE 'UTC')::date FROM events_unpartitioned LOOP
            PERFORM beacon_day_partition('events', d);
        END LOOP;
        FOR d IN SELECT DISTINCT DATE '1970-01-01' + floor(ts / 86400000000.0)::int FROM trace_events_unpartitioned LOOP
            PERFORM beacon_day_partition('trace_events', d);
        END LOOP;
    END
    $d$;

    INSERT INTO checks SELECT * FROM checks_unpartitioned;
    INSERT INTO events SELECT * FROM events_unpartitioned;
    INSERT INTO event_ids (project_id, event_id, received_at)
        SELECT project_id, event_id, received_at FROM events_unpartitioned;
    CREATE INDEX event_ids_received_at ON event_ids (received_at);
    INSERT INTO trace_events SELECT * FROM trace_events_unpartitioned;
    DROP TABLE checks_unpartitioned;
    DROP TABLE events_unpartitioned;
    DROP TABLE trace_events_unpartitioned;"#,
    // 10: report rollups kept by every write to `checks` (see `beacon_store::security::rollup`):
    // servers and capped activated users per (day, version, test install), and each server's latest
    // check with its first day — which replaces `servers`, rolled up when a report asked. Filled from
    // the checks (and the first days) already stored.
    "CREATE TABLE check_days (
        day DATE NOT NULL,
        version TEXT NOT NULL,
        unit_tests BOOLEAN NOT NULL,
        servers BIGINT NOT NULL,
        activated_users BIGINT NOT NULL,    -- sum of activated_users capped at 10^9, NULL as 0
        PRIMARY KEY (day, version, unit_tests)
    );
    INSERT INTO check_days
        SELECT day, version, unit_tests, count(*),
        coalesce(sum(CASE WHEN activated_users > 1000000000 THEN 1000000000 ELSE activated_users END), 0)
        FROM checks GROUP BY day, version, unit_tests;
    CREATE TABLE server_latest (
        server_id TEXT PRIMARY KEY,
        first_day DATE NOT NULL,
        day DATE NOT NULL,                  -- the day of the latest check; its columns follow
        version TEXT NOT NULL,
        enterprise BOOLEAN NOT NULL,
        os TEXT NOT NULL,
        db TEXT NOT NULL,
        db_version TEXT,
        teams BIGINT,
        users BIGINT,
        activated_users BIGINT,
        unit_tests BOOLEAN NOT NULL
    );
    INSERT INTO server_latest
        SELECT DISTINCT ON (c.server_id) c.server_id, least(m.first_day, s.first_day), c.day,
        c.version, c.enterprise, c.os, c.db, c.db_version, c.teams, c.users, c.activated_users,
        c.unit_tests
        FROM checks c
        JOIN (SELECT server_id, min(day) AS first_day FROM checks GROUP BY server_id) m
          ON c.server_id = m.server_id
        LEFT JOIN servers s ON s.server_id = c.server_id
        ORDER BY c.server_id, c.day DESC;
    -- The servers of server_latest per day of their latest check and every fleet dimension and size
    -- bucket (NULL stored as chr(1) / -1: key columns cannot be NULL), with capped sums.
    CREATE TABLE latest_cells (
        day DATE NOT NULL,
        version TEXT NOT NULL,
        enterprise BOOLEAN NOT NULL,
        os TEXT NOT NULL,
        db TEXT NOT NULL,
        db_version TEXT NOT NULL,
        users_bucket BIGINT NOT NULL,
        activated_users_bucket BIGINT NOT NULL,
        teams_bucket BIGINT NOT NULL,
        unit_tests BOOLEAN NOT NULL,
        servers BIGINT NOT NULL,
        users BIGINT NOT NULL,
        activated_users BIGINT NOT NULL,
        teams BIGINT NOT NULL,
        PRIMARY KEY (day, version, enterprise, os, db, db_version, users_bucket,
                     activated_users_bucket, teams_bucket, unit_tests)
    );
    INSERT INTO latest_cells
        SELECT day, version, enterprise, os, db, coalesce(db_version, chr(1)),
        CASE WHEN users IS NULL THEN -1 WHEN users = 0 THEN 0 WHEN users BETWEEN 1 AND 10 THEN 1 WHEN users BETWEEN 11 AND 100 THEN 11 WHEN users BETWEEN 101 AND 1000 THEN 101 WHEN users BETWEEN 1001 AND 10000 THEN 1001 ELSE 10001 END,
        CASE WHEN activated_users IS NULL THEN -1 WHEN activated_users = 0 THEN 0 WHEN activated_users BETWEEN 1 AND 10 THEN 1 WHEN activated_users BETWEEN 11 AND 100 THEN 11 WHEN activated_users BETWEEN 101 AND 1000 THEN 101 WHEN activated_users BETWEEN 1001 AND 10000 THEN 1001 ELSE 10001 END,
        CASE WHEN teams IS NULL THEN -1 WHEN teams = 0 THEN 0 WHEN teams BETWEEN 1 AND 10 THEN 1 WHEN teams BETWEEN 11 AND 100 THEN 11 WHEN teams BETWEEN 101 AND 1000 THEN 101 WHEN teams BETWEEN 1001 AND 10000 THEN 1001 ELSE 10001 END,
        unit_tests, count(*), coalesce(sum(CASE WHEN users > 1000000000 THEN 1000000000 ELSE users END), 0), coalesce(sum(CASE WHEN activated_users > 1000000000 THEN 1000000000 ELSE activated_users END), 0), coalesce(sum(CASE WHEN teams > 1000000000 THEN 1000000000 ELSE teams END), 0)
        FROM server_latest GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10;
    CREATE INDEX server_latest_day ON server_latest (day);
    CREATE INDEX server_latest_first_day ON server_latest (first_day);
    DROP TABLE servers;
    DELETE FROM meta WHERE key = 'servers_rollup_day';",
    // 11: servers per first day seen and test install (of their latest check): the growth
    // report's new servers without reading `server_latest`. Filled from it.
    "CREATE TABLE first_days (
        day DATE NOT NULL,
        unit_tests BOOLEAN NOT NULL,
        servers BIGINT NOT NULL,
        PRIMARY KEY (day, unit_tests)
    );
    INSERT INTO first_days SELECT first_day, unit_tests, count(*) FROM server_latest GROUP BY 1, 2;",
    // 12: the UTC days each server sent error events on (release health finds a range's erring
    // servers here, not in the events' rows). Filled from the events stored.
    "CREATE TABLE error_days (
        day DATE NOT NULL,
        server_id TEXT NOT NULL,
        PRIMARY KEY (day, server_id)
    );
    INSERT INTO error_days
        SELECT DISTINCT (received_at AT TIME ZONE 'UTC')::date, server_id FROM events
        WHERE server_id IS NOT NULL;",
    // 13: room on every page of the rollups updated in place, so that an update of a counter (no
    // indexed column changes) stays on its page (a HOT update: no new index entries, and the page
    // prunes its own dead versions without a vacuum). Applies to pages written from now on.
    "ALTER TABLE check_days SET (fillfactor = 50);
    ALTER TABLE latest_cells SET (fillfactor = 50);
    ALTER TABLE first_days SET (fillfactor = 50);
    ALTER TABLE issue_counts SET (fillfactor = 70);
    ALTER TABLE issues SET (fillfactor = 70);",
    // 14: alerts: rules, the episode state of each key a rule has seen, and the outbox of
    // notifications (also their history), one per (rule, key, episode): tests have episode 0.
    "CREATE TABLE alert_rules (
        id BIGSERIAL PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        destination TEXT NOT NULL,
        url TEXT NOT NULL,
        secret TEXT,
        params TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE alert_state (
        rule_id BIGINT NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
        episode_key TEXT NOT NULL,
        episode BIGINT NOT NULL,
        firing BOOLEAN NOT NULL,
        since TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (rule_id, episode_key)
    );
    CREATE TABLE alert_outbox (
        id BIGSERIAL PRIMARY KEY,
        rule_id BIGINT NOT NULL,
        rule_name TEXT NOT NULL,
        episode_key TEXT NOT NULL,
        episode BIGINT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        text TEXT NOT NULL,
        ui_path TEXT,
        cli TEXT NOT NULL,
        details TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        next_at TIMESTAMPTZ,
        lease_until TIMESTAMPTZ,
        last_attempt_at TIMESTAMPTZ,
        delivered_at TIMESTAMPTZ,
        last_error TEXT
    );
    CREATE UNIQUE INDEX alert_outbox_episode ON alert_outbox (rule_id, episode_key, episode) WHERE episode > 0;
    CREATE INDEX alert_outbox_due ON alert_outbox (next_at) WHERE status = 'pending';",
    // 15: release health's erring servers as cells (`errcells`): each server's newest error day
    // beside its latest check, and the erring servers per (latest day, version, test install,
    // last error day). Filled from `error_days`.
    "ALTER TABLE server_latest ADD COLUMN last_error_day DATE;
    UPDATE server_latest l SET last_error_day = m.day
        FROM (SELECT server_id, max(day) AS day FROM error_days GROUP BY server_id) m
        WHERE l.server_id = m.server_id;
    CREATE INDEX error_days_server ON error_days (server_id, day);
    CREATE TABLE error_cells (
        day DATE NOT NULL,
        version TEXT NOT NULL,
        unit_tests BOOLEAN NOT NULL,
        last_error_day DATE NOT NULL,
        servers BIGINT NOT NULL,
        PRIMARY KEY (day, version, unit_tests, last_error_day)
    ) WITH (fillfactor = 50);
    INSERT INTO error_cells
        SELECT day, version, unit_tests, last_error_day, count(*) FROM server_latest
        WHERE last_error_day IS NOT NULL GROUP BY 1, 2, 3, 4;",
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

#[cfg(test)]
mod tests {
    use super::*;
    use beacon_store::{Store, WriteOp, WriteOutcome};
    use beacon_testkit::TestPg;

    /// A database filled by schema 6 (unpartitioned tables) is converted in place by step 9: every
    /// row is kept, in a partition per day, events stay de-duplicated, and retention drops days;
    /// step 10 fills the report rollups from the checks.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_version_6_database_is_partitioned_in_place() {
        let Some(pg) = TestPg::from_env() else {
            return;
        };
        let (client, connection) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let connection = tokio::spawn(connection);
        client
            .batch_execute(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, \
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            )
            .await
            .unwrap();
        for (i, step) in MIGRATIONS[..6].iter().enumerate() {
            client.batch_execute(step).await.unwrap();
            client
                .execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)",
                    &[&(i as i32 + 1)],
                )
                .await
                .unwrap();
        }
        let event = |id: &str| {
            serde_json::to_string(&beacon_wire::sentry::StoredEvent {
                event_id: id.into(),
                ..Default::default()
            })
            .unwrap()
        };
        client
            .batch_execute(&format!(
                "INSERT INTO checks (day, server_id, received_at, version, enterprise, os, db, unit_tests) \
                 SELECT DATE '2026-03-01' + (i % 3), 'srv' || i, \
                        timestamptz '2026-03-01 01:00+00' + (i % 3) * interval '1 day', \
                        '9.5.0', false, 'linux', 'postgres', false \
                 FROM generate_series(1, 300) i;
                 INSERT INTO projects (name, created_at) VALUES ('p', now());
                 INSERT INTO issues (project_id, group_hash, title, level, first_seen, last_seen, count) \
                 VALUES (1, 'h', 't', 'error', '2026-03-01 03:00+00', '2026-03-02 03:00+00', 2);
                 INSERT INTO events (project_id, event_id, issue_id, received_at, timestamp, level, payload) VALUES \
                 (1, '{e1}', 1, '2026-03-01 03:00+00', '2026-03-01 03:00+00', 'error', '{p1}'), \
                 (1, '{e2}', 1, '2026-03-02 23:59:59+00', '2026-03-02 03:00+00', 'error', '{p2}');
                 INSERT INTO trace_events (ts, trace, dur, context) \
                 SELECT extract(epoch FROM timestamptz '2026-03-01 00:00+00')::bigint * 1000000 \
                        + i * 3600000000, 1, 1000, 1 FROM generate_series(0, 47) i;",
                e1 = "a".repeat(32),
                e2 = "b".repeat(32),
                p1 = event(&"a".repeat(32)),
                p2 = event(&"b".repeat(32)),
            ))
            .await
            .unwrap();
        drop(client);
        let _ = connection.await;

        let store = crate::PgStore::connect(&pg.url).await.unwrap();
        assert_eq!(
            pg.count("SELECT max(version)::bigint FROM schema_migrations"),
            LATEST as i64
        );
        assert_eq!(pg.count("SELECT count(*) FROM pg_partitioned_table"), 3);
        assert_eq!(
            pg.count("SELECT count(*) FROM pg_class WHERE relname LIKE '%unpartitioned%'"),
            0
        );
        assert_eq!(
            pg.strings(
                "SELECT relname::text FROM pg_class WHERE relkind = 'r' AND relname LIKE '%_p202603%' \
                 ORDER BY 1"
            ),
            vec![
                "checks_p20260301",
                "checks_p20260302",
                "checks_p20260303",
                "events_p20260301",
                "events_p20260302",
                "trace_events_p20260301",
                "trace_events_p20260302",
            ]
        );
        assert_eq!(store.count_checks().await.unwrap(), 300);
        assert_eq!(pg.count("SELECT count(*) FROM checks_p20260302"), 100);
        // Step 10 filled the report rollups from the checks.
        assert_eq!(pg.count("SELECT count(*) FROM server_latest"), 300);
        assert_eq!(pg.count("SELECT sum(servers)::int8 FROM latest_cells"), 300);
        assert_eq!(pg.count("SELECT sum(servers)::int8 FROM first_days"), 300);
        assert_eq!(
            pg.count("SELECT count(*) FROM check_days WHERE servers = 100 AND version = '9.5.0'"),
            3
        );
        assert_eq!(store.count_trace_events().await.unwrap(), 48);
        assert_eq!(pg.count("SELECT count(*) FROM trace_events_default"), 0);
        assert_eq!(pg.count("SELECT count(*) FROM events_p20260302"), 1);
        let detail = store.issue(1).await.unwrap().unwrap();
        assert_eq!(detail.latest_event.event_id, "b".repeat(32));
        // An event id stored before the conversion is still a duplicate.
        let again = beacon_store::EventRecord {
            project_id: 1,
            received_at: chrono::Utc::now(),
            event: beacon_wire::sentry::StoredEvent {
                event_id: "a".repeat(32),
                ..Default::default()
            },
            event_json: event(&"a".repeat(32)),
            group_hash: "h".into(),
            title: "t".into(),
            culprit: None,
            server_id: None,
        };
        let out = store
            .write_batch(vec![WriteOp::Event(Box::new(again))].into())
            .await
            .unwrap();
        assert_eq!(out, vec![WriteOutcome::Duplicate]);

        // Retention drops the expired days whole: on 2026-03-04, one day kept.
        let policy = beacon_store::retention::RetentionPolicy {
            checks_days: 1,
            events_days: 1,
            trace_events_days: 1,
            ..beacon_store::retention::RetentionPolicy::FOREVER
        };
        let today = chrono::NaiveDate::from_ymd_opt(2026, 3, 4).unwrap();
        let run = store.apply_retention(&policy, today, false).await.unwrap();
        let removed: Vec<u64> = run.channels.iter().map(|c| c.removed).collect();
        assert_eq!(removed, vec![200, 2, 48, 0, 0]);
        assert_eq!(run.issues_removed, 1);
        assert_eq!(
            pg.count("SELECT count(*) FROM pg_class WHERE relname IN ('checks_p20260301', 'checks_p20260302', 'events_p20260302')"),
            0
        );
        assert_eq!(pg.count("SELECT count(*) FROM checks_p20260303"), 100);
        assert_eq!(pg.count("SELECT count(*) FROM server_latest"), 100);
        assert_eq!(pg.count("SELECT sum(servers)::int8 FROM latest_cells"), 100);
        assert_eq!(pg.count("SELECT sum(servers)::int8 FROM first_days"), 100);
        assert_eq!(pg.count("SELECT count(*) FROM check_days"), 1);
        assert_eq!(pg.count("SELECT count(*) FROM event_ids"), 0);
    }
}
