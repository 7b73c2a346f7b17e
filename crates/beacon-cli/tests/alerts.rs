//! `beacon alert …` against `beacon serve` and a webhook receiver on a loopback port.

use crate::util::*;
use beacon_testkit::*;
use std::io::Write;
use std::process::{Command, Stdio};

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn alert_rules_from_the_command_line_and_a_test_notification() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let receiver = rt.block_on(WebhookReceiver::start());
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[("BEACON_ADMIN_TOKEN", ADMIN_TOKEN)]);
    let url = &server.url;

    let added = ok(&beacon(
        &[
            "alert",
            "add",
            "fleet watch",
            "--kind",
            "fleet_drop",
            "--webhook",
            &receiver.url(),
            "--percent",
            "40",
        ],
        url,
    ));
    assert!(
        added.contains("added alert rule 1 \"fleet watch\" (fleet_drop: percent=40.0)"),
        "{added}"
    );
    let secret = added
        .lines()
        .find(|l| l.len() == 64 && l.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no secret in {added}"))
        .to_string();
    assert!(added.contains("try it: beacon alert test 1"), "{added}");
    assert!(
        !added.contains("s3cr3t"),
        "the url is shown masked: {added}"
    );

    // The URL read from standard input stays out of the command line.
    let mut child = Command::new(BIN)
        .args([
            "alert",
            "add",
            "new errors",
            "--kind",
            "new_issue",
            "--mattermost",
            "-",
        ])
        .args(["--level", "error"])
        .env("BEACON_URL", url)
        .env("BEACON_TOKEN", ADMIN_TOKEN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{}", receiver.url()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(ok(&out).contains("added alert rule 2"));

    let list: serde_json::Value =
        serde_json::from_str(&ok(&beacon(&["alert", "list", "--json"], url))).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["url"], format!("http://{}/…", receiver.addr));
    assert_eq!(list[1]["params"]["min_level"], "error");
    assert!(!list.to_string().contains("s3cr3t") && !list.to_string().contains(&secret));
    let table = ok(&beacon(&["alert", "list"], url));
    assert!(
        table.contains("fleet watch") && table.contains("fleet_drop"),
        "{table}"
    );

    let sent = ok(&beacon(&["alert", "test", "1"], url));
    assert!(
        sent.contains("sent a test notification of rule 1: the destination answered 200"),
        "{sent}"
    );
    let got = rt.block_on(receiver.wait_for(1));
    assert!(got[0].signed_with(&secret));
    let body = got[0].json();
    assert_eq!(
        (body["test"].as_bool(), body["kind"].as_str()),
        (Some(true), Some("fleet_drop"))
    );
    assert_eq!(body["link"], "beacon alert list");
    ok(&beacon(&["alert", "test", "2"], url));
    let got = rt.block_on(receiver.wait_for(2));
    let chat = got[1].json();
    assert!(
        chat["text"]
            .as_str()
            .unwrap()
            .starts_with("[test] Beacon alert “new errors”"),
        "{chat}"
    );

    let history = ok(&beacon(&["alert", "history", "--format", "csv"], url));
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 3, "{history}");
    assert!(
        lines[0].starts_with("ID,CREATED,RULE,EPISODE,STATUS"),
        "{history}"
    );
    assert!(
        lines[1..].iter().all(|l| l.contains(",delivered,1,")),
        "{history}"
    );

    // A parameter of another kind is refused, naming it.
    let bad = beacon(
        &[
            "alert",
            "add",
            "x",
            "--kind",
            "new_issue",
            "--slack",
            &receiver.url(),
            "--factor",
            "3",
        ],
        url,
    );
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("params.factor"),
        "{}",
        text(&bad.stderr)
    );
    // A destination that is down: the test fails, and says so.
    rt.block_on(async {
        let mut r = receiver;
        r.stop().await;
    });
    let down = beacon(&["alert", "test", "1"], url);
    assert!(!down.status.success());
    assert!(
        text(&down.stdout).contains("was not delivered"),
        "{}",
        text(&down.stdout)
    );

    let removed = ok(&beacon(&["alert", "remove", "1"], url));
    assert!(
        removed.contains("removed alert rule 1 \"fleet watch\""),
        "{removed}"
    );
    let gone = beacon(&["alert", "show", "1"], url);
    assert!(!gone.status.success());
    assert!(
        text(&gone.stderr).contains("not found"),
        "{}",
        text(&gone.stderr)
    );
}
