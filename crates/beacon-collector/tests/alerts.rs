//! Alerts end to end: rules through the admin API, the collector's job on its manual clock, and a
//! real webhook receiver on a loopback port that records every request.

use crate::util::*;
use beacon_collector::Clock;
use beacon_testkit::*;
use chrono::{Duration, Timelike};
use serde_json::{Value, json};

/// A collector whose alert job runs every second (on its manual clock), with k = 5.
async fn collector() -> TestCollector {
    TestCollector::start_with(configure).await
}

fn configure(c: &mut beacon_collector::Config) {
    c.alerts.interval_secs = 1;
    c.reports.min_group_size = 5;
}

/// Waits until the alert job has completed `n` more rounds (each evaluates every rule, then
/// delivers what is due): enough to say that something did not happen.
async fn rounds(c: &TestCollector, n: u64) {
    let running = c.running();
    let start = running.alert_rounds();
    for _ in 0..4000 {
        if running.alert_rounds() >= start + n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the alert job did not complete {n} rounds");
}

async fn add_rule(c: &TestCollector, body: Value) -> Value {
    let r = c.admin_post("/alerts").json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201, "{body}");
    r.json().await.unwrap()
}

fn verify(got: &Received, secret: &str) {
    assert!(got.signed_with(secret), "the signature verifies");
}

async fn send_event(c: &TestCollector, p: &Project, n: u32, message: &str, level: &str) {
    let event = json!({
        "event_id": format!("{n:032x}"), "message": message, "level": level,
        "platform": "python", "release": "1.0", "environment": "production",
    });
    let r = c
        .http
        .post(format!("{}/api/{}/store/", c.url, p.id))
        .header(
            "x-sentry-auth",
            format!("Sentry sentry_key={}, sentry_version=7", p.key),
        )
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn history(c: &TestCollector) -> Vec<Value> {
    c.get_admin("/alerts/history")
        .await
        .as_array()
        .unwrap()
        .clone()
}

/// new_issue: the first event of a new issue at or above the level notifies once, signed, without
/// the personal data the event carried; a repeat, a lower level and a restart notify nothing more.
#[tokio::test]
async fn a_new_issue_notifies_once_signed_and_scrubbed_even_across_a_restart() {
    let receiver = WebhookReceiver::start().await;
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_path_buf();
    let c = TestCollector::start_with(|c| {
        configure(c);
        c.server.data_dir = dir.clone();
        c.alerts.public_url = Some("https://beacon.example.com/".into());
    })
    .await;
    let p = c.create_project("backend").await;
    let created = add_rule(
        &c,
        json!({"name": "new errors", "kind": "new_issue", "destination": "webhook",
               "url": receiver.url(), "params": {"min_level": "error", "environment": "production"}}),
    )
    .await;
    let secret = created["secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 64);
    assert_eq!(created["url"], format!("http://{}/…", receiver.addr));
    let id = created["id"].as_i64().unwrap();

    send_event(
        &c,
        &p,
        1,
        "login failed for alice@example.com from 203.0.113.9",
        "error",
    )
    .await;
    send_event(&c, &p, 2, "a warning only", "warning").await;
    let got = receiver.wait_for(1).await;
    verify(&got[0], &secret);
    let body = got[0].json();
    let text = String::from_utf8_lossy(&got[0].body);
    assert!(
        !text.contains("alice@example.com") && !text.contains("203.0.113.9"),
        "personal data in {text}"
    );
    assert_eq!(body["kind"], "new_issue");
    assert_eq!(body["rule_id"], id);
    assert_eq!(body["episode"], 1);
    assert_eq!(body["test"], false);
    let issue = body["details"]["issue_id"].as_i64().unwrap();
    assert_eq!(
        body["link"],
        format!("https://beacon.example.com/ui/issues/{issue}")
    );
    assert_eq!(body["id"], format!("{id}:{issue}:1"));
    assert_eq!(
        got[0].header("x-beacon-delivery"),
        body["id"].as_str().unwrap()
    );
    // The same issue again, and more rounds: nothing new.
    send_event(
        &c,
        &p,
        3,
        "login failed for alice@example.com from 203.0.113.9",
        "error",
    )
    .await;
    rounds(&c, 3).await;
    assert_eq!(receiver.count(), 1);
    let h = history(&c).await;
    assert_eq!(h.len(), 1);
    assert_eq!(h[0]["status"], "delivered");
    assert_eq!(h[0]["attempts"], 1);
    let listed = c.get_admin(&format!("/alerts/{id}")).await;
    assert_eq!(listed["firing"], 1);
    assert_eq!(listed["url"], format!("http://{}/…", receiver.addr));
    assert!(!listed.to_string().contains("s3cr3t"), "{listed}");
    assert!(listed.get("secret").is_none());

    // A restart on the same database: the episode is recorded, nothing is sent again.
    c.stop().await;
    let c = TestCollector::start_with(|c| {
        configure(c);
        c.server.data_dir = dir.clone();
    })
    .await;
    rounds(&c, 3).await;
    assert_eq!(receiver.count(), 1);
    c.stop().await;
}

/// issue_spike: events of one issue in the last hour above N × its hourly average of the previous
/// 7 days (and at least the minimum) fire once; the spike ends, resolves, and a new one fires again.
#[tokio::test]
async fn an_issue_spike_fires_once_per_episode() {
    let receiver = WebhookReceiver::start().await;
    let c = collector().await;
    let p = c.create_project("web").await;
    let t0 = c.clock().now();
    // A baseline of 24 events a day on each of the 7 days before: 1 an hour on average.
    let mut n = 0;
    for day in 1..=7 {
        c.clock().set(t0 - Duration::days(day));
        for _ in 0..24 {
            n += 1;
            send_event(&c, &p, n, "database timeout", "error").await;
        }
    }
    c.clock().set(t0);
    add_rule(
        &c,
        json!({"name": "spikes", "kind": "issue_spike", "destination": "mattermost",
               "url": receiver.url(), "params": {"factor": 5, "min_count": 3}}),
    )
    .await;
    // 4 in the hour: not above 5 × 1.
    for _ in 0..4 {
        n += 1;
        send_event(&c, &p, n, "database timeout", "error").await;
    }
    rounds(&c, 3).await;
    assert_eq!(receiver.count(), 0);
    // 7 in the hour: a spike.
    for _ in 0..3 {
        n += 1;
        send_event(&c, &p, n, "database timeout", "error").await;
    }
    let got = receiver.wait_for(1).await;
    let text = got[0].json()["text"].as_str().unwrap().to_string();
    assert!(
        text.contains("“spikes” (issue_spike)") && text.contains("7 events in the last hour"),
        "{text}"
    );
    assert!(text.contains("`beacon issues show "), "{text}");
    rounds(&c, 3).await;
    assert_eq!(receiver.count(), 1, "one notification per episode");
    // Two hours later the hour is quiet: the episode resolves.
    c.clock().advance(Duration::hours(2));
    rounds(&c, 3).await;
    let rule = &c.get_admin("/alerts").await[0];
    assert_eq!(rule["firing"], 0);
    // A new spike: the second episode.
    for _ in 0..8 {
        n += 1;
        send_event(&c, &p, n, "database timeout", "error").await;
    }
    receiver.wait_for(2).await;
    rounds(&c, 3).await;
    assert_eq!(receiver.count(), 2);
    let h = history(&c).await;
    let episodes: Vec<i64> = h.iter().map(|d| d["episode"].as_i64().unwrap()).collect();
    assert_eq!(episodes, vec![2, 1]);
    c.stop().await;
}

fn trace_event(name: &str, ts: i64, dur: i64) -> Value {
    json!({"cat": "react-native", "ph": "X", "name": name, "ts": ts, "dur": dur, "pid": 0, "tid": 5,
           "args": {}})
}

fn device(version: &str, uid: &str) -> Value {
    json!({"api_level": 33, "brand": "google", "manufacturer": "Google", "model": "Pixel 8",
           "device_unique_id": uid, "is_emulator": false, "is_tablet": false, "country": "DE",
           "system_name": "Android", "system_version": "14", "server_version": "10.2.0",
           "version": version})
}

/// perf_regression: an app version slower than the one before it by the rule of `beacon perf
/// regressions` fires once; a version seen on too few devices never does.
#[tokio::test]
async fn a_perf_regression_fires_once() {
    let receiver = WebhookReceiver::start().await;
    let c = collector().await;
    let key = c.create_api_key("android").await;
    let now_us = c.clock().now().timestamp_micros();
    // 2.1.0 is 50 % slower than 2.0.0 on six devices each; 2.2.0, slower still, on two devices.
    for (version, devices, slow) in [("2.0.0", 6, 1.0), ("2.1.0", 6, 1.5), ("2.2.0", 2, 3.0)] {
        for d in 0..devices {
            let events: Vec<Value> = (0..10)
                .map(|i| {
                    trace_event(
                        "team:switch",
                        now_us - 1_000_000 * (i + 1),
                        ((200_000 + i * 10_000) as f64 * slow) as i64,
                    )
                })
                .collect();
            let body = json!({"data": {"trace_events": events,
                                       "device_info": device(version, &format!("dev-{version}-{d}"))}});
            let r = c
                .http
                .post(format!("{}/v1/mobile/metrics", c.url))
                .header("x-api-key", &key)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    }
    add_rule(
        &c,
        json!({"name": "slower app", "kind": "perf_regression", "destination": "slack",
               "url": receiver.url(), "params": {"threshold": 0.2, "min_samples": 50}}),
    )
    .await;
    let got = receiver.wait_for(1).await;
    let text = got[0].json()["text"].as_str().unwrap().to_string();
    assert!(
        text.contains("team:switch: app 2.1.0 is slower than 2.0.0"),
        "{text}"
    );
    assert!(
        text.contains("`beacon perf regressions --threshold 0.2 --min-samples 50`"),
        "{text}"
    );
    assert!(
        !text.contains("2.2.0"),
        "a version on 2 devices stays out: {text}"
    );
    rounds(&c, 3).await;
    assert_eq!(receiver.count(), 1);
    c.stop().await;
}

/// exposure: N days after publication, servers on affected versions still at least X % of those
/// that checked in fire once; once they upgrade, the episode resolves.
#[tokio::test]
async fn exposure_fires_after_its_days_and_resolves_when_the_fleet_patches() {
    let receiver = WebhookReceiver::start().await;
    let c = collector().await;
    c.add_bulletin("BSA-2026-0042", ">=9.0.0, <9.5.1").await;
    let check_in = |version: &'static str, servers: std::ops::Range<u32>| {
        let c = &c;
        async move {
            for n in servers {
                let r = c
                    .security(&mattermost_query(&server_id(n), version, 10))
                    .await;
                assert_eq!(r.status(), 200);
            }
        }
    };
    check_in("9.5.0", 0..6).await;
    add_rule(
        &c,
        json!({"name": "unpatched", "kind": "exposure", "destination": "webhook",
               "url": receiver.url(), "params": {"after_days": 2, "percent": 50}}),
    )
    .await;
    rounds(&c, 3).await;
    assert_eq!(receiver.count(), 0, "not 2 days yet");
    c.clock().advance(Duration::days(2));
    check_in("9.5.0", 0..6).await;
    let got = receiver.wait_for(1).await;
    let body = got[0].json();
    assert_eq!(body["episode_key"], "BSA-2026-0042");
    assert_eq!(body["details"]["affected_servers"], 6);
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains("100 % of the servers that checked in (6 of 6)"),
        "{body}"
    );
    // Five of six upgrade (their latest check in the window is on 9.5.1): resolved, no message.
    c.clock().advance(Duration::days(1));
    check_in("9.5.1", 0..5).await;
    rounds(&c, 3).await;
    assert_eq!(c.get_admin("/alerts").await[0]["firing"], 0);
    assert_eq!(receiver.count(), 1);
    c.stop().await;
}

/// fleet_drop: a fleet filled by the simulator for a week, then a day on which nobody checks in by
/// 13:00, fires once; servers checking in again resolve it; the next silent day fires again.
#[tokio::test]
async fn a_fleet_drop_fires_once_per_episode() {
    let receiver = WebhookReceiver::start().await;
    let c = collector().await;
    let clock = c.shared_clock();
    let sim = beacon_sim::SimConfig {
        url: c.url.clone(),
        servers: 40,
        devices: 0,
        days: 8,
        seed: 3,
        rate: None,
        concurrency: 4,
        project_dsn: None,
        api_key: None,
        ca_cert: None,
        progress: false,
        record: None,
    };
    let hooks = beacon_sim::Hooks {
        on_day: Some(Box::new(move |day| {
            clock.set(day.and_hms_opt(12, 0, 0).unwrap().and_utc())
        })),
    };
    let summary = beacon_sim::run(sim, hooks)
        .await
        .expect("the simulator runs");
    assert!(summary.security.accepted > 0, "{summary}");
    let last = c.clock().now().date_naive();
    let growth = c
        .get_admin(&format!(
            "/reports/growth?from={}&to={last}",
            last - chrono::Days::new(7)
        ))
        .await;
    let average: f64 = growth["days"].as_array().unwrap()[1..]
        .iter()
        .map(|d| d["servers"].as_f64().unwrap())
        .sum::<f64>()
        / 7.0;
    assert!(average >= 5.0, "{growth}");
    add_rule(
        &c,
        json!({"name": "fleet", "kind": "fleet_drop", "destination": "webhook",
               "url": receiver.url(), "params": {"percent": 50}}),
    )
    .await;
    // The next day at 00:30: too early to judge a day.
    let next = (last + chrono::Days::new(1))
        .and_hms_opt(0, 30, 0)
        .unwrap()
        .and_utc();
    c.clock().set(next);
    rounds(&c, 3).await;
    assert_eq!(receiver.count(), 0);
    // 13:00 and nobody has checked in.
    c.clock().set(next + Duration::minutes(750));
    assert_eq!(c.clock().now().hour(), 13);
    let got = receiver.wait_for(1).await;
    let body = got[0].json();
    assert_eq!(body["episode_key"], "fleet");
    assert_eq!(body["details"]["servers_today"], 0);
    rounds(&c, 3).await;
    assert_eq!(receiver.count(), 1);
    // The fleet is back (as many servers as the average, checking in by 13:00): resolved.
    for n in 0..(average.ceil() as u32) {
        let r = c
            .security(&mattermost_query(&server_id(1000 + n), "10.0.0", 10))
            .await;
        assert_eq!(r.status(), 200);
    }
    rounds(&c, 3).await;
    assert_eq!(c.get_admin("/alerts").await[0]["firing"], 0);
    // The next day, silent again by 13:00: the second episode.
    c.clock().advance(Duration::days(1));
    let got = receiver.wait_for(2).await;
    assert_eq!(got[1].json()["episode"], 2);
    rounds(&c, 3).await;
    assert_eq!(receiver.count(), 2);
    c.stop().await;
}

/// A receiver that is down for two evaluation periods gets the notification after it comes back:
/// attempts at once and a minute later fail, the third (5 minutes on) is delivered, once.
#[tokio::test]
async fn a_receiver_down_for_two_periods_gets_the_notification_when_back() {
    let mut receiver = WebhookReceiver::start().await;
    let c = collector().await;
    let p = c.create_project("api").await;
    add_rule(
        &c,
        json!({"name": "down", "kind": "new_issue", "destination": "mattermost", "url": receiver.url()}),
    )
    .await;
    receiver.stop().await;
    send_event(&c, &p, 1, "panic in handler", "fatal").await;
    let attempts = |h: &[Value]| h.first().map_or(0, |d| d["attempts"].as_u64().unwrap());
    let time = |d: &Value, k: &str| {
        d[k].as_str()
            .map(|t| chrono::DateTime::parse_from_rfc3339(t).unwrap())
    };
    // An attempt is over once its retry time is set: `wait` after the attempt's start.
    let attempt_over = |h: &[Value], n: u64, wait: Duration| {
        h.first().is_some_and(|d| {
            d["attempts"] == n
                && matches!((time(d, "next_at"), time(d, "last_attempt_at")),
                            (Some(next), Some(last)) if next - last == wait)
        })
    };
    for _ in 0..2000 {
        if attempt_over(&history(&c).await, 1, Duration::minutes(1)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let h = history(&c).await;
    assert!(attempt_over(&h, 1, Duration::minutes(1)), "{h:?}");
    assert_eq!(h[0]["status"], "pending");
    let error = h[0]["last_error"].as_str().unwrap();
    assert!(error.len() > 3 && !error.contains("s3cr3t"), "{error}");
    // The next evaluation period: the second attempt fails too, and the next waits 5 minutes.
    c.clock().advance(Duration::minutes(1));
    for _ in 0..2000 {
        if attempt_over(&history(&c).await, 2, Duration::minutes(5)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(attempt_over(&history(&c).await, 2, Duration::minutes(5)));
    c.clock().advance(Duration::minutes(1));
    rounds(&c, 2).await;
    assert_eq!(
        attempts(&history(&c).await),
        2,
        "the next attempt waits 5 minutes"
    );
    // Back up; 5 minutes after the second attempt the third goes through.
    receiver.start_again().await;
    c.clock().advance(Duration::minutes(4));
    let got = receiver.wait_for(1).await;
    let text = got[0].json()["text"].as_str().unwrap().to_string();
    assert!(
        text.contains("Beacon alert “down” (new_issue): new issue #"),
        "{text}"
    );
    rounds(&c, 3).await;
    assert_eq!(receiver.count(), 1);
    let h = history(&c).await;
    assert_eq!(
        (h[0]["status"].as_str(), attempts(&h)),
        (Some("delivered"), 3)
    );
    c.stop().await;
}

/// Two collectors on one PostgreSQL database, both evaluating every second: each notification is
/// sent once; a third collector started later sends nothing again.
#[tokio::test]
async fn two_collectors_on_one_postgres_send_each_notification_once() {
    let Some(pg) = TestPg::from_env() else {
        return;
    };
    let receiver = WebhookReceiver::start().await;
    let a = TestCollector::builder()
        .postgres(&pg)
        .config(configure)
        .start()
        .await;
    let b = TestCollector::builder()
        .postgres(&pg)
        .config(configure)
        .start()
        .await;
    let p = a.create_project("shared").await;
    add_rule(
        &a,
        json!({"name": "pg", "kind": "new_issue", "destination": "webhook", "url": receiver.url()}),
    )
    .await;
    for (n, what) in ["alpha", "beta", "gamma", "delta", "epsilon"]
        .iter()
        .enumerate()
    {
        send_event(&a, &p, n as u32, &format!("{what} went wrong"), "error").await;
    }
    let got = receiver.wait_for(5).await;
    rounds(&a, 3).await;
    rounds(&b, 3).await;
    assert_eq!(receiver.count(), 5, "each issue once");
    let mut ids: Vec<String> = got.iter().map(|g| g.json()["id"].to_string()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5);
    b.stop().await;
    let c = TestCollector::builder()
        .postgres(&pg)
        .config(configure)
        .start()
        .await;
    rounds(&c, 3).await;
    assert_eq!(receiver.count(), 5);
    c.stop().await;
    a.stop().await;
}

/// The admin API: a test sends a sample (signed for a webhook, `{"text"}` for chat), recorded in
/// the history; a down destination is reported; bad rules are refused; URLs never come back whole.
#[tokio::test]
async fn rules_through_the_api_and_test_notifications() {
    let mut receiver = WebhookReceiver::start().await;
    let c = collector().await;
    let hook = add_rule(
        &c,
        json!({"name": "hook", "kind": "fleet_drop", "destination": "webhook", "url": receiver.url()}),
    )
    .await;
    assert_eq!(hook["params"], json!({"percent": 50.0}));
    assert_eq!(hook["firing"], 0);
    let chat = add_rule(
        &c,
        json!({"name": "chat", "kind": "issue_spike", "destination": "mattermost",
               "url": receiver.url(), "params": {"project_id": 1}}),
    )
    .await;
    assert_eq!(chat["secret"], Value::Null);
    assert_eq!(
        chat["params"],
        json!({"project_id": 1, "factor": 10.0, "min_count": 10})
    );
    let test = c
        .admin_post(&format!("/alerts/{}/test", hook["id"]))
        .send()
        .await
        .unwrap();
    assert_eq!(test.status(), 200);
    let test: Value = test.json().await.unwrap();
    assert_eq!(
        (test["delivered"].as_bool(), test["status"].as_u64()),
        (Some(true), Some(200))
    );
    assert_eq!(test["delivery"]["status"], "delivered");
    assert_eq!(test["delivery"]["episode"], 0);
    let got = receiver.wait_for(1).await;
    verify(&got[0], hook["secret"].as_str().unwrap());
    assert_eq!(got[0].json()["test"], true);
    let test: Value = c
        .admin_post(&format!("/alerts/{}/test", chat["id"]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(test["delivered"], true);
    let got = receiver.wait_for(2).await;
    let text = got[1].json()["text"].as_str().unwrap().to_string();
    assert!(
        text.starts_with("[test] Beacon alert “chat” (issue_spike)"),
        "{text}"
    );
    // Down: reported, recorded as failed, never retried.
    receiver.stop().await;
    let test: Value = c
        .admin_post(&format!("/alerts/{}/test", chat["id"]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(test["delivered"], false);
    assert_eq!(test["delivery"]["status"], "failed");
    let h = history(&c).await;
    assert_eq!(h.len(), 3);
    assert!(!serde_json::to_string(&h).unwrap().contains("s3cr3t"));

    for (bad, field) in [
        (
            json!({"name": "x", "kind": "new_issue", "destination": "slack", "url": "ftp://a/b"}),
            "url",
        ),
        (
            json!({"name": "x", "kind": "new_issue", "destination": "slack", "url": receiver.url(),
                "params": {"factor": 3}}),
            "params.factor",
        ),
        (
            json!({"name": "x", "kind": "exposure", "destination": "slack", "url": receiver.url(),
                "params": {"percent": 120}}),
            "params.percent",
        ),
        (
            json!({"name": " ", "kind": "exposure", "destination": "slack", "url": receiver.url()}),
            "name",
        ),
    ] {
        let r = c.admin_post("/alerts").json(&bad).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["field"], field, "{e}");
    }
    let dup = c
        .admin_post("/alerts")
        .json(&json!({"name": "hook", "kind": "new_issue", "destination": "slack", "url": receiver.url()}))
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), 409);
    let list = c.get_admin("/alerts").await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains("s3cr3t"));
    let removed = c
        .http
        .delete(format!("{}/admin/v1/alerts/{}", c.url, chat["id"]))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 200);
    let gone = c
        .admin_get(&format!("/alerts/{}", chat["id"]))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    let bad_limit = c.admin_get("/alerts/history?limit=0").send().await.unwrap();
    assert_eq!(bad_limit.status(), 400);
    c.stop().await;
}
