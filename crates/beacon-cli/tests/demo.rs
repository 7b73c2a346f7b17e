//! `beacon demo` and `beacon sim` as a new user runs them: processes, real ports, printed reports.

use crate::util::*;
use beacon_testkit::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn demo_prints_every_report_and_serves_until_interrupted() {
    let mut child = Command::new(BIN)
        .args([
            "demo",
            "--servers",
            "40",
            "--devices",
            "20",
            "--days",
            "8",
            "--seed",
            "3",
        ])
        .env("BEACON_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let (mut url, mut token) = (String::new(), String::new());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!("demo exited early:\n{}", lines.join(""));
        }
        if let Some(u) = line.trim().strip_prefix("export BEACON_URL=") {
            url = u.to_string();
        }
        if let Some(t) = line.trim().strip_prefix("export BEACON_TOKEN=") {
            token = t.to_string();
        }
        lines.push(line.clone());
        if line.contains("mobile API key:") {
            break;
        }
    }
    let out = lines.join("");
    for section in [
        "== what the simulator sent ==",
        "== beacon report fleet ==",
        "== beacon report exposure ==",
        "BSA-DEMO-0001",
        "== beacon issues list --sort count ==",
        "== beacon perf percentiles --trace channel:switch_loaded --by app_version ==",
        "== beacon perf regressions ==",
    ] {
        assert!(out.contains(section), "{section} missing from:\n{out}");
    }
    // Nothing was refused on the way.
    let sent = out
        .lines()
        .skip_while(|l| !l.starts_with("channel"))
        .take(4)
        .collect::<Vec<_>>();
    for row in &sent[1..] {
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[2], cols[3], "items = accepted in {row}");
        assert_eq!(&cols[4..], &["0", "0", "0"], "{row}");
    }
    // It keeps serving, with the token it printed.
    let r = client()
        .get(format!("{url}/admin/v1/reports/growth"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    assert!(child.wait().unwrap().success(), "demo exits 0 on Ctrl-C");
}

#[test]
fn sim_drives_a_running_collector_and_summarises() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[("BEACON_ADMIN_TOKEN", ADMIN_TOKEN)]);
    let out = beacon(&["apikey", "create", "sim"], &server.url);
    let key = text(&out.stdout)
        .lines()
        .find(|l| l.starts_with("bmk_"))
        .unwrap()
        .to_string();
    let record = dir.path().join("acked.txt");
    let out = Command::new(BIN)
        .args([
            "sim",
            "--url",
            &server.url,
            "--servers",
            "25",
            "--devices",
            "10",
            "--days",
            "4",
            "--seed",
            "9",
        ])
        .args(["--rate", "400", "--quiet", "--api-key", &key, "--record"])
        .arg(&record)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary = text(&out.stdout);
    assert!(
        summary.contains("security") && summary.contains("mobile"),
        "{summary}"
    );
    let checks = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("check "))
        .count();
    // 25 servers over 4 days, minus the ones that joined late or left.
    assert!(
        (60..=100).contains(&checks),
        "{checks} checks acknowledged\n{summary}"
    );
    drop(server);
}
