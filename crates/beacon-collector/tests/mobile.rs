//! Channel 3 over HTTP: the v1.20 body, API keys, per-event judgement, percentiles against exact
//! values, regressions, and the raw device id never reaching disk.

use beacon_collector::Clock;
use beacon_testkit::*;
use chrono::{TimeZone, Utc};
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The SPEC's example body, verbatim.
const SPEC_BODY: &str = r#"{"data": {"trace_events": [ {"cat": "react-native", "ph": "X", "name": "team:switch",
                             "ts": 1764400000000000, "dur": 412000, "pid": 0, "tid": 5,
                             "args": {"instanceKey": 0, "tag": "team:switch"}} ],
          "device_info": {"api_level": 33, "brand": "google", "model": "Pixel 7", "version": "1.20.0"}}}"#;

/// 2025-11-29 12:00 UTC: the SPEC body's `ts` is that morning.
fn spec_day() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 11, 29, 12, 0, 0).unwrap()
}

async fn api_key(c: &TestCollector, name: &str) -> String {
    let key = c.create_api_key(name).await;
    assert!(key.starts_with("bmk_") && key.len() == 68);
    key
}

async fn send(
    c: &TestCollector,
    key: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut r = c
        .http
        .post(format!("{}/v1/mobile/metrics", c.url))
        .header("content-type", "application/json")
        .body(body);
    if let Some(k) = key {
        r = r.header("x-api-key", k);
    }
    r.send().await.unwrap()
}

fn device(version: &str, n: u32, uid: &str) -> Value {
    json!({
        "api_level": 33, "brand": "google", "build_number": "612", "bundle_id": "com.mattermost.rn",
        "country": if n.is_multiple_of(2) { "DE" } else { "BR" }, "device_id": "panther", "device_locale": "en-US",
        "device_type": "Handset", "device_unique_id": uid, "height": 915.0, "is_emulator": false,
        "is_tablet": n.is_multiple_of(4), "manufacturer": "Google", "max_memory": 536_870_912,
        "model": format!("Pixel {}", 6 + n % 3), "server_version": "10.2.0", "system_name": "Android",
        "system_version": "14", "timezone": "Europe/Berlin", "version": version, "width": 412.0
    })
}

fn event(name: &str, ts: i64, dur: i64) -> Value {
    json!({"cat": "react-native", "ph": "X", "name": name, "ts": ts, "dur": dur, "pid": 0, "tid": 5,
           "args": {"instanceKey": 0, "tag": name}})
}

fn body(events: Vec<Value>, device_info: Value) -> String {
    json!({"data": {"trace_events": events, "device_info": device_info}}).to_string()
}

fn exact(values: &mut [i64], q: f64) -> f64 {
    values.sort_unstable();
    values[(q * (values.len() - 1) as f64).floor() as usize] as f64 / 1000.0
}

fn assert_close(got: &Value, want: f64, what: &str) {
    let got = got.as_f64().unwrap_or_else(|| panic!("{what}: {got}"));
    let err = (got - want).abs() / want;
    assert!(
        err <= 0.01 + 1e-9,
        "{what}: got {got} ms, exact {want} ms (error {err:.4})"
    );
}

#[tokio::test]
async fn spec_body_and_generated_batches_give_percentiles_within_one_percent() {
    let c = TestCollector::start().await;
    c.clock().set(spec_day());
    let key = api_key(&c, "android").await;

    let r = send(&c, Some(&key), SPEC_BODY).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"accepted": 1, "rejected": []})
    );

    // 60 batches of 100 events built from the SPEC's shape: 12 devices, two app versions, log-normal-ish
    // durations that depend on the model.
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let now_us = spec_day().timestamp_micros();
    let mut by_version: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut all: Vec<i64> = vec![412_000];
    for b in 0..60u32 {
        let n = b % 12;
        let version = if n < 6 { "2.20.0" } else { "2.21.0" };
        let events: Vec<Value> = (0..100)
            .map(|i| {
                let base = 150_000.0 * (1.0 + f64::from(n % 3) * 0.2);
                let dur = (base * (rng.random::<f64>() * 2.5).exp()) as i64;
                by_version.entry(version.to_string()).or_default().push(dur);
                all.push(dur);
                event(
                    "team:switch",
                    now_us - 3_600_000_000 + i64::from(b * 100 + i),
                    dur,
                )
            })
            .collect();
        let r = send(
            &c,
            Some(&key),
            body(events, device(version, n, &format!("uid-{n}"))),
        )
        .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["accepted"], 100);
    }

    let report = c
        .get_admin(
            "/perf/percentiles?trace=team:switch&from=2025-11-29&to=2025-11-29&by=app_version",
        )
        .await;
    assert_eq!(report["relative_accuracy"], 0.01);
    for (version, values) in &mut by_version {
        let g = report["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["value"] == version.as_str())
            .unwrap_or_else(|| panic!("{version} in {report}"));
        assert_eq!(g["count"], 3000);
        assert_eq!(g["devices"], 6);
        for (field, q) in [
            ("p50_ms", 0.5),
            ("p75_ms", 0.75),
            ("p90_ms", 0.9),
            ("p95_ms", 0.95),
            ("p99_ms", 0.99),
        ] {
            assert_close(&g[field], exact(values, q), &format!("{version} {field}"));
        }
    }
    // The SPEC body's device (no id, one event) is below min_group_size: folded.
    assert_eq!(report["thresholded"], true);
    let other = report["groups"].as_array().unwrap().last().unwrap();
    assert_eq!(
        (other["value"].as_str(), other["count"].as_u64()),
        (Some("other"), Some(1))
    );

    let total = c
        .get_admin("/perf/percentiles?trace=team:switch&from=2025-11-29&to=2025-11-29")
        .await;
    let g = &total["groups"][0];
    assert_eq!(g["count"], 6001);
    for (field, q) in [("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99)] {
        assert_close(&g[field], exact(&mut all, q), field);
    }

    let hist = c
        .get_admin("/perf/histogram?trace=team:switch&from=2025-11-29&to=2025-11-29")
        .await;
    let buckets = hist["groups"][0]["buckets"].as_array().unwrap();
    let sum: u64 = buckets.iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(sum, 6001);
    let under_200ms = all.iter().filter(|d| **d < 200_000).count() as u64;
    let counted: u64 = buckets
        .iter()
        .filter(|b| b["upper_ms"].as_f64().unwrap() <= 200.0)
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    // Bins are 2 % wide: only values within 2 % of the 200 ms edge may land on the other side.
    let near = all.iter().filter(|d| (**d - 200_000).abs() < 4_000).count() as u64;
    assert!(
        counted.abs_diff(under_200ms) <= near,
        "{counted} vs {under_200ms}"
    );

    // Every dimension answers; an unknown one or trace name is a 400 naming the field.
    for by in [
        "os_version",
        "model",
        "manufacturer",
        "tablet",
        "country",
        "server_version",
    ] {
        let r = c
            .get_admin(&format!(
                "/perf/percentiles?trace=team:switch&from=2025-11-29&to=2025-11-29&by={by}"
            ))
            .await;
        let n: u64 = r["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["count"].as_u64().unwrap())
            .sum();
        assert_eq!(n, 6001, "{by}");
    }
    for (q, field) in [
        ("trace=team:jump", "trace"),
        ("trace=team:switch&by=colour", "by"),
        ("by=model", "trace"),
    ] {
        let r = c
            .admin_get(&format!("/perf/percentiles?{q}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{q}");
        assert_eq!(r.json::<Value>().await.unwrap()["field"], field, "{q}");
    }
    c.stop().await;
}

#[tokio::test]
async fn a_thirty_percent_regression_is_flagged_and_small_or_thin_changes_are_not() {
    let c = TestCollector::start().await;
    let key = api_key(&c, "android").await;
    let now_us = c.clock().now().timestamp_micros();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    // (trace, slowdown of 2.1 against 2.0, events per version)
    let plan = [
        ("channel:switch_loaded", 1.30, 600),
        ("team:switch", 1.03, 600),
        ("posts:loading", 1.50, 50),
    ];
    for (version, factor_of) in [("2.0.0", None), ("2.1.0", Some(()))] {
        for device_n in 0..6u32 {
            let mut events = Vec::new();
            for (trace, slow, per_version) in plan {
                for i in 0..(per_version / 6) {
                    let base = 200_000.0 + rng.random::<f64>() * 300_000.0;
                    let dur = if factor_of.is_some() {
                        base * slow
                    } else {
                        base
                    };
                    events.push(event(
                        trace,
                        now_us - 1_000_000 * i64::from(i + 1),
                        dur as i64,
                    ));
                }
            }
            let uid = format!("{version}-{device_n}");
            let r = send(
                &c,
                Some(&key),
                body(events, device(version, device_n, &uid)),
            )
            .await;
            assert_eq!(r.status(), 200);
        }
    }
    let report = c.get_admin("/perf/regressions").await;
    assert_eq!(report["threshold"], 0.1);
    assert_eq!(report["min_samples"], 100);
    let rows = report["comparisons"].as_array().unwrap();
    let row = |trace: &str| {
        rows.iter()
            .find(|r| r["trace"] == trace)
            .unwrap_or_else(|| panic!("{trace}: {report}"))
    };
    let slow = row("channel:switch_loaded");
    assert_eq!(
        (slow["version"].as_str(), slow["previous_version"].as_str()),
        (Some("2.1.0"), Some("2.0.0"))
    );
    assert_eq!(slow["flagged"], true, "{slow}");
    assert!(
        (slow["p95_change"].as_f64().unwrap() - 0.30).abs() < 0.03,
        "{slow}"
    );
    let small = row("team:switch");
    assert_eq!(small["flagged"], false, "{small}");
    let thin = row("posts:loading");
    assert_eq!(thin["flagged"], false, "{thin}");
    assert_eq!(thin["too_few_samples"], true);
    assert_eq!(rows.iter().filter(|r| r["flagged"] == true).count(), 1);
    // A stricter threshold and a looser sample rule, through the query string.
    let strict = c
        .get_admin("/perf/regressions?threshold=2%25&min_samples=40")
        .await;
    let flagged: Vec<&str> = strict["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["flagged"] == true)
        .map(|r| r["trace"].as_str().unwrap())
        .collect();
    assert!(
        flagged.contains(&"channel:switch_loaded") && flagged.contains(&"posts:loading"),
        "{strict}"
    );
    c.stop().await;
}

#[tokio::test]
async fn the_raw_device_id_never_reaches_the_sqlite_files() {
    let c = TestCollector::start().await;
    let key = api_key(&c, "android").await;
    let canary = "CANARY-DEVICE-3f9e1c7a-5b2d-4e8f-9a61-0c4d2b7e8f13";
    let now_us = c.clock().now().timestamp_micros();
    for b in 0..10 {
        let mut events: Vec<Value> = (0..100)
            .map(|i| event("posts:loading", now_us - 1000 * (b * 100 + i), 50_000 + i))
            .collect();
        // A rejected event too: its dead letter must not carry the id either.
        events.push(event("posts:loading", now_us, -1));
        let r = send(&c, Some(&key), body(events, device("2.0.0", 1, canary))).await;
        assert_eq!(r.status(), 200);
    }
    // A body that cannot be parsed, holding the id: refused, dead-lettered with the id masked.
    let broken =
        format!(r#"{{"data":{{"device_info":{{"device_unique_id":"{canary}"}},"trace_events":[}}"#);
    assert_eq!(send(&c, Some(&key), broken).await.status(), 400);

    let store = c.running.as_ref().unwrap().store.clone();
    assert_eq!(store.count_trace_events().await.unwrap(), 1000);
    let stored = store.trace_events(1).await.unwrap();
    let hash = stored[0].context.device_hash.clone().unwrap();
    assert_eq!(hash.len(), 64);
    store.compact_perf().await.unwrap();
    let path = c.dir.path().join("beacon.db");
    let mut bytes = std::fs::read(&path).unwrap();
    if let Ok(wal) = std::fs::read(c.dir.path().join("beacon.db-wal")) {
        bytes.extend(wal);
    }
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(
        contains(hash.as_bytes()),
        "the hashed id is stored, so the files are the right ones"
    );
    assert!(
        !contains(canary.as_bytes()),
        "the raw device id is in the database files"
    );
    assert!(
        !contains(b"3f9e1c7a-5b2d"),
        "part of the raw device id is in the database files"
    );
    let letters = c.get_admin("/deadletters?channel=mobile").await;
    assert_eq!(letters.as_array().unwrap().len(), 11);
    assert!(!letters.to_string().contains("3f9e1c7a"));
    c.stop().await;
}

#[tokio::test]
async fn bad_inputs_are_judged_per_event_or_refused_whole() {
    let c = TestCollector::start().await;
    let key = api_key(&c, "android").await;
    let now_us = c.clock().now().timestamp_micros();
    let day = 86_400_000_000i64;
    let events = vec![
        event("channel:loading", now_us, 120_000),     // 0 ok
        event("channel:teleport", now_us, 120_000),    // 1 unknown name
        event("channel:loading", now_us, 0),           // 2 dur 0
        event("channel:loading", now_us, 600_000_001), // 3 over 10 min
        event("channel:loading", now_us - 7 * day - 1, 1000), // 4 too old
        event("channel:loading", now_us + day + 1, 1000), // 5 too far ahead
        json!({"name": "channel:loading", "ts": now_us, "dur": "12ms"}), // 6 wrong type
        json!(42),                                     // 7 not an object
        event("channel:loading", now_us - 7 * day + 1, 600_000_000), // 8 ok (limits inclusive)
        event("channel:loading", now_us, -3),          // 9 negative
    ];
    let mut info = device("2.0.0", 1, "u-1");
    info["favourite_colour"] = json!("teal");
    info["imei"] = json!("356938035643809");
    let r = send(&c, Some(&key), body(events, info)).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["accepted"], 2);
    let reasons: Vec<(u64, &str)> = v["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (1, "unknown_trace_name"),
            (2, "duration_not_positive"),
            (3, "duration_too_long"),
            (4, "timestamp_too_old"),
            (5, "timestamp_in_future"),
            (6, "invalid_event"),
            (7, "invalid_event"),
            (9, "duration_not_positive"),
        ]
    );
    let store = c.running.as_ref().unwrap().store.clone();
    assert_eq!(store.count_trace_events().await.unwrap(), 2);
    let stored = store.trace_events(10).await.unwrap();
    let info = serde_json::to_string(&stored[0].context.info).unwrap();
    assert!(
        !info.contains("favourite_colour") && !info.contains("356938035643809"),
        "{info}"
    );

    // Refused whole: not JSON, wrong shape, too many events, too big; and the key checks.
    let before = store.count_trace_events().await.unwrap();
    let r = send(&c, Some(&key), "this is not json").await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["field"], "body");
    assert_eq!(
        send(&c, Some(&key), r#"{"data":{"device_info":{}}}"#)
            .await
            .status(),
        400
    );
    let many: Vec<Value> = (0..1001)
        .map(|i| event("channel:loading", now_us, 1000 + i))
        .collect();
    assert_eq!(
        send(&c, Some(&key), body(many, json!({}))).await.status(),
        413
    );
    let exactly: Vec<Value> = (0..1000)
        .map(|i| event("channel:loading", now_us, 1000 + i))
        .collect();
    assert_eq!(
        send(&c, Some(&key), body(exactly, json!({})))
            .await
            .status(),
        200
    );
    let huge = format!(
        r#"{{"data":{{"trace_events":[],"device_info":{{"model":"{}"}}}}}}"#,
        "x".repeat(1 << 20)
    );
    assert_eq!(send(&c, Some(&key), huge).await.status(), 413);
    let good = body(vec![event("channel:loading", now_us, 1000)], json!({}));
    let r = send(&c, None, good.clone()).await;
    assert_eq!(r.status(), 401);
    assert_eq!(send(&c, Some("bmk_0000"), good.clone()).await.status(), 403);
    assert_eq!(send(&c, Some("wrong"), good.clone()).await.status(), 403);
    assert_eq!(store.count_trace_events().await.unwrap(), before + 1000);

    // gzip is accepted like any other channel's.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, good.as_bytes()).unwrap();
    let r = c
        .http
        .post(format!("{}/v1/mobile/metrics", c.url))
        .header("x-api-key", &key)
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(store.count_trace_events().await.unwrap(), before + 1001);

    // Revocation applies at once on this collector; listing never shows the key itself.
    let r = c
        .http
        .delete(format!("{}/admin/v1/apikeys/android", c.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.json::<Value>().await.unwrap()["revoked_at"].is_string());
    assert_eq!(send(&c, Some(&key), good.clone()).await.status(), 403);
    let keys = c.get_admin("/apikeys").await;
    assert_eq!(keys[0]["name"], "android");
    assert!(!keys.to_string().contains(&key[4..]));
    assert_eq!(store.count_trace_events().await.unwrap(), before + 1001);

    // Every outcome is counted.
    let metrics = c.metrics().await;
    for reason in [
        "unknown_trace_name",
        "duration_not_positive",
        "timestamp_too_old",
        "invalid_event",
        "invalid_body",
        "too_large",
        "missing_api_key",
        "invalid_api_key",
    ] {
        assert!(
            metrics.contains(&format!(
                r#"beacon_items_total{{channel="mobile",outcome="rejected",reason="{reason}"}}"#
            )),
            "{reason} not counted"
        );
    }
    assert!(metrics.contains(r#"beacon_unknown_fields_total{channel="mobile"} "#));
    let letters = c.get_admin("/deadletters?channel=mobile").await;
    assert!(letters.as_array().unwrap().len() >= 10);
    c.stop().await;
}
