//! `beacon-bench retention`: `/security` ingest latency while the collector purges `--rows` expired
//! rows (`POST /admin/v1/retention/apply`), beside the same load just before, without a purge.
//!
//! The store is filled directly with SQL while the collector is stopped (through HTTP, 10 M rows
//! would take longer than the measurement): 40 % checks of 100 days, more than 400 days old; 1 %
//! error events of 100 days, more than 90 days old (and their 100 issues); the rest trace events of
//! 60 days, more than 30 days old — every row expired under the default `[retention]`. On SQLite the
//! trace events count as folded (the sketch watermark is set past them); on PostgreSQL their days
//! get partitions first, as the migration of an existing database makes them.

use super::{LoadResult, Proc, TOKEN, gets, query, run_load, spawn_until};
use anyhow::{Context, Result};
use chrono::{Days, NaiveDate, Utc};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Options {
    pub rows: u64,
    pub connections: usize,
    pub baseline: Duration,
    pub postgres: Option<String>,
    /// Leave SQLite out (measure PostgreSQL alone).
    pub no_sqlite: bool,
    pub beacon: Option<PathBuf>,
}

/// How the rows are shared out, and the first day of each channel's data.
struct Fill {
    checks: u64,
    servers: u64,
    checks_from: NaiveDate,
    events: u64,
    events_from: NaiveDate,
    traces: u64,
    traces_from: NaiveDate,
}

impl Fill {
    fn new(rows: u64, today: NaiveDate) -> Fill {
        let checks = rows * 4 / 10 / 100 * 100;
        let events = rows / 100;
        Fill {
            checks,
            servers: checks / 100,
            checks_from: today - Days::new(500),
            events,
            events_from: today - Days::new(200),
            traces: rows - checks - events,
            traces_from: today - Days::new(90),
        }
    }
}

fn epoch_days(d: NaiveDate) -> i64 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days()
}

pub fn run(o: Options) -> Result<()> {
    let beacon = super::beacon_binary(o.beacon.clone())?;
    println!(
        "beacon-bench retention: /security load ({} connections, closed loop) during a purge of {} expired rows, beside {} s without",
        o.connections,
        o.rows,
        o.baseline.as_secs()
    );
    if !o.no_sqlite {
        measure("sqlite", &beacon, None, &o)?;
    }
    if let Some(admin) = &o.postgres {
        let db = super::BenchDb::create(admin)?;
        measure("postgres", &beacon, Some(&db.url), &o)?;
    }
    Ok(())
}

fn collector(beacon: &Path, dir: &Path, store_url: Option<&str>) -> Result<(Proc, String)> {
    let mut cmd = Command::new(beacon);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("BEACON_ADMIN_TOKEN", TOKEN)
        // The purge is started by the bench, not by the job.
        .env("BEACON_RETENTION_INTERVAL_SECS", "86400")
        .env("BEACON_LOG", "warn");
    if let Some(url) = store_url {
        cmd.env("BEACON_STORE_URL", url);
    }
    spawn_until(cmd, "listening on ")
}

fn measure(backend: &str, beacon: &Path, store_url: Option<&str>, o: &Options) -> Result<()> {
    let dir = tempfile::tempdir()?;
    // The schema, made by the collector itself.
    drop(collector(beacon, dir.path(), store_url)?);
    let fill = Fill::new(o.rows, Utc::now().date_naive());
    let started = Instant::now();
    match store_url {
        None => fill_sqlite(&dir.path().join("beacon.db"), &fill)?,
        Some(url) => fill_postgres(url, &fill)?,
    }
    println!(
        "{backend}: filled {} checks, {} events, {} trace events in {:.0} s",
        fill.checks,
        fill.events,
        fill.traces,
        started.elapsed().as_secs_f64()
    );
    let (proc, url) = collector(beacon, dir.path(), store_url)?;
    let addr = url.trim_start_matches("http://").to_string();
    // Warm up, then the baseline.
    run_load(&addr, o.connections, Duration::from_secs(2), gets(query))?;
    let base = run_load(&addr, o.connections, o.baseline, gets(query))?;

    let purge_url = url.clone();
    let purge = std::thread::spawn(move || -> Result<(serde_json::Value, Duration)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let t = Instant::now();
        let run = rt.block_on(async {
            reqwest::Client::new()
                .post(format!("{purge_url}/admin/v1/retention/apply"))
                .bearer_auth(TOKEN)
                .send()
                .await?
                .error_for_status()?
                .json::<serde_json::Value>()
                .await
        })?;
        Ok((run, t.elapsed()))
    });
    // The load in one-second windows until the purge has finished (bounded: an hour).
    let mut during: Option<LoadResult> = None;
    let deadline = Instant::now() + Duration::from_secs(3600);
    while !purge.is_finished() && Instant::now() < deadline {
        let r = run_load(&addr, o.connections, Duration::from_secs(1), gets(query))?;
        match &mut during {
            None => during = Some(r),
            Some(d) => {
                d.ok += r.ok;
                d.errors += r.errors;
                d.elapsed += r.elapsed;
                d.hist.add(&r.hist)?;
            }
        }
    }
    let (run, took) = purge
        .join()
        .map_err(|_| anyhow::anyhow!("the purge thread panicked"))??;
    let during = during.context("the purge ended before any load window")?;
    let removed: u64 = run["channels"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["removed"].as_u64()).sum())
        .unwrap_or_default();
    let ratio = during.ms(0.99) / base.ms(0.99);
    println!(
        "{backend}: purge of {removed} rows (+{} issues) took {:.1} s",
        run["issues_removed"],
        took.as_secs_f64()
    );
    println!(
        "{backend}: without purge {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
        base.rps(),
        base.ms(0.5),
        base.ms(0.99),
        base.errors
    );
    println!(
        "{backend}: during purge  {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors; p99 ratio {ratio:.2} (target ≤ 2)",
        during.rps(),
        during.ms(0.5),
        during.ms(0.99),
        during.errors
    );
    let (target, met) = crate::report::target("p99 during ≤ 2× without", ratio, 2.0, false, "×");
    crate::report::push(crate::report::Row {
        bench: format!(
            "/security during a purge of {removed} rows ({:.0} s)",
            took.as_secs_f64()
        ),
        backend: backend.into(),
        throughput: format!("{:.0} req/s", during.rps()),
        p50_ms: Some(during.ms(0.5)),
        p99_ms: Some(during.ms(0.99)),
        baseline: format!(
            "no purge: {:.0} req/s, p99 {:.2} ms",
            base.rps(),
            base.ms(0.99)
        ),
        ratio: Some(ratio),
        target,
        met: Some(met),
        rss: super::peak_rss_kb(proc.0.id()),
    });
    drop(proc);
    Ok(())
}

/// A recursive CTE counting `0..n` (SQLite has no `generate_series` built in).
fn numbers(n: u64) -> String {
    format!(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {})",
        n.saturating_sub(1)
    )
}

fn fill_sqlite(path: &Path, f: &Fill) -> Result<()> {
    let db = rusqlite::Connection::open(path)?;
    db.execute_batch("PRAGMA synchronous=OFF; PRAGMA cache_size=-262144;")?;
    let day_ms = 86_400_000i64;
    let checks_from = epoch_days(f.checks_from);
    let events_from = epoch_days(f.events_from);
    let traces_from = epoch_days(f.traces_from);
    let trace_step_us = 60 * 86_400_000_000i64 / f.traces.max(1) as i64;
    db.execute_batch(&format!(
        "BEGIN;
         {numbers_checks}
         INSERT INTO checks (server_id, day, received_at, version, enterprise, os, db, unit_tests)
         SELECT printf('%026d', i % {servers}), {checks_from} + i / {servers},
                ({checks_from} + i / {servers}) * {day_ms} + 3600000, '9.5.0', 0, 'linux', 'postgres', 0
         FROM n;
         INSERT INTO projects (id, name, created_at) VALUES (1, 'bench', 0);
         {numbers_issues}
         INSERT INTO issues (id, project_id, group_hash, title, level, first_seen, last_seen, count)
         SELECT i + 1, 1, printf('%032x', i), 'bench', 'error', {events_from} * {day_ms},
                ({events_from} + 100) * {day_ms}, {per_issue} FROM n;
         {numbers_events}
         INSERT INTO events (project_id, event_id, issue_id, received_at, timestamp, level, payload)
         SELECT 1, printf('%032x', i), 1 + i % 100, ({events_from} + i * 100 / {events}) * {day_ms} + 7200000,
                ({events_from} + i * 100 / {events}) * {day_ms}, 'error',
                '{{\"event_id\":\"' || printf('%032x', i) || '\",\"message\":\"' || hex(randomblob(200)) || '\"}}'
         FROM n;
         INSERT OR IGNORE INTO perf_contexts (id, device_hash, info, first_seen) VALUES (1, NULL, '{{}}', 0);
         {numbers_traces}
         INSERT INTO trace_events (ts, trace, dur, context)
         SELECT {traces_from} * 86400000000 + i * {trace_step_us}, 1, 1000 + i % 5000, 1 FROM n;
         INSERT INTO meta (key, value) VALUES ('perf_watermark', (SELECT max(rowid) FROM trace_events))
         ON CONFLICT (key) DO UPDATE SET value = excluded.value;
         COMMIT;",
        numbers_checks = numbers(f.checks),
        servers = f.servers.max(1),
        numbers_issues = numbers(100),
        per_issue = f.events / 100,
        numbers_events = numbers(f.events),
        events = f.events.max(1),
        numbers_traces = numbers(f.traces),
    ))?;
    db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

fn fill_postgres(url: &str, f: &Fill) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        let conn = tokio::spawn(conn);
        // A partition per day, as the migration of an existing database makes them.
        for (table, from, days) in [
            ("checks", f.checks_from, 100u64),
            ("events", f.events_from, 100),
            ("trace_events", f.traces_from, 60),
        ] {
            for d in 0..days {
                client
                    .batch_execute(&format!(
                        "SELECT beacon_day_partition('{table}', DATE '{}')",
                        from + Days::new(d)
                    ))
                    .await?;
            }
        }
        let trace_step_us = 60 * 86_400_000_000i64 / f.traces.max(1) as i64;
        client
            .batch_execute(&format!(
                "SET synchronous_commit = off;
                 INSERT INTO checks (day, server_id, received_at, version, enterprise, os, db, unit_tests)
                 SELECT DATE '{checks_from}' + (i / {servers})::int, lpad((i % {servers})::text, 26, '0'),
                        (DATE '{checks_from}' + (i / {servers})::int)::timestamp AT TIME ZONE 'UTC' + interval '1 hour',
                        '9.5.0', false, 'linux', 'postgres', false
                 FROM generate_series(0::bigint, {checks} - 1) i;
                 INSERT INTO projects (id, name, created_at) VALUES (1, 'bench', now());
                 INSERT INTO issues (id, project_id, group_hash, title, level, first_seen, last_seen, count)
                 SELECT i + 1, 1, lpad(to_hex(i), 32, '0'), 'bench', 'error', DATE '{events_from}'::timestamp AT TIME ZONE 'UTC',
                        (DATE '{events_from}' + 100)::timestamp AT TIME ZONE 'UTC', {per_issue}
                 FROM generate_series(0::bigint, 99) i;
                 SELECT setval(pg_get_serial_sequence('issues', 'id'), 100);
                 SELECT setval(pg_get_serial_sequence('projects', 'id'), 1);
                 INSERT INTO events (project_id, event_id, issue_id, received_at, timestamp, level, payload)
                 SELECT 1, lpad(to_hex(i), 32, '0'), 1 + i % 100,
                        (DATE '{events_from}' + (i * 100 / {events})::int)::timestamp AT TIME ZONE 'UTC' + interval '2 hours',
                        (DATE '{events_from}' + (i * 100 / {events})::int)::timestamp AT TIME ZONE 'UTC', 'error',
                        '{{\"event_id\":\"' || lpad(to_hex(i), 32, '0') || '\",\"message\":\"' || md5(i::text) || repeat('x', 360) || '\"}}'
                 FROM generate_series(0::bigint, {events} - 1) i;
                 INSERT INTO event_ids (project_id, event_id, received_at)
                 SELECT project_id, event_id, received_at FROM events;
                 INSERT INTO perf_contexts (id, device_hash, info, first_seen) VALUES (1, NULL, '{{}}', now())
                 ON CONFLICT DO NOTHING;
                 INSERT INTO trace_events (ts, trace, dur, context)
                 SELECT {traces_from_us} + i * {trace_step_us}, 1, 1000 + i % 5000, 1
                 FROM generate_series(0::bigint, {traces} - 1) i;
                 ANALYZE;",
                checks_from = f.checks_from,
                servers = f.servers.max(1),
                checks = f.checks,
                events_from = f.events_from,
                per_issue = f.events / 100,
                events = f.events.max(1),
                traces_from_us = epoch_days(f.traces_from) * 86_400_000_000,
                traces = f.traces,
            ))
            .await?;
        drop(client);
        let _ = conn.await;
        Ok::<_, anyhow::Error>(())
    })
}
