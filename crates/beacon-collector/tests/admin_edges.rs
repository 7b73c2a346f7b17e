//! The admin API at its edges: dates at the calendar's limits, panics, the bearer scheme, the
//! framework's own rejections, and the headers of bulletin bodies.

use axum::routing::get;
use beacon_testkit::*;
use serde_json::Value;

/// An error answer: the status, and the project's JSON error body.
async fn error_body(r: reqwest::Response, status: u16, what: &str) -> Value {
    assert_eq!(r.status(), status, "{what}");
    assert_eq!(
        r.headers()["content-type"],
        "application/json",
        "{what}: content type"
    );
    let e: Value = r.json().await.unwrap();
    assert!(e["error"].is_string(), "{what}: {e}");
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {e}"
    );
    e
}

#[tokio::test]
async fn dates_outside_the_window_are_named_not_a_crash() {
    let c = TestCollector::start().await;
    c.add_bulletin("BSA-1", "<6.0.0").await;
    let trace = "trace=start:overall";
    for (q, field) in [
        ("/reports/growth?to=-262143-01-01", "to"),
        ("/reports/growth?from=-262143-01-01", "from"),
        ("/reports/growth?to=+262142-12-31", "to"),
        ("/reports/growth?from=1999-12-31", "from"),
        ("/reports/fleet?day=-262143-01-01", "day"),
        ("/reports/fleet?from=-262143-01-01&to=2026-01-01", "from"),
        ("/reports/fleet?to=2100-01-01", "to"),
        ("/reports/exposure?as_of=-262143-01-01", "as_of"),
        ("/reports/exposure?as_of=+262142-12-31", "as_of"),
        (&format!("/perf/percentiles?{trace}&to=-262143-01-01"), "to"),
        (
            &format!("/perf/histogram?{trace}&from=-262143-01-01"),
            "from",
        ),
        ("/perf/regressions?to=-262143-01-01", "to"),
        ("/perf/regressions?from=+262142-12-31", "from"),
        // Inside the window, but too long a range or the wrong way round.
        ("/reports/growth?from=2000-01-01&to=2099-12-31", "from"),
        (
            &format!("/perf/percentiles?{trace}&from=2000-01-01"),
            "from",
        ),
        ("/reports/fleet?from=2026-03-05&to=2026-03-01", "from"),
    ] {
        let r = c
            .admin_get(q)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{q}: no answer: {e}"));
        let e = error_body(r, 400, q).await;
        assert_eq!(e["error"], "invalid_field", "{q}: {e}");
        assert_eq!(e["field"], field, "{q}: {e}");
    }
    // The window's own edges answer.
    for q in [
        "/reports/growth?from=2000-01-01&to=2000-01-10",
        "/reports/growth?from=2099-12-01&to=2099-12-31",
        "/reports/growth?to=2000-01-01",
        "/reports/fleet?day=2000-01-01",
        "/reports/exposure?as_of=2000-01-01&window_days=366",
        "/reports/exposure?as_of=2099-12-31",
        "/perf/percentiles?trace=start:overall&to=2000-01-01",
        "/perf/regressions?from=2089-12-31&to=2099-12-31",
    ] {
        c.get_admin(q).await;
    }
    // Still serving.
    assert_eq!(
        c.admin_get("/bulletins").send().await.unwrap().status(),
        200
    );
    c.stop().await;
}

/// A row the store cannot read back is the collector's fault, not the client's: `500`, not `400`.
#[tokio::test]
async fn a_corrupt_row_answers_500_not_400() {
    let c = TestCollector::start().await;
    c.add_bulletin("BSA-1", "<6.0.0").await;
    let raw = rusqlite::Connection::open(c.dir.path().join("beacon.db")).unwrap();
    raw.busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    raw.execute(
        "UPDATE bulletins SET severity = 'apocalyptic' WHERE id = 'BSA-1'",
        [],
    )
    .unwrap();
    for path in ["/bulletins/BSA-1", "/bulletins"] {
        let e = error_body(c.admin_get(path).send().await.unwrap(), 500, path).await;
        assert_eq!(e["error"], "internal", "{path}: {e}");
        assert!(e["field"].is_null(), "{path}: {e}");
    }
    c.stop().await;
}

async fn boom() -> &'static str {
    panic!("boom")
}

#[tokio::test]
async fn a_panicking_handler_answers_500_with_the_error_body() {
    let app = beacon_collector::error::with_json_errors(
        axum::Router::new()
            .route("/boom", get(boom))
            .route("/fine", get(|| async { "fine" })),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let r = http.get(format!("{url}/boom")).send().await.unwrap();
        let e = error_body(r, 500, "panic").await;
        assert_eq!(e["error"], "internal");
        assert!(!e["message"].as_str().unwrap().contains("boom"), "{e}");
    }
    let r = http.get(format!("{url}/fine")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "fine");
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let c = TestCollector::start().await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        for value in [
            format!("{scheme} {ADMIN_TOKEN}"),
            format!("{scheme}   {ADMIN_TOKEN}  "),
        ] {
            let r = c
                .http
                .get(format!("{}/admin/v1/bulletins", c.url))
                .header("authorization", &value)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{value:?}");
        }
    }
    for value in [
        format!("Bearer{ADMIN_TOKEN}"),
        format!("Basic {ADMIN_TOKEN}"),
        format!("Bearerx {ADMIN_TOKEN}"),
        "bearer".to_string(),
        "bearer   ".to_string(),
    ] {
        let r = c
            .http
            .get(format!("{}/admin/v1/bulletins", c.url))
            .header("authorization", &value)
            .send()
            .await
            .unwrap();
        let e = error_body(r, 401, &value).await;
        assert_eq!(e["error"], "unauthorized");
    }
    c.stop().await;
}

#[tokio::test]
async fn framework_rejections_answer_the_json_error_body() {
    let c = TestCollector::start().await;
    // A path parameter that does not parse: the error names it.
    let r = c.admin_get("/issues/abc").send().await.unwrap();
    let e = error_body(r, 400, "/issues/abc").await;
    assert_eq!(e["error"], "invalid_field");
    assert_eq!(e["field"], "id");
    let r = c
        .http
        .post(format!("{}/api/abc/store/", c.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    let e = error_body(r, 400, "/api/abc/store/").await;
    assert_eq!(e["field"], "project_id");
    // Unknown routes, with and without a token.
    for path in ["/nope", "/admin/v1/nope", "/api/1/nope/"] {
        let r = c.http.get(format!("{}{path}", c.url)).send().await.unwrap();
        let e = error_body(r, 404, path).await;
        assert_eq!(e["error"], "not_found");
    }
    let r = c.admin_get("/nope").send().await.unwrap();
    error_body(r, 404, "/admin/v1/nope with a token").await;
    // A method the route does not have: 405, its Allow header kept.
    let r = c
        .http
        .delete(format!("{}/admin/v1/bulletins", c.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let allow = r.headers()["allow"].to_str().unwrap().to_string();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let e = error_body(r, 405, "DELETE /admin/v1/bulletins").await;
    assert_eq!(e["error"], "method_not_allowed");
    let r = c
        .http
        .put(format!("{}/security", c.url))
        .send()
        .await
        .unwrap();
    error_body(r, 405, "PUT /security").await;
    // JSON bodies: not JSON, no content type, wrong shape, too large.
    let r = c
        .admin_post("/projects")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let e = error_body(r, 400, "bad json").await;
    assert_eq!(e["field"], "body");
    let r = c.admin_post("/projects").body("{}").send().await.unwrap();
    let e = error_body(r, 400, "no content type").await;
    assert_eq!(e["field"], "body");
    let r = c
        .admin_post("/projects")
        .json(&serde_json::json!({"name": 5}))
        .send()
        .await
        .unwrap();
    let e = error_body(r, 400, "wrong shape").await;
    assert_eq!(e["field"], "body");
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(3 << 20));
    let r = c
        .admin_post("/projects")
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    let e = error_body(r, 413, "3 MB project").await;
    assert_eq!(e["error"], "too_large");
    // An ingest body over its limit.
    let r = c
        .http
        .post(format!("{}/api/1/envelope/", c.url))
        .header(
            "x-sentry-auth",
            "Sentry sentry_key=0123456789abcdef0123456789abcdef, sentry_version=7",
        )
        .body(vec![b'x'; beacon_collector::sentry::MAX_BODY_BYTES + 1])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    let status = r.status().as_u16();
    error_body(r, status, "oversized envelope").await;
    // Still serving, and the ordinary answers are untouched.
    assert_eq!(
        c.http
            .get(format!("{}/healthz", c.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok\n"
    );
    c.stop().await;
}

#[tokio::test]
async fn bulletin_bodies_are_sandboxed() {
    let c = TestCollector::start().await;
    c.add_bulletin("BSA-1", "<6.0.0").await;
    let r = c
        .http
        .get(format!("{}/bulletins/BSA-1", c.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let csp = h["content-security-policy"].to_str().unwrap();
    for want in ["default-src 'none'", "sandbox", "img-src data:"] {
        assert!(csp.contains(want), "{want} missing from {csp}");
    }
    assert!(!csp.contains("script-src"), "{csp}");
    assert_eq!(r.text().await.unwrap(), "<h1>BSA-1</h1>");
    let r = c
        .http
        .get(format!("{}/bulletins/BSA-404", c.url))
        .send()
        .await
        .unwrap();
    error_body(r, 404, "unknown bulletin").await;
    c.stop().await;
}
