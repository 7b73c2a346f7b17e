//! `beacon-bench`: the benchmark harness. Starts the servers it measures as separate processes on
//! loopback, drives them with a closed-loop load generator (N keep-alive connections, one request in
//! flight each) for a fixed time, and prints throughput and latency beside a baseline measured in the
//! same run. Every loop is bounded by its deadline.

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
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
    /// A bare hyper server answering `[]` to everything: the ceiling for an HTTP endpoint here.
    BareServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
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
                Arc::new(query),
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
        Cmd::Security {
            duration,
            connections,
            rounds,
            beacon,
        } => security(
            Duration::from_secs(duration),
            connections,
            rounds.max(1),
            beacon,
        ),
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

/// A child process that is killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `cmd`, waits for a line containing `marker` followed by a URL, returns the URL.
fn spawn_until(mut cmd: Command, marker: &str) -> Result<(Proc, String)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("spawn server")?;
    let mut reader = BufReader::new(child.stdout.take().expect("piped stdout"));
    let proc = Proc(child);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            bail!("server exited before printing {marker:?}");
        }
        if let Some(pos) = line.find(marker) {
            let url = line[pos + marker.len()..].trim().to_string();
            std::thread::spawn(move || for _ in reader.lines() {});
            return Ok((proc, url));
        }
    }
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
fn run_load(
    addr: &str,
    connections: usize,
    duration: Duration,
    path: Arc<dyn Fn(u64) -> String + Send + Sync>,
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
            let (addr, counter, path) = (addr.to_string(), counter.clone(), path.clone());
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
                    let req = Request::get(path(n))
                        .header("host", &addr)
                        .body(Empty::<Bytes>::new())?;
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

fn security(
    duration: Duration,
    connections: usize,
    rounds: usize,
    beacon: Option<PathBuf>,
) -> Result<()> {
    let me = std::env::current_exe()?;
    let beacon = beacon.unwrap_or_else(|| me.with_file_name("beacon"));
    if !beacon.exists() {
        bail!(
            "{} not found; build it with cargo build --release",
            beacon.display()
        );
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "beacon-bench security: 2s warm-up, then {rounds} rounds of {}s per target, alternating; {connections} connections; loopback; {cores} cores",
        duration.as_secs()
    );

    // Baseline: a bare hyper server, in its own process like the collector.
    let mut cmd = Command::new(&me);
    cmd.args(["bare-server", "--listen", "127.0.0.1:0"]);
    let (_bare, bare_url) = spawn_until(cmd, "listening on ")?;

    // Beacon with SQLite and a bulletin loaded; every request is a new server id (an insert).
    let dir = tempfile::tempdir()?;
    let token = "bench-admin-token-0123456789abcdef";
    let mut cmd = Command::new(&beacon);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("BEACON_ADMIN_TOKEN", token)
        .env("BEACON_LOG", "warn");
    let (server, url) = spawn_until(cmd, "listening on ")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let http = reqwest::Client::new();
    rt.block_on(async {
        http.post(format!("{url}/admin/v1/bulletins"))
            .bearer_auth(token)
            .json(&serde_json::json!({"id": "BSA-BENCH", "title": "bench", "severity": "high", "affected": ">=5.30.0, <5.37.2", "body": "<p>x</p>"}))
            .send()
            .await?
            .error_for_status()
    })?;

    println!(
        "{:<6} {:<36} {:>10} {:>9} {:>9} {:>10} {:>7}",
        "round", "target", "req/s", "p50 ms", "p99 ms", "ok", "errors"
    );
    // Warm-up, not reported: connections, caches, the first pages of the database.
    let warm: Arc<dyn Fn(u64) -> String + Send + Sync> = Arc::new(|n| query(999_000_000_000 + n));
    let warm_up = Duration::from_secs(2);
    run_load(
        bare_url.trim_start_matches("http://"),
        connections,
        warm_up,
        warm.clone(),
    )?;
    let mut acknowledged = run_load(
        url.trim_start_matches("http://"),
        connections,
        warm_up,
        warm,
    )?
    .ok;
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let offset = round as u64 * 1_000_000_000;
        let ids: Arc<dyn Fn(u64) -> String + Send + Sync> = Arc::new(move |n| query(offset + n));
        let bare = run_load(
            bare_url.trim_start_matches("http://"),
            connections,
            duration,
            ids.clone(),
        )?;
        let beacon = run_load(
            url.trim_start_matches("http://"),
            connections,
            duration,
            ids,
        )?;
        acknowledged += beacon.ok;
        for (name, r) in [
            ("bare hyper, answers []", &bare),
            ("beacon /security (sqlite, durable)", &beacon),
        ] {
            println!(
                "{:<6} {:<36} {:>10.0} {:>9.2} {:>9.2} {:>10} {:>7}",
                round + 1,
                name,
                r.rps(),
                r.ms(0.5),
                r.ms(0.99),
                r.ok,
                r.errors
            );
        }
        ratios.push(beacon.rps() / bare.rps());
    }
    let rss_kb = std::fs::read_to_string(format!("/proc/{}/status", server.0.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .unwrap_or_default();
    let stored: serde_json::Value = rt.block_on(async {
        http.get(format!("{url}/admin/v1/reports/fleet?include_test=true"))
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await
    })?;
    drop(server);

    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let list: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    println!(
        "ratio beacon/bare per round: {}; median {median:.2} (target >= 0.50)",
        list.join(", ")
    );
    println!("collector peak RSS under load: {rss_kb} kB");
    println!(
        "stored distinct servers: {} (acknowledged: {acknowledged})",
        stored["total"]["servers"]
    );
    if stored["total"]["servers"].as_u64() != Some(acknowledged) {
        bail!("stored servers differ from acknowledged checks");
    }
    Ok(())
}
