//! `beacon agent check | preview | run` against `beacon serve` over TLS (a test CA) on loopback:
//! preview prints the URL the next check sends and sends nothing; check notifies each bulletin once;
//! DO_NOT_TRACK=1 means no connection; facts and notifiers as commands; run stops on SIGTERM; plain
//! http to a non-loopback host is refused.

use crate::util::*;
use beacon_testkit::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Setup {
    dir: tempfile::TempDir,
    server: BeaconProcess,
    ca: PathBuf,
    forwarder: Forwarder,
    _tls: TestTls,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let tls = TestTls::new("beacon cli test ca");
    let server = BeaconProcess::serve(BIN, dir.path().join("data"))
        .admin_token()
        .tls(&tls)
        .start();
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let port: u16 = server.url.rsplit(':').next().unwrap().parse().unwrap();
    let forwarder = Forwarder::start_blocking(SocketAddr::from(([127, 0, 0, 1], port)));
    Setup {
        dir,
        server,
        ca: tls.ca_file.clone(),
        forwarder,
        _tls: tls,
    }
}

impl Setup {
    fn add_bulletin(&self, id: &str) {
        block_on(self.server.admin().publish_bulletin(serde_json::json!({
            "id": id, "title": "RCE in file uploads", "severity": "critical",
            "affected": ">=5.30.0, <5.37.2", "fixed_in": "5.37.2", "body": "<p>Upgrade to 5.37.2.</p>"
        })));
    }

    /// An agent file for the collector behind the forwarder; `extra` is appended as is.
    fn config(&self, name: &str, extra: &str) -> PathBuf {
        let d = self.dir.path();
        let text = format!(
            r#"[agent]
collector = "https://localhost:{port}"
state_file = "{state}"
ca_file = "{ca}"
payload_log = true
first_tick_jitter_secs = 0
{extra}
"#,
            port = self.forwarder.addr.port(),
            state = d.join(format!("{name}-state.json")).display(),
            ca = self.ca.display(),
        );
        let path = d.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }
}

const STATIC_FACTS: &str = r#"
[facts]
version = "5.37.0"
build = "1234"
enterprise = true
os = "linux"
database = "postgres"
database_version = "15.2"
teams = 3
users = 42
activated_users = 37
"#;

fn agent(args: &[&str], config: &Path, envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("agent")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("BEACON_LOG", "warn")
        .env_remove("DO_NOT_TRACK")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {}: {}{}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

#[test]
fn preview_then_check_sends_the_previewed_url_and_notifies_once() {
    let s = setup();
    s.add_bulletin("BSA-CLI-1");
    let notified = s.dir.path().join("bulletins.jsonl");
    let config = s.config(
        "main",
        &format!(
            "{STATIC_FACTS}\n[notifier]\nkind = \"file\"\npath = \"{}\"\n",
            notified.display()
        ),
    );

    let preview = ok(&agent(&["preview"], &config, &[]));
    let url = preview
        .lines()
        .find_map(|l| l.strip_prefix("GET "))
        .unwrap_or_else(|| panic!("no URL in the preview: {preview}"))
        .to_string();
    assert!(
        url.starts_with(&format!(
            "https://localhost:{}/security?auc=37&b=5.37.0.1234&be=true&db=postgres&dbv=15.2&id=",
            s.forwarder.addr.port()
        )),
        "{url}"
    );
    assert!(url.ends_with("&os=linux&tc=3&uc=42&ut=0"), "{url}");
    assert!(preview.contains("sample report"), "{preview}");
    assert_eq!(s.forwarder.count(), 0, "preview sends nothing");

    let out = ok(&agent(&["check"], &config, &[]));
    assert!(out.contains(&format!("GET {url}")), "{out}");
    assert!(out.contains("bulletin BSA-CLI-1: notified"), "{out}");
    assert_eq!(s.forwarder.count(), 2, "the check and the bulletin fetch");
    let log = std::fs::read_to_string(s.dir.path().join("beacon-agent-payloads.log")).unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(
        first["url"],
        url.as_str(),
        "the URL sent is the one previewed"
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&notified)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["id"], "BSA-CLI-1");
    assert_eq!(lines[0]["body_html"], "<p>Upgrade to 5.37.2.</p>");

    let out = ok(&agent(&["check"], &config, &[]));
    assert!(
        out.contains("bulletin BSA-CLI-1: already notified"),
        "{out}"
    );
    assert_eq!(s.forwarder.count(), 3);
    assert_eq!(
        std::fs::read_to_string(&notified).unwrap().lines().count(),
        1
    );

    // DO_NOT_TRACK=1 on a self-hosted server: nothing is sent.
    let out = ok(&agent(&["check"], &config, &[("DO_NOT_TRACK", "1")]));
    assert!(out.contains("security_alerts is off"), "{out}");
    assert_eq!(s.forwarder.count(), 3, "no connection");
}

#[test]
fn facts_and_notifier_as_commands() {
    let s = setup();
    s.add_bulletin("BSA-CLI-2");
    let out_file = s.dir.path().join("notified.json");
    let script = s.dir.path().join("facts.sh");
    std::fs::write(
        &script,
        "echo '{\"version\":\"5.37.0\",\"database\":\"mysql\",\"users\":5}'\n",
    )
    .unwrap();
    let config = s.config(
        "commands",
        &format!(
            "[facts]\ncommand = [\"sh\", \"{}\"]\n\n[notifier]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"cat > '{}'\"]\n",
            script.display(),
            out_file.display()
        ),
    );
    let out = ok(&agent(&["check"], &config, &[]));
    assert!(out.contains("&db=mysql&"), "{out}");
    assert!(out.contains("bulletin BSA-CLI-2: notified"), "{out}");
    let got: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
    assert_eq!(got["id"], "BSA-CLI-2");
    assert_eq!(got["severity"], "critical");

    // A failing notifier command: reported, and the bulletin is offered again next time.
    let failing = s.config(
        "failing",
        &format!("{STATIC_FACTS}\n[notifier]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"echo smtp down >&2; exit 3\"]\n"),
    );
    for _ in 0..2 {
        let out = ok(&agent(&["check"], &failing, &[]));
        assert!(out.contains("bulletin BSA-CLI-2: notifier failed"), "{out}");
        assert!(out.contains("smtp down"), "{out}");
    }
}

#[test]
fn run_notifies_then_stops_on_sigterm() {
    let s = setup();
    s.add_bulletin("BSA-CLI-3");
    let notified = s.dir.path().join("run.jsonl");
    let config = s.config(
        "run",
        &format!(
            "{STATIC_FACTS}\n[notifier]\nkind = \"file\"\npath = \"{}\"\n",
            notified.display()
        ),
    );
    let mut child = Command::new(BIN)
        .args(["agent", "run", "--config"])
        .arg(&config)
        .env("BEACON_LOG", "warn")
        .env_remove("DO_NOT_TRACK")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = false;
    for _ in 0..2000 {
        if std::fs::read_to_string(&notified).is_ok_and(|t| t.contains("BSA-CLI-3")) {
            seen = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(seen, "the first tick checked and notified");
    assert!(status.success(), "{status}");
}

#[test]
fn plain_http_to_a_non_loopback_collector_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("a.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\ncollector = \"http://beacon.example.com\"\nstate_file = \"{}\"\n{STATIC_FACTS}",
            dir.path().join("state.json").display()
        ),
    )
    .unwrap();
    for cmd in ["check", "preview"] {
        let out = agent(&[cmd], &config, &[]);
        assert!(!out.status.success());
        assert!(
            text(&out.stderr).contains("plain http"),
            "{}",
            text(&out.stderr)
        );
    }
    assert!(!dir.path().join("state.json").exists());
}

#[test]
fn agent_forget_erases_its_own_server_and_only_it() {
    let s = setup();
    let config = s.config("main", STATIC_FACTS);
    ok(&agent(&["check"], &config, &[]));
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(s.dir.path().join("main-state.json")).unwrap(),
    )
    .unwrap();
    let id = state["diagnostic_id"].as_str().unwrap().to_string();
    // Another server, which must stay.
    let other = s.config("other", STATIC_FACTS);
    ok(&agent(&["check"], &other, &[]));
    let admin = s.server.admin();
    let servers = |admin: &Admin| {
        block_on(admin.get_json("/reports/fleet?include_test=true"))["total"]["servers"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(servers(&admin), 2);

    let out = ok(&agent(&["forget"], &config, &[]));
    assert!(out.contains("forgotten: 1 checks, 0 error events"), "{out}");
    assert_eq!(servers(&admin), 1, "the other server stays");
    let log = block_on(admin.get_json("/forget/log"));
    assert_eq!(log[0]["by"], "agent");
    assert_eq!(log[0]["channel"], "server");
    assert!(
        !log.to_string().contains(&id),
        "the log holds the id only as its hash"
    );
    // A server that never checked in has nothing to forget, and says so.
    let fresh = s.config("fresh", STATIC_FACTS);
    let o = agent(&["forget"], &fresh, &[]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("never checked in"),
        "{}",
        text(&o.stderr)
    );
}
