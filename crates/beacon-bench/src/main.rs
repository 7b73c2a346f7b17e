//! `beacon-bench`: the benchmark harness. Starts the servers it measures as separate processes on
//! loopback, drives them with a closed-loop load generator (N keep-alive connections, one request in
//! flight each) for a fixed time, and prints throughput and latency beside a baseline measured in the
//! same run. Every loop is bounded by its deadline.

mod agent;
mod disk;
mod durability;
mod mobile;
mod report;
mod retention;
mod soak;
mod ui;

use anyhow::{Context, Result, bail};
use beacon_testkit::{ADMIN_TOKEN as TOKEN, ChildGuard as Proc, TestPg};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Beacon's benchmark harness (loopback only)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// `/security` with distinct server ids and durable acknowledgement, against a bare hyper server.
    Security {
        /// Seconds of load per target and round.
        #[arg(long, default_value_t = 8)]
        duration: u64,
        /// Concurrent keep-alive connections.
        #[arg(long, default_value_t = 256)]
        connections: usize,
        /// Rounds; each runs the baseline, then beacon. The median ratio is reported.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Also measure a collector on PostgreSQL: an admin URL of a server where the bench may create
        /// (and drops) a database, e.g. postgres://postgres@127.0.0.1:5432/postgres.
        #[arg(long)]
        postgres: Option<String>,
        /// The `beacon` binary; default: beside this one.
        #[arg(long)]
        beacon: Option<PathBuf>,
    },
    /// Only the load: `/security` checks with distinct ids against a running server.
    Load {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 10)]
        duration: u64,
        #[arg(long, default_value_t = 64)]
        connections: usize,
    },
    /// Error events: gzip envelopes with a 30-frame stack, scrubbed and grouped, durably stored.
    Envelopes {
        #[arg(long, default_value_t = 8)]
        duration: u64,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Distinct pre-built bodies (each a new event id); they repeat (as duplicates) after that,
        /// so make it larger than the run sends (~25k/s × (2 + rounds × duration) s).
        #[arg(long, default_value_t = 800_000)]
        bodies: usize,
        /// Also on PostgreSQL: an admin URL where the bench may create (and drops) a database.
        #[arg(long)]
        postgres: Option<String>,
        #[arg(long)]
        beacon: Option<PathBuf>,
    },
    /// Mobile trace batches (100 events each): ingestion rate, then the percentile report over a store
    /// filled to `--fill` events, beside PostgreSQL's `percentile_cont` over the same raw rows.
    Mobile {
        #[arg(long, default_value_t = 8)]
        duration: u64,
        #[arg(long, default_value_t = 32)]
        connections: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Stored-event counts at which the percentile report and ingestion are measured again.
        #[arg(long, value_delimiter = ',', default_value = "10000000")]
        levels: Vec<u64>,
        /// Levels above this are skipped on PostgreSQL.
        #[arg(long, default_value_t = 10_000_000)]
        postgres_max_level: u64,
        /// Also on PostgreSQL (and time percentile_cont there): an admin URL where the bench may
        /// create (and drops) a database.
        #[arg(long)]
        postgres: Option<String>,
        #[arg(long)]
        beacon: Option<PathBuf>,
    },
    /// The simulator at full rate, the collector SIGKILLed at random moments and restarted, then every
    /// acknowledged item looked up in the store.
    Durability {
        #[arg(long, default_value_t = 20)]
        trials: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        beacon: Option<PathBuf>,
    },
    /// Every benchmark (security, envelopes, mobile with cost growth, agent cost, durability) on SQLite
    /// and, with --postgres, PostgreSQL; one Markdown table to stdout and to --out.
    Report {
        /// PostgreSQL admin URL where the bench may create (and drops) databases.
        #[arg(long)]
        postgres: Option<String>,
        /// Stored-event levels for the mobile cost-growth rows.
        #[arg(long, value_delimiter = ',', default_value = "10000000,100000000")]
        levels: Vec<u64>,
        /// Seconds per measured round.
        #[arg(long, default_value_t = 8)]
        duration: u64,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long, default_value_t = 20)]
        trials: u32,
        /// Minutes of the soak (`beacon-bench soak`); 0 leaves it out.
        #[arg(long, default_value_t = 30)]
        soak_minutes: u64,
        #[arg(long, default_value = "BENCHMARKS.md")]
        out: PathBuf,
    },
    /// A long run of every channel at about half its measured maximum, reports polled and hostile
    /// inputs sent at a low rate; per-minute table and a verdict (0 acknowledged items lost, RSS
    /// growth < 5 % and p99 within 1.5x over the last third, no 5xx but 503). Exit 1 on FAIL.
    Soak {
        #[arg(long, default_value_t = 30)]
        minutes: u64,
        /// On PostgreSQL: an admin URL where the bench may create (and drops) a database.
        #[arg(long)]
        postgres: Option<String>,
        /// `/security` checks per second (default: half of BENCHMARKS.md's 34,384 req/s).
        #[arg(long, default_value_t = 17_000.0)]
        security_rate: f64,
        /// Error events per second (default: half of BENCHMARKS.md's 12,049 events/s).
        #[arg(long, default_value_t = 6_000.0)]
        errors_rate: f64,
        /// Mobile batches of 100 trace events per second (default: half of 469k events/s).
        #[arg(long, default_value_t = 2_300.0)]
        mobile_rate: f64,
        /// Hostile inputs (`beacon_bench::hostile`) per second.
        #[arg(long, default_value_t = 2.0)]
        hostile_rate: f64,
        #[arg(long)]
        beacon: Option<PathBuf>,
    },
    /// The dashboard: a store filled through the real endpoints over `--days` UTC days (the days before
    /// today by collectors under libfaketime), then every page's server time (p50/p95/max of
    /// `--requests` after 3 warm-ups) and the compressed bytes of a first visit. Exit 1 when a page's
    /// p95 is over 50 ms or the first visit over 100 KB.
    Ui {
        /// Distinct servers checking in over the days.
        #[arg(long, default_value_t = 100_000)]
        servers: u32,
        /// Distinct error issues (2–8 events each).
        #[arg(long, default_value_t = 10_000)]
        issues: u32,
        /// Mobile trace events (batches of 100), an equal share per day.
        #[arg(long, default_value_t = 10_000_000)]
        trace_events: u64,
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Timed requests per page (after 3 warm-ups).
        #[arg(long, default_value_t = 50)]
        requests: usize,
        /// On PostgreSQL instead of SQLite: an admin URL where the bench may create (and drops) a
        /// database.
        #[arg(long, conflicts_with = "postgres_db")]
        postgres: Option<String>,
        /// On PostgreSQL, in this existing database, which the bench neither creates nor drops (fill
        /// it once, then measure it again with --no-fill).
        #[arg(long)]
        postgres_db: Option<String>,
        #[arg(long)]
        beacon: Option<PathBuf>,
        /// libfaketime's library; default: where Debian's `libfaketime` package puts it.
        #[arg(long)]
        libfaketime: Option<PathBuf>,
        /// Fill this directory (kept afterwards) instead of a temporary one.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Measure the store already in --data-dir (SQLite) or --postgres-db, without filling it.
        #[arg(long)]
        no_fill: bool,
    },
    /// `/security` latency while retention purges `--rows` expired rows, beside the same load
    /// without a purge (issue 14: p99 during ≤ 2× p99 without), on SQLite and with --postgres.
    Retention {
        /// Expired rows to purge: 40 % checks, 1 % error events, the rest trace events.
        #[arg(long, default_value_t = 10_000_000)]
        rows: u64,
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Seconds of load without a purge, just before it.
        #[arg(long, default_value_t = 20)]
        baseline: u64,
        /// Also on PostgreSQL: an admin URL where the bench may create (and drops) a database.
        #[arg(long)]
        postgres: Option<String>,
        /// Measure PostgreSQL alone.
        #[arg(long)]
        no_sqlite: bool,
        #[arg(long)]
        beacon: Option<PathBuf>,
    },
    /// Bytes on disk per stored item of each channel, over a store filled through the endpoints,
    /// and what a month of issue 14's fleet takes with and without the default retention.
    Disk {
        /// `/security` checks, each of a distinct server.
        #[arg(long, default_value_t = 200_000)]
        checks: u32,
        /// Error events (the `envelopes` benchmark's 30-frame event), each with its own id.
        #[arg(long, default_value_t = 50_000)]
        events: u64,
        /// Mobile trace events, in batches of 100 over six days.
        #[arg(long, default_value_t = 5_000_000)]
        trace_events: u64,
        /// Also on PostgreSQL: an admin URL where the bench may create (and drops) a database.
        #[arg(long)]
        postgres: Option<String>,
        /// Measure PostgreSQL alone.
        #[arg(long)]
        no_sqlite: bool,
        #[arg(long)]
        beacon: Option<PathBuf>,
    },
    /// A bare hyper server answering `[]` to everything: the ceiling for an HTTP endpoint here.
    BareServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// The agent's cost on its host: RSS added, CPU per check and per captured error, host lag.
    Agent {
        #[arg(long, default_value_t = 200)]
        checks: u64,
        #[arg(long, default_value_t = 200)]
        errors: u64,
        #[arg(long)]
        beacon: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    // reqwest is built with rustls without a provider elsewhere in the workspace; use ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match Cli::parse().command {
        Cmd::BareServer { listen } => {
            tokio::runtime::Runtime::new()?.block_on(bare_server(&listen))
        }
        Cmd::Load {
            url,
            duration,
            connections,
        } => {
            let r = run_load(
                url.trim_start_matches("http://"),
                connections,
                Duration::from_secs(duration),
                gets(query),
            )?;
            println!(
                "{:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} ok, {} errors",
                r.rps(),
                r.ms(0.5),
                r.ms(0.99),
                r.ok,
                r.errors
            );
            Ok(())
        }
        Cmd::Envelopes {
            duration,
            connections,
            rounds,
            bodies,
            postgres,
            beacon,
        } => envelopes(
            Duration::from_secs(duration),
            connections,
            rounds.max(1),
            bodies.max(1),
            beacon,
            postgres,
        ),
        Cmd::Report {
            postgres,
            levels,
            duration,
            rounds,
            trials,
            soak_minutes,
            out,
        } => full_report(
            postgres,
            levels,
            Duration::from_secs(duration),
            rounds.max(1),
            trials,
            soak_minutes,
            &out,
        ),
        Cmd::Soak {
            minutes,
            postgres,
            security_rate,
            errors_rate,
            mobile_rate,
            hostile_rate,
            beacon,
        } => {
            if !soak::run(soak::Options {
                minutes,
                postgres,
                beacon,
                security_rate,
                errors_rate,
                mobile_rate,
                hostile_rate,
            })? {
                bail!("the soak failed");
            }
            Ok(())
        }
        Cmd::Ui {
            servers,
            issues,
            trace_events,
            days,
            requests,
            postgres,
            postgres_db,
            beacon,
            libfaketime,
            data_dir,
            no_fill,
        } => {
            if !ui::run(ui::Options {
                servers,
                issues,
                trace_events,
                days,
                requests,
                postgres,
                postgres_db,
                beacon,
                libfaketime,
                data_dir,
                no_fill,
            })? {
                bail!("the dashboard missed its targets");
            }
            Ok(())
        }
        Cmd::Durability {
            trials,
            seed,
            beacon,
        } => {
            let o = durability::run(trials, beacon, seed)?;
            if o.lost_checks + o.lost_events > 0
                || o.lost_traces > 0
                || o.stored_traces != o.sketch_events
            {
                bail!("acknowledged items were lost");
            }
            Ok(())
        }
        Cmd::Mobile {
            duration,
            connections,
            rounds,
            levels,
            postgres_max_level,
            postgres,
            beacon,
        } => mobile::run(mobile::Options {
            duration: Duration::from_secs(duration),
            connections,
            rounds: rounds.max(1),
            levels,
            postgres_max_level,
            postgres,
            beacon,
        })
        .map(|_| ()),
        Cmd::Security {
            duration,
            connections,
            rounds,
            postgres,
            beacon,
        } => security(
            Duration::from_secs(duration),
            connections,
            rounds.max(1),
            beacon,
            postgres,
        ),
        Cmd::Retention {
            rows,
            connections,
            baseline,
            postgres,
            no_sqlite,
            beacon,
        } => {
            retention::run(retention::Options {
                rows,
                connections: connections.max(1),
                baseline: Duration::from_secs(baseline.max(1)),
                postgres,
                no_sqlite,
                beacon,
            })?;
            print!("{}", report::markdown(""));
            Ok(())
        }
        Cmd::Disk {
            checks,
            events,
            trace_events,
            postgres,
            no_sqlite,
            beacon,
        } => disk::run(disk::Options {
            checks,
            events,
            trace_events,
            postgres,
            no_sqlite,
            beacon,
        }),
        Cmd::Agent {
            checks,
            errors,
            beacon,
        } => agent::run(agent::Options {
            checks: checks.max(1),
            errors: errors.max(1),
            beacon,
        }),
    }
}

async fn bare_server(listen: &str) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|_req: Request<Incoming>| async {
                Ok::<_, std::convert::Infallible>(
                    Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(b"[]")))
                        .expect("static response"),
                )
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Spawns `cmd`, waits for a line containing `marker` followed by a URL, returns the URL.
fn spawn_until(cmd: Command, marker: &str) -> Result<(Proc, String)> {
    let (proc, url, _) = beacon_testkit::spawn_until(cmd, marker, None).context("spawn server")?;
    Ok((proc, url))
}

struct LoadResult {
    ok: u64,
    errors: u64,
    elapsed: Duration,
    hist: hdrhistogram::Histogram<u64>,
}

impl LoadResult {
    fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
    fn ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Closed-loop load: `connections` keep-alive connections, each sending `path(n)` with a fresh `n`
/// until `duration` has passed.
/// Builds request `n` of a load run.
type MakeRequest = Arc<dyn Fn(u64) -> Request<Full<Bytes>> + Send + Sync>;

/// GET requests for the paths `path(n)`.
fn gets(path: impl Fn(u64) -> String + Send + Sync + 'static) -> MakeRequest {
    Arc::new(move |n| {
        Request::get(path(n))
            .body(Full::new(Bytes::new()))
            .expect("static request")
    })
}

fn run_load(
    addr: &str,
    connections: usize,
    duration: Duration,
    make: MakeRequest,
) -> Result<LoadResult> {
    run_load_upto(addr, connections, duration, None, make)
}

/// [`run_load`], also stopping once `limit` requests have been started.
fn run_load_upto(
    addr: &str,
    connections: usize,
    duration: Duration,
    limit: Option<u64>,
    make: MakeRequest,
) -> Result<LoadResult> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let counter = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let deadline = started + duration;
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let (addr, counter, make) = (addr.to_string(), counter.clone(), make.clone());
            tasks.push(tokio::spawn(async move {
                let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                    .expect("histogram bounds");
                let (mut ok, mut errors) = (0u64, 0u64);
                let stream = tokio::net::TcpStream::connect(&addr).await?;
                stream.set_nodelay(true)?;
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(conn);
                while Instant::now() < deadline {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    if limit.is_some_and(|l| n >= l) {
                        break;
                    }
                    let mut req = make(n);
                    req.headers_mut().insert("host", addr.parse()?);
                    let t = Instant::now();
                    let resp = sender.send_request(req).await?;
                    let status = resp.status();
                    resp.into_body().collect().await?;
                    if status.is_success() {
                        ok += 1;
                        hist.record(t.elapsed().as_micros().max(1) as u64)?;
                    } else {
                        errors += 1;
                    }
                }
                Ok::<_, anyhow::Error>((ok, errors, hist))
            }));
        }
        let mut total = LoadResult {
            ok: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            hist: hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3)?,
        };
        for t in tasks {
            let (ok, errors, hist) = t.await??;
            total.ok += ok;
            total.errors += errors;
            total.hist.add(hist)?;
        }
        total.elapsed = started.elapsed();
        Ok(total)
    })
}

fn query(n: u64) -> String {
    // Distinct server ids; a version no bulletin affects, so both servers answer `[]`.
    format!("/security?auc=40&b=6.1.0.1&be=true&db=postgres&id={n:0>26}&os=linux&tc=3&uc=80&ut=0")
}

fn start_collector(
    beacon: &PathBuf,
    data_dir: &std::path::Path,
    store_url: Option<&str>,
) -> Result<(Proc, String)> {
    let mut cmd = Command::new(beacon);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("BEACON_ADMIN_TOKEN", TOKEN)
        .env("BEACON_LOG", "warn");
    if let Some(url) = store_url {
        cmd.env("BEACON_STORE_URL", url);
    }
    let (proc, url) = spawn_until(cmd, "listening on ")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{url}/admin/v1/bulletins"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"id": "BSA-BENCH", "title": "bench", "severity": "high", "affected": ">=5.30.0, <5.37.2", "body": "<p>x</p>"}))
            .send()
            .await?
            .error_for_status()
    })?;
    Ok((proc, url))
}

/// A fresh database on the PostgreSQL server at `admin_url` (the test kit's `TestPg`), dropped
/// when this is dropped.
struct BenchDb(TestPg);

impl BenchDb {
    fn create(admin_url: &str) -> Result<BenchDb> {
        Ok(BenchDb(TestPg::create(admin_url, "beacon_bench")?))
    }
}

impl std::ops::Deref for BenchDb {
    type Target = TestPg;
    fn deref(&self) -> &TestPg {
        &self.0
    }
}

fn peak_rss_kb(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .unwrap_or_default()
}

fn security(
    duration: Duration,
    connections: usize,
    rounds: usize,
    beacon: Option<PathBuf>,
    postgres: Option<String>,
) -> Result<()> {
    let beacon = beacon_binary(beacon)?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "beacon-bench security: 2s warm-up, then {rounds} rounds of {}s per target, alternating; {connections} connections; loopback; {cores} cores",
        duration.as_secs()
    );

    // Baseline: a bare hyper server, in its own process like the collectors.
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["bare-server", "--listen", "127.0.0.1:0"]);
    let (_bare, bare_url) = spawn_until(cmd, "listening on ")?;
    println!(
        "{:<30} {:<6} {:>10} {:>9} {:>9} {:>10} {:>7} {:>8}",
        "target", "round", "req/s", "p50 ms", "p99 ms", "ok", "errors", "vs bare"
    );
    let mut summary = Vec::new();
    // One phase per backend, each against its own baseline rounds; a backend's collector (and its
    // database's background work) only runs during its own phase.
    let backends: Vec<&str> = std::iter::once("sqlite")
        .chain(postgres.iter().map(|_| "postgres"))
        .collect();
    for backend in backends {
        let dir = tempfile::tempdir()?;
        let pg_db = match (backend, &postgres) {
            ("postgres", Some(admin_url)) => Some(
                BenchDb::create(admin_url).with_context(|| format!("postgres at {admin_url}"))?,
            ),
            _ => None,
        };
        let (collector, url) =
            start_collector(&beacon, dir.path(), pg_db.as_ref().map(|d| d.url.as_str()))?;
        let name = format!("beacon /security, {backend}");
        // Warm-up, not reported: connections, caches, the first pages of the database.
        let warm = gets(|n| query(999_000_000_000 + n));
        run_load(
            bare_url.trim_start_matches("http://"),
            connections,
            Duration::from_secs(2),
            warm.clone(),
        )?;
        let mut acknowledged = run_load(
            url.trim_start_matches("http://"),
            connections,
            Duration::from_secs(2),
            warm,
        )?
        .ok;
        let mut ratios = Vec::new();
        let mut rps = Vec::new();
        let (mut p50s, mut p99s, mut bare_rps) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let offset = round as u64 * 1_000_000_000;
            let ids = gets(move |n| query(offset + n));
            let bare = run_load(
                bare_url.trim_start_matches("http://"),
                connections,
                duration,
                ids.clone(),
            )?;
            let ours = run_load(
                url.trim_start_matches("http://"),
                connections,
                duration,
                ids,
            )?;
            acknowledged += ours.ok;
            ratios.push(ours.rps() / bare.rps());
            rps.push(ours.rps());
            p50s.push(ours.ms(0.5));
            p99s.push(ours.ms(0.99));
            bare_rps.push(bare.rps());
            for (n, r) in [("bare hyper, answers []", &bare), (name.as_str(), &ours)] {
                println!(
                    "{:<30} {:<6} {:>10.0} {:>9.2} {:>9.2} {:>10} {:>7} {:>8.2}",
                    n,
                    round + 1,
                    r.rps(),
                    r.ms(0.5),
                    r.ms(0.99),
                    r.ok,
                    r.errors,
                    r.rps() / bare.rps()
                );
            }
        }
        let rss = peak_rss_kb(collector.0.id());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let stored: serde_json::Value = rt.block_on(async {
            reqwest::Client::new()
                .get(format!("{url}/admin/v1/reports/fleet?include_test=true"))
                .bearer_auth(TOKEN)
                .send()
                .await?
                .json()
                .await
        })?;
        if stored["total"]["servers"].as_u64() != Some(acknowledged) {
            bail!(
                "{name}: stored {} servers but acknowledged {acknowledged}",
                stored["total"]["servers"]
            );
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let ratio = median(ratios.clone());
        summary.push(format!(
            "{name}: median {:.0} req/s, median ratio to bare {:.2} (target >= 0.50); peak RSS {rss} kB; \
             stored = acknowledged = {acknowledged}",
            median(rps.clone()),
            ratio
        ));
        report::push(report::Row {
            bench: "`GET /security` (distinct ids, durable)".into(),
            backend: backend.into(),
            throughput: format!("{:.0} req/s", median(rps)),
            p50_ms: Some(median(p50s)),
            p99_ms: Some(median(p99s)),
            baseline: format!("bare hyper {:.0} req/s", median(bare_rps)),
            ratio: Some(ratio),
            target: report::target(">= 0.5x bare hyper", ratio, 0.5, true, "x").0,
            met: Some(ratio >= 0.5),
            rss: format!("{:.0} MB", rss.parse::<f64>().unwrap_or(0.0) / 1024.0),
        });
        drop(collector);
        drop(pg_db);
    }
    println!();
    for line in summary {
        println!("{line}");
    }
    Ok(())
}

/// A typical error event: a Python-style exception with a 30-frame stack, tags, contexts and a few
/// values for the scrubber to find (an e-mail, an IP).
fn error_event(n: u64) -> Vec<u8> {
    let frames: Vec<serde_json::Value> = (0..30)
        .map(|i| {
            serde_json::json!({
                "filename": format!("app/module_{i}.py"),
                "abs_path": format!("/srv/app/app/module_{i}.py"),
                "module": format!("app.module_{i}"),
                "function": format!("handler_{i}"),
                "lineno": 10 + i,
                "in_app": i % 3 != 0,
                "context_line": "    result = process(request, user_id=42)",
                "vars": {"request": "<Request>", "user_id": 42}
            })
        })
        .collect();
    let event = serde_json::json!({
        "event_id": format!("{n:032x}"),
        "timestamp": 1_764_400_000.0 + n as f64,
        "platform": "python",
        "level": "error",
        "release": format!("app@5.{}.0", n % 4),
        "environment": "production",
        "server_name": "web-3",
        "message": format!("payment failed for customer {} from 10.0.{}.{}", n, n % 250, n % 200),
        "exception": {"values": [{
            "type": "ValueError",
            "value": format!("invalid amount {n} for alice@example.com"),
            "module": "builtins",
            "mechanism": {"type": "generic", "handled": false},
            "stacktrace": {"frames": frames}
        }]},
        "tags": {"server_id": format!("srv{}", n % 500), "browser": "Firefox 120", "url": "/checkout"},
        "contexts": {"os": {"name": "Linux", "version": "6.1"}, "runtime": {"name": "CPython", "version": "3.11.7"}},
        "extra": {"cart_items": 3, "note": "retry later"},
        "breadcrumbs": {"values": [{"message": "GET /cart", "category": "http"}]},
        "user": {"email": "alice@example.com", "ip_address": "203.0.113.9"}
    });
    let payload = event.to_string();
    let body = format!(
        "{{\"event_id\":\"{n:032x}\"}}\n{{\"type\":\"event\",\"length\":{}}}\n{payload}\n",
        payload.len()
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, body.as_bytes()).expect("gzip to memory");
    gz.finish().expect("gzip to memory")
}

fn envelopes(
    duration: Duration,
    connections: usize,
    rounds: usize,
    bodies: usize,
    beacon: Option<PathBuf>,
    postgres: Option<String>,
) -> Result<()> {
    let beacon = beacon_binary(beacon)?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let built: Arc<Vec<Bytes>> = Arc::new(
        (0..bodies as u64)
            .map(|n| Bytes::from(error_event(n)))
            .collect(),
    );
    println!(
        "beacon-bench envelopes: {} distinct gzip envelopes (30-frame event, {} bytes gzip); {rounds} rounds of {}s; {connections} connections; {cores} cores",
        bodies,
        built[0].len(),
        duration.as_secs()
    );
    let backends: Vec<&str> = std::iter::once("sqlite")
        .chain(postgres.iter().map(|_| "postgres"))
        .collect();
    for backend in backends {
        let dir = tempfile::tempdir()?;
        let pg_db = match backend {
            "postgres" => Some(BenchDb::create(postgres.as_deref().unwrap_or_default())?),
            _ => None,
        };
        let (collector, url) =
            start_collector(&beacon, dir.path(), pg_db.as_ref().map(|d| d.url.as_str()))?;
        println!("[{backend}]");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let project: serde_json::Value = rt.block_on(async {
            reqwest::Client::new()
                .post(format!("{url}/admin/v1/projects"))
                .bearer_auth(TOKEN)
                .json(&serde_json::json!({"name": "bench"}))
                .send()
                .await?
                .json()
                .await
        })?;
        let key = project["keys"][0]["public_key"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        // The benchmark measures ingestion, not the rate limiter.
        rt.block_on(async {
            reqwest::Client::new()
                .patch(format!("{url}/admin/v1/keys/{key}"))
                .bearer_auth(TOKEN)
                .json(&serde_json::json!({"rate_limit_per_minute": u32::MAX}))
                .send()
                .await?
                .error_for_status()
        })?;
        let path = format!("/api/{}/envelope/", project["id"]);
        let auth =
            format!("Sentry sentry_key={key}, sentry_version=7, sentry_client=beacon-bench/1");
        let built = built.clone();
        let make: MakeRequest = Arc::new(move |n| {
            Request::post(path.as_str())
                .header("x-sentry-auth", auth.as_str())
                .header("content-encoding", "gzip")
                .header("content-type", "application/x-sentry-envelope")
                .body(Full::new(built[n as usize % built.len()].clone()))
                .expect("static request")
        });
        let warm = run_load(
            url.trim_start_matches("http://"),
            connections,
            Duration::from_secs(2),
            make.clone(),
        )?;
        let mut sent = warm.ok + warm.errors;
        println!(
            "{:<6} {:>10} {:>9} {:>9} {:>10} {:>7}",
            "round", "events/s", "p50 ms", "p99 ms", "ok", "errors"
        );
        let mut rates = Vec::new();
        let (mut p50s, mut p99s) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let r = run_load(
                url.trim_start_matches("http://"),
                connections,
                duration,
                make.clone(),
            )?;
            println!(
                "{:<6} {:>10.0} {:>9.2} {:>9.2} {:>10} {:>7}",
                round + 1,
                r.rps(),
                r.ms(0.5),
                r.ms(0.99),
                r.ok,
                r.errors
            );
            rates.push(r.rps());
            p50s.push(r.ms(0.5));
            p99s.push(r.ms(0.99));
            sent += r.ok + r.errors;
        }
        rates.sort_by(f64::total_cmp);
        p50s.sort_by(f64::total_cmp);
        p99s.sort_by(f64::total_cmp);
        println!(
            "requests sent {sent}, distinct events {}: {}",
            bodies,
            if sent as usize <= bodies {
                "every event was new".to_string()
            } else {
                format!("{} repeats (duplicates)", sent as usize - bodies)
            }
        );
        println!(
            "median {:.0} events/s (target >= 20000); collector peak RSS {} kB",
            rates[rates.len() / 2],
            peak_rss_kb(collector.0.id())
        );
        let median = rates[rates.len() / 2];
        let rss = peak_rss_kb(collector.0.id());
        report::push(report::Row {
            bench: "error events (gzip envelope, 30 frames, scrubbed, grouped)".into(),
            backend: backend.into(),
            throughput: format!("{median:.0} events/s"),
            p50_ms: Some(p50s[p50s.len() / 2]),
            p99_ms: Some(p99s[p99s.len() / 2]),
            baseline: "-".into(),
            ratio: None,
            target: report::target(">= 20,000 events/s", median, 20_000.0, true, " events/s").0,
            met: Some(median >= 20_000.0),
            rss: format!("{:.0} MB", rss.parse::<f64>().unwrap_or(0.0) / 1024.0),
        });
        drop(collector);
        drop(pg_db);
    }
    Ok(())
}

fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    format!("{cores} cores ({cpu}), {mem_gib:.0} GiB memory, Linux, loopback only")
}

fn full_report(
    postgres: Option<String>,
    levels: Vec<u64>,
    duration: Duration,
    rounds: usize,
    trials: u32,
    soak_minutes: u64,
    out: &std::path::Path,
) -> Result<()> {
    let started = Instant::now();
    security(duration, 256, rounds, None, postgres.clone())?;
    envelopes(duration, 64, rounds, 800_000, None, postgres.clone())?;
    let rows = mobile::run(mobile::Options {
        duration,
        connections: 32,
        rounds,
        levels,
        postgres_max_level: 10_000_000,
        postgres: postgres.clone(),
        beacon: None,
    })?;
    for r in &rows {
        let rss = format!("{:.0} MB", r.rss_kb.parse::<f64>().unwrap_or(0.0) / 1024.0);
        report::push(report::Row {
            bench: format!(
                "trace events, batches of 100, with {} stored",
                human(r.stored)
            ),
            backend: r.backend.into(),
            throughput: format!("{:.0} events/s", r.ingest),
            p50_ms: Some(r.ingest_p50_ms),
            p99_ms: Some(r.ingest_p99_ms),
            baseline: "-".into(),
            ratio: None,
            target: report::target(
                ">= 200,000 events/s",
                r.ingest,
                200_000.0,
                true,
                " events/s",
            )
            .0,
            met: Some(r.ingest >= 200_000.0),
            rss,
        });
        if r.stored > 0 {
            let ratio = r.percentile_cont_ms.map(|p| p / r.query_p50_ms);
            report::push(report::Row {
                bench: format!(
                    "`perf percentiles` by app_version over {} events ({} in the trace)",
                    human(r.stored),
                    human(r.query_trace_events)
                ),
                backend: r.backend.into(),
                throughput: "-".into(),
                p50_ms: Some(r.query_p50_ms),
                p99_ms: Some(r.query_p99_ms),
                baseline: r
                    .percentile_cont_ms
                    .map(|p| format!("`percentile_cont` on raw rows {p:.0} ms"))
                    .unwrap_or_else(|| "-".into()),
                ratio,
                target: match ratio {
                    Some(x) if x < 100.0 => {
                        report::target("<= 20 ms; >= 100x `percentile_cont`", x, 100.0, true, "x").0
                    }
                    _ => {
                        report::target(
                            "<= 20 ms; >= 100x `percentile_cont`",
                            r.query_p50_ms,
                            20.0,
                            false,
                            " ms",
                        )
                        .0
                    }
                },
                met: Some(r.query_p50_ms <= 20.0 && ratio.is_none_or(|x| x >= 100.0)),
                rss: "-".into(),
            });
        }
    }
    agent::run(agent::Options {
        checks: 200,
        errors: 200,
        beacon: None,
    })?;
    let d = durability::run(trials, None, 1)?;
    let lost = d.lost_checks as u64 + d.lost_events as u64 + d.lost_traces;
    report::push(report::Row {
        bench: format!(
            "durability: sim at full rate, SIGKILL at random moments, {} trials",
            d.trials
        ),
        backend: "sqlite".into(),
        throughput: format!(
            "acknowledged {} checks, {} error events, {} trace events",
            d.acked_checks, d.acked_events, d.acked_traces
        ),
        p50_ms: None,
        p99_ms: None,
        baseline: "-".into(),
        ratio: None,
        target: "0 acknowledged items lost".into(),
        met: Some(lost == 0 && d.stored_traces == d.sketch_events),
        rss: "-".into(),
    });
    report::note(format!(
        "Durability: {} trials, {} acknowledged items lost ({} checks, {} error events, {} trace events); \
         {} trace events stored, {} in the sketches after restart.",
        d.trials,
        lost,
        d.lost_checks,
        d.lost_events,
        d.lost_traces,
        d.stored_traces,
        d.sketch_events
    ));
    if soak_minutes > 0 {
        soak::run(soak::Options {
            minutes: soak_minutes,
            postgres: None,
            beacon: None,
            security_rate: 17_000.0,
            errors_rate: 6_000.0,
            mobile_rate: 2_300.0,
            hostile_rate: 2.0,
        })?;
    }
    let header = format!(
        "# Benchmarks\n\nMeasured {} on {} by `scripts/bench-report` (`beacon-bench report`), in {:.0} minutes; \
         release build; every server and load generator on this one machine.\n",
        chrono_date(),
        machine(),
        started.elapsed().as_secs_f64() / 60.0
    );
    let md = report::markdown(&header);
    print!("{md}");
    std::fs::write(out, &md).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("written to {}", out.display());
    Ok(())
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1_000_000 => format!("{:.0} M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.0} k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

fn chrono_date() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The `beacon` binary to run: `--beacon`, or the one beside this bench; an error when it is missing.
fn beacon_binary(given: Option<PathBuf>) -> Result<PathBuf> {
    let beacon = match given {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("beacon"),
    };
    if !beacon.exists() {
        bail!(
            "{} not found; build it with cargo build --release",
            beacon.display()
        );
    }
    Ok(beacon)
}
