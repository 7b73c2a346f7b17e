//! The fleet simulator behind `beacon sim` and `beacon demo`: a seeded, realistic fleet of servers and
//! mobile devices driving a running collector through its real endpoints, day by simulated day.
//!
//! - **Security checks**: every active server once a day, the query built by
//!   `beacon_wire::security::build_query` — the function the agent uses, so the bytes are the agent's.
//!   Servers move to new releases along adoption curves; a few are test installs (`ut=1`).
//! - **Errors**: Sentry envelopes serialised by the `sentry` crate's own protocol types, a trickle
//!   every day and bursts from a release-specific code path on servers that just upgraded.
//! - **Mobile**: one batch a day per device (built with `beacon_wire::mobile::Payload`), durations by
//!   device class and app release; the newest app release makes `channel:switch_loaded` 30 % slower.
//!
//! Simulated time is the time inside the payloads (event timestamps, trace `ts`); the last simulated
//! day is today. A collector judges trace events older than 7 days as too old, so unless the caller
//! moves the collector's clock along ([`Hooks::on_day`], as `beacon demo` does), mobile batches are
//! sent for the last 6 simulated days only. `rate` bounds requests per second; every loop is bounded
//! by the fleet size and the number of days.

pub mod fleet;

use beacon_wire::mobile::{Payload, TraceEvent, TraceName};
use beacon_wire::security::build_query;
use chrono::{DateTime, Days, NaiveDate, NaiveTime, TimeDelta, Utc};
use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What to simulate and where to send it.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The collector, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    pub servers: u32,
    pub devices: u32,
    pub days: u32,
    pub seed: u64,
    /// Most requests per second; `None`: as fast as `concurrency` allows.
    pub rate: Option<u32>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// A project DSN (`beacon project create`): error events are sent only with one.
    pub project_dsn: Option<String>,
    /// A mobile API key (`beacon apikey create`): mobile batches are sent only with one.
    pub api_key: Option<String>,
    /// A PEM CA certificate to trust for an `https://` collector with a private CA.
    pub ca_cert: Option<Vec<u8>>,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Append every acknowledged item to this file: `check <server id>`, `event <event id>`,
    /// `traces <count>` — for checking durability afterwards.
    pub record: Option<std::path::PathBuf>,
}

/// Callbacks into the caller. `on_day` runs before a simulated day is sent, with its date; a caller
/// that controls the collector's clock moves it there, and all mobile days are then sent.
#[derive(Default)]
pub struct Hooks {
    pub on_day: Option<Box<dyn Fn(NaiveDate) + Send + Sync>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid project dsn: {0}")]
    Dsn(String),
    #[error("cannot build the http client: {0}")]
    Client(String),
    #[error("cannot write the record file: {0}")]
    Record(std::io::Error),
    #[error("the collector at {0} does not answer")]
    Unreachable(String),
}

/// What was sent per channel and what the collector answered.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChannelSummary {
    /// Requests sent.
    pub requests: u64,
    /// Items sent (checks, events, trace events).
    pub items: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub rate_limited: u64,
    /// Requests that failed without an answer about their items (connection errors, 5xx).
    pub failed: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub security: ChannelSummary,
    pub errors: ChannelSummary,
    pub mobile: ChannelSummary,
    /// Simulated days whose mobile batches were sent.
    pub mobile_days: u32,
    pub first_day: Option<NaiveDate>,
    pub last_day: Option<NaiveDate>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "simulated {} .. {} ({} days of mobile traffic)",
            self.first_day.map(|d| d.to_string()).unwrap_or_default(),
            self.last_day.map(|d| d.to_string()).unwrap_or_default(),
            self.mobile_days
        )?;
        writeln!(
            f,
            "{:<10} {:>9} {:>10} {:>10} {:>9} {:>13} {:>7}",
            "channel", "requests", "items", "accepted", "rejected", "rate_limited", "failed"
        )?;
        for (name, c) in [
            ("security", &self.security),
            ("errors", &self.errors),
            ("mobile", &self.mobile),
        ] {
            writeln!(
                f,
                "{:<10} {:>9} {:>10} {:>10} {:>9} {:>13} {:>7}",
                name, c.requests, c.items, c.accepted, c.rejected, c.rate_limited, c.failed
            )?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    items: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    rate_limited: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    fn summary(&self) -> ChannelSummary {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ChannelSummary {
            requests: g(&self.requests),
            items: g(&self.items),
            accepted: g(&self.accepted),
            rejected: g(&self.rejected),
            rate_limited: g(&self.rate_limited),
            failed: g(&self.failed),
        }
    }
}

enum Job {
    Check { query: String, server_id: String },
    Envelope { body: Vec<u8>, event_id: String },
    Mobile { body: String, events: u64 },
}

struct Dsn {
    endpoint: String,
    auth: String,
}

fn parse_dsn(dsn: &str) -> Result<Dsn, SimError> {
    let parsed: sentry::types::Dsn = dsn.parse().map_err(|e| SimError::Dsn(format!("{e}")))?;
    Ok(Dsn {
        endpoint: parsed.envelope_api_url().to_string(),
        auth: format!(
            "Sentry sentry_key={}, sentry_version=7, sentry_client=beacon-sim/{}",
            parsed.public_key(),
            env!("CARGO_PKG_VERSION")
        ),
    })
}

/// Runs the simulation; returns what was sent and answered.
pub async fn run(config: SimConfig, hooks: Hooks) -> Result<Summary, SimError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(config.concurrency.max(1));
    if let Some(pem) = &config.ca_cert {
        builder = builder.add_root_certificate(
            reqwest::Certificate::from_pem(pem).map_err(|e| SimError::Client(e.to_string()))?,
        );
    }
    let http = builder
        .build()
        .map_err(|e| SimError::Client(e.to_string()))?;
    let base = config.url.trim_end_matches('/').to_string();
    http.get(format!("{base}/healthz"))
        .send()
        .await
        .map_err(|_| SimError::Unreachable(base.clone()))?;
    let dsn = config.project_dsn.as_deref().map(parse_dsn).transpose()?;
    let record = match &config.record {
        Some(p) => Some(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(SimError::Record)?,
        )),
        None => None,
    };

    let mut rng = StdRng::seed_from_u64(config.seed);
    let releases = fleet::server_releases(config.days);
    let apps = fleet::app_releases(config.days);
    let mut servers = fleet::servers(&mut rng, config.servers, config.days, &releases);
    let mut devices = fleet::devices(&mut rng, config.devices, servers.len());
    let today = Utc::now().date_naive();
    let first = today - Days::new(u64::from(config.days.saturating_sub(1)));
    let mobile_from = if hooks.on_day.is_some() {
        0
    } else {
        config.days.saturating_sub(6)
    };

    let progress = if config.progress {
        let pb = indicatif::ProgressBar::new(0);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} day {prefix} [{bar:40}] {pos}/{len} requests {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        pb
    } else {
        indicatif::ProgressBar::hidden()
    };
    let counters: [Counters; 3] = Default::default();
    let limiter = config.rate.map(|r| {
        let mut i = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(r.max(1))));
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::sync::Mutex::new(i)
    });
    let mut summary = Summary {
        first_day: Some(first),
        last_day: Some(today),
        ..Default::default()
    };

    for day in 0..config.days {
        let date = first + Days::new(u64::from(day));
        if let Some(f) = &hooks.on_day {
            f(date);
        }
        progress.set_prefix(format!("{}/{} {date}", day + 1, config.days));
        fleet::adopt(&mut rng, &mut servers, &releases, day);
        fleet::adopt_app(&mut rng, &mut devices, &apps, day);
        let mut jobs = Vec::new();
        let noon = DateTime::<Utc>::from_naive_utc_and_offset(
            date.and_time(NaiveTime::from_hms_opt(0, 0, 0).expect("midnight")),
            Utc,
        );
        let at = |rng: &mut StdRng| noon + TimeDelta::seconds(rng.random_range(0..86_000));
        for s in servers.iter().filter(|s| s.active(day)) {
            let last =
                (day > s.joins).then(|| (at(&mut rng) - TimeDelta::days(1)).timestamp_millis());
            jobs.push(Job::Check {
                query: build_query(&s.check(&releases, last)),
                server_id: s.id.clone(),
            });
        }
        if dsn.is_some() {
            for (i, s) in servers.iter().enumerate().filter(|(_, s)| s.active(day)) {
                let burst = s.upgraded_on.is_some_and(|u| day >= u && day < u + 2);
                let n = if burst {
                    rng.random_range(1..=4)
                } else if rng.random::<f64>() < 0.05 {
                    1
                } else {
                    0
                };
                for _ in 0..n {
                    // After an upgrade the release's own bad path dominates; otherwise any path.
                    let path = if burst {
                        fleet::CODE_PATHS[s.release % fleet::CODE_PATHS.len()]
                    } else {
                        fleet::CODE_PATHS[rng.random_range(0..fleet::CODE_PATHS.len())]
                    };
                    let when = at(&mut rng);
                    let (event_id, body) = envelope(&mut rng, path, s, &releases, i, when);
                    jobs.push(Job::Envelope { body, event_id });
                }
            }
        }
        if config.api_key.is_some() && day >= mobile_from {
            summary.mobile_days += 1;
            for d in &devices {
                let server = &servers[d.server];
                let info = d.info(&apps, &releases[server.release].version.to_string());
                let start = at(&mut rng).timestamp_micros();
                let n: u32 = rng.random_range(10..40);
                let events: Vec<TraceEvent> = (0..n)
                    .map(|i| {
                        let trace = TraceName::ALL[rng.random_range(0..TraceName::ALL.len())];
                        let dur = d.duration(&mut rng, trace, &apps);
                        TraceEvent::complete(trace, start + i64::from(i) * 2_000_000, dur)
                    })
                    .collect();
                let body =
                    serde_json::to_string(&Payload::new(info, events)).expect("payload serialises");
                jobs.push(Job::Mobile {
                    body,
                    events: u64::from(n),
                });
            }
        }
        // Interleave channels as real traffic does.
        for i in (1..jobs.len()).rev() {
            let j = rng.random_range(0..=i);
            jobs.swap(i, j);
        }
        progress.inc_length(jobs.len() as u64);
        let (http, base, counters, limiter, dsn, record, progress) =
            (&http, &base, &counters, &limiter, &dsn, &record, &progress);
        let api_key = config.api_key.as_deref();
        futures_util::stream::iter(jobs)
            .for_each_concurrent(config.concurrency.max(1), |job| async move {
                if let Some(l) = limiter {
                    l.lock().await.tick().await;
                }
                send(
                    http,
                    base,
                    dsn.as_ref(),
                    api_key,
                    counters,
                    record.as_ref(),
                    job,
                )
                .await;
                progress.inc(1);
            })
            .await;
    }
    progress.finish_and_clear();
    summary.security = counters[0].summary();
    summary.errors = counters[1].summary();
    summary.mobile = counters[2].summary();
    Ok(summary)
}

fn envelope(
    rng: &mut StdRng,
    (ty, value, module, function, file): (&str, &str, &str, &str, &str),
    server: &fleet::Server,
    releases: &[fleet::Release],
    index: usize,
    at: DateTime<Utc>,
) -> (String, Vec<u8>) {
    use sentry::protocol::{Envelope, Event, Exception, Frame, Level, Stacktrace};
    let frames = vec![
        Frame {
            module: Some("app.server".into()),
            function: Some("handle_request".into()),
            filename: Some("server.rs".into()),
            lineno: Some(88),
            in_app: Some(true),
            ..Default::default()
        },
        Frame {
            module: Some(module.into()),
            function: Some(function.into()),
            filename: Some(file.into()),
            lineno: Some(40 + (index % 3) as u64),
            in_app: Some(true),
            ..Default::default()
        },
    ];
    let id = uuid::Uuid::from_u128(rng.random());
    let mut event = Event {
        event_id: id,
        level: Level::Error,
        timestamp: at.into(),
        platform: "native".into(),
        release: Some(releases[server.release].version.to_string().into()),
        environment: Some(
            if server.test_install {
                "test"
            } else {
                "production"
            }
            .into(),
        ),
        ..Default::default()
    };
    event.exception.values.push(Exception {
        ty: ty.into(),
        value: Some(value.into()),
        module: Some(module.into()),
        stacktrace: Some(Stacktrace {
            frames,
            ..Default::default()
        }),
        ..Default::default()
    });
    event.tags.insert("server_id".into(), server.id.clone());
    let mut body = Vec::new();
    Envelope::from(event)
        .to_writer(&mut body)
        .expect("writing to memory");
    (id.simple().to_string(), body)
}

async fn send(
    http: &reqwest::Client,
    base: &str,
    dsn: Option<&Dsn>,
    api_key: Option<&str>,
    counters: &[Counters; 3],
    record: Option<&Mutex<std::fs::File>>,
    job: Job,
) {
    let remember = |line: String| {
        if let Some(f) = record {
            let mut f = f.lock().expect("record lock");
            let _ = writeln!(f, "{line}");
        }
    };
    let (channel, items, request) = match &job {
        Job::Check { query, .. } => (0, 1, http.get(format!("{base}/security?{query}"))),
        Job::Envelope { body, .. } => {
            let dsn = dsn.expect("envelopes only with a dsn");
            (
                1,
                1,
                http.post(&dsn.endpoint)
                    .header("x-sentry-auth", &dsn.auth)
                    .header("content-type", "application/x-sentry-envelope")
                    .body(body.clone()),
            )
        }
        Job::Mobile { body, events } => (
            2,
            *events,
            http.post(format!("{base}/v1/mobile/metrics"))
                .header("x-api-key", api_key.unwrap_or_default())
                .header("content-type", "application/json")
                .body(body.clone()),
        ),
    };
    let c = &counters[channel];
    c.requests.fetch_add(1, Ordering::Relaxed);
    c.items.fetch_add(items, Ordering::Relaxed);
    let resp = match request.send().await {
        Ok(r) => r,
        Err(_) => {
            c.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let status = resp.status();
    if status.as_u16() == 429 {
        c.rate_limited.fetch_add(items, Ordering::Relaxed);
        return;
    }
    if status.is_server_error() {
        c.failed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if !status.is_success() {
        c.rejected.fetch_add(items, Ordering::Relaxed);
        return;
    }
    match job {
        Job::Check { server_id, .. } => {
            c.accepted.fetch_add(1, Ordering::Relaxed);
            remember(format!("check {server_id}"));
        }
        Job::Envelope { event_id, .. } => {
            c.accepted.fetch_add(1, Ordering::Relaxed);
            remember(format!("event {event_id}"));
        }
        Job::Mobile { events, .. } => {
            let answer: serde_json::Value = resp.json().await.unwrap_or_default();
            let accepted = answer["accepted"].as_u64().unwrap_or(0);
            c.accepted.fetch_add(accepted, Ordering::Relaxed);
            c.rejected
                .fetch_add(events.saturating_sub(accepted), Ordering::Relaxed);
            remember(format!("traces {accepted}"));
        }
    }
}

/// The fleet a seed produces, for tests and for `beacon demo`'s narration.
pub fn describe(config: &SimConfig) -> String {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let releases = fleet::server_releases(config.days);
    let servers = fleet::servers(&mut rng, config.servers, config.days, &releases);
    let tests = servers.iter().filter(|s| s.test_install).count();
    format!(
        "{} servers ({} test installs) on releases {}; {} devices on app releases {}",
        servers.len(),
        tests,
        releases
            .iter()
            .map(|r| r.version.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        config.devices,
        fleet::app_releases(config.days)
            .iter()
            .map(|a| a.0.clone())
            .collect::<Vec<_>>()
            .join(", ")
    )
}
