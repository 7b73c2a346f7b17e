//! Transport rules: plain http to a non-loopback host is refused before anything is sent; the
//! certificate is verified (the test CA must be given); a proxy from the configuration or from
//! `HTTPS_PROXY` carries the check, and `NO_PROXY` bypasses it.

use crate::util::*;
use beacon_agent::{Agent, BuildError, CheckError, CheckOutcome, Config};
use beacon_testkit::*;

#[test]
fn plain_http_to_a_non_loopback_host_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let build = |config: Config| {
        Agent::builder(config)
            .facts(facts())
            .env(no_env)
            .build()
            .map(|_| ())
    };
    let base = Config {
        state_file: Some(dir.path().join("state.json")),
        ..Config::default()
    };
    let refused = build(Config {
        collector: Some("http://beacon.example.com".into()),
        ..base.clone()
    });
    match refused {
        Err(BuildError::Url { what, problem }) => {
            assert_eq!(what, "collector");
            assert!(problem.contains("plain http"), "{problem}");
        }
        other => panic!("not refused: {other:?}"),
    }
    let refused = build(Config {
        security_alerts: false,
        errors: beacon_agent::ErrorsConfig {
            dsn: Some("http://0123456789abcdef0123456789abcdef@beacon.example.com/1".into()),
            ..Default::default()
        },
        ..base.clone()
    });
    assert!(
        matches!(refused, Err(BuildError::Url { ref what, .. }) if what == "errors.dsn"),
        "{refused:?}"
    );
    // Loopback over plain http is allowed, and so is any host with allow_insecure.
    for (url, allow_insecure) in [
        ("http://127.0.0.1:9", false),
        ("http://localhost:9", false),
        ("http://beacon.example.com", true),
    ] {
        build(Config {
            collector: Some(url.into()),
            allow_insecure,
            ..base.clone()
        })
        .unwrap();
    }
    assert!(!dir.path().join("state.json").exists(), "nothing was done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_an_unknown_ca_is_refused() {
    let tls = test_tls();
    let collector = start_collector(&tls).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = agent_config(&collector.url, &tls, dir.path());
    config.ca_file = None;
    let agent = Agent::builder(config)
        .facts(facts())
        .env(no_env)
        .build()
        .unwrap();
    let err = agent.check_now().await.unwrap_err();
    assert!(matches!(err, CheckError::Send(_)), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert_eq!(collector.stored_checks().await, 0);
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_proxy_carries_the_check() {
    let tls = test_tls();
    let collector = start_collector(&tls).await;
    collector.add_bulletin("BSA-1", ">=5.30.0, <5.37.2").await;
    let proxy = connect_proxy().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = agent_config(&collector.url, &tls, dir.path());
    config.proxy = Some(format!("http://{}", proxy.addr));
    let agent = Agent::builder(config)
        .facts(facts())
        .notifier(Recorder::default().notifier())
        .env(no_env)
        .build()
        .unwrap();
    let outcome = agent.check_now().await.unwrap();
    assert!(matches!(outcome, CheckOutcome::Checked(_)), "{outcome:?}");
    assert_eq!(proxy.count(), 2, "the check and the bulletin fetch");
    assert_eq!(collector.stored_checks().await, 1);
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_proxy_from_the_environment_and_no_proxy() {
    let tls = test_tls();
    let collector = start_collector(&tls).await;
    let proxy = connect_proxy().await;
    let fwd = forwarder(collector.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let proxy_url = format!("http://{}", proxy.addr);
    let check = |no_proxy: Option<&'static str>| {
        let proxy_url = proxy_url.clone();
        Agent::builder(agent_config(&fwd.url(), &tls, dir.path()))
            .facts(facts())
            .env(move |k| match k {
                "HTTPS_PROXY" => Some(proxy_url.clone()),
                "NO_PROXY" => no_proxy.map(str::to_string),
                _ => None,
            })
            .build()
            .unwrap()
    };
    check(None).check_now().await.unwrap();
    assert_eq!((proxy.count(), fwd.count()), (1, 1), "through the proxy");
    check(Some("localhost")).check_now().await.unwrap();
    assert_eq!((proxy.count(), fwd.count()), (1, 2), "NO_PROXY: direct");
    collector.stop().await;
}
