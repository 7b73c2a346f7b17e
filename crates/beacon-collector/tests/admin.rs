//! The admin API: authentication on every route, reports with k-anonymity, operations endpoints.

use crate::util::*;
use beacon_testkit::*;
use serde_json::Value;

use beacon_collector::routes::{ALL, Access, Method, Route};

/// The route's path with an example value for its parameter.
fn example_path(r: &Route) -> String {
    let value = if r.path.contains("{key}") {
        "0123456789abcdef0123456789abcdef"
    } else if r.path.contains("{name}") {
        "android"
    } else if r.path.starts_with("/admin/v1/bulletins/") {
        "BSA-1"
    } else {
        "1"
    };
    r.with_params(value)
}

fn request(c: &TestCollector, r: &Route) -> reqwest::RequestBuilder {
    let url = format!("{}{}", c.url, example_path(r));
    match r.method {
        Method::GET => c.http.get(&url),
        Method::PATCH => c.http.patch(&url).json(&serde_json::json!({})),
        Method::DELETE => c.http.delete(&url),
        Method::POST => c.http.post(&url).json(&serde_json::json!({})),
    }
}

/// Every route of the route table that needs credentials refuses a request without them (and, on
/// the admin API, with wrong ones) with `401`, and lets a valid admin token through.
#[tokio::test]
async fn every_route_needing_credentials_refuses_a_request_without_them() {
    let c = TestCollector::start().await;
    c.add_bulletin("BSA-1", "<6.0.0").await;
    let guarded: Vec<&Route> = ALL
        .iter()
        .filter(|r| !matches!(r.access, Access::Public | Access::Session))
        .collect();
    assert!(guarded.len() >= 20, "the route table lost its admin routes");
    // Dashboard pages without a session, or with a made-up one, go to the login page.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let pages: Vec<&Route> = ALL.iter().filter(|r| r.access == Access::Session).collect();
    assert!(pages.len() >= 3, "the route table lost its dashboard pages");
    for r in &pages {
        for cookie in [None, Some(format!("beacon_session={}", "ab".repeat(32)))] {
            let url = format!("{}{}", c.url, example_path(r));
            let mut req = match r.method {
                Method::GET => no_redirects.get(&url),
                _ => no_redirects
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body("csrf=x"),
            };
            if let Some(cookie) = &cookie {
                req = req.header("cookie", cookie);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(
                resp.status(),
                303,
                "{} {} with {cookie:?}",
                r.method,
                r.path
            );
            let to = resp.headers()["location"].to_str().unwrap();
            assert!(
                to.starts_with("/ui/login"),
                "{} {} → {to}",
                r.method,
                r.path
            );
        }
    }
    for r in &guarded {
        let auths: &[Option<&str>] = match r.access {
            Access::AdminToken => &[
                None,
                Some("Bearer wrong-token"),
                Some("Basic YWRtaW46YWRtaW4="),
                Some("Bearer "),
            ],
            _ => &[None],
        };
        for auth in auths {
            let mut req = request(&c, r);
            if let Some(a) = auth {
                req = req.header("authorization", *a);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 401, "{} {} with {auth:?}", r.method, r.path);
            if r.access == Access::AdminToken {
                assert_eq!(resp.headers()["www-authenticate"], "Bearer");
            }
            let e: Value = resp.json().await.unwrap();
            assert_eq!(e["error"], "unauthorized", "{} {}", r.method, r.path);
        }
    }
    // The bulletin was not retracted by the unauthenticated calls.
    let b = c.get_admin("/bulletins/BSA-1").await;
    assert!(b["retracted_at"].is_null());
    // With the token, every admin route answers something other than 401.
    for r in guarded.iter().filter(|r| r.access == Access::AdminToken) {
        let resp = request(&c, r)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_ne!(resp.status(), 401, "{} {}", r.method, r.path);
    }
    c.stop().await;
}

#[tokio::test]
async fn openapi_lists_every_admin_route() {
    let c = TestCollector::start().await;
    let doc = c.get_admin("/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for r in ALL.iter().filter(|r| r.access == Access::AdminToken) {
        let op = &doc["paths"][r.path][r.method.as_str().to_lowercase()];
        assert!(
            op.is_object(),
            "{} {} missing from openapi.json",
            r.method,
            r.path
        );
    }
    c.stop().await;
}

async fn send_versions(c: &TestCollector, groups: &[(&str, u32)]) {
    let mut n = 0;
    for (version, count) in groups {
        for _ in 0..*count {
            n += 1;
            assert_eq!(
                c.security(&mattermost_query(&server_id(n), version, 10))
                    .await
                    .status(),
                200
            );
        }
    }
}

#[tokio::test]
async fn fleet_report_folds_groups_below_min_group_size() {
    let c = TestCollector::start().await; // min_group_size = 5
    send_versions(&c, &[("5.37.0", 5), ("5.36.0", 4), ("5.35.0", 1)]).await;
    let r = c.get_admin("/reports/fleet").await;
    assert_eq!(r["thresholded"], true);
    assert_eq!(r["min_group_size"], 5);
    let groups: Vec<(String, u64)> = r["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["key"].as_str().unwrap().to_string(),
                g["servers"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        groups,
        vec![("5.37.0".to_string(), 5), ("other".to_string(), 5)]
    );
    assert_eq!(r["total"]["servers"], 10);
    let text = r.to_string();
    assert!(
        !text.contains("5.36.0") && !text.contains("5.35.0"),
        "folded keys must not appear: {text}"
    );

    // Exactly at the threshold: kept.
    send_versions(&c, &[("5.37.0", 5), ("5.36.0", 5)]).await;
    let r = c.get_admin("/reports/fleet?by=version").await;
    let keys: Vec<_> = r["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["key"].as_str().unwrap().to_string())
        .collect();
    assert!(keys.contains(&"5.36.0".to_string()), "{keys:?}");
    c.stop().await;
}

#[tokio::test]
async fn test_installs_are_left_out_unless_asked_for() {
    let c = TestCollector::start_with(|cfg| cfg.reports.min_group_size = 1).await;
    send_versions(&c, &[("5.37.0", 2)]).await;
    let q = mattermost_query(&server_id(99), "5.37.0", 10).replace("ut=0", "ut=1");
    assert_eq!(c.security(&q).await.status(), 200);
    assert_eq!(c.get_admin("/reports/fleet").await["total"]["servers"], 2);
    assert_eq!(
        c.get_admin("/reports/fleet?include_test=true").await["total"]["servers"],
        3
    );
    assert_eq!(
        c.get_admin("/reports/growth?from=2026-03-02&to=2026-03-02")
            .await["days"][0]["servers"],
        2
    );
    c.stop().await;
}

#[tokio::test]
async fn exposure_report_counts_affected_servers_and_adoption() {
    let c = TestCollector::start_with(|cfg| cfg.reports.min_group_size = 1).await;
    c.add_bulletin("BSA-1", ">=5.30.0, <5.37.2").await;
    send_versions(&c, &[("5.37.1", 3), ("5.37.2", 2)]).await;
    c.clock().advance(chrono::Duration::days(1));
    // Next day server 1 patched.
    c.security(&mattermost_query(&server_id(1), "5.37.2", 10))
        .await;
    let r = c.get_admin("/reports/exposure?window_days=2").await;
    let b = &r["bulletins"][0];
    assert_eq!(b["id"], "BSA-1");
    assert_eq!(b["servers"], 2);
    assert_eq!(b["activated_users"], 20);
    let timeline: Vec<(u64, u64)> = b["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["servers_checked"].as_u64().unwrap() > 0)
        .map(|d| {
            (
                d["servers_checked"].as_u64().unwrap(),
                d["affected_servers"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(timeline, vec![(5, 3), (1, 0)]);
    let r = c
        .admin_get("/reports/exposure?bulletin=NOPE")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .admin_get("/reports/exposure?window_days=0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    c.stop().await;
}

#[tokio::test]
async fn report_parameters_are_validated() {
    let c = TestCollector::start().await;
    for (q, field) in [
        ("/reports/fleet?day=yesterday", "day"),
        ("/reports/fleet?by=colour", "by"),
        ("/reports/fleet?from=2026-03-05&to=2026-03-01", "from"),
        ("/reports/fleet?include_test=maybe", "include_test"),
        ("/reports/growth?to=2026-13-01", "to"),
        ("/deadletters?limit=0", "limit"),
    ] {
        let r = c.admin_get(q).send().await.unwrap();
        assert_eq!(r.status(), 400, "{q}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["field"], field, "{q}: {e}");
    }
    c.stop().await;
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let c = TestCollector::start().await;
    let r = c
        .http
        .get(format!("{}/healthz", c.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r: Value = c
        .http
        .get(format!("{}/readyz", c.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "ready");
    assert_eq!(r["store"], "sqlite");
    let with_unknown = format!("{}&new_key=1", mattermost_query(&server_id(1), "5.37.0", 1));
    assert_eq!(c.security(&with_unknown).await.status(), 200);
    c.security("id=bad").await;
    let text = c.metrics().await;
    for want in [
        "beacon_items_total{channel=\"security\",outcome=\"accepted\",reason=\"\"}",
        "beacon_items_total{channel=\"security\",outcome=\"rejected\",reason=\"invalid_id\"}",
        "beacon_http_request_duration_seconds_bucket{route=\"/security\"",
        "beacon_store_batch_size_bucket",
        "beacon_store_commit_seconds_bucket",
        "beacon_unknown_fields_total{channel=\"security\"}",
    ] {
        assert!(text.contains(want), "{want} missing from /metrics:\n{text}");
    }
    c.stop().await;
}

#[tokio::test]
async fn release_health_report_counts_servers_with_errors() {
    let c = TestCollector::start_with(|cfg| cfg.reports.min_group_size = 2).await;
    // Servers 1..=3 on 5.37.0, 4 and 5 on 5.38.0, 6 alone on 5.36.0 (folded).
    send_versions(&c, &[("5.37.0", 3), ("5.38.0", 2), ("5.36.0", 1)]).await;
    let p = c.create_project("server").await;
    // Two errors from server 1, one from 4, one from 6, one without a server.
    for (n, server) in [
        (1, Some(1)),
        (2, Some(1)),
        (3, Some(4)),
        (4, Some(6)),
        (5, None),
    ] {
        let mut event = serde_json::json!({
            "event_id": format!("{n:032x}"), "message": "boom", "level": "error", "platform": "go",
        });
        if let Some(s) = server {
            event["tags"] = serde_json::json!({ "server_id": server_id(s) });
        }
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
        assert_eq!(r.status(), 200, "event {n}");
    }
    let r = c.get_admin("/reports/releases").await;
    let rows: Vec<(&str, u64, u64)> = r["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["version"].as_str().unwrap(),
                x["servers"].as_u64().unwrap(),
                x["servers_with_errors"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![("5.38.0", 2, 1), ("5.37.0", 3, 1), ("other", 1, 1)],
        "{r}"
    );
    assert_eq!(r["thresholded"], true);
    assert_eq!(
        (r["servers"].as_u64(), r["servers_with_errors"].as_u64()),
        (Some(6), Some(3))
    );
    assert_eq!(r["releases"][0]["error_free_share"], 0.5);
    // Before the checks: nothing.
    let r = c
        .get_admin("/reports/releases?from=2000-01-01&to=2000-01-31")
        .await;
    assert_eq!(r["releases"], serde_json::json!([]));
    let bad = c
        .admin_get("/reports/releases?include_test=maybe")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    c.stop().await;
}
