//! `beacon-bench durability`: the simulator at full rate against `beacon serve` (SQLite), the collector
//! SIGKILLed at a random moment, restarted on the same data directory — `trials` times — then every
//! item the collector acknowledged is looked up in the store.

use super::{Proc, TOKEN, spawn_until};
use anyhow::{Context, Result};
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn collector(beacon: &Path, dir: &Path) -> Result<(Proc, String)> {
    let mut cmd = Command::new(beacon);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("BEACON_ADMIN_TOKEN", TOKEN)
        .env("BEACON_ERRORS_RATE_LIMIT_PER_MINUTE", "100000000")
        .env("BEACON_LOG", "error");
    spawn_until(cmd, "listening on ")
}

/// POSTs a JSON body to the admin API of the collector at `url` (one request, its own runtime).
pub(crate) fn post(url: &str, path: &str, body: Value) -> Result<Value> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{url}/admin/v1{path}"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json::<Value>()
            .await
    })?)
}

pub struct Outcome {
    pub trials: u32,
    pub acked_checks: usize,
    pub acked_events: usize,
    pub acked_traces: u64,
    pub lost_checks: usize,
    pub lost_events: usize,
    pub lost_traces: u64,
    pub sketch_events: u64,
    pub stored_traces: u64,
}

pub fn run(trials: u32, beacon: Option<PathBuf>, seed: u64) -> Result<Outcome> {
    let beacon = super::beacon_binary(beacon)?;
    let dir = tempfile::tempdir()?;
    let record = dir.path().join("acked.txt");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let (first, url) = collector(&beacon, dir.path())?;
    let project = post(&url, "/projects", json!({"name": "durability"}))?;
    let key = project["keys"][0]["public_key"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let project_id = project["id"].as_i64().unwrap_or_default();
    let api_key = post(&url, "/apikeys", json!({"name": "durability"}))?["key"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    drop(first);

    println!(
        "beacon-bench durability: {trials} trials; each: beacon serve (SQLite), beacon sim at full rate, SIGKILL after 0.5–4 s, restart"
    );
    for trial in 1..=trials {
        let (mut proc, url) = collector(&beacon, dir.path())?;
        let host = url.trim_start_matches("http://");
        let mut sim = Command::new(&beacon)
            .args([
                "sim",
                "--url",
                &url,
                "--servers",
                "3000",
                "--devices",
                "600",
                "--days",
                "3",
                "--quiet",
            ])
            .args(["--seed", &(seed * 1000 + u64::from(trial)).to_string()])
            .args(["--concurrency", "64"])
            .args([
                "--project-dsn",
                &format!("http://{key}@{host}/{project_id}"),
            ])
            .args(["--api-key", &api_key])
            .arg("--record")
            .arg(&record)
            .env("BEACON_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn beacon sim")?;
        let wait = Duration::from_millis(rng.random_range(500..4000));
        std::thread::sleep(wait);
        // SIGKILL: no shutdown path runs.
        proc.0.kill()?;
        proc.0.wait()?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while sim.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = sim.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = sim.wait();
        println!("trial {trial:>2}: killed after {:.1} s", wait.as_secs_f64());
    }

    // One clean start (it re-folds any trace sketches left in memory by the kills) and stop.
    let (proc, url) = collector(&beacon, dir.path())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let sketch_events: u64 = rt.block_on(async {
        let mut total = 0;
        for trace in beacon_wire::mobile::TraceName::ALL {
            let v: Value = reqwest::Client::new()
                .get(format!(
                    "{url}/admin/v1/perf/percentiles?trace={trace}&include_emulators=true"
                ))
                .bearer_auth(TOKEN)
                .send()
                .await?
                .json()
                .await?;
            total += v["groups"]
                .as_array()
                .map(|g| {
                    g.iter()
                        .map(|g| g["count"].as_u64().unwrap_or(0))
                        .sum::<u64>()
                })
                .unwrap_or(0);
        }
        Ok::<_, reqwest::Error>(total)
    })?;
    drop(proc);

    let lines = std::fs::read_to_string(&record).unwrap_or_default();
    let checks: HashSet<&str> = lines
        .lines()
        .filter_map(|l| l.strip_prefix("check "))
        .collect();
    let events: HashSet<&str> = lines
        .lines()
        .filter_map(|l| l.strip_prefix("event "))
        .collect();
    let traces: u64 = lines
        .lines()
        .filter_map(|l| l.strip_prefix("traces "))
        .filter_map(|n| n.parse::<u64>().ok())
        .sum();
    let db = rusqlite::Connection::open(dir.path().join("beacon.db"))?;
    let stored_servers: HashSet<String> = db
        .prepare("SELECT DISTINCT server_id FROM checks")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let stored_events: HashSet<String> = db
        .prepare("SELECT event_id FROM events")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let stored_traces: i64 = db.query_row("SELECT count(*) FROM trace_events", [], |r| r.get(0))?;
    let out = Outcome {
        trials,
        acked_checks: checks.len(),
        acked_events: events.len(),
        acked_traces: traces,
        lost_checks: checks
            .iter()
            .filter(|c| !stored_servers.contains(**c))
            .count(),
        lost_events: events
            .iter()
            .filter(|e| !stored_events.contains(**e))
            .count(),
        lost_traces: traces.saturating_sub(stored_traces as u64),
        sketch_events,
        stored_traces: stored_traces as u64,
    };
    println!(
        "acknowledged: {} servers' checks, {} error events, {} trace events; lost: {} checks, {} events, {} trace events",
        out.acked_checks,
        out.acked_events,
        out.acked_traces,
        out.lost_checks,
        out.lost_events,
        out.lost_traces
    );
    println!(
        "trace events stored {} (acknowledged or not), in the sketches {}: {}",
        out.stored_traces,
        out.sketch_events,
        if out.stored_traces == out.sketch_events {
            "every stored event is in exactly one sketch"
        } else {
            "MISMATCH"
        }
    );
    Ok(out)
}
