//! What the admin commands print: `--format table|json|csv` (`--json` an alias of `--format json`)
//! against a live collector, and failures as one `Error:` line on stderr, backtraces or not.

use crate::util::*;
use beacon_testkit::*;
use std::process::Command;

fn ok(args: &[&str], url: &str) -> String {
    let out = beacon(args, url);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// `--format json` and `--json` print the same bytes; returns them.
fn same_json(args: &[&str], url: &str) -> String {
    let alias = ok(&[args, &["--json"]].concat(), url);
    let format = ok(&[args, &["--format", "json"]].concat(), url);
    assert_eq!(alias, format, "{args:?}");
    alias
}

#[test]
fn csv_and_json_of_live_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(
        dir.path(),
        &[
            ("BEACON_ADMIN_TOKEN", ADMIN_TOKEN),
            ("BEACON_REPORTS_MIN_GROUP_SIZE", "1"),
        ],
    );
    let url = server.url.as_str();
    let body = dir.path().join("body.html");
    std::fs::write(&body, "<p>Upgrade.</p>").unwrap();

    // A title with a comma and quotes: quoted, inner quotes doubled.
    let added = ok(
        &[
            "bulletin",
            "add",
            "--id",
            "BSA-2026-0001",
            "--title",
            "RCE, \"critical\"",
            "--severity",
            "critical",
            "--affected",
            ">=5.30.0, <5.37.2",
            "--fixed-in",
            "5.37.2",
            "--body-file",
            body.to_str().unwrap(),
            "--published-at",
            "2026-01-02T03:04:05Z",
            "--format",
            "csv",
        ],
        url,
    );
    let header = "ID,SEVERITY,AFFECTED,FIXED IN,PUBLISHED,RETRACTED,TITLE\n";
    let row = "BSA-2026-0001,critical,\">=5.30.0, <5.37.2\",5.37.2,2026-01-02 03:04,,\"RCE, \"\"critical\"\"\"\n";
    assert_eq!(added, format!("{header}{row}"));
    assert_eq!(
        ok(&["bulletin", "list", "--format", "csv"], url),
        format!("{header}{row}")
    );
    let list: serde_json::Value =
        serde_json::from_str(&same_json(&["bulletin", "list"], url)).unwrap();
    assert_eq!(list[0]["title"], "RCE, \"critical\"");
    assert_eq!(list[0]["affected"], ">=5.30.0, <5.37.2");
    // The default is still the table.
    let table = ok(&["bulletin", "list"], url);
    assert!(table.starts_with("ID  "), "{table}");
    assert!(table.contains("RCE, \"critical\""), "{table}");
    assert_eq!(ok(&["bulletin", "list", "--format", "table"], url), table);

    // Mobile API keys: the created key in full in CSV, once; the list shows prefixes.
    let created = ok(&["apikey", "create", "ios, beta", "--format", "csv"], url);
    let lines: Vec<&str> = created.lines().collect();
    assert_eq!(lines.len(), 2, "{created}");
    assert_eq!(lines[0], "NAME,KEY,CREATED");
    assert!(lines[1].starts_with("\"ios, beta\",bmk_"), "{created}");
    ok(&["apikey", "create", "android"], url);
    let csv = ok(&["apikey", "list", "--format", "csv"], url);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "NAME,KEY,CREATED,REVOKED");
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines.iter().any(|l| l.starts_with("\"ios, beta\",bmk_")),
        "{csv}"
    );
    assert!(lines.iter().any(|l| l.starts_with("android,bmk_")), "{csv}");
    let keys: serde_json::Value =
        serde_json::from_str(&same_json(&["apikey", "list"], url)).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 2);

    // Projects: one row per key, with its DSN.
    ok(&["project", "create", "web"], url);
    let csv = ok(&["project", "list", "--format", "csv"], url);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "ID,NAME,KEY,RATE LIMIT,DSN");
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[1].starts_with("1,web,enabled,default,http://"),
        "{csv}"
    );
    let projects: serde_json::Value =
        serde_json::from_str(&same_json(&["project", "list"], url)).unwrap();
    assert!(
        lines[1].ends_with(projects[0]["keys"][0]["dsn"].as_str().unwrap()),
        "{csv}"
    );

    // A report: the groups and the total.
    let http = client();
    for n in 0..3 {
        let r = http
            .get(format!("{url}/security?{}", query(n)))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let csv = ok(&["report", "fleet", "--format", "csv"], url);
    assert_eq!(
        csv,
        "VERSION,SERVERS,USERS,ACTIVATED,TEAMS\n5.37.0,3,27,15,3\ntotal,3,27,15,3\n"
    );
    let fleet: serde_json::Value =
        serde_json::from_str(&same_json(&["report", "fleet"], url)).unwrap();
    assert_eq!(fleet["total"]["servers"], 3);

    // One format at a time.
    let out = beacon(&["bulletin", "list", "--json", "--format", "csv"], url);
    assert!(!out.status.success());
    assert!(text(&out.stdout).is_empty());
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn a_refused_connection_is_one_line_even_with_backtraces_on() {
    let port = closed_port();
    for args in [
        &["bulletin", "list"][..],
        &["report", "fleet", "--format", "csv"],
        &["apikey", "create", "x", "--json"],
    ] {
        let out = Command::new(BIN)
            .args(args)
            .args(["--url", &format!("http://127.0.0.1:{port}")])
            .env("BEACON_TOKEN", ADMIN_TOKEN)
            .env("RUST_BACKTRACE", "1")
            .env("RUST_LIB_BACKTRACE", "1")
            .env_remove("BEACON_LOG")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let stderr = text(&out.stderr);
        assert_eq!(
            stderr,
            format!(
                "Error: cannot reach the collector at http://127.0.0.1:{port}: connection refused\n"
            ),
            "{args:?}"
        );
    }
}

#[test]
fn serve_says_why_it_cannot_start_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["serve", "--listen", &addr, "--data-dir"])
        .arg(dir.path())
        .env("BEACON_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("BEACON_LOG", "off")
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with(&format!("Error: cannot listen on {addr}: ")),
        "{stderr}"
    );
    // The io error is said once, not again as its own cause.
    assert_eq!(lines[0].matches("in use").count(), 1, "{stderr}");
}
