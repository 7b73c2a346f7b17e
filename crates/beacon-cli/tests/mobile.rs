//! The mobile channel through the `beacon` binary: `beacon apikey …`, `beacon perf …`, and the raw
//! device id absent from a PostgreSQL dump.

use crate::util::*;
use beacon_testkit::*;
use serde_json::{Value, json};

fn batch(version: &str, device: u32, uid: &str, trace: &str, durs: &[i64]) -> String {
    let now_us = chrono::Utc::now().timestamp_micros();
    let events: Vec<Value> = durs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            json!({"cat": "react-native", "ph": "X", "name": trace, "ts": now_us - 60_000_000 + i as i64,
                   "dur": d, "pid": 0, "tid": 5, "args": {"instanceKey": 0, "tag": trace}})
        })
        .collect();
    json!({"data": {"trace_events": events, "device_info": {
        "api_level": 34, "brand": "samsung", "manufacturer": "samsung", "model": format!("SM-S91{}", device % 3),
        "device_unique_id": uid, "is_emulator": false, "is_tablet": false, "country": "DE",
        "system_name": "Android", "system_version": "14", "server_version": "10.2.0", "app_version": version}}})
    .to_string()
}

fn post(url: &str, key: &str, body: String) -> reqwest::blocking::Response {
    client()
        .post(format!("{url}/v1/mobile/metrics"))
        .header("x-api-key", key)
        .body(body)
        .send()
        .unwrap()
}

fn create_key(url: &str, name: &str) -> String {
    let out = beacon(&["apikey", "create", name], url);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let key = stdout
        .lines()
        .find(|l| l.starts_with("bmk_"))
        .unwrap_or_else(|| panic!("no key in {stdout}"))
        .to_string();
    assert_eq!(key.len(), 68);
    key
}

#[test]
fn apikey_and_perf_commands_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[("BEACON_ADMIN_TOKEN", ADMIN_TOKEN)]);
    let url = server.url.clone();
    let key = create_key(&url, "android");

    // Two app versions on six devices each; 3.1 is 40 % slower on channel:switch_loaded.
    for (version, factor) in [("3.0.0", 10), ("3.1.0", 14)] {
        for device in 0..6u32 {
            let durs: Vec<i64> = (0..50)
                .map(|i| (100_000 + i * 4_000 + i64::from(device) * 500) * factor / 10)
                .collect();
            let uid = format!("{version}/{device}");
            let r = post(
                &url,
                &key,
                batch(version, device, &uid, "channel:switch_loaded", &durs),
            );
            assert_eq!(r.status(), 200);
            assert_eq!(r.json::<Value>().unwrap()["accepted"], 50);
        }
    }

    let out = beacon(
        &[
            "perf",
            "percentiles",
            "--trace",
            "channel:switch_loaded",
            "--by",
            "app_version",
        ],
        &url,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains("APP_VERSION") && table.contains("P95"),
        "{table}"
    );
    assert!(
        table.contains("3.0.0") && table.contains("3.1.0"),
        "{table}"
    );
    let out = beacon(
        &[
            "perf",
            "percentiles",
            "--trace",
            "channel:switch_loaded",
            "--by",
            "app_version",
            "--json",
        ],
        &url,
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let counts: Vec<u64> = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, vec![300, 300]);

    let out = beacon(
        &["perf", "histogram", "--trace", "channel:switch_loaded"],
        &url,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains('#'), "{}", text(&out.stdout));

    let out = beacon(&["perf", "regressions"], &url);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains("3.0.0 → 3.1.0") && table.contains("REGRESSION"),
        "{table}"
    );
    let out = beacon(&["perf", "regressions", "--threshold", "50%"], &url);
    assert!(
        !text(&out.stdout).contains("REGRESSION"),
        "{}",
        text(&out.stdout)
    );
    let out = beacon(
        &["perf", "percentiles", "--trace", "channel:teleport"],
        &url,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not a trace name"),
        "{}",
        text(&out.stderr)
    );

    let out = beacon(&["apikey", "list"], &url);
    let list = text(&out.stdout);
    assert!(
        list.contains("android") && !list.contains(&key[12..]),
        "{list}"
    );
    let out = beacon(&["apikey", "revoke", "android"], &url);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        post(&url, &key, batch("3.1.0", 1, "x", "team:switch", &[1000])).status(),
        403
    );
    let out = beacon(&["apikey", "revoke", "nope"], &url);
    assert!(!out.status.success());
    drop(server);
}

#[test]
fn the_raw_device_id_is_absent_from_a_postgres_dump() {
    let Some(db) = TestPg::from_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = serve_on(&db, dir.path());
    let key = create_key(&server.url, "ios");
    let canary = "CANARY-UDID-8d1f2e4a-77c3-4b09-a5e6-1f0b9c3d2a71";
    for _ in 0..10 {
        let durs: Vec<i64> = (0..100).map(|i| 20_000 + i * 100).collect();
        let r = post(
            &server.url,
            &key,
            batch("4.0.0", 1, canary, "post_list:thread", &durs),
        );
        assert_eq!(r.status(), 200);
    }
    drop(server);
    let dump = db.dump();
    let (events, hash): (i64, String) = block_on(async {
        let (c, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let n = c
            .query_one("SELECT count(*) FROM trace_events", &[])
            .await
            .unwrap()
            .get(0);
        let h = c
            .query_one("SELECT device_hash FROM perf_contexts", &[])
            .await
            .unwrap()
            .get(0);
        (n, h)
    });
    assert_eq!(events, 1000);
    assert!(
        dump.contains(&hash),
        "the dump holds the pseudonymised device"
    );
    assert!(
        !dump.contains(canary),
        "the raw device id is in the postgres dump"
    );
    assert!(
        !dump.contains("8d1f2e4a"),
        "part of the raw device id is in the postgres dump"
    );
}
