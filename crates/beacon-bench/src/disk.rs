//! `beacon-bench disk`: bytes on disk per stored item of each channel, and what a month of a large
//! fleet takes with and without the default retention (issue 14, point 5).
//!
//! A real `beacon serve` on a fresh store (a temporary SQLite directory, or a fresh PostgreSQL
//! database) is filled through its endpoints: `/security` checks of `--checks` distinct servers (the
//! `ui` benchmark's fleet: weighted versions, editions, OS, databases and sizes), `--events` Sentry
//! envelopes with the `envelopes` benchmark's 30-frame event, and `--trace-events` mobile trace events
//! in batches of 100 (the `mobile` benchmark's generator) in three phases: half of them on three days,
//! a quarter more on the same three days, a quarter on the three days after — the sketch rows and
//! bytes are measured after each phase, once the sketch fold (SQLite) or the delta compaction
//! (PostgreSQL) has caught up, to show what sketches grow with. Then the collector is stopped and each
//! channel's tables are measured: SQLite, the pages of each table and its indexes (`dbstat`) and the
//! file after a WAL checkpoint; PostgreSQL, `pg_total_relation_size` of each table and its partitions
//! (indexes and TOAST included) after a plain `VACUUM`, as autovacuum would leave them.

use super::{BenchDb, MakeRequest, Proc, TOKEN, spawn_until};
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use chrono::{Days, Utc};
use http_body_util::Full;
use hyper::Request;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Options {
    pub checks: u32,
    pub events: u64,
    pub trace_events: u64,
    pub postgres: Option<String>,
    pub no_sqlite: bool,
    pub beacon: Option<PathBuf>,
}

/// The channels whose bytes are counted, and the tables that belong to each (those a backend does not
/// have are left out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Channel {
    Checks,
    Events,
    TraceEvents,
    Sketches,
}

impl Channel {
    const ALL: [Channel; 4] = [
        Channel::Checks,
        Channel::Events,
        Channel::TraceEvents,
        Channel::Sketches,
    ];

    fn name(self) -> &'static str {
        match self {
            Channel::Checks => "checks",
            Channel::Events => "events",
            Channel::TraceEvents => "trace events",
            Channel::Sketches => "sketches",
        }
    }

    fn tables(self) -> &'static [&'static str] {
        match self {
            Channel::Checks => &[
                "checks",
                "check_days",
                "server_latest",
                "latest_cells",
                "first_days",
            ],
            Channel::Events => &[
                "events",
                "event_ids",
                "error_days",
                "issues",
                "issue_counts",
                "issue_servers",
            ],
            Channel::TraceEvents => &["trace_events", "perf_contexts"],
            Channel::Sketches => &["perf_sketches", "perf_deltas"],
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The projection (pure).

/// Bytes per stored unit, measured.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct PerItem {
    /// A check row (one per server and day): `checks`.
    pub check_row: f64,
    /// A server: `server_latest`, `latest_cells` (bounded by the fleet, not by days).
    pub server: f64,
    /// A day of check rollups: `check_days`, `first_days`.
    pub check_day: f64,
    /// An error event with its share of every events table.
    pub event: f64,
    /// A raw trace event: `trace_events`.
    pub trace_event: f64,
    /// A device description: `perf_contexts` (one per device; retention keeps them).
    pub device: f64,
    /// A day of sketches: `perf_sketches` (and `perf_deltas`), for the keys the fill produced.
    pub sketch_day: f64,
}

/// The fleet of issue 14.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Fleet {
    pub servers: f64,
    pub events_per_day: f64,
    pub devices: f64,
    pub trace_events_per_device_day: f64,
}

pub(crate) const ISSUE_FLEET: Fleet = Fleet {
    servers: 100_000.0,
    events_per_day: 10_000.0,
    devices: 1_000_000.0,
    trace_events_per_device_day: 50.0,
};

/// Days kept per channel; 0 keeps forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Keep {
    pub checks: u32,
    pub events: u32,
    pub trace_events: u32,
    pub sketches: u32,
}

pub(crate) const DEFAULT_KEEP: Keep = Keep {
    checks: 400,
    events: 90,
    trace_events: 30,
    sketches: 730,
};
pub(crate) const KEEP_FOREVER: Keep = Keep {
    checks: 0,
    events: 0,
    trace_events: 0,
    sketches: 0,
};

/// Days of data held after `days` days of ingestion when `keep` days are kept: data of day `d` goes
/// on day `d + keep + 1`, so at most `keep + 1` days (today's included) are held.
pub(crate) fn days_held(days: u32, keep: u32) -> u32 {
    if keep == 0 { days } else { days.min(keep + 1) }
}

/// Bytes per channel (checks, events, trace events with device descriptions, sketches) after `days`
/// days of `fleet` under `keep`.
pub(crate) fn project(p: &PerItem, fleet: &Fleet, days: u32, keep: &Keep) -> [f64; 4] {
    let checks_days = f64::from(days_held(days, keep.checks));
    let checks = fleet.servers * checks_days * p.check_row
        + fleet.servers * p.server
        + checks_days * p.check_day;
    let events = fleet.events_per_day * f64::from(days_held(days, keep.events)) * p.event;
    let traces = fleet.devices
        * fleet.trace_events_per_device_day
        * f64::from(days_held(days, keep.trace_events))
        * p.trace_event
        + fleet.devices * p.device;
    let sketches = f64::from(days_held(days, keep.sketches)) * p.sketch_day;
    [checks, events, traces, sketches]
}

/// The day from which no channel grows under `keep` (the longest retention, plus today); `None`
/// when a channel is kept forever.
pub(crate) fn steady_day(keep: &Keep) -> Option<u32> {
    let all = [keep.checks, keep.events, keep.trace_events, keep.sketches];
    (!all.contains(&0)).then(|| all.iter().max().copied().unwrap_or(0) + 1)
}

pub(crate) fn human_bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring.

/// Tables updated in place (rollups, issues, sketches): on PostgreSQL each update leaves a dead row
/// version behind, so they are measured after `VACUUM FULL` as well as after a plain `VACUUM`.
const CHURNED: [&str; 8] = [
    "check_days",
    "server_latest",
    "latest_cells",
    "first_days",
    "issues",
    "issue_counts",
    "perf_sketches",
    "perf_deltas",
];

/// Rows and bytes of one table (with its indexes; on PostgreSQL its partitions and TOAST).
#[derive(Clone, Debug)]
struct TableSize {
    table: &'static str,
    rows: i64,
    bytes: i64,
}

/// The sketches after one fill phase.
struct SketchPoint {
    trace_events: u64,
    days: i64,
    rows: i64,
    bytes: i64,
    /// Bytes before dead row versions were removed (PostgreSQL; equal to `bytes` on SQLite).
    churned: i64,
}

fn sqlite_sizes(db: &rusqlite::Connection) -> Result<Vec<TableSize>> {
    let mut out = Vec::new();
    for channel in Channel::ALL {
        for table in channel.tables() {
            let exists: i64 = db.query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )?;
            if exists == 0 {
                continue;
            }
            let rows: i64 =
                db.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
            // Every b-tree of the table: its own and its indexes' (the retention status's sum).
            let bytes: i64 = db.query_row(
                "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE aggregate = TRUE AND name IN \
                 (SELECT name FROM sqlite_schema WHERE tbl_name = ?1)",
                [table],
                |r| r.get(0),
            )?;
            out.push(TableSize { table, rows, bytes });
        }
    }
    Ok(out)
}

async fn pg_sizes(client: &tokio_postgres::Client) -> Result<Vec<TableSize>> {
    let mut out = Vec::new();
    for channel in Channel::ALL {
        for table in channel.tables() {
            let exists: bool = client
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[table])
                .await?
                .get(0);
            if !exists {
                continue;
            }
            let rows: i64 = client
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await?
                .get(0);
            // The table, its partitions, and each one's indexes and TOAST (the retention status's sum).
            let bytes: i64 = client
                .query_one(
                    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
                     WHERE c.oid = to_regclass($1) \
                     OR c.oid IN (SELECT i.inhrelid FROM pg_inherits i WHERE i.inhparent = to_regclass($1))",
                    &[table],
                )
                .await?
                .get(0);
            out.push(TableSize { table, rows, bytes });
        }
    }
    Ok(out)
}

/// The store under measurement.
enum Store<'a> {
    Sqlite(&'a Path),
    Postgres(&'a str),
}

impl Store<'_> {
    fn sizes(&self) -> Result<Vec<TableSize>> {
        match self {
            Store::Sqlite(file) => sqlite_sizes(&rusqlite::Connection::open_with_flags(
                file,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )?),
            Store::Postgres(url) => beacon_testkit::block_on(async {
                let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                pg_sizes(&client).await
            }),
        }
    }

    /// One number from a query (`sqlite`, `postgres` spelling).
    fn scalar(&self, sqlite: &str, postgres: &str) -> Result<i64> {
        match self {
            Store::Sqlite(file) => Ok(rusqlite::Connection::open_with_flags(
                file,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )?
            .query_row(sqlite, [], |r| r.get(0))?),
            Store::Postgres(url) => beacon_testkit::block_on(async {
                let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                Ok::<_, anyhow::Error>(client.query_one(postgres, &[]).await?.get::<_, i64>(0))
            }),
        }
    }

    /// Waits (at most five minutes) until every stored trace event is in the sketches: SQLite's
    /// fold watermark has reached the newest row, PostgreSQL has no delta left to compact.
    fn wait_folded(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let pending = self.scalar(
                "SELECT (SELECT count(*) FROM trace_events WHERE rowid > \
                 coalesce((SELECT value FROM meta WHERE key = 'perf_watermark'), 0))",
                "SELECT count(*) FROM perf_deltas",
            )?;
            if pending == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{pending} trace events (or deltas) still not folded after five minutes");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Distinct sketch keys per dimension and day (trace names × values × emulator flags), as
    /// `dimension: keys` pairs.
    fn keys_per_dimension(&self) -> Result<Vec<(String, f64)>> {
        let mut out = Vec::new();
        for dim in beacon_wire::mobile::Dimension::ALL {
            let code = dim.code();
            let keys = self.scalar(
                &format!("SELECT count(*) FROM perf_sketches WHERE dim = {code}"),
                &format!("SELECT count(*) FROM perf_sketches WHERE dim = {code}"),
            )?;
            let days = self.scalar(
                &format!("SELECT count(DISTINCT day) FROM perf_sketches WHERE dim = {code}"),
                &format!(
                    "SELECT count(DISTINCT day)::bigint FROM perf_sketches WHERE dim = {code}"
                ),
            )?;
            out.push((dim.as_str().to_string(), keys as f64 / days.max(1) as f64));
        }
        Ok(out)
    }

    /// On PostgreSQL, `VACUUM FULL` of `tables`: their live rows rewritten, dead ones dropped (the
    /// rollups and sketches are updated in place, each update leaving a dead row version that
    /// autovacuum makes reusable, not smaller). Nothing on SQLite, which reuses freed pages at once.
    fn vacuum_full(&self, tables: &[&str]) -> Result<()> {
        if let Store::Postgres(url) = self {
            beacon_testkit::block_on(async {
                let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("VACUUM FULL {}", tables.join(", ")))
                    .await?;
                Ok::<_, anyhow::Error>(())
            })?;
        }
        Ok(())
    }

    fn sketch_bytes(&self) -> Result<(i64, i64)> {
        let sizes = self.sizes()?;
        let mine = || {
            sizes
                .iter()
                .filter(|t| Channel::Sketches.tables().contains(&t.table))
        };
        Ok((mine().map(|t| t.rows).sum(), mine().map(|t| t.bytes).sum()))
    }

    fn sketch_point(&self, trace_events: u64) -> Result<SketchPoint> {
        let (_, churned) = self.sketch_bytes()?;
        self.vacuum_full(Channel::Sketches.tables())?;
        let (rows, bytes) = self.sketch_bytes()?;
        Ok(SketchPoint {
            trace_events,
            days: self.scalar(
                "SELECT count(DISTINCT day) FROM perf_sketches",
                "SELECT count(DISTINCT day)::bigint FROM perf_sketches",
            )?,
            rows,
            bytes,
            churned,
        })
    }
}

fn collector(beacon: &Path, dir: &Path, pg: Option<&str>) -> Result<(Proc, String)> {
    let mut cmd = Command::new(beacon);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("BEACON_ADMIN_TOKEN", TOKEN)
        .env("BEACON_ERRORS_RATE_LIMIT_PER_MINUTE", "1000000000")
        // Nothing here expires; the job is kept out of the measurement all the same.
        .env("BEACON_RETENTION_INTERVAL_SECS", "86400")
        .env("BEACON_LOG", "warn");
    if let Some(url) = pg {
        cmd.env("BEACON_STORE_URL", url);
    }
    spawn_until(cmd, "listening on ")
}

pub fn run(o: Options) -> Result<()> {
    let beacon = super::beacon_binary(o.beacon.clone())?;
    println!(
        "beacon-bench disk: {} checks (distinct servers), {} error events, {} trace events per store, through the endpoints",
        o.checks, o.events, o.trace_events
    );
    if !o.no_sqlite {
        measure("sqlite", &beacon, None, &o)?;
    }
    if let Some(admin) = &o.postgres {
        let db = BenchDb::create(admin).context("postgres")?;
        measure("postgres", &beacon, Some(&db.url), &o)?;
    }
    Ok(())
}

fn measure(backend: &str, beacon: &Path, pg: Option<&str>, o: &Options) -> Result<()> {
    let dir = tempfile::tempdir()?;
    // The collector warns about a data directory other users may read.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )?;
    let file = dir.path().join("beacon.db");
    let store = match pg {
        None => Store::Sqlite(&file),
        Some(url) => Store::Postgres(url),
    };
    let (proc, url) = collector(beacon, dir.path(), pg)?;
    let addr = url.trim_start_matches("http://").to_string();
    let started = Instant::now();

    // Checks: one each of `checks` distinct servers, today.
    let mut rng = StdRng::seed_from_u64(14);
    let servers = Arc::new(super::ui::fleet(o.checks.max(1), 1, &mut rng));
    let list = servers.clone();
    let make = super::gets(move |n| super::ui::check_query(&list[n as usize], n as u32, 0));
    super::ui::send_all(&addr, 32, servers.len() as u64, make, "/security")?;
    let t_checks = started.elapsed();

    // Error events: the envelopes benchmark's event, each with its own id.
    let project = super::durability::post(&url, "/projects", json!({"name": "disk"}))?;
    let key = project["keys"][0]["public_key"]
        .as_str()
        .context("a new project has a key")?
        .to_string();
    let path = format!("/api/{}/envelope/", project["id"]);
    let auth = format!("Sentry sentry_key={key}, sentry_version=7, sentry_client=beacon-bench/1");
    let make: MakeRequest = Arc::new(move |n| {
        Request::post(path.as_str())
            .header("x-sentry-auth", auth.as_str())
            .header("content-encoding", "gzip")
            .header("content-type", "application/x-sentry-envelope")
            .body(Full::new(Bytes::from(super::error_event(n))))
            .expect("static request")
    });
    super::ui::send_all(&addr, 16, o.events, make, "envelopes")?;
    let t_events = started.elapsed() - t_checks;

    // Trace events in three phases; the sketches measured after each.
    let api_key = super::mobile::create_key(&url)?;
    let today = Utc::now().date_naive();
    let day = |n: u64| super::ui::day_start_us(today - Days::new(n));
    let ten_minutes = 600_000_000;
    let now_us = Utc::now().timestamp_micros();
    let batches = o.trace_events / 100;
    let phases = [
        (batches / 2, day(6)..day(3) - ten_minutes, "days 1-3"),
        (batches / 4, day(6)..day(3) - ten_minutes, "days 1-3 again"),
        (
            batches - batches / 2 - batches / 4,
            day(3)..(day(0) - ten_minutes).min(now_us - 2 * ten_minutes),
            "days 4-6",
        ),
    ];
    let mut points = Vec::new();
    let mut sent_batches = 0;
    for (i, (n, starts, what)) in phases.into_iter().enumerate() {
        // 2,000 distinct bodies per phase (one device each), sent in turn.
        let bodies = super::mobile::bodies_between(2_000, 100 + i as u64, starts);
        super::ui::send_all(
            &addr,
            16,
            n,
            super::mobile::make(bodies, api_key.clone()),
            "/v1/mobile/metrics",
        )?;
        sent_batches += n;
        store.wait_folded()?;
        let p = store.sketch_point(sent_batches * 100)?;
        println!(
            "  after {what}: {} trace events, sketches {} rows over {} days, {}{}",
            p.trace_events,
            p.rows,
            p.days,
            human_bytes(p.bytes as f64),
            if p.churned != p.bytes {
                format!(
                    " ({} with dead row versions, before `VACUUM FULL`)",
                    human_bytes(p.churned as f64)
                )
            } else {
                String::new()
            }
        );
        points.push(p);
    }
    let t_traces = started.elapsed() - t_checks - t_events;
    let per_dimension = store.keys_per_dimension()?;
    super::ui::stop(proc)?;

    // Settle the files as a quiet store would be: SQLite's WAL checkpointed, PostgreSQL vacuumed.
    let file_bytes = match pg {
        None => {
            let db = rusqlite::Connection::open(&file)?;
            db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            let free: i64 = db.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
            let page: i64 = db.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            drop(db);
            let wal = std::fs::metadata(dir.path().join("beacon.db-wal"))
                .map(|m| m.len())
                .unwrap_or(0);
            let size = std::fs::metadata(&file)?.len();
            format!(
                "file {} after `wal_checkpoint(TRUNCATE)` (WAL {wal} bytes; {} of free pages)",
                human_bytes(size as f64),
                human_bytes((free * page) as f64)
            )
        }
        Some(url) => {
            beacon_testkit::block_on(async {
                let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                client.batch_execute("VACUUM").await?;
                Ok::<_, anyhow::Error>(())
            })?;
            let size = store.scalar("", "SELECT pg_database_size(current_database())")?;
            format!(
                "database {} after a plain `VACUUM` (`pg_database_size`); tables updated in place measured after `VACUUM FULL` ({})",
                human_bytes(size as f64),
                CHURNED.join(", ")
            )
        }
    };
    let vacuumed = store.sizes()?;
    store.vacuum_full(&CHURNED)?;
    let sizes = store.sizes()?;
    let rows = |t: &str| sizes.iter().find(|s| s.table == t).map_or(0, |s| s.rows);
    let bytes = |ts: &[&str]| {
        sizes
            .iter()
            .filter(|s| ts.contains(&s.table))
            .map(|s| s.bytes)
            .sum::<i64>() as f64
    };
    if rows("checks") != i64::from(o.checks.max(1))
        || rows("events") as u64 != o.events
        || rows("trace_events") as u64 != sent_batches * 100
    {
        bail!(
            "{backend}: the store holds {} checks, {} events, {} trace events; sent {}, {}, {}",
            rows("checks"),
            rows("events"),
            rows("trace_events"),
            o.checks,
            o.events,
            sent_batches * 100
        );
    }
    println!(
        "{backend}: filled in {:.0} s (checks {:.0} s, events {:.0} s, trace events {:.0} s); {file_bytes}",
        started.elapsed().as_secs_f64(),
        t_checks.as_secs_f64(),
        t_events.as_secs_f64(),
        t_traces.as_secs_f64()
    );
    println!(
        "\n| store | table | rows | bytes | bytes per row | bytes with dead row versions (plain `VACUUM`) |\n|---|---|---|---|---|---|"
    );
    for s in &sizes {
        let before = vacuumed
            .iter()
            .find(|v| v.table == s.table)
            .map_or(s.bytes, |v| v.bytes);
        println!(
            "| {backend} | `{}` | {} | {} | {} | {} |",
            s.table,
            s.rows,
            s.bytes,
            if s.rows > 0 {
                format!("{:.0}", s.bytes as f64 / s.rows as f64)
            } else {
                "-".into()
            },
            if before != s.bytes {
                before.to_string()
            } else {
                "same".into()
            }
        );
    }
    let last = points.last().context("phases")?;
    let items = [
        (Channel::Checks, rows("checks"), "check"),
        (Channel::Events, rows("events"), "event"),
        (Channel::TraceEvents, rows("trace_events"), "trace event"),
        (Channel::Sketches, rows("trace_events"), "trace event"),
    ];
    println!(
        "\n| store | channel | tables counted | items | bytes | bytes per item |\n|---|---|---|---|---|---|"
    );
    for (channel, n, unit) in items {
        let counted: Vec<&str> = channel
            .tables()
            .iter()
            .copied()
            .filter(|t| sizes.iter().any(|s| s.table == *t))
            .collect();
        let b = bytes(&counted);
        println!(
            "| {backend} | {} | {} | {n} {unit}s | {} | {:.0} per {unit} |",
            channel.name(),
            counted
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", "),
            human_bytes(b),
            b / n.max(1) as f64
        );
    }
    let per = PerItem {
        check_row: bytes(&["checks"]) / rows("checks").max(1) as f64,
        server: bytes(&["server_latest", "latest_cells"]) / rows("server_latest").max(1) as f64,
        check_day: bytes(&["check_days", "first_days"]),
        event: bytes(Channel::Events.tables()) / rows("events").max(1) as f64,
        trace_event: bytes(&["trace_events"]) / rows("trace_events").max(1) as f64,
        device: bytes(&["perf_contexts"]) / rows("perf_contexts").max(1) as f64,
        sketch_day: last.bytes as f64 / last.days.max(1) as f64,
    };
    let [p1, p2, p3] = [&points[0], &points[1], &points[2]];
    println!(
        "\n{backend} sketches: {} rows / {} over {} days with {} trace events; {} rows / {} over {} days with {} ({:+.0} % events, same days: {:+.0} % bytes); \
         {} rows / {} over {} days with {} ({:+.0} % bytes for the new days): {:.0} rows and {} per day",
        p1.rows,
        human_bytes(p1.bytes as f64),
        p1.days,
        p1.trace_events,
        p2.rows,
        human_bytes(p2.bytes as f64),
        p2.days,
        p2.trace_events,
        (p2.trace_events as f64 / p1.trace_events.max(1) as f64 - 1.0) * 100.0,
        (p2.bytes as f64 / p1.bytes.max(1) as f64 - 1.0) * 100.0,
        p3.rows,
        human_bytes(p3.bytes as f64),
        p3.days,
        p3.trace_events,
        (p3.bytes as f64 / p2.bytes.max(1) as f64 - 1.0) * 100.0,
        p3.rows as f64 / p3.days.max(1) as f64,
        human_bytes(per.sketch_day)
    );
    println!(
        "{backend} sketch rows per day by dimension: {}",
        per_dimension
            .iter()
            .map(|(d, n)| format!("{d} {n:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "{backend} per item: check row {:.0} B, server {:.0} B, check rollups {} per day, error event {:.0} B, \
         trace event {:.1} B, device description {:.0} B, sketches {} per day",
        per.check_row,
        per.server,
        human_bytes(per.check_day),
        per.event,
        per.trace_event,
        per.device,
        human_bytes(per.sketch_day)
    );
    print_projection(backend, &per);
    Ok(())
}

fn print_projection(backend: &str, per: &PerItem) {
    let f = ISSUE_FLEET;
    let steady = steady_day(&DEFAULT_KEEP).unwrap_or(0);
    println!(
        "\n{backend}: a fleet of {} servers (a check a day), {} error events a day, {} devices × {} trace events a day\n",
        f.servers, f.events_per_day, f.devices, f.trace_events_per_device_day
    );
    println!(
        "| store | channel | a month (30 d), no retention | a month, default retention | a year, no retention | a year, default retention | steady state (day {steady}), default retention |"
    );
    println!("|---|---|---|---|---|---|---|");
    let cols = [
        project(per, &f, 30, &KEEP_FOREVER),
        project(per, &f, 30, &DEFAULT_KEEP),
        project(per, &f, 365, &KEEP_FOREVER),
        project(per, &f, 365, &DEFAULT_KEEP),
        project(per, &f, steady, &DEFAULT_KEEP),
    ];
    let names = [
        "checks (400 d)",
        "error events (90 d)",
        "trace events (30 d) + device descriptions",
        "sketches (730 d)",
    ];
    for (i, name) in names.iter().enumerate() {
        println!(
            "| {backend} | {name} | {} |",
            cols.iter()
                .map(|c| human_bytes(c[i]))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    println!(
        "| {backend} | **total** | {} |",
        cols.iter()
            .map(|c| format!("**{}**", human_bytes(c.iter().sum())))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let month = project(per, &f, 30, &KEEP_FOREVER).iter().sum::<f64>()
        - project(per, &f, 0, &KEEP_FOREVER).iter().sum::<f64>();
    println!(
        "\n{backend}: each month adds {} without retention; with the default retention the store stops growing at day {steady} \
         (trace events at day 31, error events at day 91, checks at day 401, sketches at day 731): from then on a month removes what it adds.",
        human_bytes(month)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_held_stops_at_the_retention_plus_today() {
        assert_eq!(days_held(30, 0), 30);
        assert_eq!(days_held(30, 30), 30);
        assert_eq!(days_held(31, 30), 31);
        assert_eq!(days_held(365, 30), 31);
        assert_eq!(days_held(365, 400), 365);
        assert_eq!(days_held(1000, 400), 401);
        assert_eq!(steady_day(&DEFAULT_KEEP), Some(731));
        assert_eq!(steady_day(&KEEP_FOREVER), None);
    }

    #[test]
    fn projection_counts_rows_per_day_held_and_keys_once() {
        let per = PerItem {
            check_row: 100.0,
            server: 50.0,
            check_day: 1000.0,
            event: 4000.0,
            trace_event: 40.0,
            device: 300.0,
            sketch_day: 1e6,
        };
        let fleet = Fleet {
            servers: 10.0,
            events_per_day: 2.0,
            devices: 3.0,
            trace_events_per_device_day: 5.0,
        };
        // Thirty days, nothing expired yet under either policy.
        let month = project(&per, &fleet, 30, &KEEP_FOREVER);
        assert_eq!(
            month,
            [
                10.0 * 30.0 * 100.0 + 10.0 * 50.0 + 30.0 * 1000.0,
                2.0 * 30.0 * 4000.0,
                3.0 * 5.0 * 30.0 * 40.0 + 3.0 * 300.0,
                30.0 * 1e6,
            ]
        );
        assert_eq!(project(&per, &fleet, 30, &DEFAULT_KEEP), month);
        // A year: trace events held for 31 days, events for 91, checks and sketches all 365.
        let year = project(&per, &fleet, 365, &DEFAULT_KEEP);
        assert_eq!(
            year,
            [
                10.0 * 365.0 * 100.0 + 10.0 * 50.0 + 365.0 * 1000.0,
                2.0 * 91.0 * 4000.0,
                3.0 * 5.0 * 31.0 * 40.0 + 3.0 * 300.0,
                365.0 * 1e6,
            ]
        );
        // Past the longest retention nothing grows any more; without retention everything does.
        assert_eq!(
            project(&per, &fleet, 731, &DEFAULT_KEEP),
            project(&per, &fleet, 2000, &DEFAULT_KEEP)
        );
        let forever = project(&per, &fleet, 2000, &KEEP_FOREVER);
        assert!(
            forever
                .iter()
                .zip(project(&per, &fleet, 731, &KEEP_FOREVER))
                .all(|(a, b)| *a > b)
        );
    }

    #[test]
    fn bytes_are_shown_in_binary_units() {
        assert_eq!(human_bytes(512.0), "512 B");
        assert_eq!(human_bytes(1536.0), "1.5 KiB");
        assert_eq!(human_bytes(3.0 * 1024.0 * 1024.0 * 1024.0), "3.0 GiB");
    }
}
