//! `preview` shows the exact URL the next check sends and a scrubbed sample error report, and sends
//! nothing.

use crate::util::*;
use beacon_agent::{Agent, CheckOutcome};
use beacon_testkit::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_shows_the_url_the_next_check_sends_and_sends_nothing() {
    let tls = test_tls();
    let collector = start_collector(&tls).await;
    let fwd = forwarder(collector.addr).await;
    let errors_fwd = forwarder(collector.addr).await;
    let dsn = collector
        .create_project("preview")
        .await
        .dsn(&errors_fwd.url());
    let dir = tempfile::tempdir().unwrap();
    let mut config = agent_config(&fwd.url(), &tls, dir.path());
    config.payload_log = true;
    config.errors.dsn = Some(dsn);
    config.errors.capture_panics = false;
    let agent = Agent::builder(config)
        .facts(facts())
        .env(no_env)
        .build()
        .unwrap();

    for round in 0..2 {
        let preview = agent.preview().await.unwrap();
        assert_eq!(
            (fwd.count(), errors_fwd.count()),
            (round, 0),
            "preview sends nothing"
        );
        let next = preview.next_check.clone().unwrap();
        assert_eq!(next.due.is_some(), round == 1, "{next:?}");
        let CheckOutcome::Checked(report) = agent.check_now().await.unwrap() else {
            panic!("not checked")
        };
        assert_eq!(report.url, next.url, "round {round}");
        let logged: Vec<String> =
            std::fs::read_to_string(dir.path().join("beacon-agent-payloads.log"))
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .map(|v| v["url"].as_str().unwrap().to_string())
                .collect();
        assert_eq!(
            logged.last(),
            Some(&next.url),
            "the URL sent is the one previewed"
        );

        let text = preview.to_string();
        assert!(text.contains(&format!("GET {}", next.url)), "{text}");
        let sample = &preview.error_report.envelope;
        assert!(preview.error_report.enabled);
        for canary in ["alice@example.com", "203.0.113.7", "hunter2", "/home/alice"] {
            assert!(!sample.contains(canary), "{canary} in {sample}");
        }
        assert!(sample.contains("[email]"), "{sample}");
        assert!(sample.contains("\"server_id\""), "{sample}");
    }
    assert_eq!(fwd.count(), 2);
    assert_eq!(errors_fwd.count(), 0);

    // Frames name functions from the symbol table; with resolve_lines, files and lines too.
    let default = agent.preview().await.unwrap().error_report.envelope;
    assert!(default.contains("\"function\""), "{default}");
    assert!(!default.contains("\"lineno\""), "{default}");
    let mut config = agent_config(&fwd.url(), &tls, dir.path());
    config.errors.resolve_lines = true;
    let with_lines = Agent::builder(config)
        .facts(facts())
        .env(no_env)
        .build()
        .unwrap()
        .preview()
        .await
        .unwrap()
        .error_report
        .envelope;
    assert!(with_lines.contains("\"lineno\""), "{with_lines}");
    assert!(
        with_lines.contains("\"filename\":\"preview.rs\""),
        "{with_lines}"
    );
    collector.stop().await;
}
