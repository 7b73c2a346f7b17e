//! The web dashboard over HTTP: login, sessions, CSRF, the login limit, pages and their CSV, the
//! bulletin forms, caching and compression. (The same flows in a real browser: `browser.rs`.)

use crate::util::*;
use beacon_collector::Clock;
use beacon_testkit::*;
use serde_json::Value;

/// A cookie-keeping client that does not follow redirects, so each answer can be looked at.
struct Ui {
    http: reqwest::Client,
    url: String,
    cookies: Vec<(String, String)>,
}

impl Ui {
    fn new(c: &TestCollector) -> Ui {
        Ui {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            url: c.url.clone(),
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Keeps the cookies an answer sets (an empty value or `Max-Age=0` removes one).
    fn keep(&mut self, r: &reqwest::Response) {
        for v in r.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (pair, _) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = pair.split_once('=').unwrap();
            self.cookies.retain(|(name, _)| name != k);
            if !val.is_empty() && !v.contains("Max-Age=0") {
                self.cookies.push((k.to_string(), val.to_string()));
            }
        }
    }

    async fn get(&mut self, path: &str) -> reqwest::Response {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(&r);
        r
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        self.keep(&r);
        r
    }

    /// Fetches the login form and posts `token` with its form token.
    async fn login(&mut self, token: &str, next: Option<&str>) -> reqwest::Response {
        let page = self.get("/ui/login").await.text().await.unwrap();
        let form_token = hidden(&page, "form_token");
        let mut form = vec![("token", token), ("form_token", form_token.as_str())];
        if let Some(n) = next {
            form.push(("next", n));
        }
        self.post("/ui/login", &form).await
    }

    /// The session's CSRF token, read off a page's logout form.
    async fn csrf(&mut self) -> String {
        let page = self.get("/ui/").await.text().await.unwrap();
        hidden(&page, "csrf")
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of the hidden input `name` in a page.
fn hidden(page: &str, name: &str) -> String {
    let at = page
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no hidden {name} in {page}"));
    let rest = &page[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_string()
}

fn location(r: &reqwest::Response) -> &str {
    r.headers()["location"].to_str().unwrap()
}

fn set_cookie<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie set"))
}

#[tokio::test]
async fn login_opens_a_session_and_logout_ends_it() {
    let c = TestCollector::start().await;
    let mut ui = Ui::new(&c);
    let r = ui.get("/").await;
    assert_eq!((r.status().as_u16(), location(&r)), (303, "/ui/"));
    let r = ui.get("/ui/").await;
    assert_eq!((r.status().as_u16(), location(&r)), (303, "/ui/login"));
    let r = ui.get("/ui/fleet?by=os").await;
    assert_eq!(location(&r), "/ui/login?next=/ui/fleet%3Fby%3Dos");

    // The form: one visible field, `token`, and a double-submit token in a strict cookie.
    let r = ui.get("/ui/login").await;
    assert_eq!(r.status(), 200);
    let login_cookie = set_cookie(&r, "beacon_login").to_string();
    assert!(login_cookie.contains("HttpOnly") && login_cookie.contains("SameSite=Strict"));
    assert!(!login_cookie.contains("Secure"), "no TLS here");
    let page = r.text().await.unwrap();
    assert!(page.contains("name=\"token\""));

    // A wrong token: the form again, 401, and no session.
    let r = ui.login("bcn_wrong", None).await;
    assert_eq!(r.status(), 401);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("That admin token is not valid.")
    );
    assert_eq!(ui.get("/ui/").await.status(), 303);

    // The right one: a session cookie, back to the page asked for.
    let r = ui.login(ADMIN_TOKEN, Some("/ui/fleet?by=os")).await;
    assert_eq!(
        (r.status().as_u16(), location(&r)),
        (303, "/ui/fleet?by=os")
    );
    let cookie = set_cookie(&r, "beacon_session");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=43200"] {
        assert!(cookie.contains(part), "{cookie} lacks {part}");
    }
    let r = ui.get("/ui/").await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("<h1>Overview</h1>"), "{page}");
    assert!(page.contains("Signed in as"));
    // The session is a row in the store: the cookie's id only as its hash.
    let id = ui
        .cookies
        .iter()
        .find(|(k, _)| k == "beacon_session")
        .unwrap()
        .1
        .clone();
    let db = std::fs::read(c.dir.path().join("beacon.db")).unwrap();
    assert!(
        !db.windows(id.len()).any(|w| w == id.as_bytes()),
        "the plain session id is in the database"
    );

    // Logout needs the session's CSRF token.
    let r = ui.post("/ui/logout", &[("csrf", "forged")]).await;
    assert_eq!(r.status(), 403);
    assert_eq!(ui.get("/ui/").await.status(), 200, "still logged in");
    let csrf = ui.csrf().await;
    let stolen = ui.cookie_header();
    let r = ui.post("/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!((r.status().as_u16(), location(&r)), (303, "/ui/login"));
    assert_eq!(ui.get("/ui/").await.status(), 303);
    // The old cookie is dead on the server too, not only cleared in the browser.
    let r = ui
        .http
        .get(format!("{}/ui/", c.url))
        .header("cookie", stolen)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    c.stop().await;
}

#[tokio::test]
async fn sessions_expire_and_open_redirects_are_refused() {
    let c = TestCollector::start_with(|cfg| cfg.ui.session_hours = 2).await;
    let mut ui = Ui::new(&c);
    let r = ui.login(ADMIN_TOKEN, Some("https://evil.example/")).await;
    assert_eq!(location(&r), "/ui/", "never off the dashboard");
    assert_eq!(ui.get("/ui/").await.status(), 200);
    c.clock().advance(chrono::Duration::minutes(119));
    assert_eq!(ui.get("/ui/").await.status(), 200);
    c.clock().advance(chrono::Duration::minutes(1));
    assert_eq!(ui.get("/ui/").await.status(), 303, "expired after 2 h");
    c.stop().await;
}

#[tokio::test]
async fn a_login_without_its_form_token_is_refused() {
    let c = TestCollector::start().await;
    let mut ui = Ui::new(&c);
    // A form posted from another site carries no `beacon_login` cookie (SameSite=Strict).
    let r = ui
        .post("/ui/login", &[("token", ADMIN_TOKEN), ("form_token", "x")])
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(ui.get("/ui/").await.status(), 303);
    c.stop().await;
}

#[tokio::test]
async fn failed_logins_are_limited_per_address() {
    let c = TestCollector::start_with(|cfg| cfg.ui.login_attempts_per_minute = 3).await;
    let mut ui = Ui::new(&c);
    for _ in 0..3 {
        assert_eq!(ui.login("bcn_wrong", None).await.status(), 401);
    }
    // Then even the right token waits for the minute to end.
    let r = ui.login(ADMIN_TOKEN, None).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    assert!(r.text().await.unwrap().contains("Too many"));
    c.stop().await;
}

/// CSV rows (header first) of a body.
fn csv_rows(body: &str) -> Vec<Vec<String>> {
    body.lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[tokio::test]
async fn page_csv_equals_the_admin_api() {
    let c = TestCollector::start_with(|cfg| cfg.reports.min_group_size = 2).await;
    let mut n = 0;
    for (version, servers) in [("5.37.0", 3), ("5.38.1", 2), ("6.0.0", 1)] {
        for _ in 0..servers {
            n += 1;
            let r = c
                .security(&mattermost_query(&server_id(n), version, 10))
                .await;
            assert_eq!(r.status(), 200);
        }
    }
    let mut ui = Ui::new(&c);
    ui.login(ADMIN_TOKEN, None).await;

    let api = c.get_admin("/reports/fleet?by=version").await;
    let r = ui.get("/ui/fleet?by=version&format=csv").await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let rows = csv_rows(&r.text().await.unwrap());
    assert_eq!(
        rows[0],
        ["version", "servers", "users", "activated_users", "teams"]
    );
    let from_api: Vec<Vec<String>> = api["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let c = g;
            vec![
                g["key"].as_str().unwrap().to_string(),
                c["servers"].to_string(),
                c["users"].to_string(),
                c["activated_users"].to_string(),
                c["teams"].to_string(),
            ]
        })
        .collect();
    assert_eq!(rows[1..], from_api[..]);
    // k-anonymity holds on the page too: 6.0.0 (one server) is inside `other`.
    assert!(rows.iter().any(|r| r[0] == "other"));
    assert!(!rows.iter().any(|r| r[0] == "6.0.0"));
    let page = ui.get("/ui/fleet?by=version").await.text().await.unwrap();
    assert!(
        !page.contains("6.0.0"),
        "a group below the threshold is on the page"
    );
    assert!(page.contains("shown together as"));

    let api = c.get_admin("/reports/growth").await;
    let rows = csv_rows(&ui.get("/ui/growth?format=csv").await.text().await.unwrap());
    let days: Vec<Vec<String>> = api["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            vec![
                d["day"].as_str().unwrap().to_string(),
                d["servers"].to_string(),
                d["new"].to_string(),
                d["gone"].to_string(),
            ]
        })
        .collect();
    assert_eq!(rows[1..], days[..]);
    assert_eq!(
        ui.get("/ui/fleet?format=pdf").await.status(),
        400,
        "an unknown format is refused"
    );
    assert_eq!(ui.get("/ui/fleet?by=planet").await.status(), 400);
    c.stop().await;
}

#[tokio::test]
async fn bulletins_are_published_and_retracted_through_forms() {
    let c = TestCollector::start().await;
    let mut ui = Ui::new(&c);
    ui.login(ADMIN_TOKEN, None).await;
    let csrf = ui.csrf().await;
    let form = |csrf: &str, affected: &str| {
        vec![
            ("csrf".to_string(), csrf.to_string()),
            ("id".into(), "BSA-9".into()),
            ("title".into(), "A <b>bad</b> bug".into()),
            ("severity".into(), "critical".into()),
            ("affected".into(), affected.to_string()),
            ("fixed_in".into(), "5.38.0".into()),
            ("body".into(), "<p>Upgrade.</p>".into()),
        ]
    };
    async fn post(ui: &mut Ui, f: Vec<(String, String)>) -> reqwest::Response {
        let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        ui.post("/ui/bulletins", &pairs).await
    }
    // Without the CSRF token: refused, nothing published.
    let r = post(&mut ui, form("forged", "<5.38.0")).await;
    assert_eq!(r.status(), 403);
    assert_eq!(c.get_admin("/bulletins").await.as_array().unwrap().len(), 0);
    // The same validation as the admin API: a bad requirement is named, the form keeps its values.
    let r = post(&mut ui, form(&csrf, "not a version")).await;
    assert_eq!(r.status(), 400);
    let page = r.text().await.unwrap();
    assert!(page.contains("affected"), "{page}");
    assert!(page.contains("value=\"BSA-9\""));
    assert!(
        page.contains("A &lt;b&gt;bad&lt;/b&gt; bug"),
        "escaped, not markup"
    );
    let r = post(&mut ui, form(&csrf, "<5.38.0")).await;
    assert_eq!(
        (r.status().as_u16(), location(&r)),
        (303, "/ui/bulletins/BSA-9")
    );
    let b = c.get_admin("/bulletins/BSA-9").await;
    assert_eq!(b["severity"], "critical");
    assert!(b["retracted_at"].is_null());
    let page = ui.get("/ui/bulletins/BSA-9").await.text().await.unwrap();
    assert!(page.contains("Patch adoption"));
    // A second publication with the same id is refused.
    assert_eq!(post(&mut ui, form(&csrf, "<5.38.0")).await.status(), 400);
    // Retract, with and without the token.
    let r = ui
        .post("/ui/bulletins/BSA-9/retract", &[("csrf", "forged")])
        .await;
    assert_eq!(r.status(), 403);
    let r = ui
        .post("/ui/bulletins/BSA-9/retract", &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status(), 303);
    let b: Value = c.get_admin("/bulletins/BSA-9").await;
    assert!(b["retracted_at"].is_string());
    assert_eq!(ui.get("/ui/bulletins/nope").await.status(), 404);
    c.stop().await;
}

#[tokio::test]
async fn the_stylesheet_is_cached_and_pages_are_compressed() {
    let c = TestCollector::start().await;
    let mut ui = Ui::new(&c);
    ui.login(ADMIN_TOKEN, None).await;
    let page = ui.get("/ui/").await.text().await.unwrap();
    let at = page.find("/ui/static/style.").expect("a stylesheet link");
    let href = &page[at..at + page[at..].find('"').unwrap()];
    let r = ui.get(href).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    let r = ui
        .http
        .get(format!("{}{href}", c.url))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(ui.get("/ui/static/other.css").await.status(), 404);
    let r = ui
        .http
        .get(format!("{}/ui/", c.url))
        .header("cookie", ui.cookie_header())
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-encoding"], "gzip");
    c.stop().await;
}

/// Sends one error event of `message` (its issue) in `environment` through `/store/`.
async fn send_event(c: &TestCollector, p: &Project, n: u32, message: &str, environment: &str) {
    let event = serde_json::json!({
        "event_id": format!("{n:032x}"), "message": message, "level": "error",
        "platform": "python", "release": "1.0", "environment": environment,
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
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn issues_show_sparklines_and_counts_per_environment() {
    let c = TestCollector::start().await;
    let p = c.create_project("app").await;
    // Issue "a": 2 events today in prod and 1 in staging; yesterday 1 more. Issue "b": 1 today.
    send_event(&c, &p, 1, "a", "prod").await;
    c.clock().advance(chrono::Duration::days(1));
    send_event(&c, &p, 2, "a", "prod").await;
    send_event(&c, &p, 3, "a", "prod").await;
    send_event(&c, &p, 4, "a", "staging").await;
    send_event(&c, &p, 5, "b", "prod").await;
    let mut ui = Ui::new(&c);
    ui.login(ADMIN_TOKEN, None).await;

    let api = c.get_admin("/issues?sort=count").await;
    let a = api[0]["id"].as_i64().unwrap();
    let page = ui.get("/ui/issues?sort=count").await.text().await.unwrap();
    // One sparkline per issue, labelled with its figures: min 0, max 3 (today), last 3.
    assert!(page.contains("last 14 days (UTC)"), "{page}");
    assert!(
        page.contains(&format!(
            "Events of issue {a} per day: min 0, max 3, last 3"
        )),
        "{page}"
    );
    assert_eq!(page.matches("class=\"spark\"").count(), 2, "{page}");
    // The CSV has no sparkline column: it equals the admin API's list.
    let rows = csv_rows(
        &ui.get("/ui/issues?sort=count&format=csv")
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(
        rows[0],
        [
            "id",
            "title",
            "culprit",
            "level",
            "project_id",
            "first_seen",
            "last_seen",
            "count",
            "servers"
        ]
    );
    let ids: Vec<String> = rows[1..].iter().map(|r| r[0].clone()).collect();
    let api_ids: Vec<String> = api
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].to_string())
        .collect();
    assert_eq!(ids, api_ids);

    // The issue's page: counts per environment, as the admin API has them, and as CSV.
    let detail = c.get_admin(&format!("/issues/{a}")).await;
    assert_eq!(
        detail["by_environment"],
        serde_json::json!([{"key": "prod", "count": 3}, {"key": "staging", "count": 1}])
    );
    let page = ui
        .get(&format!("/ui/issues/{a}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Events per environment"), "{page}");
    let envs = csv_rows(
        &ui.get(&format!("/ui/issues/{a}?format=csv&table=environment"))
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(
        envs,
        [["environment", "count"], ["prod", "3"], ["staging", "1"]]
    );
    let days = csv_rows(
        &ui.get(&format!("/ui/issues/{a}?format=csv&table=day"))
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(days.len(), 3, "{days:?}");
    assert_eq!(
        ui.get(&format!("/ui/issues/{a}?format=csv&table=planets"))
            .await
            .status(),
        400
    );
    c.stop().await;
}

#[tokio::test]
async fn relative_ranges_have_a_permalink_with_fixed_dates() {
    let c = TestCollector::start().await;
    let mut ui = Ui::new(&c);
    ui.login(ADMIN_TOKEN, None).await;
    let today = c.clock().now().date_naive();
    let week_ago = today - chrono::Days::new(6);
    for path in [
        "/ui/fleet",
        "/ui/growth",
        "/ui/releases",
        "/ui/perf",
        "/ui/regressions",
    ] {
        let page = ui
            .get(&format!("{path}?range=7d"))
            .await
            .text()
            .await
            .unwrap();
        // The range picked in the form, its dates in the date fields, and a permalink fixing them.
        assert!(
            page.contains("<option value=\"7d\" selected>Last 7 days</option>"),
            "{path}: {page}"
        );
        assert!(page.contains(&format!("value=\"{week_ago}\"")), "{path}");
        assert!(
            page.contains(&format!("href=\"{path}?from={week_ago}&amp;to={today}\"")),
            "{path}: no permalink in {page}"
        );
        // A view with fixed dates is its own permalink.
        let fixed = ui
            .get(&format!("{path}?from={week_ago}&to={today}"))
            .await
            .text()
            .await
            .unwrap();
        assert!(!fixed.contains("class=\"permalink\""), "{path}");
        assert_eq!(
            ui.get(&format!("{path}?range=forever")).await.status(),
            400,
            "{path}"
        );
    }
    // The permalink shows the same data as the range: the growth CSV of both.
    let relative = ui
        .get("/ui/growth?range=7d&format=csv")
        .await
        .text()
        .await
        .unwrap();
    let fixed = ui
        .get(&format!("/ui/growth?from={week_ago}&to={today}&format=csv"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(relative, fixed);
    assert_eq!(relative.lines().count(), 8, "a header and 7 days");
    c.stop().await;
}

#[tokio::test]
async fn a_login_link_opens_one_session_once() {
    let c = TestCollector::start().await;
    let store = c.running().store.clone();
    let now = c.clock().now();
    let link = beacon_collector::ui::create_login_link(
        store.as_ref(),
        ADMIN_TOKEN,
        now,
        chrono::Duration::hours(1),
    )
    .await
    .unwrap();
    assert!(link.starts_with("/ui/login/link?code="), "{link}");
    let code = link.rsplit('=').next().unwrap().to_string();
    let db = std::fs::read(c.dir.path().join("beacon.db")).unwrap();
    assert!(
        !db.windows(code.len()).any(|w| w == code.as_bytes()),
        "the plain code is in the database"
    );

    let mut ui = Ui::new(&c);
    let r = ui.get(&link).await;
    assert_eq!((r.status().as_u16(), location(&r)), (303, "/ui/"));
    set_cookie(&r, "beacon_session");
    assert_eq!(ui.get("/ui/").await.status(), 200);

    // The second visit (another browser) finds the link used.
    let mut other = Ui::new(&c);
    let r = other.get(&link).await;
    assert_eq!(r.status(), 401);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("used already or has expired")
    );
    assert_eq!(other.get("/ui/").await.status(), 303);
    assert_eq!(other.get("/ui/login/link?code=zz").await.status(), 401);

    // An expired link does nothing.
    let late = beacon_collector::ui::create_login_link(
        store.as_ref(),
        ADMIN_TOKEN,
        now,
        chrono::Duration::minutes(10),
    )
    .await
    .unwrap();
    c.clock().advance(chrono::Duration::minutes(10));
    assert_eq!(other.get(&late).await.status(), 401);
    assert_eq!(other.get("/ui/").await.status(), 303);
    c.stop().await;
}
