//! Every switch combination — deployment self-hosted or cloud, security_alerts and diagnostics on or
//! off, DO_NOT_TRACK set or not — proven by the connections the collector received on each channel,
//! zero included. Each channel reaches the collector through its own counting forwarder.

use crate::util::*;
use beacon_agent::{Agent, Captured, Deployment, ManualClock};
use beacon_testkit::*;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
struct HostError;
impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the host failed")
    }
}
impl std::error::Error for HostError {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_switch_combination_connects_only_where_it_may() {
    let tls = test_tls();
    let collector = start_collector(&tls).await;
    let mut seen = Vec::new();
    for deployment in [Deployment::SelfHosted, Deployment::Cloud] {
        for security_alerts in [true, false] {
            for diagnostics in [true, false] {
                for dnt in [false, true] {
                    let security_fwd = forwarder(collector.addr).await;
                    let errors_fwd = forwarder(collector.addr).await;
                    let dsn = collector
                        .create_project(&format!("switches-{}", seen.len()))
                        .await
                        .dsn(&errors_fwd.url());
                    let dir = tempfile::tempdir().unwrap();
                    let mut config = agent_config(&security_fwd.url(), &tls, dir.path());
                    config.deployment = deployment;
                    config.security_alerts = security_alerts;
                    config.diagnostics = diagnostics;
                    config.errors.dsn = Some(dsn);
                    config.errors.capture_panics = false;
                    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
                    let agent = Agent::builder(config)
                        .facts(facts())
                        .clock(clock.clone())
                        .env(move |k| (dnt && k == "DO_NOT_TRACK").then(|| "1".to_string()))
                        .start_on(&tokio::runtime::Handle::current())
                        .unwrap();

                    let cloud = deployment == Deployment::Cloud;
                    let want_security = cloud || (!dnt && security_alerts);
                    let want_errors = cloud || (!dnt && diagnostics);
                    let case = format!(
                        "{deployment:?} security_alerts={security_alerts} diagnostics={diagnostics} DO_NOT_TRACK={dnt}"
                    );
                    assert_eq!(agent.switches().security_alerts, want_security, "{case}");
                    assert_eq!(agent.switches().diagnostics, want_errors, "{case}");
                    assert_eq!(agent.diagnostics_enabled(), want_errors, "{case}");

                    clock.advance(Duration::from_secs(600));
                    if want_security {
                        wait_until(&case, || agent.status().ticks >= 1).await;
                    }
                    let captured = agent.capture_error(&HostError);
                    assert_eq!(
                        captured,
                        if want_errors {
                            Captured::Queued
                        } else {
                            Captured::Off
                        },
                        "{case}"
                    );
                    // After shutdown the agent has stopped: no connection can come later.
                    let status = agent.shutdown(Duration::from_secs(10)).await;
                    assert_eq!(
                        (security_fwd.count(), errors_fwd.count()),
                        (u64::from(want_security), u64::from(want_errors)),
                        "{case}: connections (security, errors)"
                    );
                    assert_eq!(status.checks, u64::from(want_security), "{case}");
                    assert_eq!(status.errors_sent, u64::from(want_errors), "{case}");
                    if !want_security && !want_errors {
                        assert!(
                            !dir.path().join("state.json").exists(),
                            "{case}: nothing written either"
                        );
                    }
                    seen.push((security_fwd.count(), errors_fwd.count()));
                }
            }
        }
    }
    assert_eq!(seen.len(), 16);
    assert!(seen.contains(&(0, 0)) && seen.contains(&(1, 1)));
    assert!(seen.contains(&(1, 0)) && seen.contains(&(0, 1)));
    collector.stop().await;
}
