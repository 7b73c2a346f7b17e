//! The `beacon` binary as users run it: serve, signals, crashes, offline tools and admin commands.

use crate::util::*;
use beacon_testkit::*;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

#[test]
fn acknowledged_checks_survive_sigkill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked = std::collections::HashSet::new();
    for round in 0..3u64 {
        let mut server = serve(dir.path(), &[("BEACON_ADMIN_TOKEN", ADMIN_TOKEN)]);
        let count = Arc::new(AtomicU64::new(0));
        let senders = load(&server.url, 8, 5_000, round * 100_000_000, count.clone());
        wait_for(&count, 200 + round * 100);
        server.child.kill().unwrap(); // SIGKILL, mid-load
        server.child.wait().unwrap();
        for s in senders {
            acked.extend(s.join().unwrap());
        }
    }
    // Restart: the collector comes up on the same files and serves.
    let mut server = serve(dir.path(), &[("BEACON_ADMIN_TOKEN", ADMIN_TOKEN)]);
    let ready = client()
        .get(format!("{}/readyz", server.url))
        .send()
        .unwrap();
    assert_eq!(ready.status(), 200);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let stored = stored_ids(dir.path());
    let missing: Vec<_> = acked
        .iter()
        .filter(|n| !stored.contains(n))
        .take(5)
        .collect();
    assert!(acked.len() >= 600, "load ran: {}", acked.len());
    assert!(
        missing.is_empty(),
        "acknowledged but lost: {missing:?} of {}",
        acked.len()
    );
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), &[("BEACON_ADMIN_TOKEN", ADMIN_TOKEN)]);
    let acked = Arc::new(AtomicU64::new(0));
    let senders = load(&server.url, 8, 2_000, 0, acked.clone());
    wait_for(&acked, 200);
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = server.child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "exit status after SIGTERM");
    let acked: Vec<u64> = senders
        .into_iter()
        .flat_map(|s| s.join().unwrap())
        .collect();
    let stored = stored_ids(dir.path());
    assert!(
        acked.iter().all(|n| stored.contains(n)),
        "every acknowledged check is stored"
    );
    assert_eq!(
        stored.len(),
        acked.len(),
        "nothing stored that was not acknowledged"
    );
}

#[test]
fn first_start_prints_a_token_once_and_stores_only_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), &[]);
    let token = server
        .stdout_lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("bcn_").map(|t| format!("bcn_{t}")))
        .expect("token printed on first start");
    let ok = client()
        .get(format!("{}/admin/v1/bulletins", server.url))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(ok.status(), 200);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    for f in ["beacon.db", "beacon.db-wal"] {
        let bytes = std::fs::read(dir.path().join(f)).unwrap_or_default();
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "token in {f}"
        );
    }
    // Second start: no new token.
    let mut server = serve(dir.path(), &[]);
    assert!(
        server.stdout_lines.iter().all(|l| !l.contains("bcn_")),
        "{:?}",
        server.stdout_lines
    );
    // `beacon token create` makes another one offline, even while the collector runs.
    let out = Command::new(BIN)
        .args(["token", "create", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let second = text(&out.stdout).trim().to_string();
    assert!(second.starts_with("bcn_") && second != token);
    let ok = client()
        .get(format!("{}/admin/v1/bulletins", server.url))
        .bearer_auth(&second)
        .send()
        .unwrap();
    assert_eq!(ok.status(), 200);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

#[test]
fn config_check_says_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("beacon.toml");
    let check = |contents: &str, envs: &[(&str, &str)]| {
        std::fs::write(&f, contents).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["config", "check"]).arg(&f);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let out = check(
        "[server]\nlisten = \"127.0.0.1:9999\"\n[reports]\nmin_group_size = 10\n",
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ok"));
    for (contents, envs, want) in [
        ("[server]\nlisen = \"x\"\n", vec![], "unknown field `lisen`"),
        ("[server]\nlisten = \"nowhere\"\n", vec![], "server.listen"),
        (
            "[tls]\ncert = \"/nonexistent.pem\"\n",
            vec![],
            "tls: cert is set but key is not",
        ),
        (
            "[reports]\nmin_group_size = \"five\"\n",
            vec![],
            "min_group_size",
        ),
        ("[server\n", vec![], "beacon.toml"),
        (
            "",
            vec![("BEACON_REPORTS_MIN_GROUP_SIZE", "lots")],
            "BEACON_REPORTS_MIN_GROUP_SIZE: must be an integer",
        ),
        (
            "",
            vec![("BEACON_SERVER_LISTN", "x")],
            "BEACON_SERVER_LISTN: no such configuration key",
        ),
    ] {
        let out = check(contents, &envs);
        assert!(!out.status.success(), "{contents} should fail");
        let err = text(&out.stderr);
        assert!(err.contains(want), "{contents}: expected {want:?} in {err}");
    }
}

#[test]
fn admin_commands_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(
        dir.path(),
        &[
            ("BEACON_ADMIN_TOKEN", ADMIN_TOKEN),
            ("BEACON_REPORTS_MIN_GROUP_SIZE", "1"),
        ],
    );
    let body = dir.path().join("body.html");
    std::fs::write(&body, "<p>Upgrade to 5.37.2.</p>").unwrap();
    let body = body.to_str().unwrap();
    let url = server.url.clone();

    let out = beacon(
        &[
            "bulletin",
            "add",
            "--id",
            "BSA-2026-0001",
            "--title",
            "RCE",
            "--severity",
            "critical",
            "--affected",
            ">=5.30.0, <5.37.2",
            "--fixed-in",
            "5.37.2",
            "--body-file",
            body,
        ],
        &url,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = beacon(
        &[
            "bulletin",
            "add",
            "--id",
            "BSA-X",
            "--title",
            "bad",
            "--severity",
            "high",
            "--affected",
            "5.30 to 5.37",
            "--body-file",
            body,
        ],
        &url,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--affected: is not a semver requirement"),
        "{}",
        text(&out.stderr)
    );

    let http = client();
    for n in 0..3 {
        assert_eq!(
            http.get(format!("{url}/security?{}", query(n)))
                .send()
                .unwrap()
                .status(),
            200
        );
    }
    http.get(format!("{url}/security?id=broken"))
        .send()
        .unwrap();

    let out = beacon(&["bulletin", "list"], &url);
    assert!(text(&out.stdout).contains("BSA-2026-0001"));
    let out = beacon(&["bulletin", "show", "BSA-2026-0001"], &url);
    assert!(text(&out.stdout).contains("<p>Upgrade to 5.37.2.</p>"));

    let out = beacon(&["report", "fleet", "--json"], &url);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let fleet: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(fleet["total"]["servers"], 3);
    let out = beacon(&["report", "fleet", "--by", "os"], &url);
    assert!(text(&out.stdout).contains("linux"), "{}", text(&out.stdout));
    let out = beacon(&["report", "growth", "--json"], &url);
    let growth: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        growth["days"].as_array().unwrap().last().unwrap()["servers"],
        3
    );
    let out = beacon(
        &[
            "report",
            "exposure",
            "--bulletin",
            "BSA-2026-0001",
            "--json",
        ],
        &url,
    );
    let exposure: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(exposure["bulletins"][0]["servers"], 3);
    let out = beacon(&["report", "exposure"], &url);
    assert!(
        text(&out.stdout).contains("exposed: 3 servers"),
        "{}",
        text(&out.stdout)
    );
    let out = beacon(&["deadletter", "list"], &url);
    assert!(
        text(&out.stdout).contains("invalid_id"),
        "{}",
        text(&out.stdout)
    );

    // Retention: what each channel holds, and a run (the collector's clock is the system's: the
    // checks just sent are today's, nothing has expired).
    let out = beacon(&["retention", "status"], &url);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains("KEEP_DAYS") && table.contains("trace_events") && table.contains("400"),
        "{table}"
    );
    let out = beacon(&["retention", "status", "--format", "csv"], &url);
    let csv = text(&out.stdout);
    assert!(
        csv.lines()
            .any(|l| l.starts_with("checks,400,") && l.contains(",3,")),
        "{csv}"
    );
    let out = beacon(&["retention", "apply", "--dry-run", "--json"], &url);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["dry_run"], true);
    assert_eq!(run["channels"].as_array().unwrap().len(), 5);
    let out = beacon(&["retention", "apply"], &url);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("issue(s) removed"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(
            &beacon(&["report", "fleet", "--json"], &url).stdout
        )
        .unwrap()["total"]["servers"],
        3,
        "nothing young was removed"
    );

    let out = beacon(&["bulletin", "retract", "BSA-2026-0001"], &url);
    assert!(out.status.success());
    assert_eq!(
        http.get(format!("{url}/bulletins/BSA-2026-0001"))
            .send()
            .unwrap()
            .status(),
        404
    );

    // Wrong token: a clear error, non-zero exit.
    let out = Command::new(BIN)
        .args(["bulletin", "list", "--url", &url, "--token", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}
