//! `beacon-bench soak`: one `beacon serve` (SQLite, or PostgreSQL with `--postgres`) under a 1,024
//! open-files soft limit for `--minutes`, all three channels paced at about half of their measured
//! maxima, the reports polled every few seconds, and a hostile client sending the inputs of
//! [`hostile::cases`] at a low rate. Per minute: acknowledged items and p50/p99 per channel, the
//! collector's RSS, 5xx (503 apart). At the end: every acknowledged item looked up in the store, RSS
//! growth over the last third, p99 of the last third against the first, and no 5xx but 503.

use super::{BenchDb, MakeRequest, Proc, TOKEN, spawn_until};
use anyhow::{Context, Result, bail};
use beacon_bench::hostile;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Seconds per recorded slot; minutes and thirds are made of slots.
const SLOT_SECS: u64 = 10;
const CHANNELS: [&str; 3] = ["security", "errors", "mobile"];

pub struct Options {
    pub minutes: u64,
    pub postgres: Option<String>,
    pub beacon: Option<PathBuf>,
    /// `/security` checks per second.
    pub security_rate: f64,
    /// Error events per second (one event per envelope).
    pub errors_rate: f64,
    /// Mobile batches (100 trace events each) per second.
    pub mobile_rate: f64,
    /// Hostile requests per second.
    pub hostile_rate: f64,
}

#[derive(Default)]
struct Slot {
    acked: [u64; 3],
    hist: [Option<hdrhistogram::Histogram<u64>>; 3],
    server_errors: u64,
    unavailable: u64,
}

struct Stats {
    started: Instant,
    /// Answers arriving after the deadline count in the last slot of the run.
    last_slot: usize,
    slots: Mutex<Vec<Slot>>,
    rss_kb: Mutex<Vec<(f64, u64)>>,
    acked_checks: Mutex<Vec<u64>>,
    acked_events: Mutex<Vec<u64>>,
    acked_traces: AtomicU64,
    hostile_sent: AtomicU64,
    hostile_unexpected: Mutex<Vec<String>>,
    report_polls: AtomicU64,
    report_failures: AtomicU64,
}

impl Stats {
    fn slot(&self) -> usize {
        ((self.started.elapsed().as_secs() / SLOT_SECS) as usize).min(self.last_slot)
    }

    fn with_slot(&self, f: impl FnOnce(&mut Slot)) {
        let i = self.slot();
        let mut slots = self.slots.lock().expect("slots");
        while slots.len() <= i {
            slots.push(Slot::default());
        }
        f(&mut slots[i]);
    }

    fn status(&self, status: u16) {
        if status == 503 {
            self.with_slot(|s| s.unavailable += 1);
        } else if status >= 500 {
            self.with_slot(|s| s.server_errors += 1);
        }
    }

    fn acked(&self, channel: usize, latency: Duration) {
        self.with_slot(|s| {
            s.acked[channel] += 1;
            let h = s.hist[channel].get_or_insert_with(|| {
                hdrhistogram::Histogram::new_with_bounds(1, 120_000_000, 3).expect("bounds")
            });
            let _ = h.record(latency.as_micros().max(1) as u64);
        });
    }
}

/// An uncompressed envelope with one event (30 frames, tags, a few values to scrub), id `n`.
fn event_body(template: &str, n: u64) -> Bytes {
    let id = format!("{n:032x}");
    let payload = template.replace("EVENT_ID", &id);
    Bytes::from(format!(
        "{{\"event_id\":\"{id}\"}}\n{{\"type\":\"event\",\"length\":{}}}\n{payload}\n",
        payload.len()
    ))
}

fn event_template() -> String {
    let frames: Vec<Value> = (0..30)
        .map(|i| {
            json!({"filename": format!("app/module_{i}.py"), "module": format!("app.module_{i}"),
                   "function": format!("handler_{i}"), "lineno": 10 + i, "in_app": i % 3 != 0})
        })
        .collect();
    json!({
        "event_id": "EVENT_ID", "platform": "python", "level": "error",
        "release": "app@5.1.0", "environment": "production",
        "message": "payment failed for alice@example.com from 10.0.0.7",
        "exception": {"values": [{"type": "ValueError", "value": "invalid amount",
                                  "stacktrace": {"frames": frames}}]},
        "tags": {"server_id": "srv1"},
        "contexts": {"os": {"name": "Linux", "version": "6.1"}}
    })
    .to_string()
}

/// Called with the request number, the answer's body and the latency of each 2xx answer.
type OnOk = Arc<dyn Fn(u64, &[u8], Duration) + Send + Sync>;

/// Paced load on one channel: `connections` keep-alive connections, together `rate` requests per
/// second, until `deadline`. `on_ok(n, body)` is called for each 2xx answer.
#[allow(clippy::too_many_arguments)]
fn paced(
    rt: &tokio::runtime::Runtime,
    addr: String,
    connections: usize,
    rate: f64,
    deadline: Instant,
    make: MakeRequest,
    on_ok: OnOk,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Result<()>>> {
    let counter = Arc::new(AtomicU64::new(0));
    let interval = Duration::from_secs_f64(connections as f64 / rate.max(0.001));
    (0..connections)
        .map(|c| {
            let (addr, make, on_ok, stats, stop, counter) = (
                addr.clone(),
                make.clone(),
                on_ok.clone(),
                stats.clone(),
                stop.clone(),
                counter.clone(),
            );
            rt.spawn(async move {
                let start = Instant::now() + interval.mul_f64(c as f64 / connections as f64);
                let mut next = start;
                'reconnect: while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                    let stream = match tokio::net::TcpStream::connect(&addr).await {
                        Ok(s) => s,
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    stream.set_nodelay(true)?;
                    let (mut sender, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                    tokio::spawn(conn);
                    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                        let now = Instant::now();
                        if next > now {
                            tokio::time::sleep_until(next.into()).await;
                        }
                        // Behind schedule: send now, do not queue up a burst.
                        next = next.max(Instant::now() - interval) + interval;
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        let mut req = make(n);
                        req.headers_mut().insert("host", addr.parse()?);
                        let t = Instant::now();
                        let left = deadline.saturating_duration_since(t) + Duration::from_secs(30);
                        let answer = tokio::time::timeout(left, async {
                            let resp = sender.send_request(req).await?;
                            let status = resp.status();
                            let body = resp.into_body().collect().await?.to_bytes();
                            Ok::<_, hyper::Error>((status, body))
                        })
                        .await;
                        match answer {
                            Ok(Ok((status, body))) => {
                                stats.status(status.as_u16());
                                if status.is_success() {
                                    on_ok(n, &body, t.elapsed());
                                }
                            }
                            _ => continue 'reconnect,
                        }
                    }
                }
                Ok(())
            })
        })
        .collect()
}

pub fn run(o: Options) -> Result<bool> {
    let beacon = super::beacon_binary(o.beacon)?;
    let dir = tempfile::tempdir()?;
    let pg = match &o.postgres {
        Some(admin_url) => Some(BenchDb::create(admin_url).context("postgres")?),
        None => None,
    };
    let data_dir = dir.path().to_str().context("utf-8 temp dir")?.to_string();
    let mut cmd = hostile::capped(
        &beacon,
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", &data_dir],
        16 << 20,
    );
    cmd.env("BEACON_ADMIN_TOKEN", TOKEN)
        .env("BEACON_ERRORS_RATE_LIMIT_PER_MINUTE", "1000000000")
        .env("BEACON_LOG", "error");
    if let Some(db) = &pg {
        cmd.env("BEACON_STORE_URL", &db.url);
    }
    let (collector, url): (Proc, String) = spawn_until(cmd, "listening on ")?;
    let pid = collector.0.id();
    let addr = url.trim_start_matches("http://").to_string();
    let project = super::durability::post(&url, "/projects", json!({"name": "soak"}))?;
    let dsn_key = project["keys"][0]["public_key"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let project_id = project["id"].as_i64().unwrap_or_default();
    let api_key = super::durability::post(&url, "/apikeys", json!({"name": "soak"}))?["key"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let target = hostile::Target {
        addr: addr.clone(),
        project_id,
        dsn_key: dsn_key.clone(),
        api_key: api_key.clone(),
        admin_token: TOKEN.into(),
    };
    let cases = Arc::new(hostile::cases(&target));
    let total = Duration::from_secs(o.minutes.max(1) * 60);
    println!(
        "beacon-bench soak: {} min, {}; /security {:.0}/s, error events {:.0}/s, mobile batches {:.0}/s (x100 events), {} hostile inputs at {:.1}/s",
        o.minutes,
        if pg.is_some() { "postgres" } else { "sqlite" },
        o.security_rate,
        o.errors_rate,
        o.mobile_rate,
        cases.len(),
        o.hostile_rate
    );

    let stats = Arc::new(Stats {
        started: Instant::now(),
        last_slot: (total.as_secs() / SLOT_SECS).max(1) as usize - 1,
        slots: Mutex::new(Vec::new()),
        rss_kb: Mutex::new(Vec::new()),
        acked_checks: Mutex::new(Vec::new()),
        acked_events: Mutex::new(Vec::new()),
        acked_traces: AtomicU64::new(0),
        hostile_sent: AtomicU64::new(0),
        hostile_unexpected: Mutex::new(Vec::new()),
        report_polls: AtomicU64::new(0),
        report_failures: AtomicU64::new(0),
    });
    let deadline = stats.started + total;
    let stop = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    let mut tasks = Vec::new();
    // Channel 1: distinct server ids.
    let s = stats.clone();
    tasks.extend(paced(
        &rt,
        addr.clone(),
        64,
        o.security_rate,
        deadline,
        super::gets(super::query),
        Arc::new(move |n, _, lat| {
            s.acked(0, lat);
            s.acked_checks.lock().expect("acked").push(n);
        }),
        stats.clone(),
        stop.clone(),
    ));
    // Channel 2: one new event per envelope.
    let template = Arc::new(event_template());
    let path = format!("/api/{project_id}/envelope/");
    let auth = format!("Sentry sentry_key={dsn_key}, sentry_version=7, sentry_client=soak/1");
    let make_event: MakeRequest = Arc::new(move |n| {
        Request::post(path.as_str())
            .header("x-sentry-auth", auth.as_str())
            .header("content-type", "application/x-sentry-envelope")
            .body(Full::new(event_body(&template, n)))
            .expect("static request")
    });
    let s = stats.clone();
    tasks.extend(paced(
        &rt,
        addr.clone(),
        32,
        o.errors_rate,
        deadline,
        make_event,
        Arc::new(move |n, _, lat| {
            s.acked(1, lat);
            s.acked_events.lock().expect("acked").push(n);
        }),
        stats.clone(),
        stop.clone(),
    ));
    // Channel 3: batches of 100 trace events; `accepted` of each answer is acknowledged.
    let bodies = super::mobile::bodies(2_000, 11);
    let key = api_key.clone();
    let make_batch: MakeRequest = Arc::new(move |n| {
        Request::post("/v1/mobile/metrics")
            .header("x-api-key", key.as_str())
            .header("content-type", "application/json")
            .body(Full::new(bodies[n as usize % bodies.len()].clone()))
            .expect("static request")
    });
    let s = stats.clone();
    tasks.extend(paced(
        &rt,
        addr.clone(),
        16,
        o.mobile_rate,
        deadline,
        make_batch,
        Arc::new(move |_, body, lat| {
            s.acked(2, lat);
            let accepted = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v["accepted"].as_u64())
                .unwrap_or(0);
            s.acked_traces.fetch_add(accepted, Ordering::Relaxed);
        }),
        stats.clone(),
        stop.clone(),
    ));

    // The hostile client and the report poller, on threads of their own (blocking sockets).
    let mut threads = Vec::new();
    {
        let (stats, stop, cases, addr) = (stats.clone(), stop.clone(), cases.clone(), addr.clone());
        let every = Duration::from_secs_f64(1.0 / o.hostile_rate.max(0.01));
        threads.push(std::thread::spawn(move || {
            let mut i = 0usize;
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                let case = &cases[i % cases.len()];
                i += 1;
                stats.hostile_sent.fetch_add(1, Ordering::Relaxed);
                match hostile::send(&addr, &case.request, Duration::from_secs(30)) {
                    Ok(reply) => {
                        stats.status(reply.status);
                        if let Err(e) = hostile::judge(case, &reply) {
                            stats
                                .hostile_unexpected
                                .lock()
                                .expect("hostile")
                                .push(format!("{}: {e}", case.name));
                        }
                    }
                    Err(e) => stats
                        .hostile_unexpected
                        .lock()
                        .expect("hostile")
                        .push(format!("{}: no answer: {e}", case.name)),
                }
                std::thread::sleep(every.min(deadline.saturating_duration_since(Instant::now())));
            }
        }));
    }
    {
        let (stats, stop, addr) = (stats.clone(), stop.clone(), addr.clone());
        threads.push(std::thread::spawn(move || {
            let paths = [
                "/admin/v1/reports/fleet?by=version",
                "/admin/v1/issues?limit=50",
                "/admin/v1/perf/percentiles?trace=channel:switch_loaded&by=app_version",
            ];
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                for p in paths {
                    stats.report_polls.fetch_add(1, Ordering::Relaxed);
                    let auth = format!("Bearer {TOKEN}");
                    match hostile::send(
                        &addr,
                        &hostile::request("GET", p, &[("authorization", auth.as_str())], b""),
                        Duration::from_secs(30),
                    ) {
                        Ok(r) => {
                            stats.status(r.status);
                            if r.status != 200 {
                                stats.report_failures.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(_) => {
                            stats.report_failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                std::thread::sleep(
                    Duration::from_secs(5).min(deadline.saturating_duration_since(Instant::now())),
                );
            }
        }));
    }
    // RSS every 2 s, and a progress line every minute.
    let mut last_minute = 0;
    while Instant::now() < deadline {
        let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
            });
        match rss {
            Some(kb) => stats
                .rss_kb
                .lock()
                .expect("rss")
                .push((stats.started.elapsed().as_secs_f64(), kb)),
            None => {
                stop.store(true, Ordering::Relaxed);
                bail!("the collector exited during the soak");
            }
        }
        let minute = stats.started.elapsed().as_secs() / 60;
        if minute > last_minute {
            last_minute = minute;
            eprintln!("soak: minute {minute} of {} done", o.minutes);
        }
        std::thread::sleep(
            Duration::from_secs(2).min(deadline.saturating_duration_since(Instant::now())),
        );
    }
    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for t in tasks {
            match tokio::time::timeout(Duration::from_secs(60), t).await {
                Ok(Ok(Err(e))) => eprintln!("soak: a load connection failed: {e}"),
                Ok(_) => {}
                Err(_) => eprintln!("soak: a load connection did not stop within 60 s"),
            }
        }
    });
    for t in threads {
        let _ = t.join();
    }
    let elapsed = stats.started.elapsed().as_secs_f64();
    drop(rt);

    // Every acknowledged item, looked up in the store (the collector still running).
    let acked_checks: HashSet<String> = stats
        .acked_checks
        .lock()
        .expect("acked")
        .iter()
        .map(|n| format!("{n:0>26}"))
        .collect();
    let acked_events: HashSet<String> = stats
        .acked_events
        .lock()
        .expect("acked")
        .iter()
        .map(|n| format!("{n:032x}"))
        .collect();
    let acked_traces = stats.acked_traces.load(Ordering::Relaxed);
    let (servers, events, traces) = stored(dir.path(), pg.as_ref())?;
    let lost_checks = acked_checks
        .iter()
        .filter(|c| !servers.contains(*c))
        .count();
    let lost_events = acked_events.iter().filter(|e| !events.contains(*e)).count();
    let lost_traces = acked_traces.saturating_sub(traces);
    drop(collector);
    drop(pg);

    // The table: per minute.
    let slots = stats.slots.lock().expect("slots");
    let rss = stats.rss_kb.lock().expect("rss");
    let per_minute = (60 / SLOT_SECS) as usize;
    println!(
        "{:>6} {:>9} {:>8} {:>8} {:>9} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8} {:>5} {:>5}",
        "minute",
        "checks",
        "p50 ms",
        "p99 ms",
        "events",
        "p50 ms",
        "p99 ms",
        "batches",
        "p50 ms",
        "p99 ms",
        "RSS MB",
        "5xx",
        "503"
    );
    let merged = |range: &[Slot]| -> Slot {
        let mut m = Slot::default();
        for s in range {
            for c in 0..3 {
                m.acked[c] += s.acked[c];
                if let Some(h) = &s.hist[c] {
                    let into = m.hist[c].get_or_insert_with(|| {
                        hdrhistogram::Histogram::new_with_bounds(1, 120_000_000, 3).expect("bounds")
                    });
                    let _ = into.add(h);
                }
            }
            m.server_errors += s.server_errors;
            m.unavailable += s.unavailable;
        }
        m
    };
    let q = |s: &Slot, c: usize, p: f64| {
        s.hist[c]
            .as_ref()
            .map(|h| h.value_at_quantile(p) as f64 / 1000.0)
            .unwrap_or(0.0)
    };
    for (m, chunk) in slots.chunks(per_minute).enumerate() {
        let s = merged(chunk);
        let end = ((m + 1) * 60) as f64;
        let rss_mb = rss
            .iter()
            .rev()
            .find(|(t, _)| *t <= end)
            .map(|(_, kb)| *kb as f64 / 1024.0)
            .unwrap_or(0.0);
        println!(
            "{:>6} {:>9} {:>8.2} {:>8.2} {:>9} {:>8.2} {:>8.2} {:>9} {:>8.2} {:>8.2} {:>8.0} {:>5} {:>5}",
            m + 1,
            s.acked[0],
            q(&s, 0, 0.5),
            q(&s, 0, 0.99),
            s.acked[1],
            q(&s, 1, 0.5),
            q(&s, 1, 0.99),
            s.acked[2],
            q(&s, 2, 0.5),
            q(&s, 2, 0.99),
            rss_mb,
            s.server_errors,
            s.unavailable
        );
    }

    // The verdict: the first and last thirds (of 10 minutes each in a 30-minute run).
    let third = (slots.len() / 3).max(1);
    let first = merged(&slots[..third.min(slots.len())]);
    let last = merged(&slots[slots.len().saturating_sub(third)..]);
    let last_start = elapsed * 2.0 / 3.0;
    // RSS swings with transient work (a report, a compaction) by tens of MB within seconds, so one
    // sample against another measures the swing, not growth: the level at either end of the last
    // third is the median of its samples over a minute (30, one every 2 s).
    let level = |from: f64, to: f64| {
        let mut v: Vec<u64> = rss
            .iter()
            .filter(|(t, _)| (from..to).contains(t))
            .map(|(_, kb)| *kb)
            .collect();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    };
    let rss_at_last_start = level(last_start, last_start + 60.0);
    let rss_end = level(elapsed - 60.0, elapsed + 1.0);
    let rss_first_sample = rss
        .iter()
        .find(|(t, _)| *t >= last_start)
        .map(|(_, kb)| *kb)
        .unwrap_or(0);
    let rss_last_sample = rss.last().map(|(_, kb)| *kb).unwrap_or(0);
    let rss_peak = rss.iter().map(|(_, kb)| *kb).max().unwrap_or(0);
    let median_growth = if rss_at_last_start > 0 {
        (rss_end as f64 - rss_at_last_start as f64) / rss_at_last_start as f64 * 100.0
    } else {
        0.0
    };
    // Growth is the trend: the least-squares line through every sample of the last third (300 in a
    // 30-minute run), from its value at the third's start to its value at the end. Two one-minute
    // medians still carry the swing of whatever ran in those two minutes; the line does not.
    let trend = rss_trend(&rss, last_start, elapsed);
    let rss_growth = trend.map_or(0.0, |t| t.growth_percent());
    let all = merged(&slots);
    let mut failed = Vec::new();
    if lost_checks + lost_events > 0 || lost_traces > 0 {
        failed.push(format!(
            "lost {lost_checks} checks, {lost_events} events, {lost_traces} trace events"
        ));
    }
    if rss_growth >= 5.0 {
        failed.push(format!("RSS grew {rss_growth:.1} % in the last third"));
    }
    let mut p99s = Vec::new();
    for (c, name) in CHANNELS.iter().enumerate() {
        let (a, b) = (q(&first, c, 0.99), q(&last, c, 0.99));
        p99s.push(format!("{name} {a:.2} → {b:.2} ms"));
        if first.acked[c] == 0 || last.acked[c] == 0 {
            failed.push(format!(
                "{name}: nothing acknowledged in the first or last third"
            ));
        } else if b > a * 1.5 {
            failed.push(format!(
                "{name}: p99 {b:.2} ms in the last third vs {a:.2} ms in the first"
            ));
        }
    }
    if all.server_errors > 0 {
        failed.push(format!("{} 5xx answers other than 503", all.server_errors));
    }
    let unexpected = stats.hostile_unexpected.lock().expect("hostile");
    println!(
        "acknowledged {} checks, {} error events, {} trace events; lost {lost_checks}, {lost_events}, {lost_traces}",
        acked_checks.len(),
        acked_events.len(),
        acked_traces
    );
    let (trend_start, trend_end, trend_samples) = trend.map_or((0.0, 0.0, 0), |t| {
        (t.start_kb / 1024.0, t.end_kb / 1024.0, t.samples)
    });
    println!(
        "collector RSS: peak {:.0} MB; last third, trend of its {trend_samples} samples {trend_start:.0} → {trend_end:.0} MB ({rss_growth:+.1} %); median of its first and last minute {:.0} → {:.0} MB ({median_growth:+.1} %); single samples {:.0} → {:.0} MB",
        rss_peak as f64 / 1024.0,
        rss_at_last_start as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        rss_first_sample as f64 / 1024.0,
        rss_last_sample as f64 / 1024.0
    );
    println!("p99 first third → last third: {}", p99s.join(", "));
    println!(
        "5xx: {} (503: {}); reports polled {} times, {} failed; hostile inputs sent {}, {} not answered as listed",
        all.server_errors,
        all.unavailable,
        stats.report_polls.load(Ordering::Relaxed),
        stats.report_failures.load(Ordering::Relaxed),
        stats.hostile_sent.load(Ordering::Relaxed),
        unexpected.len()
    );
    let mut distinct: Vec<&String> = unexpected.iter().collect();
    distinct.sort();
    distinct.dedup();
    for u in distinct.iter().take(20) {
        println!("  hostile: {u}");
    }
    let ok = failed.is_empty();
    println!(
        "verdict: {}",
        if ok {
            "PASS (0 acknowledged items lost, RSS growth < 5 % in the last third by its trend, p99 stable within 1.5x, no 5xx but 503)".to_string()
        } else {
            format!("FAIL: {}", failed.join("; "))
        }
    );
    super::report::push(super::report::Row {
        bench: format!(
            "soak {} min: all channels at half their maximum, reports polled, hostile inputs at {:.0}/s",
            o.minutes, o.hostile_rate
        ),
        backend: if o.postgres.is_some() { "postgres" } else { "sqlite" }.into(),
        throughput: format!(
            "{:.0} checks/s, {:.0} events/s, {:.0} trace events/s",
            acked_checks.len() as f64 / elapsed,
            acked_events.len() as f64 / elapsed,
            acked_traces as f64 / elapsed
        ),
        p50_ms: None,
        p99_ms: None,
        baseline: "-".into(),
        ratio: None,
        target: "0 lost; RSS growth (trend) < 5 % in the last third; p99 last/first third <= 1.5x; no 5xx but 503".into(),
        met: Some(ok),
        rss: format!("{:.0} MB ({rss_growth:+.1} % last third)", rss_peak as f64 / 1024.0),
    });
    Ok(ok)
}

/// The least-squares line through RSS samples over a span of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Trend {
    /// The line's value at the span's start and end, KiB.
    start_kb: f64,
    end_kb: f64,
    samples: usize,
}

impl Trend {
    fn growth_percent(self) -> f64 {
        if self.start_kb > 0.0 {
            (self.end_kb - self.start_kb) / self.start_kb * 100.0
        } else {
            0.0
        }
    }
}

/// The trend of the `(seconds, KiB)` samples taken from `from` to `to` seconds; `None` with fewer
/// than two samples at distinct times.
fn rss_trend(samples: &[(f64, u64)], from: f64, to: f64) -> Option<Trend> {
    let points: Vec<(f64, f64)> = samples
        .iter()
        .filter(|(t, _)| (from..=to).contains(t))
        .map(|(t, kb)| (*t, *kb as f64))
        .collect();
    let n = points.len() as f64;
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_kb = points.iter().map(|p| p.1).sum::<f64>() / n;
    let var_t: f64 = points.iter().map(|p| (p.0 - mean_t).powi(2)).sum();
    if points.len() < 2 || var_t <= 0.0 {
        return None;
    }
    let slope = points
        .iter()
        .map(|p| (p.0 - mean_t) * (p.1 - mean_kb))
        .sum::<f64>()
        / var_t;
    let at = |t: f64| mean_kb + slope * (t - mean_t);
    Some(Trend {
        start_kb: at(from),
        end_kb: at(to),
        samples: points.len(),
    })
}

/// Server ids, event ids and the trace-event count in the store.
fn stored(
    dir: &std::path::Path,
    pg: Option<&BenchDb>,
) -> Result<(HashSet<String>, HashSet<String>, u64)> {
    if let Some(db) = pg {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        return rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            let servers = client
                .query("SELECT DISTINCT server_id FROM checks", &[])
                .await?
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect();
            let events = client
                .query("SELECT event_id FROM events", &[])
                .await?
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect();
            let traces: i64 = client
                .query_one("SELECT count(*) FROM trace_events", &[])
                .await?
                .get(0);
            Ok((servers, events, traces as u64))
        });
    }
    let db = rusqlite::Connection::open(dir.join("beacon.db"))?;
    let servers = db
        .prepare("SELECT DISTINCT server_id FROM checks")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let events = db
        .prepare("SELECT event_id FROM events")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let traces: i64 = db.query_row("SELECT count(*) FROM trace_events", [], |r| r.get(0))?;
    Ok((servers, events, traces as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples every 2 s over 600 s: a level, a ramp of `growth` KiB over the span, and a swing of
    /// ±`swing` KiB that alternates every sample (transient work).
    fn samples(level: f64, growth: f64, swing: f64) -> Vec<(f64, u64)> {
        (0..=300)
            .map(|i| {
                let t = 1200.0 + f64::from(i) * 2.0;
                let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
                (
                    t,
                    (level + growth * f64::from(i) / 300.0 + sign * swing) as u64,
                )
            })
            .collect()
    }

    #[test]
    fn a_swing_without_growth_is_no_growth() {
        let t = rss_trend(&samples(130_000.0, 0.0, 20_000.0), 1200.0, 1800.0).unwrap();
        assert!(t.growth_percent().abs() < 0.5, "{t:?}");
        assert_eq!(t.samples, 301);
    }

    #[test]
    fn growth_under_a_swing_is_measured() {
        // 13 MB growth on 130 MB: 10 %, under a ±20 MB swing.
        let t = rss_trend(&samples(130_000.0, 13_000.0, 20_000.0), 1200.0, 1800.0).unwrap();
        assert!((t.growth_percent() - 10.0).abs() < 0.5, "{t:?}");
        // Only the span's samples count.
        let mut s = samples(130_000.0, 0.0, 0.0);
        s.push((100.0, 1));
        let t = rss_trend(&s, 1200.0, 1800.0).unwrap();
        assert!(t.growth_percent().abs() < 1e-9, "{t:?}");
        assert!(rss_trend(&s[..1], 1200.0, 1800.0).is_none());
    }
}
