//! The hostile-input suite: a real `beacon serve` under a 1,024 open-files soft limit and a 4 GiB
//! memory cap gets malformed and malicious requests (`beacon_bench::hostile::cases`) and the
//! regressions of issue 11's defects. Each request must get its specific 4xx with a JSON error body
//! naming the problem, the collector must stay alive and healthy, and the store must hold what it
//! held before (dead letters aside, where documented).

use crate::util::{self, BIN};
use beacon_bench::hostile::{self, Case, Snapshot, Target};
use beacon_testkit::{ADMIN_TOKEN, BeaconProcess, TestPg, create_api_key, create_project};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const MEM_CAP_KIB: u64 = 4 << 20;

/// `beacon serve` under a 1,024 open-files soft limit and a `MEM_CAP_KIB` memory cap.
struct Capped {
    process: BeaconProcess,
    addr: String,
}

impl Capped {
    /// `beacon serve` in `data_dir` (SQLite unless `envs` set `BEACON_STORE_URL`), capped.
    fn start(data_dir: &Path, envs: &[(&str, &str)]) -> Capped {
        let process = BeaconProcess::serve(BIN, data_dir)
            .limits(&format!("ulimit -n 1024; ulimit -v {MEM_CAP_KIB}"))
            .admin_token()
            .envs(envs)
            .start();
        Capped {
            addr: process.addr.clone(),
            process,
        }
    }

    /// `None` when alive and `/healthz` answers 200; else what is wrong.
    fn sick(&mut self) -> Option<String> {
        if let Ok(Some(status)) = self.process.child.try_wait() {
            return Some(format!("the collector exited: {status}"));
        }
        match hostile::send(
            &self.addr,
            &hostile::request("GET", "/healthz", &[], b""),
            Duration::from_secs(30),
        ) {
            Ok(r) if r.status == 200 => None,
            Ok(r) => Some(format!("/healthz answered {}", r.status)),
            Err(e) => Some(format!("/healthz failed: {e}")),
        }
    }

    /// A project (its first key) and a mobile API key, made through the admin API.
    fn target(&self) -> Target {
        let project = create_project(&self.process.url, "hostile");
        Target {
            addr: self.addr.clone(),
            project_id: project.id,
            dsn_key: project.key,
            api_key: create_api_key(&self.process.url, "hostile"),
            admin_token: ADMIN_TOKEN.into(),
        }
    }

    fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> hostile::Reply {
        hostile::send(
            &self.addr,
            &hostile::request("POST", path, headers, body),
            Duration::from_secs(120),
        )
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }
}

fn sentry_auth(t: &Target) -> String {
    format!("Sentry sentry_key={}, sentry_version=7", t.dsn_key)
}

/// One valid item on each channel, so that "unchanged" compares non-zero counts.
fn seed(c: &Capped, t: &Target) {
    c.process.post_admin(
        "/bulletins",
        json!({"id": "BSA-HOSTILE", "title": "t", "severity": "high", "affected": ">=5.30.0, <5.37.2", "body": "<p>x</p>"}),
    );
    let r = hostile::send(
        &c.addr,
        &hostile::request("GET", &format!("/security?{}", util::query(7)), &[], b""),
        Duration::from_secs(30),
    )
    .expect("check");
    assert_eq!(r.status, 200, "valid check");
    let auth = sentry_auth(t);
    let r = c.post(
        &format!("/api/{}/store/", t.project_id),
        &[("x-sentry-auth", &auth)],
        hostile::small_event().as_bytes(),
    );
    assert_eq!(r.status, 200, "valid event: {:?}", r.json());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let body = format!(
        r#"{{"data":{{"trace_events":[{{"name":"team:switch","ph":"X","ts":{},"dur":250000,"pid":1,"tid":1}}],"device_info":{{"version":"2.20.0","device_unique_id":"seed"}}}}}}"#,
        now - 60_000_000
    );
    let r = c.post(
        "/v1/mobile/metrics",
        &[("x-api-key", &t.api_key)],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "valid batch: {:?}", r.json());
}

fn run_case(c: &mut Capped, t: &Target, case: &Case, before: &Snapshot) -> Result<(), String> {
    let reply = hostile::send(&t.addr, &case.request, Duration::from_secs(60))
        .map_err(|e| format!("no answer: {e}"));
    let judged = reply.and_then(|r| hostile::judge(case, &r));
    if let Some(sick) = c.sick() {
        return Err(format!("{}; then {sick}", judged.err().unwrap_or_default()));
    }
    judged?;
    let after = Snapshot::take(&t.addr, ADMIN_TOKEN)?;
    if &after != before {
        return Err(format!(
            "stored data changed: before {before:?}, after {after:?}"
        ));
    }
    Ok(())
}

#[test]
fn hostile_inputs_are_refused_with_a_clear_error_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // One seeded device: no k-anonymity folding, so the reports count it.
    let mut c = Capped::start(dir.path(), &[("BEACON_REPORTS_MIN_GROUP_SIZE", "1")]);
    let t = c.target();
    seed(&c, &t);
    let cases = hostile::cases(&t);
    assert!(cases.len() >= 60, "only {} hostile cases", cases.len());
    // Trace events reach the reports once folded into sketches (every `perf_compact_secs`).
    let mut before = Snapshot::take(&t.addr, ADMIN_TOKEN).expect("snapshot");
    for _ in 0..100 {
        if before.trace_events == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        before = Snapshot::take(&t.addr, ADMIN_TOKEN).expect("snapshot");
    }
    assert!(
        before.servers == 1 && before.events == 1 && before.trace_events == 1,
        "seeded data not visible: {before:?}"
    );
    let channels = ["security", "errors", "mobile"];
    let letters = |ch: &str| {
        hostile::dead_letters(&t.addr, ADMIN_TOKEN, ch, 1000)
            .map(|v| v.len())
            .unwrap_or(usize::MAX)
    };
    let mut failures = Vec::new();
    for case in &cases {
        let dead_before: Vec<usize> = channels.iter().map(|ch| letters(ch)).collect();
        let result = run_case(&mut c, &t, case, &before).and_then(|()| {
            for (ch, n) in channels.iter().zip(&dead_before) {
                let now = letters(ch);
                if now != *n && case.dead_letter != Some(*ch) {
                    return Err(format!("{ch} dead letters went from {n} to {now}"));
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            eprintln!("FAIL {}: {e}", case.name);
            failures.push(format!("{}: {e}", case.name));
            if c.process.child.try_wait().ok().flatten().is_some() {
                failures.push("the collector died; the remaining cases were not run".into());
                break;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} hostile cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Defect 1: a 2.7 KB gzipped event whose grouping would need gigabytes.
#[test]
fn fingerprint_bomb_is_refused_before_parsing_and_survived_with_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Capped::start(dir.path(), &[]);
    let t = c.target();
    let body = hostile::gzip(&hostile::fingerprint_bomb_event());
    assert!(
        body.len() < 8 * 1024,
        "bomb is {} bytes gzipped",
        body.len()
    );
    let store = format!("/api/{}/store/", t.project_id);
    let r = c.post(&store, &[("content-encoding", "gzip")], &body);
    assert_eq!(
        r.status,
        401,
        "anonymous bomb: {:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(c.sick(), None, "after the anonymous bomb");
    let auth = sentry_auth(&t);
    let r = hostile::send(
        &c.addr,
        &hostile::request(
            "POST",
            &store,
            &[("content-encoding", "gzip"), ("x-sentry-auth", &auth)],
            &body,
        ),
        Duration::from_secs(120),
    );
    assert_eq!(c.sick(), None, "after the bomb with a valid key");
    let r = r.expect("an answer to the bomb with a valid key");
    match r.status {
        200 => {}
        400 => {
            let e: beacon_wire::admin::ErrorBody =
                serde_json::from_slice(&r.body).expect("error body");
            assert!(
                ["fingerprint", "exception", "frame"]
                    .iter()
                    .any(|w| e.message.contains(w)),
                "the refusal names no cap: {e:?}"
            );
        }
        other => panic!("bomb with a key: {other} {:?}", r.json()),
    }
}

/// The collector's peak resident memory (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// Envelopes that decode to 90 MiB each (an attachment of spaces, ~90 KiB gzipped, beside an event),
/// eight at once: each is accepted with its event stored, and the collector's peak memory stays far
/// below what holding even one decoded body would take — an attachment is read past as it is
/// decoded, never buffered (it once was, up to four bodies at a time: ~0.5 GB).
#[test]
fn large_envelopes_are_read_as_a_stream_not_held() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Capped::start(dir.path(), &[]);
    let t = c.target();
    let attachment = vec![b' '; 90 << 20];
    let event = br#"{"message":"beside a big attachment","level":"error"}"#;
    let mut envelope = b"{}\n".to_vec();
    envelope.extend_from_slice(
        format!(
            "{{\"type\":\"attachment\",\"length\":{}}}\n",
            attachment.len()
        )
        .as_bytes(),
    );
    envelope.extend_from_slice(&attachment);
    envelope.extend_from_slice(b"\n{\"type\":\"event\"}\n");
    envelope.extend_from_slice(event);
    envelope.push(b'\n');
    drop(attachment);
    let body = std::sync::Arc::new(hostile::gzip(&envelope));
    drop(envelope);
    assert!(body.len() < 1 << 20, "{} bytes gzipped", body.len());
    let before = peak_rss_kib(c.process.child.id());
    let path = format!("/api/{}/envelope/", t.project_id);
    let auth = sentry_auth(&t);
    let senders: Vec<_> = (0..8)
        .map(|_| {
            let (addr, path, auth, body) =
                (c.addr.clone(), path.clone(), auth.clone(), body.clone());
            std::thread::spawn(move || {
                hostile::send(
                    &addr,
                    &hostile::request(
                        "POST",
                        &path,
                        &[("content-encoding", "gzip"), ("x-sentry-auth", &auth)],
                        &body,
                    ),
                    Duration::from_secs(300),
                )
                .expect("an answer")
            })
        })
        .collect();
    for s in senders {
        let r = s.join().unwrap();
        assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    }
    assert_eq!(c.sick(), None);
    let peak = peak_rss_kib(c.process.child.id());
    assert!(
        peak < before + (64 << 10),
        "peak resident memory went from {before} KiB to {peak} KiB for 8 bodies of 90 MiB decoded"
    );
    let issues = c.process.get_admin("/issues");
    assert_eq!(issues.as_array().map(Vec::len), Some(1), "{issues}");
    assert_eq!(issues[0]["count"], 8, "every event stored: {issues}");
}

/// Defect 3: a NUL in one event fails no other client's write, and never reaches the store.
fn nul_release_fails_no_one(envs: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let c = Capped::start(dir.path(), envs);
    let t = c.target();
    let auth = sentry_auth(&t);
    let store = format!("/api/{}/store/", t.project_id);
    let threads: Vec<_> = (0..8u64)
        .map(|th| {
            let addr = c.addr.clone();
            std::thread::spawn(move || {
                (0..40u64)
                    .map(|i| {
                        let q = format!("/security?{}", util::query(th * 1000 + i));
                        hostile::send(
                            &addr,
                            &hostile::request("GET", &q, &[], b""),
                            Duration::from_secs(60),
                        )
                        .map(|r| r.status)
                        .unwrap_or(0)
                    })
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    let mut nul_statuses = Vec::new();
    for i in 0..20u64 {
        let ev = format!(
            r#"{{"event_id":"{i:032x}","level":"error","message":"nul","release":"r\u0000x","environment":"e\u0000v","tags":{{"k\u0000":"v\u0000"}}}}"#
        );
        nul_statuses.push(
            c.post(&store, &[("x-sentry-auth", &auth)], ev.as_bytes())
                .status,
        );
    }
    let statuses: Vec<u16> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let refused = statuses.iter().filter(|s| **s != 200).count();
    assert_eq!(refused, 0, "checks refused beside NUL events: {statuses:?}");
    assert!(
        nul_statuses.iter().all(|s| *s == 200 || *s == 400),
        "NUL events answered {nul_statuses:?}"
    );
    let fleet = hostile::admin_get(
        &c.addr,
        ADMIN_TOKEN,
        "/admin/v1/reports/fleet?include_test=true",
    )
    .expect("fleet");
    assert_eq!(fleet["total"]["servers"].as_u64(), Some(320));
    let issues =
        hostile::admin_get(&c.addr, ADMIN_TOKEN, "/admin/v1/issues?limit=100").expect("issues");
    let list = issues
        .as_array()
        .or_else(|| issues["issues"].as_array())
        .cloned()
        .unwrap_or_default();
    for issue in list {
        let detail = hostile::admin_get(
            &c.addr,
            ADMIN_TOKEN,
            &format!("/admin/v1/issues/{}", issue["id"]),
        )
        .expect("issue");
        let text = detail.to_string();
        assert!(!text.contains("\\u0000"), "a NUL reached the store: {text}");
    }
}

#[test]
fn nul_in_an_event_fails_no_other_write_sqlite() {
    nul_release_fails_no_one(&[]);
}

#[test]
fn nul_in_an_event_fails_no_other_write_postgres() {
    let Some(db) = TestPg::from_env() else { return };
    nul_release_fails_no_one(&[("BEACON_STORE_URL", db.url.as_str())]);
}

/// Defect 4: a rejected event's dead letter keeps only what an accepted event may keep; tags that
/// name a host or a person are not stored.
#[test]
fn dead_letters_hold_no_personal_data_and_personal_tags_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let c = Capped::start(dir.path(), &[]);
    let t = c.target();
    let auth = sentry_auth(&t);
    let store = format!("/api/{}/store/", t.project_id);
    let canaries = [
        "db01.corp.internal",
        "alice_smith",
        "user-48151623",
        "intranet.example",
        "canary-breadcrumb",
        "carol.canary@example.org",
        "198.51.100.77",
        "tok_canary_zx81",
        "4111 1111 1111 1111",
        "/home/carol",
    ];
    let personal = json!({
        "server_name": "db01.corp.internal",
        "user": {"username": "alice_smith", "id": "user-48151623", "email": "carol.canary@example.org", "ip_address": "198.51.100.77"},
        "request": {"url": "https://intranet.example/private", "headers": {"Authorization": "tok_canary_zx81"}},
        "breadcrumbs": {"values": [{"message": "canary-breadcrumb /home/carol"}]},
        "extra": {"card": "4111 1111 1111 1111", "path": "/home/carol/.ssh/id_rsa", "mail": "carol.canary@example.org"},
    });
    let mut rejected = personal.clone();
    rejected["event_id"] = json!("dead0000000000000000000000000001");
    rejected["level"] = json!("not-a-level");
    let r = c.post(
        &store,
        &[("x-sentry-auth", &auth)],
        rejected.to_string().as_bytes(),
    );
    assert_eq!(r.status, 400, "{:?}", r.json());
    let letters = hostile::dead_letters(&c.addr, ADMIN_TOKEN, "errors", 100).expect("dead letters");
    assert_eq!(letters.len(), 1, "{letters:?}");
    let text = letters[0].to_string().to_lowercase();
    for canary in canaries {
        assert!(
            !text.contains(&canary.to_lowercase()),
            "the dead letter holds {canary:?}: {text}"
        );
    }

    let mut accepted = personal;
    accepted["event_id"] = json!("dead0000000000000000000000000002");
    accepted["message"] = json!("tagged");
    accepted["tags"] = json!({
        "server_name": "carols-macbook.local", "hostname": "carols-macbook.local",
        "host": "carols-macbook.local", "user": "carol", "username": "carol",
        "email": "carol.canary@example.org", "ip": "198.51.100.77", "ip_address": "198.51.100.77",
        "server_id": "srv-1", "browser": "Firefox"
    });
    let r = c.post(
        &store,
        &[("x-sentry-auth", &auth)],
        accepted.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{:?}", r.json());
    let issues = hostile::admin_get(&c.addr, ADMIN_TOKEN, "/admin/v1/issues").expect("issues");
    let id = issues
        .as_array()
        .or_else(|| issues["issues"].as_array())
        .and_then(|l| l.first().cloned())
        .expect("an issue")["id"]
        .clone();
    let detail =
        hostile::admin_get(&c.addr, ADMIN_TOKEN, &format!("/admin/v1/issues/{id}")).expect("issue");
    let tags = &detail["latest_event"]["tags"];
    assert_eq!(tags["server_id"], "srv-1", "{detail}");
    assert_eq!(tags["browser"], "Firefox", "{detail}");
    for dropped in [
        "server_name",
        "hostname",
        "host",
        "user",
        "username",
        "email",
        "ip",
        "ip_address",
    ] {
        assert!(tags.get(dropped).is_none(), "tag {dropped} stored: {tags}");
    }
    let text = detail.to_string();
    assert!(!text.contains("carols-macbook"), "{text}");
}

/// Defect 5: malformed requests cannot grow the database without bound through dead letters.
#[test]
fn dead_letters_per_channel_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let cap = 200;
    let c = Capped::start(
        dir.path(),
        &[("BEACON_DEADLETTERS_MAX_PER_CHANNEL", &cap.to_string())],
    );
    let threads: Vec<_> = (0..4u64)
        .map(|th| {
            let addr = c.addr.clone();
            std::thread::spawn(move || {
                (0..500u64)
                    .filter(|i| {
                        let q = format!("/security?id=bad{th}x{i}&b=1.2.3&be=true&os=x&db=y");
                        hostile::send(
                            &addr,
                            &hostile::request("GET", &q, &[], b""),
                            Duration::from_secs(60),
                        )
                        .is_ok_and(|r| r.status == 400)
                    })
                    .count()
            })
        })
        .collect();
    let refused: usize = threads.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(refused, 2000);
    let kept = hostile::dead_letters(&c.addr, ADMIN_TOKEN, "security", 1000).expect("dead letters");
    assert!(
        !kept.is_empty() && kept.len() <= cap,
        "{} security dead letters kept, cap {cap}",
        kept.len()
    );
}
