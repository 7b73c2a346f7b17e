//! `beacon-bench ui`: the dashboard's server time per page and the bytes of a first visit, over a
//! store the size issue 13 names (100 k servers, 10 k issues, 10 M trace events by default).
//!
//! One `beacon serve` (SQLite, or a fresh PostgreSQL database with `--postgres`) is filled through its
//! real endpoints, one UTC day after another over `--days` days, so that checks, error events and trace
//! events land on the days they would in a real month: every day before today is filled by a
//! collector started under libfaketime with its clock at 23:00 of that day (one restart per day, on
//! the same store), today by the collector that is then measured, on the real clock. `/security`
//! checks of `--servers` distinct servers (each checks in on most days between its first and its last
//! day; versions, editions, OS and databases weighted, some upgrades), `--issues` issues of three
//! projects with 2–8 events each over the days (releases, environments, `server_id` tags), and
//! `--trace-events` mobile trace events in batches of 100 (the `mobile` benchmark's generator), an
//! equal share per day; then three bulletins.
//!
//! Measured: after logging in as a browser does (the login form's double-submit token, the session
//! cookie), every page is requested `--requests` times after 3 warm-ups, one after another on one
//! keep-alive connection, with `Accept-Encoding: gzip, br`; server time is the time to the last byte
//! of the answer on loopback. The collector's own `beacon_http_request_duration_seconds` histogram
//! is read before and after each page's requests as a cross-check. A first visit (a fresh client:
//! the redirect, the login page, the login, the overview and every stylesheet, script and image the
//! two pages reference) is counted in bytes as they travel, compressed, headers included. Exit 1
//! when a page's p95 is over 50 ms or the first visit over 100 KB.

use super::{BenchDb, MakeRequest, Proc, TOKEN, peak_rss_kb, run_load_upto, spawn_until};
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use chrono::{Days, NaiveDate, TimeZone, Utc};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Issue 13's targets: p95 server time of every page, and the bytes of a first visit (100 KB).
const P95_TARGET_MS: f64 = 50.0;
const FIRST_VISIT_TARGET_BYTES: usize = 100_000;
const WARM_UPS: usize = 3;
/// The collector's request-duration histogram.
const DURATION_METRIC: &str = "beacon_http_request_duration_seconds_bucket";

pub struct Options {
    pub servers: u32,
    pub issues: u32,
    pub trace_events: u64,
    pub days: u32,
    pub requests: usize,
    pub postgres: Option<String>,
    /// An existing database, used as is and kept.
    pub postgres_db: Option<String>,
    pub beacon: Option<PathBuf>,
    pub libfaketime: Option<PathBuf>,
    /// Fill this directory (and keep it) instead of a temporary one.
    pub data_dir: Option<PathBuf>,
    /// Measure the store already in `data_dir` (SQLite) or `postgres_db`, without filling it.
    pub no_fill: bool,
}

// ---------------------------------------------------------------------------------------------
// The fleet.

/// Server versions, oldest first, and how many servers start on each (weights).
const VERSIONS: [&str; 7] = [
    "9.5.14", "9.11.6", "10.0.3", "10.1.2", "10.2.0", "10.3.1", "10.4.0",
];
const VERSION_WEIGHTS: [u32; 7] = [4, 10, 14, 20, 24, 18, 10];
const OS: [&str; 3] = ["linux", "windows", "darwin"];
const OS_WEIGHTS: [u32; 3] = [92, 6, 2];
const DBS: [(&str, &str); 6] = [
    ("postgres", "12.18"),
    ("postgres", "14.11"),
    ("postgres", "15.6"),
    ("postgres", "16.2"),
    ("mysql", "8.0.36"),
    ("mysql", "5.7.44"),
];
const DB_WEIGHTS: [u32; 6] = [10, 25, 30, 15, 15, 5];

/// One server of the simulated fleet; days are indices into the filled range (0 = the first).
pub(crate) struct Server {
    first_day: u32,
    last_day: u32,
    version: usize,
    /// From this day on the server runs the next version.
    upgrade_day: Option<u32>,
    enterprise: bool,
    os: usize,
    db: usize,
    users: u32,
    activated: u32,
    teams: u32,
    test: bool,
}

fn weighted(rng: &mut StdRng, weights: &[u32]) -> usize {
    let mut x = rng.random_range(0..weights.iter().sum::<u32>());
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

/// `n` servers over `days` days: most there from the first day to the last, a fifth joining later,
/// a tenth going silent before the end, two in five upgrading once.
pub(crate) fn fleet(n: u32, days: u32, rng: &mut StdRng) -> Vec<Server> {
    (0..n)
        .map(|_| {
            let first_day = if days > 1 && rng.random_range(0..100) < 20 {
                rng.random_range(1..days)
            } else {
                0
            };
            let last_day = if rng.random_range(0..100) < 10 {
                rng.random_range(first_day..days)
            } else {
                days - 1
            };
            let version = weighted(rng, &VERSION_WEIGHTS);
            let upgrade_day = (version + 1 < VERSIONS.len() && rng.random_range(0..100) < 40)
                .then(|| rng.random_range(first_day..=last_day));
            // Users from 1 to about 5,000, log-uniform; teams grow with them.
            let users = 10f64.powf(rng.random::<f64>() * 3.7) as u32;
            let activated = (f64::from(users) * (0.3 + 0.6 * rng.random::<f64>())) as u32;
            Server {
                first_day,
                last_day,
                version,
                upgrade_day,
                enterprise: rng.random_range(0..100) < 35,
                os: weighted(rng, &OS_WEIGHTS),
                db: weighted(rng, &DB_WEIGHTS),
                users,
                activated,
                teams: 1 + users / 40,
                test: rng.random_range(0..100) == 0,
            }
        })
        .collect()
}

/// splitmix64: a fixed pseudo-random function of `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Whether server `i` checks in on `day`: always on its first day, then on 93 % of the days up to
/// its last.
fn checks_on(s: &Server, i: u32, day: u32) -> bool {
    day == s.first_day
        || (day > s.first_day
            && day <= s.last_day
            && mix((u64::from(i) << 16) | u64::from(day)) % 100 < 93)
}

/// The server id of server `i` (26 characters of `[a-z0-9]`); error events carry it as `server_id`.
fn server_id(i: u32) -> String {
    format!("bench{i:0>21}")
}

pub(crate) fn check_query(s: &Server, i: u32, day: u32) -> String {
    let v = match s.upgrade_day {
        Some(u) if day >= u => s.version + 1,
        _ => s.version,
    };
    let (db, dbv) = DBS[s.db];
    format!(
        "/security?auc={}&b={}.{}&be={}&db={db}&dbv={dbv}&id={}&os={}&tc={}&uc={}&ut={}",
        s.activated,
        VERSIONS[v],
        1000 + v,
        s.enterprise,
        server_id(i),
        OS[s.os],
        s.teams,
        s.users,
        u8::from(s.test)
    )
}

// ---------------------------------------------------------------------------------------------
// Error issues.

const PROJECTS: [&str; 3] = ["server", "desktop", "plugins"];
const EXCEPTIONS: [&str; 8] = [
    "KeyError",
    "ValueError",
    "TypeError",
    "TimeoutError",
    "ConnectionResetError",
    "PermissionError",
    "IndexError",
    "AttributeError",
];
const MODULES: [&str; 10] = [
    "api4.post",
    "api4.channel",
    "app.file",
    "app.notification",
    "store.sqlstore",
    "jobs.export",
    "plugin.hooks",
    "web.handlers",
    "services.search",
    "app.session",
];

/// One issue: its project, level and the days of its events.
struct Issue {
    project: usize,
    level: &'static str,
    days: Vec<u32>,
}

/// `n` issues, each with 2–8 events: the first on a day of the range, the others on that day or
/// later.
fn issues(n: u32, days: u32, rng: &mut StdRng) -> Vec<Issue> {
    (0..n)
        .map(|j| {
            let first = rng.random_range(0..days);
            let mut d: Vec<u32> = std::iter::once(first)
                .chain((1..rng.random_range(2..=8u32)).map(|_| rng.random_range(first..days)))
                .collect();
            d.sort_unstable();
            Issue {
                project: j as usize % PROJECTS.len(),
                level: match j % 20 {
                    0 => "fatal",
                    1..=3 => "warning",
                    _ => "error",
                },
                days: d,
            }
        })
        .collect()
}

/// An envelope with event `n` of issue `j` (its own fingerprint, exception and stack), sent on day
/// `day` of `days` by server `server`; no timestamp, so the event is dated when it is received.
fn event_envelope(j: u32, issue: &Issue, n: u64, day: u32, days: u32, server: u32) -> Bytes {
    let j_us = j as usize;
    let frames: Vec<Value> = (0..12)
        .map(|f| {
            let module = MODULES[(j_us + f) % MODULES.len()];
            json!({
                "filename": format!("{}.py", module.replace('.', "/")),
                "module": module,
                "function": format!("handle_{}_{}", f, j % 89),
                "lineno": 10 + (j_us * 7 + f * 13) % 400,
                "in_app": f % 3 != 0,
            })
        })
        .collect();
    let release = format!(
        "{}@10.{}.{}",
        PROJECTS[issue.project],
        day * 4 / days.max(1),
        n % 2
    );
    let id = format!("{n:032x}");
    let payload = json!({
        "event_id": id,
        "platform": "python",
        "level": issue.level,
        "release": release,
        "environment": if j.is_multiple_of(5) { "staging" } else { "production" },
        "exception": {"values": [{
            "type": EXCEPTIONS[j_us % EXCEPTIONS.len()],
            "value": format!("{} failed for item {}", MODULES[j_us % MODULES.len()], j),
            "stacktrace": {"frames": frames},
        }]},
        "fingerprint": [format!("bench-issue-{j}")],
        "tags": {"server_id": server_id(server)},
        "contexts": {"os": {"name": "Linux", "version": "6.1"}},
    })
    .to_string();
    Bytes::from(format!(
        "{{\"event_id\":\"{id}\"}}\n{{\"type\":\"event\",\"length\":{}}}\n{payload}\n",
        payload.len()
    ))
}

// ---------------------------------------------------------------------------------------------
// Collectors.

/// Where Debian's `libfaketime` package puts the library (the multi-threaded variant).
fn find_libfaketime(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let mut dirs = vec![PathBuf::from("/usr/lib/faketime")];
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        dirs.extend(
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("faketime")),
        );
    }
    for dir in dirs {
        for name in ["libfaketimeMT.so.1", "libfaketime.so.1"] {
            if dir.join(name).is_file() {
                return Ok(dir.join(name));
            }
        }
    }
    bail!(
        "libfaketime not found (Debian: apt-get install libfaketime; or pass --libfaketime PATH): \
         it sets the clock of the collectors that fill the days before today"
    )
}

/// A `beacon serve` on `dir` (and `pg`), its clock at 23:00 UTC of `fake.1` when `fake` is given.
fn collector(
    beacon: &Path,
    dir: &Path,
    pg: Option<&str>,
    fake: Option<(&Path, NaiveDate)>,
) -> Result<(Proc, String)> {
    let mut cmd = Command::new(beacon);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("BEACON_ADMIN_TOKEN", TOKEN)
        .env("BEACON_ERRORS_RATE_LIMIT_PER_MINUTE", "1000000000")
        .env("BEACON_LOG", "error");
    if let Some(url) = pg {
        cmd.env("BEACON_STORE_URL", url);
    }
    if let Some((lib, day)) = fake {
        // `TZ`: libfaketime reads the time it is given as local time. The monotonic clock is moved
        // too (it still runs at its pace): with FAKETIME_DONT_FAKE_MONOTONIC, libfaketime 0.9.10
        // fails absolute `clock_nanosleep`s with EINVAL.
        cmd.env("LD_PRELOAD", lib)
            .env("TZ", "UTC")
            .env("FAKETIME", format!("@{day} 23:00:00"));
    }
    spawn_until(cmd, "listening on ")
}

/// SIGTERM, then waits for the collector to finish what it accepted and exit.
pub(crate) fn stop(mut p: Proc) -> Result<()> {
    let pid = p.0.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if p.0.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("the collector (pid {pid}) did not exit within 60 s of SIGTERM")
}

/// Sends requests `0..count` of `make` over `connections` connections; every one must get a 2xx.
pub(crate) fn send_all(
    addr: &str,
    connections: usize,
    count: u64,
    make: MakeRequest,
    what: &str,
) -> Result<()> {
    if count == 0 {
        return Ok(());
    }
    let r = run_load_upto(
        addr,
        connections,
        Duration::from_secs(3600),
        Some(count),
        make,
    )?;
    if r.errors > 0 || r.ok != count {
        bail!(
            "{what}: {} of {count} requests answered 2xx, {} not",
            r.ok,
            r.errors
        );
    }
    Ok(())
}

/// What the fill sent, to compare with what the store holds.
#[derive(Default)]
struct Sent {
    checks: u64,
    events: u64,
    batches: u64,
}

/// The collector's credentials for the fill.
struct Keys {
    /// (envelope path, `X-Sentry-Auth`) per project.
    projects: Vec<(String, String)>,
    api_key: String,
}

fn create_keys(url: &str) -> Result<Keys> {
    let mut projects = Vec::new();
    for name in PROJECTS {
        let p = super::durability::post(url, "/projects", json!({"name": name}))?;
        let key = p["keys"][0]["public_key"]
            .as_str()
            .context("a new project has a key")?;
        projects.push((
            format!("/api/{}/envelope/", p["id"]),
            format!("Sentry sentry_key={key}, sentry_version=7, sentry_client=beacon-bench/1"),
        ));
    }
    Ok(Keys {
        projects,
        api_key: super::mobile::create_key(url)?,
    })
}

/// The first microsecond of `day`.
pub(crate) fn day_start_us(day: NaiveDate) -> i64 {
    Utc.from_utc_datetime(&day.and_time(chrono::NaiveTime::MIN))
        .timestamp_micros()
}

struct Plan {
    servers: Arc<Vec<Server>>,
    issues: Vec<Issue>,
    /// Per day: (issue, server) of each event.
    events_by_day: Vec<Vec<(u32, u32)>>,
    trace_batches: u64,
    days: u32,
}

/// Sends day `k`'s checks, events and trace batches to the collector at `url`; `starts` is where
/// that day's trace batches may start (Unix µs).
fn fill_day(
    url: &str,
    plan: &Plan,
    keys: &Keys,
    k: u32,
    starts: std::ops::Range<i64>,
    sent: &mut Sent,
) -> Result<()> {
    let addr = url.trim_start_matches("http://").to_string();
    // Checks.
    let ids: Arc<Vec<u32>> = Arc::new(
        (0..plan.servers.len() as u32)
            .filter(|i| checks_on(&plan.servers[*i as usize], *i, k))
            .collect(),
    );
    let (servers, list) = (plan.servers.clone(), ids.clone());
    let make = super::gets(move |n| {
        let i = list[n as usize];
        check_query(&servers[i as usize], i, k)
    });
    send_all(&addr, 64, ids.len() as u64, make, "/security")?;
    sent.checks += ids.len() as u64;
    // Error events, one per envelope.
    let events: Arc<Vec<(usize, Bytes)>> = Arc::new(
        plan.events_by_day[k as usize]
            .iter()
            .enumerate()
            .map(|(e, (j, server))| {
                let issue = &plan.issues[*j as usize];
                let n = sent.events + e as u64;
                (
                    issue.project,
                    event_envelope(*j, issue, n, k, plan.days, *server),
                )
            })
            .collect(),
    );
    let projects = Arc::new(keys.projects.clone());
    let list = events.clone();
    let make: MakeRequest = Arc::new(move |n| {
        let (project, body) = &list[n as usize];
        let (path, auth) = &projects[*project];
        Request::post(path.as_str())
            .header("x-sentry-auth", auth.as_str())
            .header("content-type", "application/x-sentry-envelope")
            .body(Full::new(body.clone()))
            .expect("static request")
    });
    send_all(&addr, 32, events.len() as u64, make, "envelopes")?;
    sent.events += events.len() as u64;
    // Trace batches: an equal share per day.
    let batches = plan.trace_batches / u64::from(plan.days)
        + u64::from(u64::from(k) < plan.trace_batches % u64::from(plan.days));
    let bodies = super::mobile::bodies_between(batches as usize, 1000 + u64::from(k), starts);
    send_all(
        &addr,
        32,
        batches,
        super::mobile::make(bodies, keys.api_key.clone()),
        "/v1/mobile/metrics",
    )?;
    sent.batches += batches;
    Ok(())
}

/// Counts in the store: distinct servers, checks, issues, events, trace events.
fn stored(dir: &Path, pg: Option<&str>) -> Result<[i64; 5]> {
    const SQL: [&str; 5] = [
        "SELECT count(DISTINCT server_id) FROM checks",
        "SELECT count(*) FROM checks",
        "SELECT count(*) FROM issues",
        "SELECT count(*) FROM events",
        "SELECT count(*) FROM trace_events",
    ];
    let mut out = [0i64; 5];
    match pg {
        None => {
            let db = rusqlite::Connection::open_with_flags(
                dir.join("beacon.db"),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )?;
            for (o, sql) in out.iter_mut().zip(SQL) {
                *o = db.query_row(sql, [], |r| r.get(0))?;
            }
        }
        Some(db) => {
            out = beacon_testkit::block_on(async {
                let (client, conn) = tokio_postgres::connect(db, tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                let mut out = [0i64; 5];
                for (o, sql) in out.iter_mut().zip(SQL) {
                    *o = client.query_one(sql, &[]).await?.get(0);
                }
                Ok::<_, tokio_postgres::Error>(out)
            })?;
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The browser's side.

/// One keep-alive HTTP/1.1 connection that keeps cookies and asks for compressed answers.
struct Browser {
    addr: String,
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    cookies: Vec<(String, String)>,
}

struct Answer {
    status: u16,
    headers: hyper::HeaderMap,
    /// As it travelled (compressed when the server compressed it).
    body: Bytes,
    /// Bytes of the status line and headers.
    head_len: usize,
    elapsed: Duration,
}

impl Answer {
    fn wire_len(&self) -> usize {
        self.head_len + self.body.len()
    }

    fn encoding(&self) -> &str {
        self.headers
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("identity")
    }

    /// The body decompressed, as text.
    fn text(&self) -> Result<String> {
        use std::io::Read;
        let mut out = Vec::new();
        match self.encoding() {
            "gzip" => {
                flate2::read::GzDecoder::new(&self.body[..]).read_to_end(&mut out)?;
            }
            "br" => {
                brotli::Decompressor::new(&self.body[..], 4096).read_to_end(&mut out)?;
            }
            _ => out.extend_from_slice(&self.body),
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

impl Browser {
    async fn connect(addr: &str) -> Result<Browser> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Browser {
            addr: addr.to_string(),
            sender,
            cookies: Vec::new(),
        })
    }

    async fn request(&mut self, method: &str, path: &str, form: Option<String>) -> Result<Answer> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.as_str())
            .header("accept", "text/html,*/*")
            .header("accept-encoding", "gzip, br");
        if !self.cookies.is_empty() {
            let cookies: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req = req.header("cookie", cookies.join("; "));
        }
        let body = match form {
            Some(f) => {
                req = req.header("content-type", "application/x-www-form-urlencoded");
                Full::new(Bytes::from(f))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body)?;
        self.sender.ready().await?;
        let started = Instant::now();
        let resp = self.sender.send_request(req).await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        let elapsed = started.elapsed();
        // "HTTP/1.1 200 OK\r\n", each "name: value\r\n", the blank line.
        let head_len = 17
            + headers
                .iter()
                .map(|(k, v)| k.as_str().len() + 2 + v.len() + 2)
                .sum::<usize>()
            + 2;
        for v in headers.get_all("set-cookie") {
            let v = v.to_str().unwrap_or_default();
            let (pair, _) = v.split_once(';').unwrap_or((v, ""));
            if let Some((k, val)) = pair.split_once('=') {
                self.cookies.retain(|(name, _)| name != k);
                if !val.is_empty() && !v.contains("Max-Age=0") {
                    self.cookies.push((k.to_string(), val.to_string()));
                }
            }
        }
        Ok(Answer {
            status: status.as_u16(),
            headers,
            body,
            head_len,
            elapsed,
        })
    }

    async fn get(&mut self, path: &str) -> Result<Answer> {
        self.request("GET", path, None).await
    }
}

/// `s` as a form value (`application/x-www-form-urlencoded`).
fn form_value(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of the hidden input `name` in a page.
fn hidden(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let rest = &page[page.find(&marker)? + marker.len()..];
    Some(rest[..rest.find('"')?].to_string())
}

/// The same-origin URLs a page makes a browser load: `<link href>`, `<script src>`, `<img src>`
/// (`data:` and other sites' URLs aside).
fn subresources(page: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (tag, attr) in [
        ("<link", "href=\""),
        ("<script", "src=\""),
        ("<img", "src=\""),
    ] {
        let mut rest = page;
        while let Some(at) = rest.find(tag) {
            rest = &rest[at + tag.len()..];
            let end = rest.find('>').unwrap_or(rest.len());
            let element = &rest[..end];
            if let Some(a) = element.find(attr) {
                let v = &element[a + attr.len()..];
                let v = &v[..v.find('"').unwrap_or(v.len())];
                if v.starts_with('/') && !v.starts_with("//") && !out.iter().any(|o| o == v) {
                    out.push(v.replace("&amp;", "&"));
                }
            }
        }
    }
    out
}

/// The buckets of the request-duration histogram of `route` (GET, 200): upper bound → count.
fn duration_buckets(metrics: &str, route: &str) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    for line in metrics.lines().filter(|l| l.starts_with(DURATION_METRIC)) {
        let (Some(open), Some(close)) = (line.find('{'), line.rfind('}')) else {
            continue;
        };
        let labels = &line[open + 1..close];
        let label = |name: &str| {
            let key = format!("{name}=\"");
            let at = labels.find(&key)? + key.len();
            labels[at..].split('"').next()
        };
        if label("route") != Some(route)
            || label("method") != Some("GET")
            || label("status") != Some("200")
        {
            continue;
        }
        let le = match label("le") {
            Some("+Inf") => u64::MAX,
            Some(v) => (v.parse::<f64>().unwrap_or(f64::MAX) * 1e6).round() as u64,
            None => continue,
        };
        let count = line[close + 1..].trim().parse::<f64>().unwrap_or(0.0) as u64;
        out.insert(le, count);
    }
    out
}

/// The route of a dashboard path, as the metric labels it.
fn route_of(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    for prefix in ["/ui/issues/", "/ui/bulletins/"] {
        if let Some(rest) = path.strip_prefix(prefix)
            && !rest.is_empty()
        {
            return format!("{prefix}{{id}}");
        }
    }
    path.to_string()
}

/// One page's figures.
struct PageResult {
    path: String,
    p50: f64,
    p95: f64,
    max: f64,
    bytes: usize,
    encoding: String,
    /// From the collector's histogram: requests counted and the bucket holding their p95 (µs).
    metric: Option<(u64, u64)>,
}

async fn measure_page(b: &mut Browser, path: &str, n: usize) -> Result<PageResult> {
    for _ in 0..WARM_UPS {
        let a = b.get(path).await?;
        if a.status != 200 {
            bail!(
                "{path}: status {} ({})",
                a.status,
                a.text()?.chars().take(300).collect::<String>()
            );
        }
    }
    let route = route_of(path);
    let before = duration_buckets(&b.get("/metrics").await?.text()?, &route);
    let mut times = Vec::with_capacity(n);
    let mut last = None;
    for _ in 0..n {
        let a = b.get(path).await?;
        if a.status != 200 {
            bail!("{path}: status {}", a.status);
        }
        times.push(a.elapsed.as_secs_f64() * 1000.0);
        last = Some(a);
    }
    let after = duration_buckets(&b.get("/metrics").await?.text()?, &route);
    let delta: Vec<(u64, u64)> = after
        .iter()
        .map(|(le, c)| (*le, c - before.get(le).copied().unwrap_or(0)))
        .collect();
    let total = delta.last().map(|(_, c)| *c).unwrap_or(0);
    let metric = (total > 0).then(|| {
        let want = (total as f64 * 0.95).ceil() as u64;
        let le = delta
            .iter()
            .find(|(_, c)| *c >= want)
            .map(|(le, _)| *le)
            .unwrap_or(u64::MAX);
        (total, le)
    });
    times.sort_by(f64::total_cmp);
    let last = last.context("at least one request")?;
    Ok(PageResult {
        path: path.to_string(),
        p50: super::mobile::quantile(&times, 0.5),
        p95: super::mobile::quantile(&times, 0.95),
        max: times[times.len() - 1],
        bytes: last.body.len(),
        encoding: last.encoding().to_string(),
        metric,
    })
}

/// A first visit: a fresh client opens `/ui/`, is sent to the login page, logs in, gets the
/// overview and loads what the two pages reference. Returns the client (logged in), each request
/// with its bytes on the wire, and the bodies' bytes.
async fn first_visit(addr: &str) -> Result<(Browser, Vec<(String, u16, String, usize)>, usize)> {
    let mut b = Browser::connect(addr).await?;
    let mut log = Vec::new();
    let mut bodies = 0;
    let mut note = |what: &str, a: &Answer, log: &mut Vec<(String, u16, String, usize)>| {
        bodies += a.body.len();
        log.push((
            what.to_string(),
            a.status,
            a.encoding().to_string(),
            a.wire_len(),
        ));
    };
    let a = b.get("/ui/").await?;
    note("GET /ui/ (no session: redirect)", &a, &mut log);
    let a = b.get("/ui/login").await?;
    if a.status != 200 {
        bail!("GET /ui/login: status {}", a.status);
    }
    note("GET /ui/login", &a, &mut log);
    let login = a.text()?;
    let form_token = hidden(&login, "form_token").context("no form_token on the login page")?;
    let form = format!(
        "token={}&form_token={}",
        form_value(TOKEN),
        form_value(&form_token)
    );
    let a = b.request("POST", "/ui/login", Some(form)).await?;
    note("POST /ui/login", &a, &mut log);
    if a.status != 303 || !b.cookies.iter().any(|(k, _)| k == "beacon_session") {
        bail!("the login failed: status {}", a.status);
    }
    let a = b.get("/ui/").await?;
    if a.status != 200 {
        bail!("GET /ui/ after the login: status {}", a.status);
    }
    note("GET /ui/", &a, &mut log);
    let overview = a.text()?;
    let mut refs = subresources(&login);
    for r in subresources(&overview) {
        if !refs.contains(&r) {
            refs.push(r);
        }
    }
    for r in refs {
        let a = b.get(&r).await?;
        if a.status != 200 {
            bail!("GET {r} (referenced by a page): status {}", a.status);
        }
        note(&format!("GET {r}"), &a, &mut log);
    }
    Ok((b, log, bodies))
}

// ---------------------------------------------------------------------------------------------

pub fn run(o: Options) -> Result<bool> {
    let beacon = super::beacon_binary(o.beacon.clone())?;
    let days = o.days.max(1);
    let faketime = if days > 1 {
        Some(find_libfaketime(o.libfaketime.clone())?)
    } else {
        None
    };
    let tmp;
    let dir: PathBuf = match &o.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    if o.no_fill && o.postgres_db.is_none() && (o.data_dir.is_none() || o.postgres.is_some()) {
        bail!("--no-fill measures the SQLite store of --data-dir or the database of --postgres-db");
    }
    let created = match &o.postgres {
        Some(admin) => Some(BenchDb::create(admin).context("postgres")?),
        None => None,
    };
    let pg_url: Option<String> = o
        .postgres_db
        .clone()
        .or_else(|| created.as_ref().map(|d| d.url.clone()));
    let backend = if pg_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let today = Utc::now().date_naive();
    let first = today - Days::new(u64::from(days - 1));
    let mut rng = StdRng::seed_from_u64(13);
    let servers = Arc::new(fleet(o.servers.max(1), days, &mut rng));
    let issue_plan = issues(o.issues, days, &mut rng);
    let mut events_by_day = vec![Vec::new(); days as usize];
    for (j, issue) in issue_plan.iter().enumerate() {
        for d in &issue.days {
            events_by_day[*d as usize].push((j as u32, rng.random_range(0..o.servers.max(1))));
        }
    }
    let plan = Plan {
        servers,
        issues: issue_plan,
        events_by_day,
        trace_batches: o.trace_events / 100,
        days,
    };
    if o.no_fill {
        println!(
            "beacon-bench ui ({backend}): measuring the store in {}",
            dir.display()
        );
    } else {
        println!(
            "beacon-bench ui ({backend}): filling {} servers, {} issues ({} events), {} trace events over {days} days ({first} to {today})",
            o.servers,
            o.issues,
            plan.events_by_day.iter().map(Vec::len).sum::<usize>(),
            plan.trace_batches * 100
        );
    }

    // The days before today, each by a collector whose clock is on that day.
    let fill_started = Instant::now();
    let mut sent = Sent::default();
    let mut keys = None;
    let pg_url = pg_url.as_deref();
    for k in (0..days - 1).filter(|_| !o.no_fill) {
        let day = first + Days::new(u64::from(k));
        let t = Instant::now();
        let lib = faketime.as_deref().context("libfaketime")?;
        let (proc, url) = collector(&beacon, &dir, pg_url, Some((lib, day)))?;
        let clock = super::mobile::admin_get(&url, "/reports/growth")?["to"].clone();
        if clock != json!(day.to_string()) {
            bail!(
                "libfaketime did not move the collector's clock: its today is {clock}, not {day}"
            );
        }
        if keys.is_none() {
            keys = Some(create_keys(&url)?);
        }
        let start = day_start_us(day);
        let before = (sent.checks, sent.events, sent.batches);
        fill_day(
            &url,
            &plan,
            keys.as_ref().context("keys")?,
            k,
            start..start + 22 * 3_600_000_000,
            &mut sent,
        )?;
        stop(proc)?;
        println!(
            "  {day}: {} checks, {} events, {} trace events in {:.1} s",
            sent.checks - before.0,
            sent.events - before.1,
            (sent.batches - before.2) * 100,
            t.elapsed().as_secs_f64()
        );
    }
    // Today, by the collector that is then measured.
    let (proc, url) = collector(&beacon, &dir, pg_url, None)?;
    let addr = url.trim_start_matches("http://").to_string();
    if keys.is_none() && !o.no_fill {
        keys = Some(create_keys(&url)?);
    }
    let now_us = Utc::now().timestamp_micros();
    let start = day_start_us(today).min(now_us - 6 * 3_600_000_000);
    let t = Instant::now();
    let before = (sent.checks, sent.events, sent.batches);
    if !o.no_fill {
        fill_day(
            &url,
            &plan,
            keys.as_ref().context("keys")?,
            days - 1,
            start..now_us - 700_000_000,
            &mut sent,
        )?;
        println!(
            "  {today}: {} checks, {} events, {} trace events in {:.1} s",
            sent.checks - before.0,
            sent.events - before.1,
            (sent.batches - before.2) * 100,
            t.elapsed().as_secs_f64()
        );
    }
    let bulletins = [
        (
            "BSA-2026-0101",
            "Remote code execution in file previews",
            "critical",
            ">=9.5.0, <10.1.3",
            "10.1.3",
            20u64,
        ),
        (
            "BSA-2026-0102",
            "Session fixation in SAML login",
            "high",
            ">=10.0.0, <10.3.1",
            "10.3.1",
            9,
        ),
        (
            "BSA-2026-0103",
            "Information disclosure in the plugin API",
            "medium",
            "<10.4.0",
            "10.4.0",
            2,
        ),
    ];
    for (id, title, severity, affected, fixed_in, ago) in
        bulletins.into_iter().filter(|_| !o.no_fill)
    {
        let published = (today - Days::new(ago))
            .and_hms_opt(9, 0, 0)
            .context("09:00")?
            .and_utc();
        super::durability::post(
            &url,
            "/bulletins",
            json!({"id": id, "title": title, "severity": severity, "affected": affected,
                   "fixed_in": fixed_in, "body": format!("<p>Upgrade to {fixed_in} or later.</p>"),
                   "published_at": published.to_rfc3339()}),
        )?;
    }
    let filled = if o.no_fill {
        "not filled (--no-fill)".to_string()
    } else {
        format!("filled in {:.0} s", fill_started.elapsed().as_secs_f64())
    };
    // Let the background fold of trace events catch up, as a collector's would between visits.
    std::thread::sleep(Duration::from_secs(5));
    let [servers, checks, issues, events, traces] = stored(&dir, pg_url)?;
    println!(
        "{filled}; stored: {servers} servers, {checks} checks, {issues} issues, {events} events, {traces} trace events \
         (sent {} checks, {} events, {} trace events)",
        sent.checks,
        sent.events,
        sent.batches * 100
    );
    if !o.no_fill
        && (servers != i64::from(o.servers.max(1))
            || checks as u64 != sent.checks
            || issues != i64::from(o.issues)
            || events as u64 != sent.events
            || traces as u64 != sent.batches * 100)
    {
        bail!("the store does not hold what the fill sent");
    }

    // The pages.
    let top = super::mobile::admin_get(&url, "/issues?sort=count&limit=1")?;
    let newest = super::mobile::admin_get(&url, "/issues?sort=last-seen&limit=1")?;
    let mut pages: Vec<String> = vec!["/ui/".into()];
    for by in ["version", "edition", "os", "db", "dbv"] {
        pages.push(format!("/ui/fleet?by={by}"));
    }
    pages.push(format!("/ui/fleet?by=version&from={first}&to={today}"));
    pages.push("/ui/growth".into());
    pages.push("/ui/bulletins".into());
    for (id, ..) in bulletins {
        pages.push(format!("/ui/bulletins/{id}"));
    }
    for sort in ["last-seen", "count"] {
        pages.push(format!("/ui/issues?sort={sort}"));
    }
    pages.push("/ui/issues?project=1&environment=production&level=error&sort=count".into());
    for i in [&top, &newest] {
        if let Some(id) = i[0]["id"].as_i64()
            && !pages.contains(&format!("/ui/issues/{id}"))
        {
            pages.push(format!("/ui/issues/{id}"));
        }
    }
    pages.push("/ui/releases".into());
    pages.push("/ui/perf".into());
    pages.push("/ui/perf?trace=channel:switch_loaded&by=app_version".into());
    pages.push(format!(
        "/ui/perf?trace={}&by=model",
        beacon_wire::mobile::TraceName::ALL[3].as_str()
    ));
    pages.push("/ui/regressions".into());
    pages.push("/ui/settings".into());

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let requests = o.requests.max(1);
    let (log, bodies, results) = rt.block_on(async {
        let (mut b, log, bodies) = first_visit(&addr).await?;
        let mut results = Vec::new();
        for p in &pages {
            results.push(measure_page(&mut b, p, requests).await?);
        }
        Ok::<_, anyhow::Error>((log, bodies, results))
    })?;
    let rss = peak_rss_kb(proc.0.id());
    drop(proc);

    println!(
        "\nServer time per page: {requests} requests each after {WARM_UPS} warm-ups, one at a time on one keep-alive \
         connection, `Accept-Encoding: gzip, br`; time to the last byte on loopback. {servers} servers ({checks} checks \
         over {days} days), {issues} issues ({events} events), {traces} trace events; {backend}; collector peak RSS {rss} kB.\n"
    );
    println!(
        "| page | p50 ms | p95 ms | max ms | bytes (compressed) | collector's histogram: p95 within |"
    );
    println!("|---|---|---|---|---|---|");
    let mut pass = true;
    for r in &results {
        let met = r.p95 <= P95_TARGET_MS;
        pass &= met;
        println!(
            "| `{}` | {:.2} | {}{:.2}{} | {:.2} | {} ({}) | {} |",
            r.path,
            r.p50,
            if met { "" } else { "**" },
            r.p95,
            if met { "" } else { "**" },
            r.max,
            r.bytes,
            r.encoding,
            match r.metric {
                Some((n, u64::MAX)) => format!("> 10 s (n={n})"),
                Some((n, le)) => format!("≤ {} ms (n={n})", le as f64 / 1000.0),
                None => "-".into(),
            }
        );
    }
    let wire: usize = log.iter().map(|l| l.3).sum();
    println!(
        "\nFirst visit (a fresh client, no cache; bytes as they travelled, headers included):\n"
    );
    println!("| request | status | encoding | bytes |");
    println!("|---|---|---|---|");
    for (what, status, encoding, bytes) in &log {
        println!("| {what} | {status} | {encoding} | {bytes} |");
    }
    println!("| total | | | {wire} ({bodies} of it bodies) |");
    let worst = results
        .iter()
        .max_by(|a, b| a.p95.total_cmp(&b.p95))
        .context("pages")?;
    let slow: Vec<String> = results
        .iter()
        .filter(|r| r.p95 > P95_TARGET_MS)
        .map(|r| format!("`{}` {:.1} ms", r.path, r.p95))
        .collect();
    let visit_ok = wire <= FIRST_VISIT_TARGET_BYTES;
    println!(
        "\nverdict: p95 <= {P95_TARGET_MS} ms on every page: {} (worst: `{}` {:.2} ms){}; first visit <= 100 KB: {} ({wire} bytes)",
        if slow.is_empty() { "met" } else { "NOT met" },
        worst.path,
        worst.p95,
        if slow.is_empty() {
            String::new()
        } else {
            format!("; over: {}", slow.join(", "))
        },
        if visit_ok { "met" } else { "NOT met" },
    );
    pass &= visit_ok;
    println!("{}", if pass { "PASS" } else { "FAIL" });
    Ok(pass)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subresources_are_the_same_origin_urls_a_page_loads() {
        let page = r#"<html><head><link rel="stylesheet" href="/ui/static/style.ab.css"><link rel="icon" href="data:,"></head>
            <body><img src="/ui/static/logo.png" alt=""><img src="https://elsewhere.example/x.png"><script src="/ui/app.js"></script>
            <a href="/ui/fleet">fleet</a><link href="/ui/static/style.ab.css"></body></html>"#;
        assert_eq!(
            subresources(page),
            [
                "/ui/static/style.ab.css",
                "/ui/app.js",
                "/ui/static/logo.png"
            ]
        );
    }

    #[test]
    fn histogram_buckets_of_one_route() {
        let text = "# TYPE beacon_http_request_duration_seconds histogram\n\
            beacon_http_request_duration_seconds_bucket{route=\"/ui/fleet\",method=\"GET\",status=\"200\",le=\"0.005\"} 3\n\
            beacon_http_request_duration_seconds_bucket{route=\"/ui/fleet\",method=\"GET\",status=\"200\",le=\"+Inf\"} 5\n\
            beacon_http_request_duration_seconds_bucket{route=\"/ui/fleet\",method=\"GET\",status=\"303\",le=\"+Inf\"} 7\n\
            beacon_http_request_duration_seconds_bucket{route=\"/ui/growth\",method=\"GET\",status=\"200\",le=\"+Inf\"} 9\n";
        let b = duration_buckets(text, "/ui/fleet");
        assert_eq!(
            b.into_iter().collect::<Vec<_>>(),
            [(5_000, 3), (u64::MAX, 5)]
        );
        assert_eq!(route_of("/ui/issues/17"), "/ui/issues/{id}");
        assert_eq!(route_of("/ui/issues?sort=count"), "/ui/issues");
        assert_eq!(route_of("/ui/bulletins/BSA-1"), "/ui/bulletins/{id}");
    }

    #[test]
    fn every_server_checks_in_on_its_first_day_and_never_outside_its_days() {
        let mut rng = StdRng::seed_from_u64(1);
        let f = fleet(2_000, 30, &mut rng);
        for (i, s) in f.iter().enumerate() {
            let on: Vec<u32> = (0..30).filter(|d| checks_on(s, i as u32, *d)).collect();
            assert_eq!(on.first(), Some(&s.first_day));
            assert!(on.iter().all(|d| *d <= s.last_day));
            assert_eq!(server_id(i as u32).len(), 26);
        }
    }
}
