//! Collectors on PostgreSQL, as processes: two collectors on one database, and a database outage.
//!
//! Needs `BEACON_TEST_POSTGRES_URL`; each test creates its own database on that server and drops it.
//! Skipped without the variable, unless `BEACON_REQUIRE_POSTGRES=1` (set by `scripts/test`).

use crate::util::*;
use beacon_testkit::*;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[test]
fn two_collectors_share_one_database() {
    let Some(db) = TestPg::from_env() else { return };
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let env = [
        ("BEACON_STORE_URL", db.url.as_str()),
        ("BEACON_ADMIN_TOKEN", ADMIN_TOKEN),
        ("BEACON_REPORTS_MIN_GROUP_SIZE", "1"),
        ("BEACON_INGEST_BULLETIN_REFRESH_SECS", "1"),
    ];
    // Started at the same moment: migrations and the first token must not race.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| serve(dirs[0].path(), &env));
        let b = s.spawn(|| serve(dirs[1].path(), &env));
        (a.join().unwrap(), b.join().unwrap())
    });
    // Both came up (neither failed on a half-applied schema) and every migration ran once.
    assert_eq!(
        db.count("SELECT count(*)::int8 FROM schema_migrations"),
        db.count("SELECT max(version)::int8 FROM schema_migrations")
    );
    let http = client();
    // Checks alternate between the collectors; every server checks in on both.
    for n in 0..40u64 {
        for url in [&a.url, &b.url] {
            let r = http
                .get(format!("{url}/security?{}", query(n)))
                .send()
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    }
    // The same server on both at the same moment, many times.
    std::thread::scope(|s| {
        for url in [&a.url, &b.url, &a.url, &b.url] {
            let http = http.clone();
            s.spawn(move || {
                for _ in 0..25 {
                    assert_eq!(
                        http.get(format!("{url}/security?{}", query(777)))
                            .send()
                            .unwrap()
                            .status(),
                        200
                    );
                }
            });
        }
    });
    assert_eq!(
        db.count("SELECT count(*) FROM checks"),
        41,
        "one row per server and day, across processes"
    );
    let from_a = get_admin(&a.url, "/reports/fleet");
    let from_b = get_admin(&b.url, "/reports/fleet");
    assert_eq!(from_a, from_b, "the same report from either collector");
    assert_eq!(from_a["total"]["servers"], 41);
    assert_eq!(
        get_admin(&a.url, "/reports/growth"),
        get_admin(&b.url, "/reports/growth")
    );
    // A bulletin published through one is answered by the other (after its refresh interval).
    let body = serde_json::json!({"id": "BSA-PG", "title": "t", "severity": "low", "affected": "<6.0.0", "body": "<p/>"});
    let r = http
        .post(format!("{}/admin/v1/bulletins", a.url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list: serde_json::Value = http
            .get(format!("{}/security?{}", b.url, query(1)))
            .send()
            .unwrap()
            .json()
            .unwrap();
        if list[0]["id"] == "BSA-PG" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "collector b never saw the bulletin"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn database_outage_answers_503_and_loses_nothing_acknowledged() {
    let Some(db) = TestPg::from_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = serve_on(&db, dir.path());
    let url = server.url.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, unavailable) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    // Two senders, distinct ids, each recording what was acknowledged.
    let senders: Vec<_> = (0..2u64)
        .map(|t| {
            let (url, stop, acked, unavailable) = (
                url.clone(),
                stop.clone(),
                acked.clone(),
                unavailable.clone(),
            );
            std::thread::spawn(move || {
                let http = client();
                let mut ok = Vec::new();
                for i in 0..200_000u64 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let n = t * 1_000_000 + i;
                    let r = http
                        .get(format!("{url}/security?{}", query(n)))
                        .send()
                        .unwrap();
                    match r.status().as_u16() {
                        200 => {
                            ok.push(n);
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                        503 => {
                            assert!(
                                r.headers().contains_key("retry-after"),
                                "503 without Retry-After"
                            );
                            unavailable.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        other => panic!("unexpected status {other}"),
                    }
                }
                ok
            })
        })
        .collect();
    let wait_until = |what: &str, cond: &dyn Fn() -> bool| {
        wait_until_blocking(what, Duration::from_secs(60), cond);
    };
    wait_until("traffic", &|| acked.load(Ordering::SeqCst) >= 100);
    // The outage: no new connections, existing ones terminated.
    db.refuse_connections();
    wait_until("503 answers", &|| unavailable.load(Ordering::SeqCst) >= 5);
    let ready = client().get(format!("{url}/readyz")).send().unwrap();
    assert_eq!(ready.status(), 503, "/readyz reports the outage");
    let during = acked.load(Ordering::SeqCst);
    // Recovery.
    db.allow_connections();
    wait_until("readiness", &|| {
        client()
            .get(format!("{url}/readyz"))
            .send()
            .is_ok_and(|r| r.status() == 200)
    });
    wait_until("traffic after recovery", &|| {
        acked.load(Ordering::SeqCst) >= during + 100
    });
    stop.store(true, Ordering::SeqCst);
    let acknowledged: HashSet<u64> = senders
        .into_iter()
        .flat_map(|s| s.join().unwrap())
        .collect();
    drop(server);
    let stored = db.stored_server_ids();
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|n| !stored.contains(n))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "acknowledged but missing: {missing:?}");
    assert!(unavailable.load(Ordering::SeqCst) >= 5);
}

/// One client's bytes never fail another client's write: a NUL in an event (which PostgreSQL cannot
/// store) is replaced before it reaches the store, and an item the database refuses anyway (here: a
/// constraint the test adds) is refused alone while every check and event committed beside it is
/// acknowledged.
#[test]
fn one_clients_bad_bytes_never_fail_another_clients_write() {
    let Some(db) = TestPg::from_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = serve_on(&db, dir.path());
    let http = client();
    let project = create_project(&server.url, "pg-bytes");
    let (pid, key) = (project.id, project.key);
    // Defence in depth: a value the wire layer lets through but the database refuses.
    db.exec(
        "ALTER TABLE events ADD CONSTRAINT no_poison CHECK (release IS DISTINCT FROM 'poison')",
    );
    let store_url = format!("{}/api/{pid}/store/", server.url);
    let auth = format!("Sentry sentry_key={key}, sentry_version=7");
    let send_event = |n: u64, release: &str| {
        let body = serde_json::json!({"event_id": format!("{n:032x}"), "message": "m", "release": release});
        http.post(&store_url)
            .header("x-sentry-auth", &auth)
            .body(body.to_string())
            .send()
            .unwrap()
    };
    let bad_statuses = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..6u64 {
            let http = http.clone();
            let server = &server;
            let bad = &bad_statuses;
            s.spawn(move || {
                for i in 0..30u64 {
                    let r = http
                        .get(format!("{}/security?{}", server.url, query(t * 1000 + i)))
                        .send()
                        .unwrap();
                    if r.status() != 200 {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        for t in 0..2u64 {
            let send_event = &send_event;
            let bad = &bad_statuses;
            s.spawn(move || {
                for i in 0..30u64 {
                    let n = 1 + t * 1000 + i * 3;
                    let nul = send_event(n, "r\u{0}x");
                    let poison = send_event(n + 1, "poison");
                    let good = send_event(n + 2, "1.0");
                    assert_eq!(poison.status(), 400, "the refused item is rejected alone");
                    let text = poison.text().unwrap();
                    assert!(text.contains("unstorable"), "{text}");
                    if nul.status() != 200 || good.status() != 200 {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(
        bad_statuses.load(Ordering::Relaxed),
        0,
        "every other item was acknowledged"
    );
    assert_eq!(db.count("SELECT count(*) FROM checks"), 180);
    assert_eq!(db.count("SELECT count(*) FROM events"), 120);
    let releases = db.strings("SELECT DISTINCT release FROM events ORDER BY 1");
    assert_eq!(releases, vec!["1.0".to_string(), "r\u{FFFD}x".to_string()]);
}
