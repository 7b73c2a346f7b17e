//! `beacon-bench mobile`: trace-event ingestion (batches of 100, typical device info) and the latency
//! of the percentile report over a store filled to N events, beside PostgreSQL's `percentile_cont`
//! over the same raw rows.

use super::{BenchDb, MakeRequest, TOKEN, peak_rss_kb, run_load, run_load_upto, start_collector};
use anyhow::{Context, Result};
use beacon_wire::mobile::{DeviceInfo, Payload, TraceEvent, TraceName};
use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Typical duration (µs) of each trace name, by storage code (1-based).
const TRACE_BASE_US: [f64; 14] = [
    1_800_000.0,
    250_000.0,
    900_000.0,
    400_000.0,
    1_200_000.0,
    350_000.0,
    500_000.0,
    300_000.0,
    150_000.0,
    80_000.0,
    90_000.0,
    600_000.0,
    280_000.0,
    320_000.0,
];

/// (manufacturer, model, tablet, speed factor)
const MODELS: &[(&str, &str, bool, f64)] = &[
    ("Google", "Pixel 8", false, 0.8),
    ("Google", "Pixel 7", false, 0.9),
    ("Google", "Pixel 6a", false, 1.1),
    ("samsung", "SM-S918B", false, 0.8),
    ("samsung", "SM-A546B", false, 1.3),
    ("samsung", "SM-X710", true, 1.0),
    ("Xiaomi", "23049PCD8G", false, 1.2),
    ("OnePlus", "CPH2449", false, 0.9),
    ("motorola", "moto g54 5G", false, 1.6),
    ("Apple", "iPhone15,2", false, 0.7),
    ("Apple", "iPhone13,2", false, 0.9),
    ("Apple", "iPad13,4", true, 0.8),
];
const APP_VERSIONS: &[&str] = &["2.18.0", "2.19.0", "2.20.0", "2.21.0", "2.22.0"];
const COUNTRIES: &[&str] = &[
    "US", "DE", "BR", "IN", "FR", "GB", "JP", "PL", "NL", "ES", "CA", "AU",
];
const SERVER_VERSIONS: &[&str] = &["9.11.6", "10.0.3", "10.1.2", "10.2.0"];

/// One request body: 100 events of one device within the ten minutes from a moment in `starts` (Unix
/// µs; an app sends what it measured since its last batch).
fn body(rng: &mut rand::rngs::StdRng, starts: std::ops::Range<i64>) -> String {
    let device = rng.random_range(0..50_000u32);
    let window_start = rng.random_range(starts);
    let (manufacturer, model, tablet, speed) = MODELS[device as usize % MODELS.len()];
    let ios = manufacturer == "Apple";
    let events = (0..100)
        .map(|_| {
            let name = TraceName::ALL[rng.random_range(0..TraceName::ALL.len())];
            let base = TRACE_BASE_US[name.code() as usize - 1];
            let dur = (base * speed * (rng.random::<f64>() * 1.6 - 0.5).exp()) as i64;
            let ts = window_start + rng.random_range(0..600_000_000);
            TraceEvent::complete(name, ts, dur.max(1))
        })
        .collect();
    let s = |v: &str| Some(v.to_string());
    let info = DeviceInfo {
        api_level: (!ios).then_some(34),
        brand: s(manufacturer),
        build_number: s("612"),
        bundle_id: s("com.mattermost.rnbeta"),
        country: s(COUNTRIES[device as usize % COUNTRIES.len()]),
        device_id: s(model),
        device_locale: s("en-US"),
        device_type: s(if tablet { "Tablet" } else { "Handset" }),
        device_unique_id: Some(format!(
            "{:016x}",
            u64::from(device).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        )),
        height: Some(915.0),
        is_emulator: Some(device % 97 == 0),
        is_tablet: Some(tablet),
        manufacturer: s(manufacturer),
        max_memory: Some(536_870_912.0),
        model: s(model),
        server_version: s(SERVER_VERSIONS[device as usize % SERVER_VERSIONS.len()]),
        system_name: s(if ios { "iOS" } else { "Android" }),
        system_version: s(if ios { "17.4" } else { "14" }),
        timezone: s("Europe/Berlin"),
        version: s(APP_VERSIONS[(device as usize / 7) % APP_VERSIONS.len()]),
        width: Some(412.0),
    };
    serde_json::to_string(&Payload::new(info, events)).expect("payload serialises")
}

/// `n` bodies whose events lie in the last 6 days.
pub(crate) fn bodies(n: usize, seed: u64) -> Arc<Vec<Bytes>> {
    let now_us = chrono_now_us();
    bodies_between(n, seed, now_us - 6 * 86_400_000_000..now_us - 700_000_000)
}

/// `n` bodies, each of ten minutes of one device starting at a moment in `starts` (Unix µs).
pub(crate) fn bodies_between(n: usize, seed: u64, starts: std::ops::Range<i64>) -> Arc<Vec<Bytes>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Arc::new(
        (0..n)
            .map(|_| Bytes::from(body(&mut rng, starts.clone())))
            .collect(),
    )
}

fn chrono_now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

/// Requests posting `bodies` in turn with the mobile API key `key`.
pub(crate) fn make(bodies: Arc<Vec<Bytes>>, key: String) -> MakeRequest {
    Arc::new(move |n| {
        Request::post("/v1/mobile/metrics")
            .header("x-api-key", key.as_str())
            .header("content-type", "application/json")
            .body(Full::new(bodies[n as usize % bodies.len()].clone()))
            .expect("static request")
    })
}

fn block_on<F: std::future::Future>(f: F) -> Result<F::Output> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f))
}

/// GETs `/admin/v1{path}` from the collector at `url`.
pub(crate) fn admin_get(url: &str, path: &str) -> Result<Value> {
    block_on(async {
        reqwest::Client::new()
            .get(format!("{url}/admin/v1{path}"))
            .bearer_auth(TOKEN)
            .send()
            .await?
            .error_for_status()?
            .json::<Value>()
            .await
    })?
    .context("admin request")
}

/// A new mobile API key on the collector at `url`.
pub(crate) fn create_key(url: &str) -> Result<String> {
    let v: Value = block_on(async {
        reqwest::Client::new()
            .post(format!("{url}/admin/v1/apikeys"))
            .bearer_auth(TOKEN)
            .json(&json!({"name": "bench"}))
            .send()
            .await?
            .error_for_status()?
            .json::<Value>()
            .await
    })??;
    Ok(v["key"].as_str().unwrap_or_default().to_string())
}

/// The `q` quantile of sorted values (nearest rank).
pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

pub struct Options {
    pub duration: Duration,
    pub connections: usize,
    pub rounds: usize,
    /// Stored-event counts at which the percentile report (and ingestion) is measured again.
    pub levels: Vec<u64>,
    /// Levels above this are measured on SQLite only (PostgreSQL fills at a third of the rate).
    pub postgres_max_level: u64,
    pub postgres: Option<String>,
    pub beacon: Option<PathBuf>,
}

/// One measurement point of one backend.
#[derive(Debug, Clone)]
pub struct Row {
    pub backend: &'static str,
    /// Trace events stored when measured.
    pub stored: u64,
    /// Median events/s of the ingestion rounds at this level.
    pub ingest: f64,
    pub ingest_p50_ms: f64,
    pub ingest_p99_ms: f64,
    pub rss_kb: String,
    /// Percentile report (HTTP) p50 and p99, ms; events in the queried trace.
    pub query_p50_ms: f64,
    pub query_p99_ms: f64,
    pub query_trace_events: u64,
    /// `percentile_cont` over the same raw rows (PostgreSQL), median ms.
    pub percentile_cont_ms: Option<f64>,
}

fn ingest_rounds(
    addr: &str,
    o: &Options,
    rounds: usize,
    load: &MakeRequest,
) -> Result<(f64, f64, f64, u64)> {
    let mut rates = Vec::new();
    let (mut p50, mut p99, mut ok) = (Vec::new(), Vec::new(), 0);
    for _ in 0..rounds {
        let r = run_load(addr, o.connections, o.duration, load.clone())?;
        rates.push(r.rps() * 100.0);
        p50.push(r.ms(0.5));
        p99.push(r.ms(0.99));
        ok += r.ok;
    }
    rates.sort_by(f64::total_cmp);
    p50.sort_by(f64::total_cmp);
    p99.sort_by(f64::total_cmp);
    Ok((
        rates[rates.len() / 2],
        p50[p50.len() / 2],
        p99[p99.len() / 2],
        ok,
    ))
}

fn query_latency(url: &str) -> Result<(f64, f64, u64)> {
    let trace = TraceName::ChannelSwitchLoaded.as_str();
    let path = format!("/perf/percentiles?trace={trace}&by=app_version");
    let first = admin_get(url, &path)?;
    let in_trace: u64 = first["groups"]
        .as_array()
        .map(|g| g.iter().map(|g| g["count"].as_u64().unwrap_or(0)).sum())
        .unwrap_or(0);
    let mut times = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        admin_get(url, &path)?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok((quantile(&times, 0.5), quantile(&times, 0.99), in_trace))
}

fn percentile_cont(db: &BenchDb) -> Result<f64> {
    let sql = "SELECT c.info->>'version' AS v, count(*), \
               percentile_cont(ARRAY[0.5, 0.75, 0.9, 0.95, 0.99]) WITHIN GROUP (ORDER BY e.dur) \
               FROM trace_events e JOIN perf_contexts c ON c.id = e.context \
               WHERE e.trace = $1 AND NOT coalesce((c.info->>'is_emulator')::boolean, false) \
               GROUP BY 1";
    let mut times = beacon_testkit::block_on(async {
        let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        let mut times = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            client
                .query(sql, &[&TraceName::ChannelSwitchLoaded.code()])
                .await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        Ok::<_, tokio_postgres::Error>(times)
    })?;
    times.sort_by(f64::total_cmp);
    Ok(times[1])
}

pub fn run(o: Options) -> Result<Vec<Row>> {
    let beacon = super::beacon_binary(o.beacon.clone())?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let built = bodies(4000, 1);
    println!(
        "beacon-bench mobile: batches of 100 trace events ({} bytes JSON each, typical device info, 50,000 devices); \
         {} rounds of {}s; {} connections; measured at {:?} stored events; loopback; {cores} cores",
        built[0].len(),
        o.rounds,
        o.duration.as_secs(),
        o.connections,
        o.levels
    );
    let mut backends: Vec<(&'static str, Option<BenchDb>)> = vec![("sqlite", None)];
    if let Some(admin) = &o.postgres {
        backends.push(("postgres", Some(BenchDb::create(admin)?)));
    }
    let mut rows = Vec::new();
    println!(
        "{:<9} {:>12} {:>12} {:>8} {:>8} {:>10} {:>9} {:>9} {:>10} {:>16}",
        "backend",
        "stored",
        "events/s",
        "p50 ms",
        "p99 ms",
        "RSS kB",
        "query p50",
        "query p99",
        "in trace",
        "percentile_cont"
    );
    for (backend, db) in &backends {
        let dir = tempfile::tempdir()?;
        let (collector, url) =
            start_collector(&beacon, dir.path(), db.as_ref().map(|d| d.url.as_str()))?;
        let addr = url.trim_start_matches("http://").to_string();
        let load = make(built.clone(), create_key(&url)?);
        let mut stored = 0u64;
        let mut levels = vec![0];
        levels.extend(
            o.levels
                .iter()
                .copied()
                .filter(|l| *backend == "sqlite" || *l <= o.postgres_max_level),
        );
        for level in levels {
            if level > stored {
                let r = run_load_upto(
                    &addr,
                    o.connections,
                    Duration::from_secs(7200),
                    Some((level - stored) / 100),
                    load.clone(),
                )?;
                stored += r.ok * 100;
                // Let the background fold/compaction catch up before timing reports.
                std::thread::sleep(Duration::from_secs(5));
            }
            let (query_p50_ms, query_p99_ms, query_trace_events) = if stored > 0 {
                query_latency(&url)?
            } else {
                (0.0, 0.0, 0)
            };
            let percentile_cont_ms = match db {
                Some(db) if stored > 0 => Some(percentile_cont(db)?),
                _ => None,
            };
            let stored_before = stored;
            if level == 0 {
                run_load(&addr, o.connections, Duration::from_secs(2), load.clone())?;
            }
            let rounds = if level == 0 { o.rounds } else { 1 };
            let (ingest, p50, p99, ok) = ingest_rounds(&addr, &o, rounds, &load)?;
            stored += ok * 100;
            let row = Row {
                backend,
                stored: stored_before,
                ingest,
                ingest_p50_ms: p50,
                ingest_p99_ms: p99,
                rss_kb: peak_rss_kb(collector.0.id()),
                query_p50_ms,
                query_p99_ms,
                query_trace_events,
                percentile_cont_ms,
            };
            println!(
                "{:<9} {:>12} {:>12.0} {:>8.2} {:>8.2} {:>10} {:>9.2} {:>9.2} {:>10} {:>16}",
                row.backend,
                row.stored,
                row.ingest,
                row.ingest_p50_ms,
                row.ingest_p99_ms,
                row.rss_kb,
                row.query_p50_ms,
                row.query_p99_ms,
                row.query_trace_events,
                row.percentile_cont_ms
                    .map(|m| format!("{m:.0} ms"))
                    .unwrap_or_else(|| "-".into())
            );
            rows.push(row);
        }
        drop(collector);
    }
    Ok(rows)
}
