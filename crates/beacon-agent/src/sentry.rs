//! Error and panic reports, as Sentry envelopes.
//!
//! **What runs where.** On the host's thread, a capture does only what must happen there: the error's
//! chain of messages and types (`sentry::event_from_error`) or the panic's message, and an *unresolved*
//! backtrace (a walk of the stack, no symbol lookup). The job then goes into a bounded queue with
//! `try_send`: when the queue is full it is dropped and counted, never waited for. The agent's worker
//! resolves symbols on a blocking thread, trims the agent's and the panic machinery's frames, marks
//! in-app frames, scrubs every string with `beacon-scrub`, and posts the envelope.
//!
//! **What is sent.** Exception types and messages (scrubbed), stack frames (function, file name, line,
//! in-app; no absolute paths, symbols or addresses), level, timestamp, release and environment from the
//! configuration, the OS name, and the tag `server_id` (the diagnostic id). Never a user, a request,
//! breadcrumbs, the host name (`server_name`), environment variables, `extra` or modules.
//!
//! **Why the `sentry` crate only in part.** Its protocol types, `event_from_error`, backtrace
//! conversion, in-app rules and envelope encoder are used as they are. Its `Client`/`Hub` and
//! transports are not: the client processes events (symbolication included) on the calling thread;
//! binding its global hub would collide with a host that uses Sentry for itself; its defaults read
//! `SENTRY_*` environment variables and the host name; and its transports bring their own TLS and proxy
//! setup, where the agent has one (rustls with ring, `allow_insecure`, `proxy`, the payload log).

use crate::Inner;
use backtrace::Backtrace;
use sentry::protocol::{
    ClientSdkInfo, Context, Envelope, Event, Exception, Frame, Level, Mechanism, OsContext,
    Stacktrace,
};
use std::cell::Cell;
use std::error::Error;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Once, RwLock};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What became of a captured error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Captured {
    /// Queued for sending.
    Queued,
    /// The queue was full (or the agent is stopping): dropped and counted.
    Dropped,
    /// Error reports are off (`diagnostics` off, no DSN, or no agent running): nothing happens.
    Off,
}

pub(crate) struct Job {
    event: Event<'static>,
    backtrace: Option<Backtrace>,
}

/// The host-facing end of the queue.
pub(crate) struct Reporter {
    tx: mpsc::Sender<Job>,
    inner: Arc<Inner>,
}

/// Where reports go: the envelope URL and the auth header from the DSN.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub url: reqwest::Url,
    pub auth: String,
}

impl Endpoint {
    pub fn from_dsn(dsn: &str, allow_insecure: bool) -> Result<Self, crate::BuildError> {
        let bad = |problem: String| crate::BuildError::Url {
            what: "errors.dsn".into(),
            problem,
        };
        let parsed: sentry::types::Dsn = dsn.parse().map_err(|e| bad(format!("{e}")))?;
        let url = parsed.envelope_api_url();
        let url = crate::config::check_url("errors.dsn", url.as_str(), allow_insecure)?;
        let auth = parsed
            .to_auth(Some(crate::transport::USER_AGENT))
            .to_string();
        Ok(Self { url, auth })
    }
}

impl Reporter {
    pub fn new(inner: Arc<Inner>) -> (Arc<Self>, mpsc::Receiver<Job>) {
        let (tx, rx) = mpsc::channel(inner.config.errors.queue.max(1));
        (Arc::new(Self { tx, inner }), rx)
    }

    pub fn capture_error(&self, err: &(dyn Error + 'static)) -> Captured {
        let event = sentry::event_from_error(err);
        self.enqueue(event)
    }

    fn capture_panic(&self, info: &std::panic::PanicHookInfo<'_>) -> Captured {
        let message = sentry::integrations::panic::message_from_panic_info(info);
        let event = Event {
            exception: vec![Exception {
                ty: "panic".into(),
                value: Some(message.to_string()),
                mechanism: Some(Mechanism {
                    ty: "panic".into(),
                    handled: Some(false),
                    ..Default::default()
                }),
                ..Default::default()
            }]
            .into(),
            level: Level::Fatal,
            ..Default::default()
        };
        self.enqueue(event)
    }

    fn enqueue(&self, event: Event<'static>) -> Captured {
        let job = Job {
            event,
            backtrace: Some(capture_stack()),
        };
        let stats = &self.inner.stats;
        match self.tx.try_send(job) {
            Ok(()) => {
                stats.errors_queued.fetch_add(1, Ordering::Relaxed);
                Captured::Queued
            }
            Err(_) => {
                stats.errors_dropped.fetch_add(1, Ordering::Relaxed);
                Captured::Dropped
            }
        }
    }
}

/// Most frames kept of a stack (the innermost ones).
const MAX_FRAMES: usize = 128;

/// The current thread's stack as raw frames (instruction pointers), without resolving symbols.
///
/// `backtrace::Backtrace::new_unresolved` takes the crate's global lock, which symbol resolution on
/// the agent's worker holds for milliseconds at a time: a host thread capturing then would wait. On
/// unix the walk goes through `_Unwind_Backtrace`, which is thread-safe (every panicking thread uses
/// it concurrently), so the unlocked walk is used there; elsewhere (Windows' dbghelp is not
/// thread-safe) the locked one.
pub(crate) fn capture_stack() -> Backtrace {
    let mut frames = Vec::with_capacity(64);
    let mut push = |f: &backtrace::Frame| {
        frames.push(backtrace::BacktraceFrame::from(f.clone()));
        frames.len() < MAX_FRAMES
    };
    #[cfg(unix)]
    // SAFETY: see above; the callback only copies the frame's addresses.
    #[allow(unsafe_code)]
    unsafe {
        backtrace::trace_unsynchronized(&mut push)
    };
    #[cfg(not(unix))]
    backtrace::trace(&mut push);
    Backtrace::from(frames)
}

// ---- the process-wide reporter: the panic hook and the free `capture_error` use it ----

static ACTIVE: RwLock<Option<Arc<Reporter>>> = RwLock::new(None);
static HOOK: Once = Once::new();

thread_local! {
    /// Set while this thread is inside a capture, so a panic there is not captured again.
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
}

fn active() -> Option<Arc<Reporter>> {
    ACTIVE.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Makes `reporter` the process's reporter; installs the panic hook (once per process, chained to the
/// hook installed before it) when asked.
pub(crate) fn activate(reporter: &Arc<Reporter>, panics: bool) {
    *ACTIVE.write().unwrap_or_else(|e| e.into_inner()) = Some(reporter.clone());
    if panics {
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if !CAPTURING.with(Cell::get)
                    && let Some(r) = active()
                    && r.inner.config.errors.capture_panics
                {
                    CAPTURING.with(|c| c.set(true));
                    r.capture_panic(info);
                    CAPTURING.with(|c| c.set(false));
                }
                previous(info);
            }));
        });
    }
}

/// Stops routing captures to `reporter` (if it is still the active one).
pub(crate) fn deactivate(reporter: &Arc<Reporter>) {
    let mut active = ACTIVE.write().unwrap_or_else(|e| e.into_inner());
    if active.as_ref().is_some_and(|a| Arc::ptr_eq(a, reporter)) {
        *active = None;
    }
}

/// Reports an error through the running agent (the last one started in this process). Never blocks:
/// the report is queued, or dropped and counted when the queue is full. [`Captured::Off`] when no
/// agent with error reports on is running.
pub fn capture_error(err: &(dyn Error + 'static)) -> Captured {
    if CAPTURING.with(Cell::get) {
        return Captured::Off;
    }
    match active() {
        Some(r) => {
            CAPTURING.with(|c| c.set(true));
            let captured = r.capture_error(err);
            CAPTURING.with(|c| c.set(false));
            captured
        }
        None => Captured::Off,
    }
}

// ---- building the envelope (on a blocking thread) ----

/// What every event carries besides the error itself.
#[derive(Debug, Clone, Default)]
pub(crate) struct EventMeta {
    pub release: Option<String>,
    pub environment: Option<String>,
    pub server_id: Option<String>,
    pub in_app: Vec<&'static str>,
    /// Files and lines through the DWARF resolver (costly in memory; see `symtab`).
    pub resolve_lines: bool,
}

/// Frames of the capture itself (the agent, the backtrace walk, the panic machinery, `unwrap`,
/// indexing), at the innermost end of a stack; they are cut so that the top frame is the host's.
/// A trait impl counts when its type is std's or a primitive (`<usize as core::…>`), not when it is
/// the host's (`<myserver::Foo as core::fmt::Display>::fmt`).
fn is_capture_frame(function: &str) -> bool {
    const PREFIXES: [&str; 9] = [
        "beacon_agent::",
        "backtrace::",
        "std::",
        "core::",
        "alloc::",
        "rust_begin_unwind",
        "__rust",
        "_rust_",
        "unknown>",
    ];
    let f = function.strip_prefix('<').unwrap_or(function);
    if PREFIXES.iter().any(|p| f.starts_with(p)) {
        return true;
    }
    function.starts_with('<')
        && f.split_once(" as ")
            .is_some_and(|(self_type, _)| !self_type.contains("::"))
}

/// The stack's frames, oldest first, with function names (and, with `resolve_lines` or off Linux,
/// files and lines from the DWARF resolver).
fn named_frames(mut bt: Backtrace, resolve_lines: bool) -> Vec<Frame> {
    #[cfg(target_os = "linux")]
    if !resolve_lines {
        let ips: Vec<u64> = bt.frames().iter().map(|f| f.ip() as u64).collect();
        let mut frames: Vec<Frame> = crate::symtab::resolve(&ips)
            .into_iter()
            .map(|name| Frame {
                function: Some(name.unwrap_or_else(|| "<unknown>".into())),
                ..Default::default()
            })
            .collect();
        frames.reverse();
        return frames;
    }
    let _ = resolve_lines;
    bt.resolve();
    let st = sentry::integrations::backtrace::backtrace_to_stacktrace(&bt);
    // The resolver keeps the binary's debug information mapped; let it go (errors are rare).
    backtrace::clear_symbol_cache();
    st.map(|st| st.frames).unwrap_or_default()
}

fn stacktrace_of(bt: Backtrace, meta: &EventMeta) -> Option<Stacktrace> {
    let mut st = Stacktrace {
        frames: named_frames(bt, meta.resolve_lines),
        ..Default::default()
    };
    while st
        .frames
        .last()
        .is_some_and(|f| f.function.as_deref().is_none_or(is_capture_frame))
    {
        st.frames.pop();
    }
    if st.frames.is_empty() {
        return None;
    }
    st.frames = st
        .frames
        .into_iter()
        .map(|f| Frame {
            // A symbol without a path (`clone3`, `start_thread`, `<unknown>`) is not Rust code, so
            // not the host's: sentry would otherwise count it in-app when nothing else is.
            in_app: f
                .function
                .as_deref()
                .is_none_or(|name| !name.contains("::"))
                .then_some(false),
            function: f.function,
            filename: f.filename,
            lineno: f.lineno,
            ..Default::default()
        })
        .collect();
    let mut options = sentry::ClientOptions::default();
    options.in_app_include = meta.in_app.clone();
    sentry::integrations::backtrace::process_event_stacktrace(&mut st, &options);
    // The collector groups and names culprits by module (or file) and function: without a file,
    // the crate is the module.
    for f in &mut st.frames {
        if f.filename.is_none() {
            f.module = f.package.take();
        } else {
            f.package = None;
        }
    }
    Some(st)
}

/// The event as it will be sent: stack trace resolved and trimmed, metadata added, every string
/// scrubbed.
pub(crate) fn finish_event(job: Job, meta: &EventMeta) -> Event<'static> {
    let Job {
        mut event,
        backtrace,
    } = job;
    if let Some(st) = backtrace.and_then(|bt| stacktrace_of(bt, meta))
        && let Some(top) = event.exception.values.last_mut()
    {
        top.stacktrace = Some(st);
    }
    event.platform = "native".into();
    event.release = meta.release.clone().map(Into::into);
    event.environment = meta.environment.clone().map(Into::into);
    event.server_name = None;
    event.user = None;
    event.request = None;
    if let Some(id) = &meta.server_id {
        event.tags.insert("server_id".into(), id.clone());
    }
    event.contexts.insert(
        "os".into(),
        Context::Os(Box::new(OsContext {
            name: Some(crate::facts::default_os()),
            ..Default::default()
        })),
    );
    event.sdk = Some(std::borrow::Cow::Owned(ClientSdkInfo {
        name: "beacon-agent".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        integrations: Vec::new(),
        packages: Vec::new(),
    }));
    scrub(event)
}

/// Runs every string of the event through `beacon-scrub` (values under secret-looking keys too).
fn scrub(event: Event<'static>) -> Event<'static> {
    let mut value = serde_json::to_value(&event).expect("events serialise");
    beacon_scrub::scrub_value(&mut value, &mut beacon_scrub::ScrubStats::default());
    serde_json::from_value(value).unwrap_or_else(|e| {
        // Cannot happen for strings replaced by strings; send nothing of the original then.
        tracing::warn!("scrubbed event does not deserialise ({e}); sending its type only");
        Event {
            event_id: event.event_id,
            level: event.level,
            message: Some("[Filtered]".into()),
            ..Default::default()
        }
    })
}

pub(crate) fn envelope_bytes(event: Event<'static>) -> Vec<u8> {
    let mut body = Vec::new();
    Envelope::from(event)
        .to_writer(&mut body)
        .expect("writing to a Vec");
    body
}

/// A sample report, built the way a real one is (with the stack of `backtrace`'s capture), for
/// `preview`.
pub(crate) fn sample_envelope(meta: &EventMeta, backtrace: Backtrace) -> Vec<u8> {
    #[derive(Debug)]
    struct SampleError(String);
    impl std::fmt::Display for SampleError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl Error for SampleError {}
    let err = SampleError(
        "cannot open /home/alice/data/config.json for alice@example.com (client 203.0.113.7, \
         password=hunter2)"
            .into(),
    );
    let job = Job {
        event: sentry::event_from_error(&err as &dyn Error),
        backtrace: Some(backtrace),
    };
    envelope_bytes(finish_event(job, meta))
}

// ---- the worker ----

pub(crate) async fn run_worker(
    inner: Arc<Inner>,
    mut rx: mpsc::Receiver<Job>,
    mut stop: tokio::sync::watch::Receiver<Option<Instant>>,
) {
    let mut worker = Worker {
        inner,
        server_id: None,
        blocked_until: None,
    };
    let dropped = |n: u64| {
        if n > 0 {
            tracing::warn!("shutdown deadline passed: {n} error report(s) not sent");
        }
    };
    let mut cut = 0;
    loop {
        let job = tokio::select! {
            biased;
            _ = async { let _ = stop.wait_for(Option::is_some).await; } => break,
            job = rx.recv() => match job {
                Some(job) => job,
                None => return,
            },
        };
        // A report being sent when the stop comes may finish until the deadline, not longer.
        tokio::select! {
            biased;
            _ = worker.process(job) => {}
            _ = crate::past_deadline(stop.clone()) => {
                cut += 1;
                break;
            }
        }
    }
    // Stopping: refuse new reports, send what is queued until the deadline, count the rest.
    rx.close();
    let deadline = stop.borrow().unwrap_or_else(Instant::now);
    while cut == 0 {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(job)) => {
                if tokio::time::timeout_at(deadline, worker.process(job))
                    .await
                    .is_err()
                {
                    cut += 1;
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    while rx.try_recv().is_ok() {
        cut += 1;
    }
    worker
        .inner
        .stats
        .errors_dropped
        .fetch_add(cut, Ordering::Relaxed);
    dropped(cut);
}

struct Worker {
    inner: Arc<Inner>,
    server_id: Option<String>,
    blocked_until: Option<Instant>,
}

impl Worker {
    async fn process(&mut self, job: Job) {
        let stats = &self.inner.stats;
        let (Some(endpoint), Some(transport)) = (&self.inner.endpoint, &self.inner.transport)
        else {
            stats.errors_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if self.blocked_until.is_some_and(|t| Instant::now() < t) {
            stats.errors_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.server_id.is_none() {
            let state = self.inner.state.clone();
            self.server_id = crate::blocking(move || {
                state.update(&mut |s| {
                    s.ensure_diagnostic_id();
                })
            })
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|s| s.diagnostic_id);
        }
        let meta = EventMeta {
            server_id: self.server_id.clone(),
            ..self.inner.event_meta.clone()
        };
        let Ok(body) = crate::blocking(move || envelope_bytes(finish_event(job, &meta))).await
        else {
            stats.errors_failed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        transport
            .log_payload(
                "errors",
                "POST",
                endpoint.url.as_str(),
                Some(String::from_utf8_lossy(&body).into_owned()),
            )
            .await;
        let sent = transport
            .client
            .post(endpoint.url.clone())
            .header("X-Sentry-Auth", &endpoint.auth)
            .header("Content-Type", "application/x-sentry-envelope")
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                stats.errors_sent.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) if r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                let secs = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(60)
                    .min(3600);
                self.blocked_until = Some(Instant::now() + std::time::Duration::from_secs(secs));
                stats.errors_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("error reports rate limited by the collector for {secs} s");
            }
            Ok(r) => {
                stats.errors_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("error report refused by the collector: {}", r.status());
            }
            Err(e) => {
                stats.errors_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("error report not sent: {}", crate::SendError::http(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_capture_frame;

    #[test]
    fn capture_frames_are_std_and_agent_frames_but_not_host_impls() {
        for f in [
            "beacon_agent::sentry::capture_stack",
            "<beacon_agent::LogNotifier as beacon_agent::Notifier>::notify",
            "std::panicking::begin_panic_handler",
            "core::panicking::panic_bounds_check",
            "<usize as core::slice::index::SliceIndex<[T]>>::index",
            "<alloc::vec::Vec<T,A> as core::ops::index::Index<I>>::index",
            "<&T as core::fmt::Display>::fmt",
            "rust_begin_unwind",
            "<unknown>",
        ] {
            assert!(is_capture_frame(f), "{f}");
        }
        for f in [
            "myserver::api::handle",
            "<myserver::Foo as core::fmt::Display>::fmt",
            "panics::handle_request",
        ] {
            assert!(!is_capture_frame(f), "{f}");
        }
    }
}
