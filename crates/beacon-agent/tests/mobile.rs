//! The mobile gate against a real collector: nothing is sent (no connection) while the app's server
//! reports diagnostics off; when on, the v1.20 payload arrives with the API key and each event is
//! judged (a 20-minute "duration" is rejected, the rest accepted).

use crate::util::*;
use beacon_agent::Config;
use beacon_agent::mobile::{DeviceInfo, Measurement, MobileOutcome, MobileReporter, TraceName};
use beacon_testkit::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mobile_payloads_go_only_when_the_server_reports_diagnostics_on() {
    let tls = test_tls();
    let collector = start_collector(&tls).await;
    let key = &collector.create_api_key("android").await;
    let fwd = forwarder(collector.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        collector: Some(fwd.url()),
        ca_file: Some(tls.ca_file.clone()),
        payload_log: true,
        payload_log_file: Some(dir.path().join("payloads.log")),
        ..Config::default()
    };
    let reporter = MobileReporter::with_env(&config, key, std::sync::Arc::new(no_env)).unwrap();
    let device = DeviceInfo {
        api_level: Some(33),
        brand: Some("google".into()),
        model: Some("Pixel 7".into()),
        version: Some("1.20.0".into()),
        ..Default::default()
    };
    let now = chrono::Utc::now() - chrono::TimeDelta::minutes(1);
    let measurements = [
        Measurement::new(TraceName::TeamSwitch, now, Duration::from_millis(412)),
        Measurement::new(
            TraceName::ChannelSwitchLoaded,
            now,
            Duration::from_millis(95),
        ),
        Measurement::new(TraceName::StartOverall, now, Duration::from_secs(20 * 60)),
    ];

    let off = reporter.send(false, &measurements, &device).await.unwrap();
    assert_eq!(off, MobileOutcome::Off);
    assert_eq!(
        fwd.count(),
        0,
        "diagnostics off at the server: no connection"
    );
    assert!(!dir.path().join("payloads.log").exists());

    let sent = reporter.send(true, &measurements, &device).await.unwrap();
    let MobileOutcome::Sent { accepted, rejected } = sent else {
        panic!("not sent: {sent:?}")
    };
    assert_eq!(accepted, 2);
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].0, 2, "{rejected:?}");
    assert_eq!(fwd.count(), 1);
    let log = std::fs::read_to_string(dir.path().join("payloads.log")).unwrap();
    let line: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(line["channel"], "mobile");
    assert!(!log.contains(key), "the API key is not logged");
    let body: serde_json::Value = serde_json::from_str(line["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["data"]["trace_events"][0]["name"], "team:switch");

    // A wrong key is refused by the collector, and said so.
    let wrong =
        MobileReporter::with_env(&config, "bmk_wrong", std::sync::Arc::new(no_env)).unwrap();
    let err = wrong.send(true, &measurements, &device).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    collector.stop().await;
}
