//! The admin commands at their edges: names that look like URL syntax, plain http:// to another
//! host, and what `/readyz` tells anonymous callers when the store is down.

use crate::util::*;
use beacon_testkit::*;
use std::process::Command;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn apikeys(url: &str) -> Vec<(String, bool)> {
    let out = beacon(&["apikey", "list", "--json"], url);
    assert!(out.status.success(), "{}", stderr(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["name"].as_str().unwrap().to_string(),
                !k["revoked_at"].is_null(),
            )
        })
        .collect()
}

#[test]
fn odd_names_address_exactly_their_object() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[("BEACON_ADMIN_TOKEN", ADMIN_TOKEN)]);
    let odd = [
        "prod?x=1", "prod#x", "prod%2Fx", "prod%", "prod x", "prod\\x", "..prod", "prød", "%2e%2e",
    ];
    for name in std::iter::once("prod").chain(odd) {
        let out = beacon(&["apikey", "create", name], &server.url);
        assert!(out.status.success(), "create {name}: {}", stderr(&out));
    }
    for name in odd {
        let out = beacon(&["apikey", "revoke", name], &server.url);
        assert!(out.status.success(), "revoke {name}: {}", stderr(&out));
        let keys = apikeys(&server.url);
        assert!(
            keys.iter().any(|(n, revoked)| n == name && *revoked),
            "{name} revoked: {keys:?}"
        );
        assert!(
            keys.iter().any(|(n, revoked)| n == "prod" && !*revoked),
            "revoking {name} left prod alone: {keys:?}"
        );
    }
    // Names a URL cannot carry are refused before anything is sent.
    for name in [".", ".."] {
        let out = beacon(&["apikey", "revoke", name], &server.url);
        assert!(!out.status.success(), "{name}");
        assert!(
            stderr(&out).contains("cannot be sent as a name"),
            "{name}: {}",
            stderr(&out)
        );
    }
    // A '/' stays inside its segment: no such key, and prod is untouched.
    for name in ["prod/x", "x/../prod", "prod/"] {
        let out = beacon(&["apikey", "revoke", name], &server.url);
        assert!(!out.status.success(), "{name}");
        assert!(stderr(&out).contains("404"), "{name}: {}", stderr(&out));
    }
    assert!(apikeys(&server.url).iter().any(|(n, r)| n == "prod" && !r));
    // An issue id and a bulletin id are path segments too.
    let out = beacon(&["bulletin", "show", "BSA-1?x=1"], &server.url);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("404"), "{}", stderr(&out));
}

#[test]
fn the_token_does_not_travel_over_plain_http_to_another_host() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[("BEACON_ADMIN_TOKEN", ADMIN_TOKEN)]);
    // Refused before any connection: the address is unroutable, so a connection attempt would hang.
    for url in [
        "http://192.0.2.1:8080",
        "http://collector.example:8080",
        "http://[2001:db8::1]:8080",
        "http://0.0.0.0:8080",
    ] {
        let started = std::time::Instant::now();
        let out = beacon(&["bulletin", "list"], url);
        assert!(!out.status.success(), "{url}");
        let err = stderr(&out);
        assert!(
            err.contains("refusing to send the admin token over plain http://")
                && err.contains("https://")
                && err.contains("--insecure"),
            "{url}: {err}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
    // --insecure sends it: here to a name that does not resolve, so the failure is reaching it.
    let out = Command::new(BIN)
        .args([
            "bulletin",
            "list",
            "--insecure",
            "--url",
            "http://beacon-test.invalid:8080",
        ])
        .env("BEACON_TOKEN", ADMIN_TOKEN)
        .env("BEACON_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cannot reach") && !err.contains("refusing"),
        "{err}"
    );
    // This machine, by every loopback name.
    let port = server.url.rsplit(':').next().unwrap();
    for host in ["127.0.0.1", "localhost", "LOCALHOST"] {
        let out = beacon(&["bulletin", "list"], &format!("http://{host}:{port}"));
        assert!(out.status.success(), "{host}: {}", stderr(&out));
    }
    // Elsewhere on 127.0.0.0/8 is loopback too: not refused (nothing listens there).
    let out = beacon(&["bulletin", "list"], &format!("http://127.0.0.2:{port}"));
    assert!(!stderr(&out).contains("refusing"), "{}", stderr(&out));
}

#[test]
fn readyz_keeps_the_store_error_to_the_log() {
    let Some(db) = TestPg::from_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = serve_on(&db, dir.path());
    let ready = client()
        .get(format!("{}/readyz", server.url))
        .send()
        .unwrap();
    assert_eq!(ready.status(), 200);
    db.refuse_connections();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let body = loop {
        let r = client()
            .get(format!("{}/readyz", server.url))
            .send()
            .unwrap();
        if r.status() == 503 {
            break r.text().unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "no 503 from /readyz");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "unavailable", "{body}");
    assert_eq!(v["store"], "postgres", "{body}");
    assert!(
        !body.contains(&db.name) && !body.contains("connection") && !body.contains("database"),
        "the store's error text leaked: {body}"
    );
    db.allow_connections();
}
