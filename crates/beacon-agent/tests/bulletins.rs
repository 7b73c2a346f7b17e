//! Bulletins: each is handed to the notifier once, across restarts; a failing notifier gets it again
//! at the next check; a retracted bulletin is never notified.

use crate::util::*;
use beacon_agent::{Agent, BulletinResult, CheckOutcome, ManualClock};
use beacon_testkit::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn outcomes(o: &CheckOutcome) -> Vec<(String, BulletinResult)> {
    match o {
        CheckOutcome::Checked(r) => r
            .bulletins
            .iter()
            .map(|b| (b.id.clone(), b.result.clone()))
            .collect(),
        other => panic!("not checked: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bulletin_is_notified_once_across_restarts() {
    let tls = test_tls();
    let collector = start_collector(&tls).await;
    collector.add_bulletin("BSA-1", ">=5.30.0, <5.37.2").await;
    collector.add_bulletin("BSA-2", ">=5.37.0, <5.38.0").await;
    collector.add_bulletin("BSA-OLD", "<5.0.0").await;
    let fwd = forwarder(collector.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::default();
    let build = || {
        Agent::builder(agent_config(&fwd.url(), &tls, dir.path()))
            .facts(facts())
            .notifier(recorder.notifier())
            .env(no_env)
            .build()
            .unwrap()
    };

    let first = build().check_now().await.unwrap();
    assert_eq!(
        outcomes(&first),
        [
            ("BSA-1".to_string(), BulletinResult::Notified),
            ("BSA-2".to_string(), BulletinResult::Notified)
        ]
    );
    assert_eq!(recorder.calls(), ["BSA-1", "BSA-2"]);
    assert_eq!(fwd.count(), 3, "the check and one fetch per bulletin");

    // A new agent on the same state (a restart): the check is sent, nothing is notified again.
    let second = build().check_now().await.unwrap();
    assert_eq!(
        outcomes(&second),
        [
            ("BSA-1".to_string(), BulletinResult::AlreadyNotified),
            ("BSA-2".to_string(), BulletinResult::AlreadyNotified)
        ]
    );
    assert_eq!(recorder.calls(), ["BSA-1", "BSA-2"]);
    assert_eq!(fwd.count(), 4, "no fetch for bulletins already notified");
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_notifier_gets_the_bulletin_again_at_the_next_check() {
    let tls = test_tls();
    let collector = start_collector(&tls).await;
    collector.add_bulletin("BSA-1", ">=5.30.0, <5.37.2").await;
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::default();
    recorder.fail.store(true, Ordering::SeqCst);
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let agent = Agent::builder(agent_config(&collector.url, &tls, dir.path()))
        .facts(facts())
        .notifier(recorder.notifier())
        .clock(clock.clone())
        .env(no_env)
        .start_on(&tokio::runtime::Handle::current())
        .unwrap();
    let advance = |by: Duration, n: u64| {
        let (clock, agent) = (clock.clone(), &agent);
        async move {
            clock.advance(by);
            wait_until(&format!("tick {n}"), || agent.status().ticks >= n).await;
        }
    };

    advance(Duration::from_secs(600), 1).await;
    assert_eq!(recorder.calls(), ["BSA-1"]);
    assert_eq!(agent.status().notify_failures, 1);
    recorder.fail.store(false, Ordering::SeqCst);
    // Within the day: no check, so no second offer.
    for n in 2..=6 {
        advance(Duration::from_secs(4 * 3600), n).await;
    }
    assert_eq!(recorder.calls(), ["BSA-1"]);
    // The next check offers it again; now the notifier succeeds.
    advance(Duration::from_secs(4 * 3600), 7).await;
    assert_eq!(recorder.calls(), ["BSA-1", "BSA-1"]);
    assert_eq!(agent.status().bulletins_notified, 1);
    // And the day after, it is not offered again.
    for n in 8..=13 {
        advance(Duration::from_secs(4 * 3600), n).await;
    }
    assert_eq!(agent.status().checks, 3);
    assert_eq!(recorder.calls(), ["BSA-1", "BSA-1"]);
    agent.shutdown(Duration::from_secs(5)).await;
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retracted_bulletin_is_not_notified() {
    let tls = test_tls();
    let collector = Arc::new(start_collector(&tls).await);
    collector.add_bulletin("BSA-A", ">=5.30.0, <5.37.2").await;
    collector.add_bulletin("BSA-B", ">=5.30.0, <5.37.2").await;
    collector.add_bulletin("BSA-C", ">=5.30.0, <5.37.2").await;
    // Retracted before the check: not in the answer at all.
    collector.retract("BSA-C").await;
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::default();
    // Retracted while the agent is at work: the notifier of BSA-A retracts BSA-B, whose fetch then
    // finds it gone.
    let notify = recorder.notifier();
    let (c, rt) = (collector.clone(), tokio::runtime::Handle::current());
    let agent = Agent::builder(agent_config(&collector.url, &tls, dir.path()))
        .facts(facts())
        .notifier(move |b: &beacon_agent::Bulletin| {
            if b.notice.id == "BSA-A" {
                rt.block_on(c.retract("BSA-B"));
            }
            notify(b)
        })
        .env(no_env)
        .build()
        .unwrap();
    let first = agent.check_now().await.unwrap();
    assert_eq!(
        outcomes(&first),
        [
            ("BSA-A".to_string(), BulletinResult::Notified),
            ("BSA-B".to_string(), BulletinResult::Gone)
        ]
    );
    assert_eq!(recorder.calls(), ["BSA-A"]);
    let second = agent.check_now().await.unwrap();
    assert_eq!(
        outcomes(&second),
        [("BSA-A".to_string(), BulletinResult::AlreadyNotified)]
    );
    assert_eq!(recorder.calls(), ["BSA-A"]);
}
