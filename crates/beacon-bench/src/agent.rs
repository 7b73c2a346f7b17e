//! `beacon-bench agent`: what the agent costs the host it lives in. The bench process plays the host:
//! a multi-threaded tokio runtime with a 1 ms heartbeat task (its lateness shows whether the host's
//! threads were ever blocked), and the agent started on that runtime. The collector is a separate
//! `beacon serve` process with TLS (a test CA) on loopback, so its work is not counted.
//!
//! Reported: resident memory added by the agent (after start, after the checks, after the errors),
//! process CPU per check (TLS handshake, query, answer, state file), per captured error (on the host
//! thread, and in the agent: symbols, scrubbing, envelope, send), and the heartbeat's worst lateness
//! with and without the agent at work. A manual clock drives the schedule: each check is a real tick.

use anyhow::{Context, Result, bail};
use beacon_agent::{Agent, Config, ErrorsConfig, HostFacts, ManualClock};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Options {
    pub checks: u64,
    pub errors: u64,
    pub beacon: Option<PathBuf>,
}

/// Resident set size of this process, KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU time of this process (all threads, live and exited).
fn cpu_time(ticks_per_sec: u64) -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the command name: state is field 3; utime and stime are fields 14 and 15.
    let ticks = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_secs_f64((ticks(14) + ticks(15)) as f64 / ticks_per_sec as f64)
}

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

fn mib(kib: i64) -> String {
    format!("{:+.2} MiB", kib as f64 / 1024.0)
}

/// A task that wakes every millisecond and records its worst lateness (µs) since the last reset.
struct Heartbeat {
    worst_us: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Heartbeat {
    fn start(rt: &tokio::runtime::Handle) -> Self {
        let worst_us = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (w, s) = (worst_us.clone(), stop.clone());
        rt.spawn(async move {
            let mut next = tokio::time::Instant::now();
            while !s.load(Ordering::Relaxed) {
                next += Duration::from_millis(1);
                tokio::time::sleep_until(next).await;
                let late = tokio::time::Instant::now().saturating_duration_since(next);
                w.fetch_max(late.as_micros() as u64, Ordering::Relaxed);
                if late > Duration::from_millis(50) {
                    next = tokio::time::Instant::now();
                }
            }
        });
        Heartbeat { worst_us, stop }
    }

    fn take_worst(&self) -> Duration {
        Duration::from_micros(self.worst_us.swap(0, Ordering::Relaxed))
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct HostError(u64);
impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "could not write block {} of /home/alice/data.db", self.0)
    }
}
impl std::error::Error for HostError {}

#[inline(never)]
fn host_work_that_fails(n: u64, agent: &beacon_agent::AgentHandle) -> Duration {
    let err = HostError(n);
    let t = Instant::now();
    agent.capture_error(&err);
    t.elapsed()
}

fn wait_for(what: &str, limit: Duration, cond: impl Fn() -> bool) -> Result<()> {
    let until = Instant::now() + limit;
    while !cond() {
        if Instant::now() > until {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    Ok(())
}

pub fn run(o: Options) -> Result<()> {
    let beacon = super::beacon_binary(o.beacon)?;
    let ticks_per_sec = clock_ticks();
    let dir = tempfile::tempdir()?;
    let (ca, cert, key, _) = beacon_testkit::generate_certificates(dir.path(), "beacon bench ca")
        .map_err(|e| anyhow::anyhow!("test certificates: {e}"))?;
    let mut cmd = Command::new(&beacon);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("BEACON_ADMIN_TOKEN", super::TOKEN)
        .env("BEACON_TLS_CERT", &cert)
        .env("BEACON_TLS_KEY", &key)
        .env("BEACON_LOG", "warn");
    let (_collector, url) = super::spawn_until(cmd, "listening on ")?;
    let port = url
        .rsplit(':')
        .next()
        .context("collector port")?
        .to_string();
    let base = format!("https://localhost:{port}");

    // The host: a two-worker runtime, like a small server.
    let host = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let pem = std::fs::read(&ca)?;
    let admin = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem)?])
        .build()?;
    let project: serde_json::Value = host.block_on(async {
        admin
            .post(format!("{base}/admin/v1/projects"))
            .bearer_auth(super::TOKEN)
            .json(&serde_json::json!({"name": "agent-bench"}))
            .send()
            .await?
            .json()
            .await
    })?;
    let public_key = project["keys"][0]["public_key"]
        .as_str()
        .context("project key")?
        .to_string();
    // Rate limits are the collector's business, not what is measured here.
    host.block_on(async {
        admin
            .patch(format!("{base}/admin/v1/keys/{public_key}"))
            .bearer_auth(super::TOKEN)
            .json(&serde_json::json!({"rate_limit_per_minute": 1_000_000}))
            .send()
            .await?
            .error_for_status()
    })?;
    drop(admin);
    let dsn = format!(
        "https://{public_key}@localhost:{port}/{}",
        project["id"].as_i64().unwrap_or(1)
    );
    println!(
        "beacon-bench agent: {} checks and {} captured errors; the agent on the host's tokio runtime (2 workers); collector `beacon serve` over TLS on loopback (another process)",
        o.checks, o.errors
    );

    let heartbeat = Heartbeat::start(host.handle());
    // The control: the same heartbeat on a runtime of its own, which the agent never touches. Where
    // both are late alike, the machine's cores were busy (2 cores, the collector is working too);
    // only the host's being later would mean the agent held the host's threads.
    let control_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let control = Heartbeat::start(control_rt.handle());
    let control_thread = {
        let stop = control.stop.clone();
        std::thread::spawn(move || {
            control_rt.block_on(async move {
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let idle_lag = (heartbeat.take_worst(), control.take_worst());
    let rss_before = rss_kib() as i64;

    let config = Config {
        collector: Some(base.clone()),
        state_file: Some(dir.path().join("agent-state.json")),
        ca_file: Some(ca.clone()),
        errors: ErrorsConfig {
            dsn: Some(dsn),
            release: Some("bench-host@1.0.0".into()),
            in_app: vec!["beacon_bench::".into()],
            queue: 32,
            ..ErrorsConfig::default()
        },
        ..Config::default()
    };
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let mut facts = HostFacts::new(semver::Version::new(6, 1, 0), "postgres");
    facts.users = Some(80);
    let agent = Agent::builder(config)
        .facts(facts)
        .clock(clock.clone())
        .env(|_| None)
        .start_on(host.handle())?;
    std::thread::sleep(Duration::from_millis(200));
    let rss_started = rss_kib() as i64;

    // Checks: the first tick (after the jitter), then one per simulated day.
    let cpu0 = cpu_time(ticks_per_sec);
    let wall0 = Instant::now();
    for n in 1..=o.checks {
        clock.advance(if n == 1 {
            Duration::from_secs(600)
        } else {
            Duration::from_secs(6 * 4 * 3600)
        });
        wait_for("a check", Duration::from_secs(60), || {
            agent.status().ticks >= n
        })?;
    }
    let cpu_checks = cpu_time(ticks_per_sec) - cpu0;
    let wall_checks = wall0.elapsed();
    let check_lag = (heartbeat.take_worst(), control.take_worst());
    let s = agent.status();
    if s.checks != o.checks || s.check_failures != 0 {
        bail!("checks did not all succeed: {s:?}");
    }
    let rss_checks = rss_kib() as i64;

    // Errors, captured on a host thread in bursts the queue holds, each burst sent before the next.
    let mut capture_ns = Vec::with_capacity(o.errors as usize);
    let cpu1 = cpu_time(ticks_per_sec);
    let wall1 = Instant::now();
    let mut captured = 0;
    while captured < o.errors {
        let burst = (o.errors - captured).min(16);
        for _ in 0..burst {
            captured += 1;
            capture_ns.push(host_work_that_fails(captured, &agent).as_nanos() as u64);
        }
        wait_for("error reports", Duration::from_secs(120), || {
            let s = agent.status();
            s.errors_sent + s.errors_failed + s.errors_dropped >= captured
        })?;
    }
    let cpu_errors = cpu_time(ticks_per_sec) - cpu1;
    let wall_errors = wall1.elapsed();
    let error_lag = (heartbeat.take_worst(), control.take_worst());
    let s = agent.status();
    if s.errors_sent != o.errors {
        bail!("error reports did not all arrive: {s:?}");
    }
    let rss_errors = rss_kib() as i64;
    let host_capture_cpu: u64 = capture_ns.iter().sum();
    capture_ns.sort_unstable();
    let pct = |q: f64| capture_ns[((capture_ns.len() - 1) as f64 * q) as usize] as f64 / 1000.0;

    let status = host.block_on(agent.shutdown(Duration::from_secs(5)));
    drop(heartbeat);
    drop(control);
    let _ = control_thread.join();

    println!(
        "RSS added by the agent: {} after start, {} after {} checks, {} after {} errors (host before the agent: {:.1} MiB)",
        mib(rss_started - rss_before),
        mib(rss_checks - rss_before),
        o.checks,
        mib(rss_errors - rss_before),
        o.errors,
        rss_before as f64 / 1024.0
    );
    println!(
        "CPU per check: {:.2} ms (process CPU {:.2} s over {} checks in {:.2} s; each: TLS handshake, GET /security, answer, state file)",
        cpu_checks.as_secs_f64() * 1000.0 / o.checks as f64,
        cpu_checks.as_secs_f64(),
        o.checks,
        wall_checks.as_secs_f64()
    );
    println!(
        "CPU per captured error: {:.3} ms on the host thread (capture call p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs); {:.2} ms in all (process CPU {:.2} s over {} errors in {:.2} s: symbols, scrubbing, envelope, TLS POST)",
        host_capture_cpu as f64 / 1e6 / o.errors as f64,
        pct(0.5),
        pct(0.99),
        pct(1.0),
        cpu_errors.as_secs_f64() * 1000.0 / o.errors as f64,
        cpu_errors.as_secs_f64(),
        o.errors,
        wall_errors.as_secs_f64()
    );
    let ms = |(host, control): (Duration, Duration)| {
        format!(
            "{:.2} ms (control {:.2} ms)",
            host.as_secs_f64() * 1000.0,
            control.as_secs_f64() * 1000.0
        )
    };
    println!(
        "heartbeat (1 ms) on the host's runtime, worst lateness: {} idle, {} during checks, {} during error reports; control = the same heartbeat on a thread the agent never uses",
        ms(idle_lag),
        ms(check_lag),
        ms(error_lag)
    );
    println!("agent counters: {status:?}");
    let added = (rss_checks.max(rss_errors) - rss_before) as f64 / 1024.0;
    crate::report::push(crate::report::Row {
        bench: "agent cost on its host".into(),
        backend: "-".into(),
        throughput: format!(
            "{:.2} ms CPU/check, {:.3} ms CPU/error on the host thread ({:.2} ms in all)",
            cpu_checks.as_secs_f64() * 1000.0 / o.checks as f64,
            host_capture_cpu as f64 / 1e6 / o.errors as f64,
            cpu_errors.as_secs_f64() * 1000.0 / o.errors as f64
        ),
        p50_ms: Some(pct(0.5) / 1000.0),
        p99_ms: Some(pct(0.99) / 1000.0),
        baseline: "host without the agent".into(),
        ratio: None,
        target: crate::report::target(
            "<= 2 MiB RSS added, host never blocked",
            added,
            2.0,
            false,
            " MiB",
        )
        .0,
        met: Some(added <= 2.0),
        rss: format!("+{added:.2} MiB"),
    });
    Ok(())
}
