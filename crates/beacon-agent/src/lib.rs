//! The Beacon agent: the library a vendor's server product links to check for security bulletins once
//! a day, report panics and errors, and show its administrators exactly what it sends.
//!
//! The host implements [`Facts`] (version, edition, OS, database, counts), optionally [`State`] (the
//! default is one JSON file, [`JsonFileState`]) and [`Notifier`] (the default logs). The agent then
//! runs on the host's tokio runtime ([`Agent::start_on`]) or on a thread of its own
//! ([`Agent::start_thread`]). It never blocks the host: facts, state and notifier calls run on blocking
//! threads, and an error capture only queues (or drops and counts) a report.
//!
//! * **Security check**: a tick every `tick_interval_secs` (4 hours), the first after a random jitter;
//!   a check when 24 hours have passed since the last one, whose time is recorded in the state *before*
//!   the request, so a failing collector is asked again only at the next due time. The query is the one
//!   a Mattermost server sends (built by `beacon_wire::security::build_query`), plus `dbv` and `lc`.
//!   Each bulletin of the answer not yet notified is fetched from `/bulletins/{id}` and handed to the
//!   notifier; it is marked as notified only when the notifier succeeds.
//! * **Switches** ([`Config::switches`]): `security_alerts`, `diagnostics`; `deployment = "cloud"`
//!   forces both on, `DO_NOT_TRACK=1` turns both off on a self-hosted server. A switch that is off means
//!   no connection at all for its channel.
//! * **Error reports**: a panic hook and [`capture_error`], Sentry envelopes to `errors.dsn` (see the
//!   `sentry` module for what is sent and why the `sentry` crate is used only in part).
//! * **Transparency**: [`Agent::preview`] returns the exact URL of the next check and a scrubbed sample
//!   error report without sending anything; `payload_log = true` appends every payload sent to a file.
//! * **Mobile**: [`mobile::MobileReporter`] sends the v1.20 mobile payload when the app's server reports
//!   diagnostics on.
//!
//! # Example
//!
//! ```no_run
//! use beacon_agent::{Agent, Config, HostFacts};
//! use std::time::Duration;
//!
//! # async fn host() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config {
//!     collector: Some("https://beacon.example.com".into()),
//!     state_file: Some("/var/lib/myserver/beacon-agent.json".into()),
//!     ..Config::default()
//! };
//! let mut facts = HostFacts::new("5.37.0".parse()?, "postgres");
//! facts.users = Some(42);
//! let agent = Agent::builder(config)
//!     .facts(facts)
//!     .notifier(|b: &beacon_agent::Bulletin| {
//!         eprintln!("security bulletin {}: {}", b.notice.id, b.notice.title);
//!         Ok(())
//!     })
//!     .start_on(&tokio::runtime::Handle::current())?;
//!
//! // Anywhere in the host: report an error (never blocks).
//! let err = std::io::Error::other("disk full");
//! beacon_agent::capture_error(&err);
//!
//! // At exit: stop, sending queued reports for at most two seconds.
//! agent.shutdown(Duration::from_secs(2)).await;
//! # Ok(())
//! # }
//! ```

pub mod clock;
mod config;
mod facts;
pub mod mobile;
mod notify;
mod payload_log;
mod preview;
mod security;
mod sentry;
pub mod standalone;
mod state;
#[cfg(target_os = "linux")]
mod symtab;
mod transport;

pub use crate::sentry::{Captured, capture_error};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    Config, Deployment, EnvLookup, ErrorsConfig, Switches, check_url, do_not_track, process_env,
};
pub use facts::{Facts, HostFacts, default_os};
pub use notify::{Bulletin, LogNotifier, Notifier};
pub use preview::{ErrorPreview, NextCheck, Preview};
pub use security::{
    BulletinOutcome, BulletinResult, CHECK_INTERVAL, CheckError, CheckOutcome, CheckReport,
    ForgetError,
};
pub use state::{
    AgentState, JsonFileState, MemoryState, State, StateError, is_diagnostic_id, new_diagnostic_id,
};
pub use transport::{ProxySettings, USER_AGENT, proxy_settings};

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The error type host callbacks return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why an agent could not be built or started.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{what}: {problem}")]
    Url { what: String, problem: String },
    #[error("{0} is required: {1}")]
    Missing(&'static str, &'static str),
    #[error("ca_file {path}: {problem}")]
    CaFile {
        path: std::path::PathBuf,
        problem: String,
    },
    #[error("tls: {0}")]
    Tls(String),
    #[error("proxy {0}")]
    Proxy(String),
    #[error("cannot start the agent's thread: {0}")]
    Thread(std::io::Error),
}

/// A request that got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0}")]
    Http(String),
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
}

impl SendError {
    /// A reqwest error with its sources ("error sending request …: connection refused").
    pub(crate) fn http(e: reqwest::Error) -> Self {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        SendError::Http(text)
    }
}

/// Runs `f` on a blocking thread (host callbacks, file I/O, symbol resolution).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    tokio::task::spawn_blocking(f).await
}

/// Counters of what the agent did, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    /// Ticks of the schedule handled (each looks whether a check is due).
    pub ticks: u64,
    /// Checks claimed and sent.
    pub checks: u64,
    /// Checks that got no usable answer (not retried before the next due time).
    pub check_failures: u64,
    pub bulletins_notified: u64,
    pub notify_failures: u64,
    /// Error reports queued.
    pub errors_queued: u64,
    /// Error reports the collector accepted.
    pub errors_sent: u64,
    /// Error reports dropped: queue full, rate limited, or left at the shutdown deadline.
    pub errors_dropped: u64,
    /// Error reports sent but refused, or not delivered (not retried).
    pub errors_failed: u64,
}

#[derive(Default)]
pub(crate) struct Stats {
    ticks: AtomicU64,
    checks: AtomicU64,
    check_failures: AtomicU64,
    bulletins_notified: AtomicU64,
    notify_failures: AtomicU64,
    errors_queued: AtomicU64,
    errors_sent: AtomicU64,
    errors_dropped: AtomicU64,
    errors_failed: AtomicU64,
}

impl Stats {
    fn snapshot(&self) -> Status {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Status {
            ticks: g(&self.ticks),
            checks: g(&self.checks),
            check_failures: g(&self.check_failures),
            bulletins_notified: g(&self.bulletins_notified),
            notify_failures: g(&self.notify_failures),
            errors_queued: g(&self.errors_queued),
            errors_sent: g(&self.errors_sent),
            errors_dropped: g(&self.errors_dropped),
            errors_failed: g(&self.errors_failed),
        }
    }
}

/// Everything the agent's tasks share.
pub(crate) struct Inner {
    pub config: Config,
    pub switches: Switches,
    /// The collector's base URL (no trailing `/`), when security alerts are on.
    pub collector: Option<String>,
    /// Where error reports go, when diagnostics are on and a DSN is set.
    pub endpoint: Option<sentry::Endpoint>,
    /// Built only when some channel has somewhere to send to.
    pub transport: Option<Arc<transport::Transport>>,
    pub facts: Option<Arc<dyn Facts>>,
    pub state: Arc<dyn State>,
    pub notifier: Arc<dyn Notifier>,
    pub clock: Arc<dyn Clock>,
    pub stats: Stats,
    pub event_meta: sentry::EventMeta,
}

/// Configures an [`Agent`].
pub struct AgentBuilder {
    config: Config,
    facts: Option<Arc<dyn Facts>>,
    state: Option<Arc<dyn State>>,
    notifier: Option<Arc<dyn Notifier>>,
    clock: Arc<dyn Clock>,
    env: EnvLookup,
}

impl AgentBuilder {
    /// The host's facts (required when security alerts are on).
    pub fn facts(mut self, facts: impl Facts) -> Self {
        self.facts = Some(Arc::new(facts));
        self
    }

    /// Where the state is kept; default: [`JsonFileState`] at `state_file`.
    pub fn state(mut self, state: impl State) -> Self {
        self.state = Some(Arc::new(state));
        self
    }

    /// Who is told about bulletins; default: [`LogNotifier`].
    pub fn notifier(mut self, notifier: impl Notifier) -> Self {
        self.notifier = Some(Arc::new(notifier));
        self
    }

    /// The clock of the schedule; default: [`SystemClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Where `DO_NOT_TRACK`, `HTTPS_PROXY` and `NO_PROXY` are read; default: the process environment.
    pub fn env(mut self, env: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        self.env = Arc::new(env);
        self
    }

    /// Resolves the switches (logging why one differs from its configured value), checks the URLs and
    /// builds the HTTP client. Connects to nothing.
    pub fn build(self) -> Result<Agent, BuildError> {
        let config = self.config;
        let switches = config.switches(&*self.env);
        for note in &switches.notes {
            tracing::info!("{note}");
        }
        let base_url = |url: &str| -> Result<String, BuildError> {
            let u = check_url("collector", url, config.allow_insecure)?;
            Ok(u.as_str().trim_end_matches('/').to_string())
        };
        let collector = if switches.security_alerts {
            let url = config.collector.as_deref().ok_or(BuildError::Missing(
                "collector",
                "security_alerts is on and needs the collector's url",
            ))?;
            if self.facts.is_none() {
                return Err(BuildError::Missing(
                    "facts",
                    "security_alerts is on and needs the host's facts",
                ));
            }
            Some(base_url(url)?)
        } else {
            None
        };
        let endpoint = match (&config.errors.dsn, switches.diagnostics) {
            (Some(dsn), true) => Some(sentry::Endpoint::from_dsn(dsn, config.allow_insecure)?),
            _ => None,
        };
        let state: Arc<dyn State> = match (self.state, &config.state_file) {
            (Some(s), _) => s,
            (None, Some(path)) => Arc::new(JsonFileState::new(path)),
            (None, None) => {
                return Err(BuildError::Missing(
                    "state_file",
                    "give a state file (or a State of the host's own)",
                ));
            }
        };
        let transport = if collector.is_some() || endpoint.is_some() {
            Some(Arc::new(transport::Transport::build(&config, &self.env)?))
        } else {
            None
        };
        let event_meta = sentry::EventMeta {
            release: config.errors.release.clone(),
            environment: config.errors.environment.clone(),
            server_id: None,
            resolve_lines: config.errors.resolve_lines,
            // sentry's in-app rules take &'static str; a handful of short prefixes per agent.
            in_app: config
                .errors
                .in_app
                .iter()
                .map(|p| &*Box::leak(p.clone().into_boxed_str()))
                .collect(),
        };
        Ok(Agent {
            inner: Arc::new(Inner {
                config,
                switches,
                collector,
                endpoint,
                transport,
                facts: self.facts,
                state,
                notifier: self.notifier.unwrap_or_else(|| Arc::new(LogNotifier)),
                clock: self.clock,
                stats: Stats::default(),
                event_meta,
            }),
        })
    }

    /// [`build`](Self::build), then [`Agent::start_on`].
    pub fn start_on(self, runtime: &tokio::runtime::Handle) -> Result<AgentHandle, BuildError> {
        Ok(self.build()?.start_on(runtime))
    }

    /// [`build`](Self::build), then [`Agent::start_thread`].
    pub fn start_thread(self) -> Result<AgentHandle, BuildError> {
        self.build()?.start_thread()
    }
}

/// A configured agent, not yet running. [`check_now`](Agent::check_now) and
/// [`preview`](Agent::preview) work without starting it.
pub struct Agent {
    inner: Arc<Inner>,
}

impl Agent {
    pub fn builder(config: Config) -> AgentBuilder {
        AgentBuilder {
            config,
            facts: None,
            state: None,
            notifier: None,
            clock: Arc::new(SystemClock),
            env: process_env(),
        }
    }

    /// The switches in force.
    pub fn switches(&self) -> &Switches {
        &self.inner.switches
    }

    /// Checks now, whenever the last check was (it is recorded like any other). Nothing is sent when
    /// security alerts are off.
    pub async fn check_now(&self) -> Result<CheckOutcome, CheckError> {
        security::run(&self.inner, true).await
    }

    /// Asks the collector to forget everything it holds of this server (its checks and error
    /// events): `POST /v1/forget` with the diagnostic id, answered after the deletion committed.
    pub async fn forget(&self) -> Result<beacon_wire::admin::ForgetRecord, ForgetError> {
        security::forget(&self.inner).await
    }

    /// What the agent would send, without sending anything: the exact URL of the next check and a
    /// scrubbed sample error report. Makes the diagnostic id if there is none yet (so that the URL shown
    /// is the one the next check sends).
    pub async fn preview(&self) -> Result<Preview, CheckError> {
        preview::preview(&self.inner).await
    }

    /// Starts the schedule and the error reporter as one task on the host's runtime.
    pub fn start_on(self, runtime: &tokio::runtime::Handle) -> AgentHandle {
        let (handle, run) = self.prepare();
        let done = handle.done.clone();
        runtime.spawn(async move {
            run.await;
            done.set();
        });
        handle
    }

    /// Starts the agent on a thread of its own (`beacon-agent`, a single-threaded tokio runtime with at
    /// most two blocking threads).
    pub fn start_thread(self) -> Result<AgentHandle, BuildError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(2)
            .thread_name("beacon-agent-blocking")
            .build()
            .map_err(BuildError::Thread)?;
        let (mut handle, run) = self.prepare();
        let done = handle.done.clone();
        let thread = std::thread::Builder::new()
            .name("beacon-agent".into())
            .spawn(move || {
                runtime.block_on(run);
                drop(runtime);
                done.set();
            })
            .map_err(BuildError::Thread)?;
        handle.thread = Some(thread);
        Ok(handle)
    }

    fn prepare(
        self,
    ) -> (
        AgentHandle,
        impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let inner = self.inner;
        let (stop, stop_rx) = watch::channel(None);
        let (reporter, rx) = if inner.endpoint.is_some() {
            let (r, rx) = sentry::Reporter::new(inner.clone());
            sentry::activate(&r, inner.config.errors.capture_panics);
            (Some(r), Some(rx))
        } else {
            (None, None)
        };
        // The first tick's time is fixed now, at start, not when the task first runs.
        let jitter_ms = match inner.config.first_tick_jitter_secs {
            0 => 0,
            s => rand::random_range(0..=s.saturating_mul(1000)),
        };
        let first_tick = inner.clock.now() + chrono::TimeDelta::milliseconds(jitter_ms as i64);
        let run = {
            let inner = inner.clone();
            async move {
                let scheduled = async {
                    if inner.collector.is_some() {
                        schedule(inner.clone(), first_tick, stop_rx.clone()).await;
                    }
                };
                let worker = async {
                    if let Some(rx) = rx {
                        sentry::run_worker(inner.clone(), rx, stop_rx.clone()).await;
                    }
                };
                tokio::join!(scheduled, worker);
            }
        };
        let handle = AgentHandle {
            inner,
            stop,
            done: Arc::new(Latch::default()),
            reporter,
            thread: None,
        };
        (handle, run)
    }
}

/// The schedule: a tick every `tick_interval_secs`, the first after a random jitter; each tick runs
/// the check if it is due. A tick that comes late (the machine slept) is not made up for.
async fn schedule(
    inner: Arc<Inner>,
    first_tick: chrono::DateTime<chrono::Utc>,
    mut stop: watch::Receiver<Option<Instant>>,
) {
    let interval = chrono::TimeDelta::seconds(inner.config.tick_interval_secs.max(1) as i64);
    let mut next = first_tick;
    tracing::debug!(%next, "first tick");
    loop {
        tokio::select! {
            biased;
            _ = async { let _ = stop.wait_for(Option::is_some).await; } => return,
            _ = inner.clock.sleep_until(next) => {}
        }
        let outcome = tokio::select! {
            biased;
            r = security::run(&inner, false) => r,
            _ = past_deadline(stop.clone()) => return,
        };
        match outcome {
            Ok(CheckOutcome::Checked(report)) => {
                tracing::info!(bulletins = report.bulletins.len(), "security check done")
            }
            Ok(CheckOutcome::NotDue { next_due }) => tracing::debug!(%next_due, "no check due"),
            Ok(CheckOutcome::Off) => {}
            Err(e) => tracing::warn!("security check failed, next one at the next due time: {e}"),
        }
        inner.stats.ticks.fetch_add(1, Ordering::Relaxed);
        let now = inner.clock.now();
        next += interval;
        if next <= now {
            next = now + interval;
        }
    }
}

/// Completes once a stop was asked for and its deadline has passed.
pub(crate) async fn past_deadline(mut stop: watch::Receiver<Option<Instant>>) {
    let deadline = match stop.wait_for(Option::is_some).await {
        Ok(d) => *d,
        Err(_) => None,
    };
    let Some(deadline) = deadline else {
        return std::future::pending().await;
    };
    tokio::time::sleep_until(deadline).await;
}

/// Set once the agent's task (or thread) has finished.
#[derive(Default)]
struct Latch {
    done: Mutex<bool>,
    cv: Condvar,
    notify: tokio::sync::Notify,
}

impl Latch {
    fn set(&self) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cv.notify_all();
        self.notify.notify_waiters();
    }

    fn is_set(&self) -> bool {
        *self.done.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn wait(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, async {
            loop {
                let notified = self.notify.notified();
                if self.is_set() {
                    return;
                }
                notified.await;
            }
        })
        .await
        .is_ok()
    }

    fn wait_blocking(&self, timeout: Duration) -> bool {
        let guard = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = self
            .cv
            .wait_timeout_while(guard, timeout, |done| !*done)
            .unwrap_or_else(|e| e.into_inner());
        *guard
    }
}

/// A running agent. Dropping it stops the agent without waiting (queued reports are dropped); call
/// [`shutdown`](AgentHandle::shutdown) to send them first.
pub struct AgentHandle {
    inner: Arc<Inner>,
    stop: watch::Sender<Option<Instant>>,
    done: Arc<Latch>,
    reporter: Option<Arc<sentry::Reporter>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AgentHandle {
    /// Counters of what the agent did.
    pub fn status(&self) -> Status {
        self.inner.stats.snapshot()
    }

    /// The switches in force.
    pub fn switches(&self) -> &Switches {
        &self.inner.switches
    }

    /// Whether diagnostics are on: what the server reports to its mobile apps for the mobile gate.
    pub fn diagnostics_enabled(&self) -> bool {
        self.inner.switches.diagnostics
    }

    /// Reports an error through this agent. Never blocks.
    pub fn capture_error(&self, err: &(dyn std::error::Error + 'static)) -> Captured {
        match &self.reporter {
            Some(r) => r.capture_error(err),
            None => Captured::Off,
        }
    }

    /// Checks now, on the caller's runtime (see [`Agent::check_now`]).
    pub async fn check_now(&self) -> Result<CheckOutcome, CheckError> {
        security::run(&self.inner, true).await
    }

    /// Asks the collector to forget this server's data (see [`Agent::forget`]).
    pub async fn forget(&self) -> Result<beacon_wire::admin::ForgetRecord, ForgetError> {
        security::forget(&self.inner).await
    }

    fn begin_stop(&mut self, deadline: Duration) {
        if let Some(r) = &self.reporter {
            sentry::deactivate(r);
        }
        self.stop.send_if_modified(|s| {
            if s.is_none() {
                *s = Some(Instant::now() + deadline);
                true
            } else {
                false
            }
        });
    }

    /// Stops the schedule and sends the queued error reports, for at most `deadline`; what is left
    /// then is dropped and counted. Returns the final counters.
    pub async fn shutdown(mut self, deadline: Duration) -> Status {
        self.begin_stop(deadline);
        if !self.done.wait(deadline + Duration::from_secs(1)).await {
            tracing::warn!("the agent did not stop within its deadline");
        }
        self.status()
    }

    /// [`shutdown`](Self::shutdown) for a caller outside any async context (it blocks the calling
    /// thread until the agent stopped or the deadline passed).
    pub fn shutdown_blocking(mut self, deadline: Duration) -> Status {
        self.begin_stop(deadline);
        if self.done.wait_blocking(deadline + Duration::from_secs(1)) {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        } else {
            tracing::warn!("the agent did not stop within its deadline");
        }
        self.status()
    }
}

impl Drop for AgentHandle {
    fn drop(&mut self) {
        self.begin_stop(Duration::ZERO);
    }
}
