//! The collector's pages in a real browser: headless Chromium over WebDriver
//! (`beacon_testkit::browser`). Skipped without Chromium, except under `CI=true`.

use axum::response::Html;
use beacon_collector::Clock;
use beacon_sim::{Hooks, SimConfig};
use beacon_testkit::browser::{ARROW_DOWN, Browser, ENTER, Focused};
use beacon_testkit::*;
use chrono::{Days, NaiveDate, TimeZone, Utc};
use futures_util::FutureExt;
use serde_json::{Value, json};
use std::collections::HashSet;
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

/// Days the simulator fills a dashboard's collector with: server release 10.2.0 ships on day 4 and
/// 10.2.1 on day 9, app 2.21.0 on day 5 and 2.22.0 (with its slower channel switch) on day 10.
const SIM_DAYS: u32 = 14;

/// The bulletin in force while the simulator runs.
const SIM_BULLETIN: &str = "BSA-SIM-0001";

/// A collector filled by the simulator.
struct Filled {
    c: TestCollector,
    /// The project the simulated servers send their errors to.
    project: Project,
}

fn at_noon(day: NaiveDate) -> chrono::DateTime<Utc> {
    Utc.from_utc_datetime(&day.and_hms_opt(12, 0, 0).expect("noon"))
}

/// A collector (SQLite, or `pg`) filled by the simulator through its real endpoints, a day at a
/// time on the collector's clock (as `beacon demo` does): 80 servers on five releases checking in
/// daily, error events after upgrades, 60 devices sending traces, and a bulletin published on the
/// first day. Every page then has real data; it takes seconds.
async fn simulated_collector(pg: Option<&TestPg>) -> Filled {
    let mut builder = TestCollector::builder().config(|cfg| {
        // The error bursts never meet the per-minute limit of a clock that stands still.
        cfg.errors.rate_limit_per_minute = 10_000_000;
    });
    if let Some(pg) = pg {
        builder = builder.postgres(pg);
    }
    let c = builder.start().await;
    // The simulator's last day is today.
    let first_day = Utc::now().date_naive() - Days::new(u64::from(SIM_DAYS - 1));
    let clock = c.shared_clock();
    clock.set(at_noon(first_day));
    c.admin()
        .publish_bulletin(json!({
            "id": SIM_BULLETIN,
            "title": "Remote code execution in the markdown renderer",
            "severity": "critical",
            "affected": ">=9.11.0, <10.2.1",
            "fixed_in": "10.2.1",
            "body": "<p>Upgrade to 10.2.1 or later.</p>",
        }))
        .await;
    let project = c.create_project("mattermost-server").await;
    let api_key = c.create_api_key("mattermost-mobile").await;
    let sim = SimConfig {
        url: c.url.clone(),
        servers: 80,
        devices: 60,
        days: SIM_DAYS,
        seed: 1,
        rate: None,
        concurrency: 8,
        project_dsn: Some(project.dsn(&c.url)),
        api_key: Some(api_key),
        ca_cert: None,
        progress: false,
        record: None,
    };
    let hooks = Hooks {
        on_day: Some(Box::new(move |day| clock.set(at_noon(day)))),
    };
    let summary = beacon_sim::run(sim, hooks)
        .await
        .expect("the simulator runs");
    for channel in [&summary.security, &summary.errors, &summary.mobile] {
        assert!(
            channel.items > 0 && channel.accepted == channel.items,
            "{summary}"
        );
    }
    // Reports read the perf sketches folded in the background: fold what is pending now.
    c.running().store.compact_perf().await.unwrap();
    Filled { c, project }
}

/// A figure as a page shows it (`1,204`).
fn figure(text: &str) -> u64 {
    text.trim()
        .replace(',', "")
        .parse()
        .unwrap_or_else(|e| panic!("{text:?} is no count: {e}"))
}

/// Follows every link of the page's `<main>` not followed before (`seen`) with the session's
/// cookies: each must answer 200, a "Download CSV" link with a CSV. Returns how many it followed.
async fn follow_links(browser: &Browser, seen: &mut HashSet<String>) -> usize {
    let here = browser.current_url().await;
    let mut links = Vec::new();
    for a in browser.find_all("main a[href]").await {
        let href = a.attr("href").await.unwrap().expect("an href");
        let csv = a.attr("download").await.unwrap().is_some();
        links.push((href, csv));
    }
    let mut followed = 0;
    for (href, csv) in links {
        let url = here.join(&href).unwrap();
        if !seen.insert(url.to_string()) {
            continue;
        }
        let got = browser.download(url.as_str()).await;
        assert_eq!(got.status, 200, "the link {href} on {here}");
        if csv {
            let content_type = got.content_type.unwrap_or_default();
            assert!(
                content_type.starts_with("text/csv"),
                "{href}: {content_type}"
            );
        }
        followed += 1;
    }
    followed
}

/// `GET /admin/v1/issues` with `token`: its status.
async fn admin_status(c: &TestCollector, token: &str) -> u16 {
    let r = c.http.get(format!("{}/admin/v1/issues", c.url));
    r.bearer_auth(token).send().await.unwrap().status().as_u16()
}

/// One trace event sent with the mobile API key `key`: the status (`accepted` checked on 200).
async fn mobile_status(c: &TestCollector, key: &str) -> u16 {
    let ts = c.clock().now().timestamp_micros();
    let body = json!({"data": {
        "trace_events": [{"cat": "react-native", "ph": "X", "name": "team:switch", "ts": ts,
                          "dur": 412_000, "pid": 0, "tid": 5,
                          "args": {"instanceKey": 0, "tag": "team:switch"}}],
        "device_info": {"api_level": 33, "brand": "google", "model": "Pixel 7", "version": "2.22.0"},
    }});
    let r = c.http.post(format!("{}/v1/mobile/metrics", c.url));
    let r = r.header("x-api-key", key).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    if status == 200 {
        assert_eq!(r.json::<Value>().await.unwrap()["accepted"], 1);
    }
    status
}

/// An error event `n` sent to `project` with its DSN key: the status.
async fn store_status(c: &TestCollector, project: &Project, n: u32) -> u16 {
    let auth = format!(
        "Sentry sentry_key={}, sentry_version=7, sentry_client=beacon-test/1.0",
        project.key
    );
    let event = json!({"event_id": format!("{n:032x}"), "message": "sent by the browser test",
                       "level": "error", "platform": "python"});
    let r = c.http.post(format!("{}/api/{}/store/", c.url, project.id));
    let r = r.header("x-sentry-auth", auth).json(&event).send().await;
    r.unwrap().status().as_u16()
}

/// The DSN key `key` as the admin API lists it.
async fn dsn_key(c: &TestCollector, key: &str) -> Value {
    let projects = c.get_admin("/projects").await;
    projects
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["keys"].as_array().unwrap().iter())
        .find(|k| k["public_key"] == key)
        .unwrap_or_else(|| panic!("no key {key} in {projects}"))
        .clone()
}

/// The dashboard as a person uses it, on a collector the simulator filled (`backend` names the
/// store in the screenshots, `target/ui-screenshots/dashboard-{backend}-{page}.png`): log in (first
/// with a wrong token); the overview's tiles against the admin API, and each tile's link; every
/// page of the navigation, every link on it followed; an issue from the list, a bulletin from the
/// list; filters that change the URL and the table, a relative range and its permalink; a CSV
/// against the admin API; a bulletin published and retracted; an admin token, a mobile API key
/// and a project made in the settings, each secret shown once and working until revoked there, a
/// DSN key disabled, rate-limited and enabled again; an alert rule added, tested and removed;
/// log out. No JavaScript error on any page.
/// Returns the overview's screenshot.
async fn dashboard_flow(browser: &Browser, filled: &Filled, backend: &str) -> std::path::PathBuf {
    let c = &filled.c;
    let shot = |page: &str| format!("dashboard-{backend}-{page}");
    let ui = |path: &str| format!("{}{path}", c.url);

    // Every page wants a session first.
    browser.goto(&ui("/")).await;
    assert_eq!(browser.current_path().await, "/ui/login");
    browser.screenshot(&shot("login")).await;
    browser.submit_form(&[("token", "bcn_not_a_token")]).await;
    assert_eq!(browser.current_path().await, "/ui/login");
    let text = browser.text().await;
    assert!(text.contains("That admin token is not valid."), "{text}");
    browser.submit_form(&[("token", ADMIN_TOKEN)]).await;
    assert_eq!(browser.current_path().await, "/ui/");
    assert_eq!(browser.h1().await, "Overview");
    let overview = browser.screenshot(&shot("overview")).await;

    // The overview's figures are the admin API's; every tile has something to show.
    let tiles = browser
        .execute(
            "return Array.from(document.querySelectorAll('section.tile'), t => [\
                 t.querySelector('h2 a').innerText.trim(),\
                 t.querySelector('h2 a').getAttribute('href'),\
                 t.querySelector('.value').innerText.trim()]);",
            vec![],
        )
        .await;
    let tiles: Vec<(String, String, String)> = serde_json::from_value(tiles).unwrap();
    assert_eq!(tiles.len(), 4, "{tiles:?}");
    let growth = c.get_admin("/reports/growth").await;
    let today = growth["days"].as_array().unwrap().last().unwrap()["servers"].clone();
    assert_eq!(figure(&tiles[0].2), today.as_u64().unwrap(), "{tiles:?}");
    let exposure = c
        .get_admin(&format!("/reports/exposure?bulletin={SIM_BULLETIN}"))
        .await;
    let exposed = exposure["bulletins"][0]["servers"].as_u64().unwrap();
    assert_eq!(figure(&tiles[1].2), exposed, "{tiles:?}");
    let flagged = c.get_admin("/perf/regressions").await["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["flagged"] == true)
        .count() as u64;
    assert_eq!(figure(&tiles[3].2), flagged, "{tiles:?}");
    for (title, _, value) in &tiles {
        assert!(figure(value) > 0, "{title}: nothing to show ({tiles:?})");
    }
    // Each tile opens its page; so do the bulletin and the issue it lists first.
    for (title, href, _) in &tiles {
        browser.goto(&ui("/ui/")).await;
        browser.click_link(title).await;
        assert_eq!(&browser.current_path().await, href, "{title}");
    }
    browser.goto(&ui("/ui/")).await;
    browser.click_link(SIM_BULLETIN).await;
    assert_eq!(
        browser.current_path().await,
        format!("/ui/bulletins/{SIM_BULLETIN}")
    );
    browser.goto(&ui("/ui/")).await;
    browser
        .click("section.tile li a[href^='/ui/issues/']")
        .await;
    assert!(
        browser.current_path().await.starts_with("/ui/issues/"),
        "{}",
        browser.current_path().await
    );

    // Every entry of the navigation opens its page; every link on it answers.
    let nav: Vec<(String, String)> = {
        let mut out = Vec::new();
        for a in browser.find_all("nav[aria-label=Main] a").await {
            let text = a.text().await.unwrap();
            let href = a.attr("href").await.unwrap().unwrap();
            out.push((text, href));
        }
        out
    };
    assert_eq!(nav.len(), 9, "{nav:?}");
    let mut seen = HashSet::new();
    let mut followed = 0;
    for (text, href) in &nav {
        browser.click_link(text).await;
        assert_eq!(&browser.current_path().await, href, "{text}");
        let h1 = browser.h1().await;
        assert_eq!(&h1, text, "{href}");
        browser.screenshot(&shot(&text.to_lowercase())).await;
        followed += follow_links(browser, &mut seen).await;
    }
    // The issue and bulletin links, the CSVs of six pages, a public bulletin page.
    assert!(followed >= 10, "{followed} links: {seen:?}");

    // An issue from the list: its page, its counts those of the list and of the admin API.
    browser.goto(&ui("/ui/issues?sort=count")).await;
    let list = browser.table("main > .table-wrap > table").await;
    assert_eq!(list[0][..2], ["id", "title"]);
    assert!(list.len() > 2, "{list:?}");
    let column = |name: &str| {
        let at = list[0].iter().position(|h| h == name);
        at.unwrap_or_else(|| panic!("no column {name}: {list:?}"))
    };
    let row = &list[1];
    let (id, title) = (&row[column("id")], &row[column("title")]);
    let count = figure(&row[column("count")]);
    browser
        .click("main > .table-wrap > table tbody tr:first-child td:nth-child(2) a")
        .await;
    assert_eq!(browser.current_path().await, format!("/ui/issues/{id}"));
    assert_eq!(&browser.h1().await, title);
    browser.screenshot(&shot("issue")).await;
    // The table of its own section, not a chart's data.
    let by_release = browser.table("section > .table-wrap > table").await;
    let sum: u64 = by_release[1..].iter().map(|r| figure(&r[1])).sum();
    assert_eq!(sum, count, "{by_release:?}");
    let api = c.get_admin(&format!("/issues/{id}")).await;
    assert_eq!(api["issue"]["count"], count, "{api}");
    followed = follow_links(browser, &mut seen).await;
    assert!(followed >= 1);

    // A bulletin from the list: its exposure, as the admin API counts it.
    browser.goto(&ui("/ui/bulletins")).await;
    browser.click_link(SIM_BULLETIN).await;
    assert_eq!(browser.h1().await, format!("Bulletin {SIM_BULLETIN}"));
    assert_eq!(
        figure(&browser.text_of("main p.lede strong").await),
        exposed
    );
    let by_version = browser.table("section > .table-wrap > table").await;
    assert_eq!(by_version[0][0], "version");
    assert!(by_version.len() > 1, "{by_version:?}");
    browser.screenshot(&shot("bulletin")).await;
    follow_links(browser, &mut seen).await;

    // A filter changes the URL and the table; the CSV link gives the admin API's figures.
    browser.goto(&ui("/ui/fleet")).await;
    let by_version = browser.table("section > .table-wrap > table").await;
    assert_eq!(by_version[0][0], "version");
    browser.submit_form(&[("by", "os")]).await;
    let url = browser.current_url().await;
    assert!(
        url.query_pairs().any(|(k, v)| k == "by" && v == "os"),
        "{url}"
    );
    let by_os = browser.table("section > .table-wrap > table").await;
    assert_eq!(by_os[0][0], "os");
    assert!(by_os.iter().any(|r| r[0] == "linux"), "{by_os:?}");
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

    // A relative range keeps `range=` in the URL and shows the last 7 days; its Permalink shows
    // the same table with those dates fixed, and offers no permalink of its own.
    browser.goto(&ui("/ui/growth")).await;
    browser.submit_form(&[("range", "7d")]).await;
    let url = browser.current_url().await;
    assert!(
        url.query_pairs().any(|(k, v)| k == "range" && v == "7d"),
        "{url}"
    );
    let week = browser.table("section > .table-wrap > table").await;
    let today = c.clock().now().date_naive();
    let first = today - Days::new(6);
    let days: Vec<&str> = week[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(days.len(), 7, "{week:?}");
    assert_eq!(days[0], first.to_string());
    assert_eq!(days[6], today.to_string());
    browser.click_link("Permalink").await;
    let url = browser.current_url().await;
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert!(!pairs.iter().any(|(k, _)| k == "range"), "{url}");
    for (key, day) in [("from", first), ("to", today)] {
        assert!(pairs.contains(&(key.to_string(), day.to_string())), "{url}");
    }
    assert_eq!(browser.table("section > .table-wrap > table").await, week);
    assert!(browser.find_all("a.permalink").await.is_empty());
    browser.screenshot(&shot("growth-permalink")).await;

    // Two selects at once on the performance page: a trace, by app version.
    browser.goto(&ui("/ui/perf")).await;
    let all = browser.table("section > .table-wrap > table").await;
    browser
        .submit_form(&[("trace", "channel:switch_loaded"), ("by", "app_version")])
        .await;
    let url = browser.current_url().await;
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    for want in [("trace", "channel:switch_loaded"), ("by", "app_version")] {
        assert!(
            pairs.iter().any(|(k, v)| (k.as_str(), v.as_str()) == want),
            "{url}"
        );
    }
    let by_app = browser.table("section > .table-wrap > table").await;
    assert_ne!(by_app, all);
    let versions: Vec<&str> = by_app[1..].iter().map(|r| r[0].as_str()).collect();
    assert!(versions.contains(&"2.22.0"), "{by_app:?}");
    browser.screenshot(&shot("perf-by-app-version")).await;

    // Publish and retract a bulletin through the forms.
    browser.goto(&ui("/ui/bulletins")).await;
    browser
        .submit_form(&[
            ("id", "BSA-2026-0002"),
            ("title", "Privilege escalation in plugins"),
            ("severity", "high"),
            ("affected", ">=10.1.0, <10.2.0"),
            ("fixed_in", "10.2.0"),
            ("body", "<p>Upgrade to 10.2.0.</p>"),
        ])
        .await;
    assert_eq!(browser.current_path().await, "/ui/bulletins/BSA-2026-0002");
    assert_eq!(browser.h1().await, "Bulletin BSA-2026-0002");
    let b = c.get_admin("/bulletins/BSA-2026-0002").await;
    assert_eq!(b["severity"], "high");
    browser.click("button.danger").await;
    let b = c.get_admin("/bulletins/BSA-2026-0002").await;
    assert!(b["retracted_at"].is_string(), "{b}");
    assert!(browser.text().await.contains("Retracted"));

    // An admin token made in the settings is shown once, opens the admin API, and stops when
    // revoked there.
    browser.goto(&ui("/ui/settings")).await;
    browser
        .submit(
            "form[action='/ui/settings/tokens']",
            &[("label", "browser-ops")],
        )
        .await;
    let token = browser.text_of(".secret code").await;
    assert!(
        browser.text().await.contains("admin token “browser-ops”"),
        "{}",
        browser.text().await
    );
    assert_eq!(admin_status(c, &token).await, 200);
    browser.screenshot(&shot("settings-new-token")).await;
    browser.goto(&ui("/ui/settings")).await;
    assert!(!browser.text().await.contains(&token), "shown again");
    let tokens = browser.table("section:has(#tokens) table").await;
    let row = tokens.iter().find(|r| r[1] == "browser-ops");
    let id = &row.unwrap_or_else(|| panic!("{tokens:?}"))[0];
    browser
        .click(&format!(
            "form[action='/ui/settings/tokens/{id}/revoke'] button"
        ))
        .await;
    assert_eq!(browser.current_path().await, "/ui/settings");
    assert_eq!(admin_status(c, &token).await, 401);
    let tokens = browser.table("section:has(#tokens) table").await;
    assert!(!tokens.iter().any(|r| r[1] == "browser-ops"), "{tokens:?}");

    // A mobile API key likewise, against the mobile endpoint.
    browser
        .submit(
            "form[action='/ui/settings/apikeys']",
            &[("name", "browser-app")],
        )
        .await;
    let key = browser.text_of(".secret code").await;
    assert!(key.starts_with("bmk_"), "{key}");
    assert_eq!(mobile_status(c, &key).await, 200);
    browser.goto(&ui("/ui/settings")).await;
    assert!(!browser.text().await.contains(&key), "shown again");
    browser
        .click("form[action='/ui/settings/apikeys/browser-app/revoke'] button")
        .await;
    assert_eq!(browser.current_path().await, "/ui/settings");
    assert_eq!(mobile_status(c, &key).await, 403);
    let keys = browser.table("section:has(#apikeys) table").await;
    let row = keys.iter().find(|r| r[0] == "browser-app");
    let row = row.unwrap_or_else(|| panic!("{keys:?}"));
    assert!(!row[3].is_empty(), "no revoked_at: {keys:?}");

    // A DSN key disabled with a rate limit, then enabled again.
    let project = &filled.project;
    let form = format!("form[action='/ui/settings/keys/{}']", project.key);
    assert_eq!(store_status(c, project, 1).await, 200);
    browser
        .submit(
            &form,
            &[("enabled", "false"), ("rate_limit_per_minute", "600")],
        )
        .await;
    assert_eq!(browser.current_path().await, "/ui/settings");
    let k = dsn_key(c, &project.key).await;
    assert_eq!(
        (&k["enabled"], &k["rate_limit_per_minute"]),
        (&json!(false), &json!(600))
    );
    assert_eq!(store_status(c, project, 2).await, 403);
    browser.submit(&form, &[("enabled", "true")]).await;
    let k = dsn_key(c, &project.key).await;
    assert_eq!(
        (&k["enabled"], &k["rate_limit_per_minute"]),
        (&json!(true), &json!(600))
    );
    assert_eq!(store_status(c, project, 3).await, 200);

    // A project made in the settings, with its first key.
    browser
        .submit(
            "form[action='/ui/settings/projects']",
            &[("name", "browser-project")],
        )
        .await;
    assert_eq!(browser.current_path().await, "/ui/settings");
    let projects = c.get_admin("/projects").await;
    let made = projects
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "browser-project");
    let made = made.unwrap_or_else(|| panic!("{projects}"));
    let heading = format!("browser-project (project {})", made["id"]);
    assert!(browser.text().await.contains(&heading), "{heading}");
    browser.screenshot(&shot("settings")).await;

    // An alert rule added in the settings: its webhook's signing secret shown once, a test sent
    // from there arrives signed with it, the URL is shown masked; then removed.
    let receiver = WebhookReceiver::start().await;
    browser
        .submit(
            "form[action='/ui/settings/alerts']",
            &[
                ("name", "browser-alerts"),
                ("kind", "issue_spike"),
                ("destination", "webhook"),
                ("url", &receiver.url()),
                ("factor", "4"),
                ("min_count", "25"),
            ],
        )
        .await;
    let secret = browser.text_of(".secret code").await;
    assert_eq!(secret.len(), 64, "{secret}");
    assert!(
        browser
            .text()
            .await
            .contains("signing secret of alert rule “browser-alerts”")
    );
    browser.goto(&ui("/ui/settings")).await;
    let page = browser.text().await;
    assert!(
        !page.contains(&secret) && !page.contains("s3cr3t"),
        "shown again"
    );
    let rules = browser.table("section:has(#alerts) table").await;
    let row = rules.iter().find(|r| r[1] == "browser-alerts");
    let row = row.unwrap_or_else(|| panic!("{rules:?}"));
    assert_eq!(row[2], "issue_spike");
    assert!(
        row[3].contains("factor=4") && row[3].contains("min_count=25"),
        "{row:?}"
    );
    assert_eq!(row[4], format!("webhook http://{}/…", receiver.addr));
    let id = row[0].clone();
    browser
        .click(&format!(
            "form[action='/ui/settings/alerts/{id}/test'] button"
        ))
        .await;
    let got = receiver.wait_for(1).await;
    assert!(got[0].signed_with(&secret));
    assert_eq!(got[0].json()["test"], true);
    let sent = browser.table("#alert-notifications table").await;
    assert!(
        sent.iter()
            .any(|r| r[1] == "browser-alerts" && r[3] == "delivered"),
        "{sent:?}"
    );
    browser.screenshot(&shot("settings-alerts")).await;
    browser
        .click(&format!(
            "form[action='/ui/settings/alerts/{id}/remove'] button"
        ))
        .await;
    assert_eq!(browser.current_path().await, "/ui/settings");
    let rules = c.get_admin("/alerts").await;
    assert!(!rules.to_string().contains("browser-alerts"), "{rules}");

    // Log out: the pages want a login again.
    browser.click("form[action='/ui/logout'] button").await;
    assert_eq!(browser.current_path().await, "/ui/login");
    browser.goto(&ui("/ui/fleet")).await;
    assert_eq!(browser.current_path().await, "/ui/login?next=/ui/fleet");
    browser.assert_no_js_errors().await;
    overview
}

/// The dashboard on SQLite (see `dashboard_flow`). With `BEACON_UPDATE_SCREENSHOT=1` its overview
/// becomes README's `docs/dashboard-overview.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let filled = simulated_collector(None).await;
    let overview = dashboard_flow(&browser, &filled, "sqlite").await;
    if std::env::var("BEACON_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        let png = std::fs::read(&overview).unwrap();
        assert!(
            png.len() < 200_000,
            "{} bytes: too big for the README",
            png.len()
        );
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
        std::fs::write(docs.join("dashboard-overview.png"), png).unwrap();
    }
    filled.c.stop().await;
}

/// The same on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser_on_postgres() {
    let Some(pg) = TestPg::from_env() else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        return;
    };
    let filled = simulated_collector(Some(&pg)).await;
    dashboard_flow(&browser, &filled, "postgres").await;
    filled.c.stop().await;
}

/// With the keyboard alone (Tab, typing, Enter, an arrow key) a person logs in, opens a page from
/// the navigation, changes a filter and applies it; every element the focus passes shows it.
#[tokio::test]
async fn the_dashboard_by_keyboard_only() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let c = TestCollector::start().await;
    browser.goto(&format!("{}/ui/login", c.url)).await;
    assert_eq!(browser.focused().await, None);

    // The first Tab shows the skip link; the token field follows.
    let mut stops = browser.tab_to("input[name=token]").await;
    assert_eq!(stops[0].description, "a \"Skip to content\" #main");
    browser.press(ADMIN_TOKEN).await;
    browser.press_navigating(ENTER).await;
    assert_eq!(browser.current_path().await, "/ui/");

    stops.extend(browser.tab_to("nav a[href='/ui/fleet']").await);
    browser.press_navigating(ENTER).await;
    assert_eq!(browser.current_path().await, "/ui/fleet");
    assert_eq!(
        browser.table("section > .table-wrap > table").await[0][0],
        "version"
    );

    stops.extend(browser.tab_to("select[name=by]").await);
    browser.press(ARROW_DOWN).await;
    let by = browser.focused().await.unwrap().description;
    assert_eq!(by, "select by \"edition\"");
    stops.extend(browser.tab_to("form.filters button").await);
    browser.screenshot("dashboard-keyboard-focus").await;
    browser.press_navigating(ENTER).await;
    let url = browser.current_url().await;
    assert!(
        url.query_pairs().any(|(k, v)| k == "by" && v == "edition"),
        "{url}"
    );
    assert_eq!(
        browser.table("section > .table-wrap > table").await[0][0],
        "edition"
    );

    let unseen: Vec<&Focused> = stops.iter().filter(|f| !f.is_visible()).collect();
    assert!(unseen.is_empty(), "focus not visible on {unseen:?}");
    assert!(stops.len() >= 10, "{stops:?}");
    browser.assert_no_js_errors().await;
}
