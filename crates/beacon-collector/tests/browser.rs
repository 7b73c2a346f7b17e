//! The collector's pages in a real browser: headless Chromium over WebDriver
//! (`beacon_testkit::browser`). Skipped without Chromium, except under `CI=true`.

use axum::response::Html;
use beacon_testkit::browser::Browser;
use beacon_testkit::*;
use futures_util::FutureExt;
use serde_json::json;
use std::panic::AssertUnwindSafe;

/// A bulletin published through the admin API reads as its vendor wrote it on its public page,
/// with no error in the browser (its Content-Security-Policy forbids scripts and loads).
#[tokio::test]
async fn a_published_bulletin_reads_in_the_browser() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let c = TestCollector::start().await;
    c.admin()
        .publish_bulletin(json!({
            "id": "BSA-2026-0042",
            "title": "RCE in file uploads",
            "severity": "critical",
            "affected": ">=5.30.0, <5.37.2",
            "fixed_in": "5.37.2",
            "body": "<h1>RCE in file uploads</h1>\
                     <p style=\"color:#8a1f11\">Servers from 5.30.0 before 5.37.2 are affected.</p>\
                     <p>Upgrade to <b>5.37.2</b>.</p>",
        }))
        .await;

    browser
        .goto(&format!("{}/bulletins/BSA-2026-0042", c.url))
        .await;
    assert_eq!(browser.current_path().await, "/bulletins/BSA-2026-0042");
    assert_eq!(browser.h1().await, "RCE in file uploads");
    let text = browser.text().await;
    assert!(text.contains("Upgrade to 5.37.2."), "{text}");
    let shot = std::fs::read(browser.screenshot("bulletin-page").await).unwrap();
    assert_eq!(&shot[1..4], b"PNG");
    // The IHDR chunk: width and height, big-endian, the viewport's size.
    assert_eq!(
        &shot[16..24],
        [1280u32.to_be_bytes(), 900u32.to_be_bytes()].concat()
    );
    browser.assert_no_js_errors().await;

    // The same page downloaded with the browser's cookies (none here) is the vendor's HTML.
    let page = browser.download("/bulletins/BSA-2026-0042").await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<b>5.37.2</b>"), "{}", page.text());
}

/// The error collection sees what a page throws — during load, from a promise, on the console —
/// on every page visited, not only the last, and `assert_no_js_errors` fails on it; a clean page
/// (whose favicon is a 404) reports nothing.
#[tokio::test]
async fn javascript_errors_of_every_page_are_caught() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = axum::Router::new()
        .route(
            "/clean",
            axum::routing::get(|| async {
                Html(
                    "<!doctype html><title>clean</title><h1>Clean</h1>\
                     <script>console.log('fine'); console.warn('only a warning');</script>",
                )
            }),
        )
        .route(
            "/gone",
            axum::routing::get(|| async {
                let page = Html("<!doctype html><title>gone</title><h1>Not found</h1>");
                (axum::http::StatusCode::NOT_FOUND, page)
            }),
        )
        .route(
            "/broken-image",
            axum::routing::get(|| async {
                Html("<!doctype html><title>broken</title><img src=/missing.png alt=x>")
            }),
        )
        .route(
            "/throws",
            axum::routing::get(|| async {
                Html(
                    "<!doctype html><title>throws</title><h1>Throws</h1>\
                     <script>console.error('boom-console');</script>\
                     <script>Promise.reject(new Error('boom-promise'));</script>\
                     <script>throw new Error('boom-sync');</script>",
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    browser.goto(&format!("{base}/clean")).await;
    assert_eq!(browser.h1().await, "Clean");
    browser.assert_no_js_errors().await;

    browser.goto(&format!("{base}/throws")).await;
    assert_eq!(browser.h1().await, "Throws");
    // Another page after it: the errors of the one before are still reported.
    browser.goto(&format!("{base}/clean")).await;
    let errors = browser.js_errors().await;
    let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
    for boom in ["boom-console", "boom-promise", "boom-sync"] {
        assert!(
            messages.iter().any(|m| m.contains(boom)),
            "{boom} not caught: {errors:?}"
        );
    }
    assert_eq!(errors.len(), 3, "{errors:?}");

    let failed = AssertUnwindSafe(browser.assert_no_js_errors())
        .catch_unwind()
        .await
        .expect_err("assert_no_js_errors passed on a page that throws");
    let message = failed.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("3 error(s)") && message.contains("Uncaught Error: boom-sync"),
        "{message}"
    );

    // Taken errors are forgotten: the session goes on clean.
    assert_eq!(browser.take_js_errors().await.len(), 3);
    browser.goto(&format!("{base}/clean")).await;
    browser.assert_no_js_errors().await;

    // A page the test opens that answers 404 is the test's business; a missing image is an error.
    browser.goto(&format!("{base}/gone")).await;
    assert_eq!(browser.h1().await, "Not found");
    browser.assert_no_js_errors().await;
    browser.goto(&format!("{base}/broken-image")).await;
    let errors = browser.take_js_errors().await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].source, "network");
    assert!(errors[0].message.contains("/missing.png"), "{errors:?}");
}

/// A session-cookie login page, a page with a link and a table, and a CSV export only the
/// logged-in may read: what the dashboard tests do with the kit's helpers.
fn login_app() -> axum::Router {
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::{IntoResponse, Redirect};
    use std::collections::HashMap;

    fn logged_in(headers: &HeaderMap) -> bool {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split("; "))
            .any(|c| c == "sid=s3cr3t")
    }
    axum::Router::new()
        .route(
            "/login",
            axum::routing::get(|| async {
                Html(
                    "<!doctype html><title>Sign in</title><h1>Sign in</h1>\
                     <form method=post action=/login>\
                     <input type=hidden name=csrf value=t0k3n>\
                     <label>Name <input name=user value=old></label>\
                     <label>Days <select name=days><option value=7>7</option>\
                     <option value=30>30</option></select></label>\
                     <button>Sign in</button></form>",
                )
            })
            .post(
                |axum::Form(form): axum::Form<HashMap<String, String>>| async move {
                    if form.get("csrf").map(String::as_str) != Some("t0k3n") {
                        return StatusCode::FORBIDDEN.into_response();
                    }
                    let to = format!(
                        "/home?user={}&days={}",
                        form.get("user").map(String::as_str).unwrap_or(""),
                        form.get("days").map(String::as_str).unwrap_or("")
                    );
                    (
                        [(
                            header::SET_COOKIE,
                            "sid=s3cr3t; HttpOnly; Path=/; SameSite=Lax",
                        )],
                        Redirect::to(&to),
                    )
                        .into_response()
                },
            ),
        )
        .route(
            "/home",
            axum::routing::get(|headers: HeaderMap| async move {
                if !logged_in(&headers) {
                    return Redirect::to("/login").into_response();
                }
                Html(
                    "<!doctype html><title>Home</title><h1>Home</h1>\
                     <a href='/fleet?days=30'>Fleet by version</a>\
                     <form method=post action=/logout><button>Sign out</button></form>",
                )
                .into_response()
            }),
        )
        .route(
            "/logout",
            axum::routing::post(|| async {
                (
                    [(header::SET_COOKIE, "sid=; Path=/; Max-Age=0")],
                    Redirect::to("/login"),
                )
            }),
        )
        .route(
            "/fleet",
            axum::routing::get(|| async {
                Html(
                    "<!doctype html><title>Fleet</title><h1>Fleet</h1>\
                     <table><thead><tr><th>Version</th><th>Servers</th></tr></thead>\
                     <tbody><tr><td>5.37.0</td><td> 12 </td></tr>\
                     <tr><td>other</td><td>3</td></tr></tbody></table>\
                     <a href='/fleet.csv?days=30'>CSV</a>\
                     <form action=/fleet><input name=days value=30></form>",
                )
            }),
        )
        .route(
            "/fleet.csv",
            axum::routing::get(|headers: HeaderMap| async move {
                if !logged_in(&headers) {
                    return StatusCode::UNAUTHORIZED.into_response();
                }
                (
                    [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
                    "version,servers\n5.37.0,12\nother,3\n",
                )
                    .into_response()
            }),
        )
}

/// The helpers work on a real page: a form filled and submitted (a text field, a `<select>`, a
/// hidden CSRF token kept), the redirect followed, a link clicked by its text, a table read, a
/// download made with the session's HttpOnly cookie (refused without it), a form without a
/// submit button, and a sign-out button.
#[tokio::test]
async fn the_helpers_drive_a_login_form_links_tables_and_downloads() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, login_app()).await });

    browser.goto(&format!("{base}/home")).await;
    assert_eq!(browser.current_path().await, "/login", "not logged in yet");
    assert_eq!(browser.title().await, "Sign in");
    assert_eq!(browser.download("/fleet.csv").await.status, 401);

    browser
        .submit_form(&[("user", "ada"), ("days", "30")])
        .await;
    assert_eq!(browser.current_path().await, "/home?user=ada&days=30");
    assert_eq!(browser.h1().await, "Home");
    let cookies = browser.cookies().await;
    assert_eq!(cookies, [("sid".to_string(), "s3cr3t".to_string())]);

    browser.click_link("Fleet by version").await;
    assert_eq!(browser.h1().await, "Fleet");
    assert_eq!(browser.current_path().await, "/fleet?days=30");
    assert_eq!(
        browser.table("table").await,
        [["Version", "Servers"], ["5.37.0", "12"], ["other", "3"]]
    );
    let csv = browser.download("/fleet.csv?days=30").await;
    assert_eq!(csv.status, 200);
    assert_eq!(csv.content_type.as_deref(), Some("text/csv; charset=utf-8"));
    assert_eq!(csv.text(), "version,servers\n5.37.0,12\nother,3\n");

    // A form without a button (a filter submitted with Enter) is submitted all the same; the
    // field's old value is replaced, not appended to.
    browser.submit_form(&[("days", "7")]).await;
    assert_eq!(browser.current_path().await, "/fleet?days=7");

    // Signing out (a form with only a button) drops the cookie: the export is refused again.
    browser.goto(&format!("{base}/home")).await;
    browser.click("form[action='/logout'] button").await;
    assert_eq!(browser.current_path().await, "/login");
    assert!(browser.cookies().await.is_empty());
    assert_eq!(browser.download("/fleet.csv").await.status, 401);
    browser.assert_no_js_errors().await;
}

/// A bulletin body is the vendor's HTML, served under a Content-Security-Policy that forbids
/// scripts and loads: a script in it does not run and a remote image is not fetched, and the
/// browser reports both as errors.
#[tokio::test]
async fn a_bulletin_body_runs_no_script_and_loads_nothing() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let c = TestCollector::start().await;
    c.admin()
        .publish_bulletin(json!({
            "id": "BSA-2026-0043",
            "title": "Scripted",
            "severity": "low",
            "affected": "<5.37.2",
            "fixed_in": "5.37.2",
            "body": format!(
                "<title>unchanged</title><h1>Scripted</h1>\
                 <script>document.title = 'ran';</script>\
                 <img src='{}/metrics' alt=''>",
                c.url
            ),
        }))
        .await;
    browser
        .goto(&format!("{}/bulletins/BSA-2026-0043", c.url))
        .await;
    assert_eq!(browser.h1().await, "Scripted");
    assert_eq!(browser.title().await, "unchanged");
    let errors = browser.take_js_errors().await;
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().all(|e| e.source == "security"), "{errors:?}");
    assert!(
        errors
            .iter()
            .any(|e| e.message.contains("Blocked script execution")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.message.contains("\"img-src data:\"")),
        "{errors:?}"
    );
}

/// The dashboard as a person uses it: log in (first with a wrong token), visit every page from the
/// navigation, change a filter and see the URL and the table change, download a CSV and compare it
/// with the admin API, publish and retract a bulletin through the form, log out. No JavaScript
/// error on any page; a screenshot of each under `target/ui-screenshots/`.
#[tokio::test]
async fn the_dashboard_in_a_real_browser() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let c = TestCollector::start_with(|cfg| cfg.reports.min_group_size = 2).await;
    let mut n = 0;
    for (version, servers) in [("5.37.0", 4), ("5.38.1", 3), ("6.0.0", 2)] {
        for _ in 0..servers {
            n += 1;
            let q =
                crate::util::mattermost_query(&crate::util::server_id(n), version, 10 * n as u64);
            assert_eq!(c.security(&q).await.status(), 200);
        }
    }
    c.add_bulletin("BSA-2026-0001", "<5.38.0").await;

    // Every page wants a session first.
    browser.goto(&format!("{}/", c.url)).await;
    assert_eq!(browser.current_path().await, "/ui/login");
    browser.screenshot("dashboard-login").await;
    browser.submit_form(&[("token", "bcn_not_a_token")]).await;
    assert!(
        browser
            .text()
            .await
            .contains("That admin token is not valid.")
    );
    browser.submit_form(&[("token", ADMIN_TOKEN)]).await;
    assert_eq!(browser.current_path().await, "/ui/");
    assert_eq!(browser.h1().await, "Overview");
    browser.screenshot("dashboard-overview").await;

    // Every entry of the navigation opens its page.
    let nav: Vec<(String, String)> = {
        let links = browser.find_all("nav[aria-label=Main] a").await;
        let mut out = Vec::new();
        for a in links {
            let text = a.text().await.unwrap();
            let href = a.attr("href").await.unwrap().unwrap();
            out.push((text, href));
        }
        out
    };
    assert!(nav.len() >= 5, "{nav:?}");
    for (text, href) in &nav {
        browser.click_link(text).await;
        assert_eq!(&browser.current_path().await, href, "{text}");
        let h1 = browser.h1().await;
        assert!(!h1.is_empty() && !h1.contains("Not found"), "{text}: {h1}");
        browser
            .screenshot(&format!(
                "dashboard-{}",
                href.trim_matches('/').replace('/', "-")
            ))
            .await;
    }

    // A filter changes the URL and the table; the CSV link gives the admin API's figures.
    browser.goto(&format!("{}/ui/fleet", c.url)).await;
    let by_version = browser.table("section > .table-wrap > table").await;
    assert_eq!(by_version[0][0], "version");
    browser.submit_form(&[("by", "os")]).await;
    let url = browser.current_url().await;
    assert!(url.query().unwrap_or_default().contains("by=os"), "{url}");
    let by_os = browser.table("section > .table-wrap > table").await;
    assert_eq!(by_os[0][0], "os");
    assert_ne!(by_os, by_version);
    let csv = browser.download("/ui/fleet?by=os&format=csv").await;
    assert_eq!(csv.status, 200);
    let api = c.get_admin("/reports/fleet?by=os").await;
    let mut expected = String::from("os,servers,users,activated_users,teams\n");
    for g in api["groups"].as_array().unwrap() {
        expected.push_str(&format!(
            "{},{},{},{},{}\n",
            g["key"].as_str().unwrap(),
            g["servers"],
            g["users"],
            g["activated_users"],
            g["teams"]
        ));
    }
    assert_eq!(csv.text(), expected);

    // Publish and retract a bulletin through the forms.
    browser.goto(&format!("{}/ui/bulletins", c.url)).await;
    browser
        .submit_form(&[
            ("id", "BSA-2026-0002"),
            ("title", "Privilege escalation in plugins"),
            ("severity", "high"),
            ("affected", ">=5.30.0, <5.38.1"),
            ("fixed_in", "5.38.1"),
            ("body", "<p>Upgrade to 5.38.1.</p>"),
        ])
        .await;
    assert_eq!(browser.current_path().await, "/ui/bulletins/BSA-2026-0002");
    assert_eq!(browser.h1().await, "Bulletin BSA-2026-0002");
    browser.screenshot("dashboard-bulletin").await;
    let b = c.get_admin("/bulletins/BSA-2026-0002").await;
    assert_eq!(b["severity"], "high");
    browser.click("button.danger").await;
    let b = c.get_admin("/bulletins/BSA-2026-0002").await;
    assert!(b["retracted_at"].is_string(), "{b}");
    assert!(browser.text().await.contains("Retracted"));

    // Log out: the pages want a login again.
    browser.click("form[action='/ui/logout'] button").await;
    assert_eq!(browser.current_path().await, "/ui/login");
    browser.goto(&format!("{}/ui/fleet", c.url)).await;
    assert_eq!(browser.current_path().await, "/ui/login?next=/ui/fleet");
    browser.assert_no_js_errors().await;
    c.stop().await;
}
