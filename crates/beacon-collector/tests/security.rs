//! Channel 1 end to end over HTTP: the Mattermost request, bulletins, de-duplication, bad inputs.

use crate::util::*;
use beacon_testkit::*;
use serde_json::Value;

#[tokio::test]
async fn mattermost_request_gets_applicable_bulletins() {
    let c = TestCollector::start().await;
    c.add_bulletin("BSA-2026-0001", ">=5.30.0, <5.37.2").await;
    c.add_bulletin("BSA-2026-0002", ">=6.0.0, <6.1.0").await;

    let r = c
        .security(&mattermost_query(&server_id(1), "5.37.0", 10))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: Value = r.json().await.unwrap();
    let list = body.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], "BSA-2026-0001");
    assert_eq!(
        list[0]["applies_to_version"], "5.37.0",
        "exactly the caller's X.Y.Z"
    );
    assert_eq!(list[0]["severity"], "high");

    // Outside every range: [].
    let body: Value = c
        .security(&mattermost_query(&server_id(2), "5.37.2", 10))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body, serde_json::json!([]));
    let body: Value = c
        .security(&mattermost_query(&server_id(3), "6.0.5", 10))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body[0]["id"], "BSA-2026-0002");
    assert_eq!(body[0]["applies_to_version"], "6.0.5");

    // The bulletin body, as the Mattermost server then fetches it.
    let r = c
        .http
        .get(format!("{}/bulletins/BSA-2026-0001", c.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(r.text().await.unwrap(), "<h1>BSA-2026-0001</h1>");
    let r = c
        .http
        .get(format!("{}/bulletins/NOPE", c.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Retracted: gone from answers and from /bulletins/{id}.
    let r = c
        .admin_post("/bulletins/BSA-2026-0001/retract")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = c
        .security(&mattermost_query(&server_id(1), "5.37.0", 10))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body, serde_json::json!([]));
    let r = c
        .http
        .get(format!("{}/bulletins/BSA-2026-0001", c.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Still listed for admins, with its retraction time.
    let b = c.get_admin("/bulletins/BSA-2026-0001").await;
    assert!(b["retracted_at"].is_string());
    c.stop().await;
}

#[tokio::test]
async fn seed_extras_and_unknown_keys_are_accepted() {
    let c = TestCollector::start().await;
    let q = format!(
        "{}&dbv=15.2+%28Debian%29&lc=1764400000000&future_key=1",
        mattermost_query(&server_id(1), "5.37.0", 3)
    );
    let r = c.security(&q).await;
    assert_eq!(r.status(), 200);
    assert_eq!(c.stored_checks().await, 1);
    let fleet = c.get_admin("/reports/fleet?by=dbv&day=2026-03-02").await;
    assert_eq!(fleet["total"]["servers"], 1);
    c.stop().await;
}

#[tokio::test]
async fn invalid_bulletins_are_refused_with_the_field() {
    let c = TestCollector::start().await;
    for (body, field) in [
        (
            serde_json::json!({"id": "B-1", "title": "t", "severity": "high", "affected": "five", "body": "<p/>"}),
            "affected",
        ),
        (
            serde_json::json!({"id": "B 1", "title": "t", "severity": "high", "affected": "<1.0.0", "body": "<p/>"}),
            "id",
        ),
        (
            serde_json::json!({"id": "B-1", "title": "t", "severity": "urgent", "affected": "<1.0.0", "body": "<p/>"}),
            "body",
        ),
    ] {
        let r = c.admin_post("/bulletins").json(&body).send().await.unwrap();
        assert_eq!(r.status(), 400);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["field"], field, "{e}");
    }
    c.add_bulletin("B-1", "<1.0.0").await;
    let r = c.admin_post("/bulletins").json(&serde_json::json!({"id": "B-1", "title": "t", "severity": "high", "affected": "<1.0.0", "body": "<p/>"})).send().await.unwrap();
    assert_eq!(r.status(), 409);
    c.stop().await;
}

#[tokio::test]
async fn three_checks_one_day_count_once_and_two_days_count_in_both() {
    let c = TestCollector::start_with(|cfg| cfg.reports.min_group_size = 1).await;
    let id = server_id(42);
    for _ in 0..3 {
        assert_eq!(
            c.security(&mattermost_query(&id, "5.37.0", 10))
                .await
                .status(),
            200
        );
    }
    assert_eq!(c.stored_checks().await, 1);
    let fleet = c.get_admin("/reports/fleet?day=2026-03-02").await;
    assert_eq!(fleet["total"]["servers"], 1);
    assert_eq!(fleet["groups"][0]["servers"], 1);

    c.clock().advance(chrono::Duration::days(1));
    assert_eq!(
        c.security(&mattermost_query(&id, "5.37.1", 10))
            .await
            .status(),
        200
    );
    assert_eq!(c.stored_checks().await, 2);
    let growth = c
        .get_admin("/reports/growth?from=2026-03-02&to=2026-03-03")
        .await;
    let days = growth["days"].as_array().unwrap();
    assert_eq!(days[0]["servers"], 1);
    assert_eq!(days[1]["servers"], 1);
    assert_eq!(days[0]["new"], 1);
    assert_eq!(days[1]["new"], 0);
    // Over both days the server counts once, at its latest version.
    let fleet = c
        .get_admin("/reports/fleet?from=2026-03-02&to=2026-03-03")
        .await;
    assert_eq!(fleet["total"]["servers"], 1);
    assert_eq!(fleet["groups"][0]["key"], "5.37.1");
    c.stop().await;
}

#[tokio::test]
async fn bad_inputs_get_400_naming_the_field_and_store_nothing() {
    let c = TestCollector::start().await;
    let id = server_id(1);
    let good = mattermost_query(&id, "5.37.0", 10);
    assert_eq!(c.security(&good).await.status(), 200);
    let cases: Vec<(String, &str)> = vec![
        (good.replace(&format!("id={id}&"), ""), "id"),
        (good.replace(&id, &id[..25]), "id"),
        (good.replace(&id, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"), "id"),
        (good.replace("b=5.37.0.7777", "b=5.x"), "b"),
        (good.replace("uc=20", "uc=-1"), "uc"),
        (good.replace("uc=20", "uc=18446744073709551616"), "uc"),
        (good.replace("uc=20", "uc=99999999999999999999999"), "uc"),
        (good.replace("ut=0", "ut=2"), "ut"),
        (good.replace("be=true", "be=maybe"), "be"),
        (format!("{good}&pad={}", "x".repeat(4096)), "query"),
        (good.replace("os=linux", "os=%zz"), "os"),
        (good.replace("os=linux", "os=lin%"), "os"),
        (String::new(), "id"),
    ];
    for (q, field) in &cases {
        let r = c.security(q).await;
        assert_eq!(r.status(), 400, "{q}");
        assert_eq!(r.headers()["content-type"], "application/json");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"], "invalid_field");
        assert_eq!(e["field"], *field, "{q}: {e}");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{field}: ")),
            "{e}"
        );
    }
    assert_eq!(c.stored_checks().await, 1, "no bad input was stored");
    let dead = c
        .get_admin("/deadletters?channel=security&limit=1000")
        .await;
    assert_eq!(
        dead.as_array().unwrap().len(),
        cases.len(),
        "every rejection is kept as a dead letter"
    );
    assert!(
        dead.as_array()
            .unwrap()
            .iter()
            .all(|d| d["payload"].as_str().unwrap().len() < 1100)
    );
    c.stop().await;
}

#[tokio::test]
async fn dead_letters_are_scrubbed() {
    let c = TestCollector::start().await;
    let q = format!(
        "{}&email=alice@example.com&ip=10.1.2.3&password=hunter2",
        mattermost_query("short", "5.37.0", 1)
    );
    assert_eq!(c.security(&q).await.status(), 400);
    let dead = c.get_admin("/deadletters").await;
    let payload = dead[0]["payload"].as_str().unwrap();
    for canary in ["alice@example.com", "10.1.2.3", "hunter2"] {
        assert!(!payload.contains(canary), "{canary} in {payload}");
    }
    let db = std::fs::read(c.dir.path().join("beacon.db")).unwrap();
    let wal = std::fs::read(c.dir.path().join("beacon.db-wal")).unwrap_or_default();
    for canary in ["alice@example.com", "10.1.2.3", "hunter2"] {
        for bytes in [&db, &wal] {
            assert!(
                !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
                "{canary} on disk"
            );
        }
    }
    c.stop().await;
}
