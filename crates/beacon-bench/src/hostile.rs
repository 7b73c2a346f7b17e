//! Hostile inputs: malformed or malicious requests against the three ingest endpoints and the admin
//! API, each with the status it must get and what the error body must name. The requests are raw
//! HTTP/1.1 bytes sent over a plain TCP socket ([`send`]), so nothing between the test and the
//! collector normalises them (percent-encoding, header bytes, lying lengths go out as written).
//!
//! Every case is refused by a collector that works as documented: nothing it sends is stored, except
//! a dead letter on the channels that keep one ([`Case::dead_letter`]).

use beacon_wire::admin::ErrorBody;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

/// What the cases need to know about the collector they are sent to.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port`.
    pub addr: String,
    /// A Sentry project and one of its (enabled) public keys.
    pub project_id: i64,
    pub dsn_key: String,
    /// A mobile API key (not revoked).
    pub api_key: String,
    pub admin_token: String,
}

/// One hostile request and the answer it must get.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    /// The whole request as sent: request line, headers, body.
    pub request: Vec<u8>,
    /// Acceptable statuses (usually one).
    pub expect: &'static [u16],
    /// A word the error body's `message` or `field` must contain (case-insensitive): what is wrong.
    pub mention: Option<&'static str>,
    /// The channel whose dead letters may grow by this request (`security`, `errors`, `mobile`).
    pub dead_letter: Option<&'static str>,
}

/// An answer as read off the socket.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A request: `method target`, the given headers, `Host`, `Connection: close` and (unless the
/// headers set it or `Transfer-Encoding`) a true `Content-Length` for a non-empty body or a POST.
pub fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nhost: beacon\r\nconnection: close\r\n");
    let sets = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !sets("content-length")
        && !sets("transfer-encoding")
        && (!body.is_empty() || matches!(method, "POST" | "PATCH" | "PUT"))
    {
        out.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Sends `raw` on a new connection to `addr` and reads the answer until the server closes (the
/// requests say `Connection: close`) or `timeout` passes. The body is written from a second thread
/// while the answer is read, so a server that answers before reading everything is still heard.
pub fn send(addr: &str, raw: &[u8], timeout: Duration) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut writer = stream.try_clone()?;
    let raw = raw.to_vec();
    let write = std::thread::spawn(move || {
        // The server may answer and close before it has read the whole body: not an error here.
        let _ = writer.write_all(&raw);
        let _ = writer.flush();
    });
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if Instant::now() > deadline {
            break;
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if complete(&buf) {
                    break;
                }
            }
            // A reset after the answer arrived (the server closed with our body unread).
            Err(e) if !buf.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => {
                let _ = stream.shutdown(std::net::Shutdown::Both);
                let _ = write.join();
                return Err(e);
            }
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = write.join();
    parse_reply(&buf).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "no complete http answer ({} bytes: {:?})",
                buf.len(),
                String::from_utf8_lossy(&buf[..buf.len().min(200)])
            ),
        )
    })
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Whether `buf` holds a whole answer (by `Content-Length`, or the last chunk).
fn complete(buf: &[u8]) -> bool {
    let Some(end) = head_end(buf) else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    // 1xx answers (100 Continue) are followed by the real one.
    if head.starts_with("http/1.1 1") {
        return complete(&buf[end..]);
    }
    if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return buf.len() >= end + len;
    }
    if head.contains("transfer-encoding: chunked") {
        return buf[end..].ends_with(b"0\r\n\r\n");
    }
    false
}

fn parse_reply(buf: &[u8]) -> Option<Reply> {
    let end = head_end(buf)?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    if (100..200).contains(&status) {
        return parse_reply(&buf[end..]);
    }
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &buf[end..];
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    let body = if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        rest[..len.min(rest.len())].to_vec()
    } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Some(Reply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// Judges `reply` against `case`: the status, and a JSON [`ErrorBody`] naming the problem.
pub fn judge(case: &Case, reply: &Reply) -> Result<(), String> {
    if !case.expect.contains(&reply.status) {
        return Err(format!(
            "status {} (expected {:?}); body {:?}",
            reply.status,
            case.expect,
            String::from_utf8_lossy(&reply.body[..reply.body.len().min(300)])
        ));
    }
    let body: ErrorBody = serde_json::from_slice(&reply.body).map_err(|e| {
        format!(
            "status {} but the body is not the JSON error body ({e}): {:?}",
            reply.status,
            String::from_utf8_lossy(&reply.body[..reply.body.len().min(300)])
        )
    })?;
    if body.error.trim().is_empty() || body.message.trim().is_empty() {
        return Err(format!("empty error code or message: {body:?}"));
    }
    if let Some(word) = case.mention {
        let said = format!(
            "{} {}",
            body.message,
            body.field.clone().unwrap_or_default()
        )
        .to_lowercase();
        if !said.contains(&word.to_lowercase()) {
            return Err(format!("the error does not name {word:?}: {body:?}"));
        }
    }
    Ok(())
}

/// A valid `/security` query with some keys replaced (`Some`) or left out (`None`).
fn check_query(over: &[(&str, Option<&str>)]) -> String {
    let base = [
        ("auc", "5"),
        ("b", "5.37.0.1"),
        ("be", "false"),
        ("db", "postgres"),
        ("id", "hostilehostilehostilehost1"),
        ("os", "linux"),
        ("tc", "1"),
        ("uc", "9"),
        ("ut", "0"),
    ];
    let mut pairs = Vec::new();
    for (k, v) in base {
        match over.iter().find(|(o, _)| *o == k) {
            Some((_, Some(v))) => pairs.push(format!("{k}={v}")),
            Some((_, None)) => {}
            None => pairs.push(format!("{k}={v}")),
        }
    }
    for (k, v) in over {
        if !base.iter().any(|(b, _)| b == k)
            && let Some(v) = v
        {
            pairs.push(format!("{k}={v}"));
        }
    }
    format!("/security?{}", pairs.join("&"))
}

/// A small valid Sentry event (its id fixed, so repeats are duplicates, never new data).
pub fn small_event() -> String {
    r#"{"event_id":"0badc0de0badc0de0badc0de0badc0de","level":"error","message":"hostile"}"#.into()
}

/// An envelope: header line, then each item's header line and payload.
pub fn envelope(header: &str, items: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = header.as_bytes().to_vec();
    out.push(b'\n');
    for (h, p) in items {
        out.extend_from_slice(h.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(p);
        out.push(b'\n');
    }
    out
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(data).expect("gzip to memory");
    gz.finish().expect("gzip to memory")
}

/// At least `n` zero bytes compressed by `encoding`, built cheaply: gzip members and zstd frames
/// of 1 MiB each in a row (one stream to a decoder), deflate and brotli at their fastest setting.
fn bomb(encoding: &str, n: usize) -> Vec<u8> {
    let mib = vec![0u8; 1 << 20];
    let count = n.div_ceil(mib.len());
    let feed = |w: &mut dyn Write| {
        for _ in 0..count {
            w.write_all(&mib).expect("compress to memory");
        }
    };
    match encoding {
        "gzip" => gzip(&mib).repeat(count),
        "zstd" => zstd::encode_all(mib.as_slice(), 1)
            .expect("zstd")
            .repeat(count),
        "deflate" => {
            let mut w = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            feed(&mut w);
            w.finish().expect("zlib")
        }
        "br" => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 64 * 1024, 1, 22);
                feed(&mut w);
            }
            out
        }
        other => panic!("no bomb for {other}"),
    }
}

/// The event of defect 1: ~0.8 MB of JSON (36,000 `{{default}}` fingerprint parts, 71 exceptions of
/// 250 frames each), a few KB gzipped. Grouping that expands every part into every frame needs
/// gigabytes.
pub fn fingerprint_bomb_event() -> Vec<u8> {
    let frames = vec![r#"{"function":"f"}"#; 250].join(",");
    let exception = format!(r#"{{"type":"E","value":"v","stacktrace":{{"frames":[{frames}]}}}}"#);
    let exceptions = vec![exception.as_str(); 71].join(",");
    let parts = vec![r#""{{default}}""#; 36_000].join(",");
    format!(
        r#"{{"event_id":"fee1dead0000000000000000000000aa","level":"error","fingerprint":[{parts}],"exception":{{"values":[{exceptions}]}}}}"#
    )
    .into_bytes()
}

/// A mobile trace event; `dur`, `ts` as given (raw JSON).
fn trace_event(ts: &str, dur: &str) -> String {
    format!(r#"{{"name":"team:switch","ph":"X","ts":{ts},"dur":{dur},"pid":1,"tid":1}}"#)
}

fn mobile_body(events: &[String]) -> Vec<u8> {
    format!(
        r#"{{"data":{{"trace_events":[{}],"device_info":{{"version":"2.20.0","system_name":"Android","device_unique_id":"hostile-device"}}}}}}"#,
        events.join(",")
    )
    .into_bytes()
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

/// Every hostile case for `t`. Building them costs a second or so (the compression bombs).
pub fn cases(t: &Target) -> Vec<Case> {
    let mut out = Vec::new();
    let mut add = |name: &str,
                   request: Vec<u8>,
                   expect: &'static [u16],
                   mention: Option<&'static str>,
                   dead_letter: Option<&'static str>| {
        out.push(Case {
            name: name.to_string(),
            request,
            expect,
            mention,
            dead_letter,
        })
    };
    let get = |target: &str| request("GET", target, &[], b"");
    let sec =
        |name: &str, over: &[(&str, Option<&str>)]| (name.to_string(), get(&check_query(over)));
    const BAD: &[u16] = &[400];
    const UNAUTH: &[u16] = &[401];
    const FORBID: &[u16] = &[403];
    const MISSING: &[u16] = &[404];
    const METHOD: &[u16] = &[405];
    const LARGE: &[u16] = &[413];
    let dl_sec = Some("security");
    let dl_err = Some("errors");
    let dl_mob = Some("mobile");

    // ---- GET /security -------------------------------------------------------------------------
    for (name, over, mention) in [
        ("security: id missing", vec![("id", None)], "id"),
        ("security: id too short", vec![("id", Some("abc"))], "id"),
        (
            "security: id with upper case",
            vec![("id", Some("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))],
            "id",
        ),
        (
            "security: bad percent-encoding",
            vec![("id", Some("%zzhostilehostilehostile1"))],
            "id",
        ),
        (
            "security: percent-encoded NUL in id",
            vec![("id", Some("%00ostilehostilehostilehos"))],
            "id",
        ),
        (
            "security: percent-encoded invalid UTF-8",
            vec![("os", Some("%ff%fe%fd"))],
            "os",
        ),
        ("security: version X.Y only", vec![("b", Some("5.37"))], "b"),
        (
            "security: version with huge numbers",
            vec![("b", Some("99999999999999999999999.0.0"))],
            "b",
        ),
        (
            "security: version with SQL",
            vec![("b", Some("5.37.0'%3B%20DROP%20TABLE%20checks%3B--"))],
            "b",
        ),
        (
            "security: be not a boolean",
            vec![("be", Some("maybe"))],
            "be",
        ),
        (
            "security: negative user count",
            vec![("uc", Some("-1"))],
            "uc",
        ),
        (
            "security: user count past u64",
            vec![("uc", Some("99999999999999999999999999"))],
            "uc",
        ),
        ("security: team count NaN", vec![("tc", Some("NaN"))], "tc"),
        (
            "security: last check Infinity",
            vec![("lc", Some("Infinity"))],
            "lc",
        ),
        ("security: ut = 2", vec![("ut", Some("2"))], "ut"),
        (
            "security: db with SQL injection",
            vec![("db", Some("postgres'%3BDROP%20TABLE%20checks%3B--"))],
            "db",
        ),
        (
            "security: dbv over 64 bytes",
            vec![("dbv", Some(&"9".repeat(65)))],
            "dbv",
        ),
        (
            "security: dbv with a NUL",
            vec![("dbv", Some("15%002"))],
            "dbv",
        ),
        (
            "security: os with a newline",
            vec![("os", Some("linux%0D%0AX-Injected:%201"))],
            "os",
        ),
        (
            "security: id given twice",
            vec![(
                "id",
                Some("hostilehostilehostilehost1&id=hostilehostilehostilehost2"),
            )],
            "id",
        ),
    ] {
        let (name, req) = sec(name, &over);
        add(&name, req, BAD, Some(mention), dl_sec);
    }
    add(
        "security: empty query",
        get("/security"),
        BAD,
        Some("id"),
        dl_sec,
    );
    add(
        "security: query over 2048 bytes",
        get(&check_query(&[("zz", Some(&"a".repeat(4096)))])),
        BAD,
        Some("query"),
        dl_sec,
    );
    add(
        "security: POST instead of GET",
        request("POST", &check_query(&[]), &[], b"{}"),
        METHOD,
        None,
        None,
    );

    // ---- GET /bulletins/{id} -----------------------------------------------------------------------
    for (name, path) in [
        (
            "bulletin: path traversal",
            "/bulletins/..%2F..%2F..%2Fetc%2Fpasswd",
        ),
        ("bulletin: NUL id", "/bulletins/%00"),
        ("bulletin: SQL id", "/bulletins/x'%20OR%20'1'%3D'1"),
    ] {
        add(name, get(path), MISSING, None, None);
    }

    // ---- POST /api/{project_id}/store/ and /envelope/ ----------------------------------------------
    let p = t.project_id;
    let store = format!("/api/{p}/store/");
    let env_path = format!("/api/{p}/envelope/");
    let auth_value = format!("Sentry sentry_key={}, sentry_version=7", t.dsn_key);
    let auth: &[(&str, &str)] = &[("x-sentry-auth", auth_value.as_str())];
    let post =
        |path: &str, headers: &[(&str, &str)], body: &[u8]| request("POST", path, headers, body);
    let ev = small_event().into_bytes();
    add(
        "store: no credentials",
        post(&store, &[], &ev),
        UNAUTH,
        Some("sentry_key"),
        None,
    );
    add(
        "store: no credentials, fingerprint bomb (defect 1)",
        post(
            &store,
            &[("content-encoding", "gzip")],
            &gzip(&fingerprint_bomb_event()),
        ),
        UNAUTH,
        Some("sentry_key"),
        None,
    );
    add(
        "store: no credentials, gzip bomb",
        post(
            &store,
            &[("content-encoding", "gzip")],
            &bomb("gzip", 101 << 20),
        ),
        UNAUTH,
        Some("sentry_key"),
        None,
    );
    let other_key = "0123456789abcdef0123456789abcdef";
    let conflicting = format!("{store}?sentry_key={other_key}");
    add(
        "store: two different keys",
        post(&conflicting, auth, &ev),
        UNAUTH,
        Some("conflicting"),
        None,
    );
    add(
        "store: malformed X-Sentry-Auth",
        post(&store, &[("x-sentry-auth", "Sentry garbage")], &ev),
        UNAUTH,
        None,
        None,
    );
    let unknown = format!("Sentry sentry_key={other_key}, sentry_version=7");
    add(
        "store: unknown key",
        post(&store, &[("x-sentry-auth", unknown.as_str())], &ev),
        FORBID,
        Some("key"),
        None,
    );
    add(
        "store: key of another project",
        post(&format!("/api/{}/store/", p + 1000), auth, &ev),
        FORBID,
        Some("project"),
        None,
    );
    add(
        "store: SQL in sentry_key",
        post(&format!("{store}?sentry_key=x'%20OR%20'1'%3D'1"), &[], &ev),
        FORBID,
        Some("key"),
        None,
    );
    add(
        "store: project id not a number",
        post("/api/abc/store/", auth, &ev),
        BAD,
        Some("project"),
        None,
    );
    add(
        "store: project id past u64",
        post("/api/99999999999999999999999/store/", auth, &ev),
        BAD,
        Some("project"),
        None,
    );
    add(
        "store: GET instead of POST",
        request("GET", &store, auth, b""),
        METHOD,
        None,
        None,
    );
    add(
        "store: empty body",
        post(&store, auth, b""),
        BAD,
        None,
        dl_err,
    );
    add(
        "store: not JSON",
        post(&store, auth, b"this is not json"),
        BAD,
        Some("json"),
        dl_err,
    );
    add(
        "store: NUL bytes",
        post(&store, auth, &[0u8; 64]),
        BAD,
        None,
        dl_err,
    );
    add(
        "store: invalid UTF-8",
        post(&store, auth, b"{\"message\":\"\xff\xfe\xfd\"}"),
        BAD,
        None,
        dl_err,
    );
    add(
        "store: 100k nested arrays",
        post(&store, auth, "[".repeat(100_000).as_bytes()),
        BAD,
        None,
        dl_err,
    );
    let deep_field = format!(
        r#"{{"event_id":"0badc0de0badc0de0badc0de0badc0df","extra":{{"x":{}}}}}"#,
        "[".repeat(100_000)
    );
    add(
        "store: 100k nested arrays inside extra",
        post(&store, auth, deep_field.as_bytes()),
        BAD,
        None,
        dl_err,
    );
    add(
        "store: NaN timestamp",
        post(
            &store,
            auth,
            br#"{"event_id":"0badc0de0badc0de0badc0de0badc0e0","timestamp":NaN}"#,
        ),
        BAD,
        None,
        dl_err,
    );
    add(
        "store: timestamp past every calendar",
        post(
            &store,
            auth,
            br#"{"event_id":"0badc0de0badc0de0badc0de0badc0e1","timestamp":1e300}"#,
        ),
        BAD,
        Some("timestamp"),
        dl_err,
    );
    add(
        "store: unknown level",
        post(
            &store,
            auth,
            br#"{"event_id":"0badc0de0badc0de0badc0de0badc0e2","level":"apocalyptic"}"#,
        ),
        BAD,
        Some("level"),
        dl_err,
    );
    add(
        "store: event_id not hex",
        post(
            &store,
            auth,
            br#"{"event_id":"'; DROP TABLE events; --","level":"error"}"#,
        ),
        BAD,
        Some("event_id"),
        dl_err,
    );
    let big = format!(
        r#"{{"event_id":"0badc0de0badc0de0badc0de0badc0e3","message":"{}"}}"#,
        "a".repeat(1 << 20)
    );
    add(
        "store: event of 1 MiB + 1",
        post(&store, auth, big.as_bytes()),
        LARGE,
        None,
        dl_err,
    );
    add(
        "store: gzip says, plain text is",
        post(&store, &[auth[0], ("content-encoding", "gzip")], &ev),
        BAD,
        Some("gzip"),
        None,
    );
    add(
        "store: unknown content-encoding",
        post(&store, &[auth[0], ("content-encoding", "snappy")], &ev),
        BAD,
        Some("content-encoding"),
        None,
    );
    let gz = gzip(&ev);
    add(
        "store: truncated gzip",
        post(
            &store,
            &[auth[0], ("content-encoding", "gzip")],
            &gz[..gz.len() / 2],
        ),
        BAD,
        Some("gzip"),
        None,
    );
    let mut zs = zstd::encode_all(ev.as_slice(), 3).expect("zstd");
    zs.truncate(zs.len() / 2);
    add(
        "store: truncated zstd",
        post(&store, &[auth[0], ("content-encoding", "zstd")], &zs),
        BAD,
        Some("zstd"),
        None,
    );
    for enc in ["gzip", "deflate", "zstd", "br"] {
        let name = format!("store: {enc} bomb (101 MiB of zeros)");
        add(
            &name,
            post(
                &store,
                &[auth[0], ("content-encoding", enc)],
                &bomb(enc, 101 << 20),
            ),
            LARGE,
            None,
            None,
        );
    }
    // Envelopes.
    let env_auth = auth;
    let ev_item = |payload: &[u8]| {
        (
            format!(r#"{{"type":"event","length":{}}}"#, payload.len()),
            payload.to_vec(),
        )
    };
    add(
        "envelope: no credentials anywhere",
        post(&env_path, &[], &envelope("{}", &[ev_item(&ev)])),
        UNAUTH,
        Some("sentry_key"),
        None,
    );
    add(
        "envelope: header dsn not a DSN",
        post(
            &env_path,
            &[],
            &envelope(r#"{"dsn":"not a dsn"}"#, &[ev_item(&ev)]),
        ),
        UNAUTH,
        Some("dsn"),
        None,
    );
    let unknown_dsn = format!(r#"{{"dsn":"http://{other_key}@beacon/{p}"}}"#);
    add(
        "envelope: header dsn with an unknown key",
        post(&env_path, &[], &envelope(&unknown_dsn, &[ev_item(&ev)])),
        FORBID,
        Some("key"),
        None,
    );
    add(
        "envelope: header dsn conflicts with X-Sentry-Auth",
        post(
            &env_path,
            env_auth,
            &envelope(&unknown_dsn, &[ev_item(&ev)]),
        ),
        UNAUTH,
        Some("conflicting"),
        None,
    );
    add(
        "envelope: header not JSON",
        post(&env_path, env_auth, b"not json\n{\"type\":\"event\"}\n{}\n"),
        BAD,
        Some("envelope"),
        None,
    );
    add(
        "envelope: item length longer than the body",
        post(
            &env_path,
            env_auth,
            &envelope(
                "{}",
                &[(r#"{"type":"event","length":100000}"#.into(), ev.clone())],
            ),
        ),
        BAD,
        Some("length"),
        None,
    );
    add(
        "envelope: item length past u64",
        post(
            &env_path,
            env_auth,
            &envelope(
                "{}",
                &[(
                    r#"{"type":"event","length":99999999999999999999999}"#.into(),
                    ev.clone(),
                )],
            ),
        ),
        BAD,
        None,
        None,
    );
    add(
        "envelope: negative item length",
        post(
            &env_path,
            env_auth,
            &envelope(
                "{}",
                &[(r#"{"type":"event","length":-5}"#.into(), ev.clone())],
            ),
        ),
        BAD,
        None,
        None,
    );
    add(
        "envelope: only an event that is not JSON",
        post(
            &env_path,
            env_auth,
            &envelope("{}", &[ev_item(b"{not json at all")]),
        ),
        BAD,
        Some("json"),
        dl_err,
    );
    add(
        "envelope: item header not JSON",
        post(
            &env_path,
            env_auth,
            b"{}\nnot an item header\n{}\n".as_slice(),
        ),
        BAD,
        None,
        None,
    );

    // ---- POST /v1/mobile/metrics -----------------------------------------------------------------
    let now = now_us();
    let ok_event = trace_event(&(now - 60_000_000).to_string(), "250000");
    let good = mobile_body(std::slice::from_ref(&ok_event));
    let mobile = "/v1/mobile/metrics";
    let key: &[(&str, &str)] = &[("x-api-key", t.api_key.as_str())];
    add(
        "mobile: no x-api-key",
        post(mobile, &[], &good),
        UNAUTH,
        Some("x-api-key"),
        None,
    );
    add(
        "mobile: unknown x-api-key",
        post(
            mobile,
            &[(
                "x-api-key",
                "bmk_0000000000000000000000000000000000000000000000000000000000000000",
            )],
            &good,
        ),
        FORBID,
        None,
        None,
    );
    add(
        "mobile: SQL in x-api-key, header injection after it",
        post(
            mobile,
            &[
                ("x-api-key", "' OR '1'='1"),
                ("x-injected", "1\r\nx-api-key: also-wrong"),
            ],
            &good,
        ),
        FORBID,
        None,
        None,
    );
    add(
        "mobile: GET instead of POST",
        request("GET", mobile, key, b""),
        METHOD,
        None,
        None,
    );
    add(
        "mobile: not JSON",
        post(mobile, key, b"<xml/>"),
        BAD,
        Some("body"),
        dl_mob,
    );
    add(
        "mobile: wrong shape",
        post(mobile, key, br#"{"data":[]}"#),
        BAD,
        Some("body"),
        dl_mob,
    );
    add(
        "mobile: trace_events not an array",
        post(
            mobile,
            key,
            br#"{"data":{"trace_events":"many","device_info":{}}}"#,
        ),
        BAD,
        Some("body"),
        dl_mob,
    );
    add(
        "mobile: 100k nested arrays",
        post(mobile, key, "[".repeat(100_000).as_bytes()),
        BAD,
        Some("body"),
        dl_mob,
    );
    add(
        "mobile: NaN duration",
        post(
            mobile,
            key,
            &mobile_body(&[trace_event(&(now - 60_000_000).to_string(), "NaN")]),
        ),
        BAD,
        Some("body"),
        dl_mob,
    );
    add(
        "mobile: invalid UTF-8",
        post(mobile, key, b"{\"data\":{\"trace_events\":[\"\xff\xfe\"]}}"),
        BAD,
        Some("body"),
        dl_mob,
    );
    let many: Vec<String> = (0..1001).map(|_| ok_event.clone()).collect();
    add(
        "mobile: 1,001 trace events",
        post(mobile, key, &mobile_body(&many)),
        LARGE,
        Some("1000"),
        dl_mob,
    );
    let huge = format!(
        r#"{{"data":{{"trace_events":[],"device_info":{{"model":"{}"}}}}}}"#,
        "m".repeat((1 << 20) + 16)
    );
    add(
        "mobile: body over 1 MiB",
        post(mobile, key, huge.as_bytes()),
        LARGE,
        None,
        dl_mob,
    );
    add(
        "mobile: gzip bomb",
        post(
            mobile,
            &[key[0], ("content-encoding", "gzip")],
            &bomb("gzip", 4 << 20),
        ),
        LARGE,
        None,
        dl_mob,
    );
    add(
        "mobile: gzip says, JSON is",
        post(mobile, &[key[0], ("content-encoding", "gzip")], &good),
        BAD,
        Some("gzip"),
        dl_mob,
    );

    // ---- /admin/v1 ---------------------------------------------------------------------------------
    let bearer = format!("Bearer {}", t.admin_token);
    let admin: &[(&str, &str)] = &[("authorization", bearer.as_str())];
    let admin_json: &[(&str, &str)] = &[
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    let aget = |path: &str| request("GET", path, admin, b"");
    add(
        "admin: no token",
        get("/admin/v1/bulletins"),
        UNAUTH,
        Some("token"),
        None,
    );
    add(
        "admin: wrong token",
        request(
            "GET",
            "/admin/v1/bulletins",
            &[("authorization", "Bearer bcn_not_the_token")],
            b"",
        ),
        UNAUTH,
        Some("token"),
        None,
    );
    add(
        "admin: basic auth",
        request(
            "GET",
            "/admin/v1/bulletins",
            &[("authorization", "Basic YWRtaW46YWRtaW4=")],
            b"",
        ),
        UNAUTH,
        Some("token"),
        None,
    );
    add(
        "admin: empty bearer",
        request(
            "GET",
            "/admin/v1/bulletins",
            &[("authorization", "Bearer ")],
            b"",
        ),
        UNAUTH,
        Some("token"),
        None,
    );
    let two = [
        ("authorization", "Bearer bcn_not_the_token"),
        ("authorization", bearer.as_str()),
    ];
    add(
        "admin: a wrong token, then the valid one",
        request("GET", "/admin/v1/projects", &two, b""),
        UNAUTH,
        Some("token"),
        None,
    );
    add(
        "admin: bulletin body not JSON",
        request("POST", "/admin/v1/bulletins", admin_json, b"{"),
        BAD,
        Some("body"),
        None,
    );
    add(
        "admin: bulletin with an invalid range",
        request(
            "POST",
            "/admin/v1/bulletins",
            admin_json,
            br#"{"id":"BSA-HOSTILE-1","title":"t","severity":"high","affected":"not a range","body":"<p>x</p>"}"#,
        ),
        BAD,
        Some("affected"),
        None,
    );
    add(
        "admin: bulletin with an unknown severity",
        request(
            "POST",
            "/admin/v1/bulletins",
            admin_json,
            br#"{"id":"BSA-HOSTILE-2","title":"t","severity":"apocalyptic","affected":">=1.0.0","body":"<p>x</p>"}"#,
        ),
        BAD,
        Some("severity"),
        None,
    );
    add(
        "admin: bulletin with wrong types",
        request(
            "POST",
            "/admin/v1/bulletins",
            admin_json,
            br#"{"id":7,"title":[],"severity":"high","affected":">=1.0.0","body":null}"#,
        ),
        BAD,
        None,
        None,
    );
    add(
        "admin: unknown bulletin",
        aget("/admin/v1/bulletins/..%2F..%2Fetc%2Fpasswd"),
        MISSING,
        None,
        None,
    );
    for (name, path, mention) in [
        (
            "admin: fleet day not a date",
            "/admin/v1/reports/fleet?day=2026-13-45",
            "day",
        ),
        (
            "admin: fleet by an unknown dimension",
            "/admin/v1/reports/fleet?by=password",
            "by",
        ),
        (
            "admin: growth to year -262143 (defect 7)",
            "/admin/v1/reports/growth?to=-262143-01-01",
            "to",
        ),
        (
            "admin: growth from year +262142 (defect 7)",
            "/admin/v1/reports/growth?from=+262142-12-31",
            "from",
        ),
        (
            "admin: exposure as_of year -262143 (defect 7)",
            "/admin/v1/reports/exposure?as_of=-262143-01-01",
            "as_of",
        ),
        (
            "admin: percentiles to year -262143 (defect 7)",
            "/admin/v1/perf/percentiles?trace=team:switch&to=-262143-01-01",
            "to",
        ),
        (
            "admin: percentiles of an unknown trace",
            "/admin/v1/perf/percentiles?trace=x'%3BDROP%20TABLE%20trace_events",
            "trace",
        ),
        (
            "admin: regressions threshold NaN",
            "/admin/v1/perf/regressions?threshold=NaN",
            "threshold",
        ),
        (
            "admin: dead letters limit -1",
            "/admin/v1/deadletters?limit=-1",
            "limit",
        ),
        (
            "admin: issues limit past u64",
            "/admin/v1/issues?limit=99999999999999999999999",
            "limit",
        ),
        (
            "admin: issues sorted by SQL",
            "/admin/v1/issues?sort=count%3BDROP%20TABLE%20issues",
            "sort",
        ),
    ] {
        add(name, aget(path), BAD, Some(mention), None);
    }
    add(
        "admin: issue id not a number",
        aget("/admin/v1/issues/abc"),
        BAD,
        Some("id"),
        None,
    );
    add(
        "admin: unknown issue",
        aget("/admin/v1/issues/987654321"),
        MISSING,
        None,
        None,
    );
    add(
        "admin: enable an unknown key",
        request(
            "PATCH",
            "/admin/v1/keys/0123456789abcdef0123456789abcdef",
            admin_json,
            br#"{"enabled":true}"#,
        ),
        MISSING,
        None,
        None,
    );
    let key_path = format!("/admin/v1/keys/{}", t.dsn_key);
    add(
        "admin: key update with wrong types",
        request("PATCH", &key_path, admin_json, br#"{"enabled":"yes"}"#),
        BAD,
        None,
        None,
    );
    add(
        "admin: key rate limit past u32",
        request(
            "PATCH",
            &key_path,
            admin_json,
            br#"{"rate_limit_per_minute":99999999999}"#,
        ),
        BAD,
        None,
        None,
    );
    add(
        "admin: revoke an unknown api key",
        request("DELETE", "/admin/v1/apikeys/no-such-key", admin, b""),
        MISSING,
        None,
        None,
    );
    add(
        "admin: project with an empty name",
        request("POST", "/admin/v1/projects", admin_json, br#"{"name":""}"#),
        BAD,
        Some("name"),
        None,
    );
    let long_name = format!(r#"{{"name":"{}"}}"#, "n".repeat(100_000));
    add(
        "admin: project with a 100 kB name",
        request(
            "POST",
            "/admin/v1/projects",
            admin_json,
            long_name.as_bytes(),
        ),
        BAD,
        Some("name"),
        None,
    );
    add(
        "admin: api key name with a NUL",
        request(
            "POST",
            "/admin/v1/apikeys",
            admin_json,
            br#"{"name":"a\u0000b"}"#,
        ),
        BAD,
        Some("name"),
        None,
    );
    add(
        "admin: DELETE on the bulletin list",
        request("DELETE", "/admin/v1/bulletins", admin, b""),
        METHOD,
        None,
        None,
    );
    add(
        "admin: unknown route",
        aget("/admin/v1/secrets"),
        MISSING,
        None,
        None,
    );
    let huge_json = format!(r#"{{"name":"{}"}}"#, "x".repeat(3 << 20));
    add(
        "admin: body of 3 MiB",
        request(
            "POST",
            "/admin/v1/projects",
            admin_json,
            huge_json.as_bytes(),
        ),
        LARGE,
        None,
        None,
    );
    out
}

/// A `sh -c` command that starts `beacon ARGS…` under a 1,024 open-files soft limit and a virtual
/// memory cap of `mem_kib`, so a blow-up fails the process and not the machine.
pub fn capped(beacon: &std::path::Path, args: &[&str], mem_kib: u64) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "ulimit -n 1024; ulimit -v {mem_kib}; exec \"$0\" \"$@\""
        ))
        .arg(beacon)
        .args(args);
    cmd
}

/// A GET to the admin API; the JSON answer, or what went wrong.
pub fn admin_get(addr: &str, token: &str, path: &str) -> Result<serde_json::Value, String> {
    let auth = format!("Bearer {token}");
    let reply = send(
        addr,
        &request("GET", path, &[("authorization", auth.as_str())], b""),
        Duration::from_secs(30),
    )
    .map_err(|e| format!("GET {path}: {e}"))?;
    if reply.status != 200 {
        return Err(format!(
            "GET {path}: status {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        ));
    }
    reply.json().ok_or_else(|| format!("GET {path}: not JSON"))
}

/// What the store holds, as the admin API reports it: compared before and after a hostile request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Distinct servers checked today (test installs included).
    pub servers: u64,
    pub issues: u64,
    /// Events over all issues.
    pub events: u64,
    /// Trace events over every trace name (emulators included).
    pub trace_events: u64,
    pub bulletins: u64,
    pub projects: u64,
    pub keys: u64,
    pub api_keys: u64,
}

impl Snapshot {
    pub fn take(addr: &str, token: &str) -> Result<Snapshot, String> {
        let list = |v: &serde_json::Value, field: &str| -> Vec<serde_json::Value> {
            v.as_array()
                .or_else(|| v[field].as_array())
                .cloned()
                .unwrap_or_default()
        };
        let fleet = admin_get(addr, token, "/admin/v1/reports/fleet?include_test=true")?;
        let issues = list(
            &admin_get(addr, token, "/admin/v1/issues?limit=1000")?,
            "issues",
        );
        let mut trace_events = 0;
        for trace in beacon_wire::mobile::TraceName::ALL {
            let v = admin_get(
                addr,
                token,
                &format!("/admin/v1/perf/percentiles?trace={trace}&include_emulators=true"),
            )?;
            trace_events += list(&v, "groups")
                .iter()
                .map(|g| g["count"].as_u64().unwrap_or(0))
                .sum::<u64>();
        }
        let projects = list(&admin_get(addr, token, "/admin/v1/projects")?, "projects");
        Ok(Snapshot {
            servers: fleet["total"]["servers"].as_u64().unwrap_or(0),
            issues: issues.len() as u64,
            events: issues
                .iter()
                .map(|i| i["count"].as_u64().unwrap_or(0))
                .sum(),
            trace_events,
            bulletins: list(&admin_get(addr, token, "/admin/v1/bulletins")?, "bulletins").len()
                as u64,
            projects: projects.len() as u64,
            keys: projects
                .iter()
                .map(|p| p["keys"].as_array().map_or(0, |k| k.len() as u64))
                .sum(),
            api_keys: list(&admin_get(addr, token, "/admin/v1/apikeys")?, "keys").len() as u64,
        })
    }
}

/// Dead letters of `channel` (up to `limit`).
pub fn dead_letters(
    addr: &str,
    token: &str,
    channel: &str,
    limit: u32,
) -> Result<Vec<serde_json::Value>, String> {
    let v = admin_get(
        addr,
        token,
        &format!("/admin/v1/deadletters?channel={channel}&limit={limit}"),
    )?;
    Ok(v.as_array()
        .or_else(|| v["dead_letters"].as_array())
        .cloned()
        .unwrap_or_default())
}
