//! A real browser for the dashboard's tests: headless Chromium driven over WebDriver.
//!
//! [`Browser::start`] starts Debian's `chromedriver` on a free loopback port (a child process,
//! killed with the Chromium it started when the [`Browser`] is dropped) and opens a session of
//! headless Chromium with a 1280×900 viewport and a temporary profile. Without `chromium` or
//! `chromedriver` the test is skipped with a note on stderr, except under `CI=true`, where it
//! fails: `scripts/test` installs both (`apt-get install chromium chromium-driver
//! fonts-liberation`).
//!
//! **JavaScript errors** are read from Chromium's own console log (`goog:loggingPrefs`, drained
//! from chromedriver's `/session/{id}/se/log`): uncaught exceptions, unhandled promise rejections,
//! `console.error`, Content-Security-Policy violations and failed subresource loads, of every page
//! the session showed, from the first script on (nothing has to be injected, so errors during page
//! load are caught too). [`Browser::assert_no_js_errors`] fails on any of them. Not counted: the
//! favicon Chromium asks for by itself, and the load of a document the test navigated to (a 404
//! page opened on purpose), unless its body was empty: Chromium then shows an error page of its
//! own (`chrome-error://chromewebdata/`), and that is reported.
//!
//! **The keyboard**: [`Browser::press`] sends key presses to whatever has the focus, as a person
//! types (WebDriver actions, no element targeted); [`Browser::tab_to`] presses Tab until a given
//! element has the focus and reads each element on the way ([`Focused`]: does it show the focus?).
//!
//! Every helper panics with a message on failure, like the rest of the kit.

use crate::{ChildGuard, block_on, spawn_until};
use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use url::Url;

/// The size of the browser's viewport (and of every screenshot), in CSS pixels.
pub const WINDOW: (u32, u32) = (1280, 900);

/// What the browser reported as an error: a console entry of level `SEVERE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsError {
    /// Chromium's source of the entry: `javascript` (uncaught exceptions and rejections),
    /// `console-api` (`console.error`), `network` (a failed load), `security` (CSP) …
    pub source: String,
    /// The message as Chromium logged it; it starts with the URL (and line) it came from.
    pub message: String,
}

impl std::fmt::Display for JsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.source, self.message)
    }
}

/// WebDriver's Tab key, for [`Browser::press`].
pub const TAB: &str = "\u{E004}";
/// WebDriver's Enter key, for [`Browser::press`].
pub const ENTER: &str = "\u{E007}";
/// WebDriver's arrow-down key, for [`Browser::press`].
pub const ARROW_DOWN: &str = "\u{E015}";

/// The element with the keyboard focus ([`Browser::focused`], [`Browser::tab_to`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Focused {
    /// Its tag, name, text (not a password's) and link: `a "Fleet" /ui/fleet`.
    pub description: String,
    /// Its computed `outline-style` and `outline-width` while focused: `solid 3px`.
    pub outline: String,
    /// Whether any of it is inside the viewport.
    pub on_screen: bool,
}

impl Focused {
    /// Whether a person can see where the focus is: the element is on screen and draws an
    /// outline (the stylesheet's `:focus-visible` ring). Another kind of indicator (a box shadow,
    /// a background) would not count: this check would have to learn it.
    pub fn is_visible(&self) -> bool {
        let mut parts = self.outline.split(' ');
        let style = parts.next().unwrap_or("none");
        let width = parts.next().unwrap_or("0px");
        self.on_screen && style != "none" && width != "0px"
    }
}

/// A response fetched with the browser's cookies ([`Browser::download`]).
#[derive(Debug, Clone)]
pub struct Download {
    pub status: u16,
    pub content_type: Option<String>,
    pub content_disposition: Option<String>,
    pub body: Vec<u8>,
}

impl Download {
    /// The body as UTF-8 (panics when it is not).
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("a UTF-8 body")
    }
}

/// Headless Chromium in a WebDriver session of its own (see the module documentation).
pub struct Browser {
    client: Client,
    /// `http://127.0.0.1:PORT`: the chromedriver.
    driver_url: String,
    session: String,
    /// For the browser log and downloads (never through a proxy).
    http: reqwest::Client,
    driver: Option<DriverGroup>,
    errors: Mutex<Vec<JsError>>,
    /// Documents the session navigated to: their own load failures (a page answered 404 on
    /// purpose) are the test's business, not errors of the page.
    documents: Mutex<Vec<String>>,
    /// Chromium's profile and temporary files, removed when the browser is dropped.
    _scratch: tempfile::TempDir,
}

/// Tells, once per run and past the test harness's output capture, that browser tests did not run.
fn say_skipped(why: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "\nNOTE: browser tests SKIPPED ({why}).\n      \
             Install Debian's chromium and chromium-driver to run them (scripts/test does).\n"
        );
    });
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The program `name`: the path in `$override_var` when that is set (nothing else then), else the
/// first on `PATH`, else in `/usr/bin`; else why not.
fn find_program(name: &str, override_var: &str) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(override_var) {
        let path = PathBuf::from(path);
        return match is_executable(&path) {
            true => Ok(path),
            false => Err(format!("{override_var}={} is no program", path.display())),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
        .ok_or_else(|| format!("no {name} on PATH or in /usr/bin"))
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

/// The workspace's `target/` directory: `CARGO_TARGET_DIR` when absolute, else the directory
/// above the running test binary that holds cargo's `CACHEDIR.TAG`.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from)
        && dir.is_absolute()
    {
        return dir;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
        // target/debug/deps/tests-…: three levels up.
        .or_else(|| exe.ancestors().nth(3).map(Path::to_path_buf))
        .expect("a target directory above the test binary")
}

impl Browser {
    /// Headless Chromium over a fresh chromedriver; `None` (with a note on stderr) when `chromium`
    /// or `chromedriver` is missing, except under `CI=true`, where that panics. The programs are
    /// `$BEACON_CHROMIUM` and `$BEACON_CHROMEDRIVER` when set, else found on `PATH` or in
    /// `/usr/bin`. A browser that is there but does not start is a failure, never a skip.
    pub async fn start() -> Option<Browser> {
        let chromium = find_program("chromium", "BEACON_CHROMIUM");
        let driver = find_program("chromedriver", "BEACON_CHROMEDRIVER");
        let (Ok(chromium), Ok(driver)) = (&chromium, &driver) else {
            let why = [chromium.err(), driver.err()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; ");
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "chromium is required under CI=true; scripts/test installs it ({why})"
            );
            say_skipped(&why);
            return None;
        };
        Some(Browser::launch(chromium, driver).await)
    }

    async fn launch(chromium: &Path, driver: &Path) -> Browser {
        crate::install_crypto();
        // Chromium's profile and temporary files (its singleton sockets, say), all removed on drop.
        let scratch = tempfile::tempdir().expect("a directory for Chromium");
        let (profile, tmp) = (scratch.path().join("profile"), scratch.path().join("tmp"));
        std::fs::create_dir_all(&tmp).expect("a temporary directory for Chromium");
        // A port that was free a moment ago may be taken by the time chromedriver binds it.
        let mut failures = Vec::new();
        let (child, driver_url, log) = loop {
            let port = free_port();
            let mut cmd = Command::new(driver);
            // Its own process group (see `DriverGroup`): nothing is left running, whatever state
            // the session is in (even when it never opened).
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            cmd.arg(format!("--port={port}")).env("TMPDIR", &tmp);
            // Its stderr and Chromium's (noise such as failed IPv6 binds) are kept out of the
            // test's output.
            let stderr = Arc::new(Mutex::new(Vec::new()));
            match spawn_until(cmd, "started successfully", Some(stderr.clone())) {
                Ok((child, _, _)) => {
                    break (
                        DriverGroup(child),
                        format!("http://127.0.0.1:{port}"),
                        stderr,
                    );
                }
                Err(e) if failures.len() < 2 => failures.push(e.to_string()),
                Err(e) => panic!("{} does not start: {failures:?}, {e}", driver.display()),
            }
        };
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    // Tests run as root, where Chromium's sandbox cannot start.
                    "--no-sandbox",
                    // /dev/shm is small in containers.
                    "--disable-dev-shm-usage",
                    format!("--window-size={},{}", WINDOW.0, WINDOW.1),
                    format!("--user-data-dir={}", profile.display()),
                    "--lang=en-US",
                    "--no-first-run",
                    "--disable-background-networking",
                ],
            }),
        );
        // Every console entry of the pages, read back by `js_errors`.
        caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        // chromedriver speaks plain HTTP on loopback: no TLS stack needed.
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&driver_url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot open a headless {} session through {}: {e}; its log: {:?}",
                    chromium.display(),
                    driver.display(),
                    log.lock().unwrap()
                )
            });
        // `--window-size` sizes the window, whose (invisible) frame takes some of it: grow it by
        // that much so that pages and screenshots get exactly `WINDOW`.
        let frame = client
            .execute(
                "return [window.outerWidth - window.innerWidth, \
                         window.outerHeight - window.innerHeight]",
                vec![],
            )
            .await
            .expect("the window's frame");
        let frame: (u32, u32) = serde_json::from_value(frame).expect("two sizes");
        client
            .set_window_size(WINDOW.0 + frame.0, WINDOW.1 + frame.1)
            .await
            .expect("set the window size");
        let session = client
            .session_id()
            .await
            .expect("the session id")
            .expect("a session id");
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client");
        Browser {
            client,
            driver_url,
            session,
            http,
            driver: Some(child),
            errors: Mutex::new(Vec::new()),
            documents: Mutex::new(Vec::new()),
            _scratch: scratch,
        }
    }

    /// The fantoccini client, for what the helpers here do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens `url` and waits until it loaded.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
        self.loaded().await;
    }

    /// Records the document now shown (after a navigation).
    async fn loaded(&self) {
        let url = self.current_url().await;
        self.documents.lock().unwrap().push(url.to_string());
    }

    /// The URL of the page shown.
    pub async fn current_url(&self) -> Url {
        self.client.current_url().await.expect("the current URL")
    }

    /// The path and query of the page shown (`/ui/fleet?days=30`).
    pub async fn current_path(&self) -> String {
        let url = self.current_url().await;
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    /// The first element matching the CSS selector `css` (panics when there is none).
    pub async fn find(&self, css: &str) -> Element {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element,
            Err(e) => panic!(
                "no element {css:?} on {}: {e}",
                self.current_url_lossy().await
            ),
        }
    }

    /// Every element matching `css` (maybe none).
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css:?}: {e}"))
    }

    /// Waits (bounded: 10 s) until an element matches `css`, for what a script adds.
    pub async fn wait_for(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css:?} appeared: {e}"))
    }

    async fn current_url_lossy(&self) -> String {
        match self.client.current_url().await {
            Ok(url) => url.to_string(),
            Err(e) => format!("(unknown page: {e})"),
        }
    }

    /// The visible text of the first element matching `css`.
    pub async fn text_of(&self, css: &str) -> String {
        let element = self.find(css).await;
        element
            .text()
            .await
            .unwrap_or_else(|e| panic!("text of {css:?}: {e}"))
    }

    /// The page's `<h1>`, as shown.
    pub async fn h1(&self) -> String {
        self.text_of("h1").await
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        self.text_of("body").await
    }

    /// The page's `<title>`.
    pub async fn title(&self) -> String {
        self.client.title().await.expect("the title")
    }

    /// Clicks the link whose text is `text` and waits for the page it opens.
    pub async fn click_link(&self, text: &str) {
        let link = match self.client.find(Locator::LinkText(text)).await {
            Ok(link) => link,
            Err(e) => panic!(
                "no link {text:?} on {}: {e}",
                self.current_url_lossy().await
            ),
        };
        self.navigating(&format!("link {text:?}"), async {
            link.click()
                .await
                .unwrap_or_else(|e| panic!("click link {text:?}: {e}"));
        })
        .await;
    }

    /// Clicks the first element matching `css` (a button, say a form's only one: signing out)
    /// and waits for the page it opens; panics when it opens none (click what changes the page
    /// in place through [`Browser::find`]).
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.navigating(css, async {
            element
                .click()
                .await
                .unwrap_or_else(|e| panic!("click {css:?}: {e}"));
        })
        .await;
    }

    /// Runs `action` and waits (bounded: 10 s) until it replaced the document with a new one that
    /// finished loading. A click returns before the navigation it starts (a form's POST, say) has
    /// replaced the page, so asking right after it would read the old page.
    async fn navigating(&self, what: &str, action: impl std::future::Future<Output = ()>) {
        const MARK: &str = "document.beaconLeft = true; return null;";
        const FRESH: &str =
            "return document.beaconLeft !== true && document.readyState === 'complete';";
        self.client
            .execute(MARK, vec![])
            .await
            .unwrap_or_else(|e| panic!("mark the page before {what}: {e}"));
        action.await;
        for _ in 0..1000 {
            // Errors while the old document goes away count as "not yet".
            if let Ok(Value::Bool(true)) = self.client.execute(FRESH, vec![]).await {
                self.loaded().await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "{what} opened no new page within 10 s (still {})",
            self.current_url_lossy().await
        );
    }

    /// Types `value` into the form field named `name` (its old value cleared first); a `<select>`
    /// gets the option whose value is `value`.
    pub async fn fill(&self, name: &str, value: &str) {
        let field = self.find(&field_selector(name)).await;
        fill_element(&field, name, value).await;
    }

    /// Fills the fields of the form holding the field named by the first pair, then submits it as
    /// a person would (its submit button; `requestSubmit()` when it has none) and waits for the
    /// page it opens.
    pub async fn submit_form(&self, fields: &[(&str, &str)]) {
        let (first, _) = fields.first().expect("at least one field");
        self.submit(&format!("form:has({})", field_selector(first)), fields)
            .await;
    }

    /// Like [`Browser::submit_form`], in the first form matching `form_css`: for a page whose
    /// forms share a field name (`form[action='/ui/settings/apikeys']`, say). `fields` may be
    /// empty (a form with only a button).
    pub async fn submit(&self, form_css: &str, fields: &[(&str, &str)]) {
        let form = self.find(form_css).await;
        for (name, value) in fields {
            let field = form
                .find(Locator::Css(&field_selector(name)))
                .await
                .unwrap_or_else(|e| panic!("no field {name:?} in the form: {e}"));
            fill_element(&field, name, value).await;
        }
        let button = form
            .find(Locator::Css(
                "button[type=submit], input[type=submit], button:not([type])",
            ))
            .await;
        self.navigating("the form", async {
            match button {
                Ok(button) => button.click().await.expect("click the submit button"),
                Err(_) => {
                    let form = serde_json::to_value(&form).expect("an element reference");
                    self.client
                        .execute("arguments[0].requestSubmit()", vec![form])
                        .await
                        .expect("submit the form");
                }
            }
        })
        .await;
    }

    /// Presses `keys` one after the other on the keyboard, into whatever has the focus (no element
    /// is targeted, as when a person types): characters, and WebDriver's special keys (`"\u{E004}"`
    /// Tab, `"\u{E007}"` Enter, `"\u{E015}"` arrow down: `fantoccini::key::Key`).
    pub async fn press(&self, keys: &str) {
        use fantoccini::actions::{InputSource, KeyAction, KeyActions};
        let mut actions = KeyActions::new("keyboard".to_string());
        for key in keys.chars() {
            actions = actions
                .then(KeyAction::Down { value: key })
                .then(KeyAction::Up { value: key });
        }
        self.client
            .perform_actions(actions)
            .await
            .unwrap_or_else(|e| panic!("press {keys:?}: {e}"));
    }

    /// [`Browser::press`], then waits for the page the keys open (Enter on a link or a button).
    pub async fn press_navigating(&self, keys: &str) {
        self.navigating(&format!("the keys {keys:?}"), self.press(keys))
            .await;
    }

    /// The element with the keyboard focus, unless that is the page itself.
    pub async fn focused(&self) -> Option<Focused> {
        self.focus_matching("*").await.map(|(focused, _)| focused)
    }

    /// Presses Tab (at most 60 times) until the element with the focus matches `css`; returns each
    /// element that had the focus on the way there, the matching one last. Panics when the focus
    /// never gets there.
    pub async fn tab_to(&self, css: &str) -> Vec<Focused> {
        let mut stops = Vec::new();
        for _ in 0..60 {
            self.press(TAB).await;
            let Some((focused, matches)) = self.focus_matching(css).await else {
                continue;
            };
            stops.push(focused);
            if matches {
                return stops;
            }
        }
        let path: Vec<&str> = stops.iter().map(|f| f.description.as_str()).collect();
        panic!(
            "Tab never reached {css:?} on {}; the focus went through {path:?}",
            self.current_url_lossy().await
        );
    }

    /// The focused element, and whether it matches `css`.
    async fn focus_matching(&self, css: &str) -> Option<(Focused, bool)> {
        const SCRIPT: &str = "const e = document.activeElement;\n\
            if (!e || e === document.body || e === document.documentElement) return null;\n\
            const s = getComputedStyle(e), r = e.getBoundingClientRect();\n\
            const text = e.type === 'password' ? ''\n\
              : e.tagName === 'SELECT' ? e.value : (e.innerText || e.value || '');\n\
            const href = e.getAttribute('href');\n\
            return {\n\
              matches: e.matches(arguments[0]),\n\
              description: e.tagName.toLowerCase() + (e.name ? ' ' + e.name : '')\n\
                + ' \"' + text.trim().replace(/\\s+/g, ' ').slice(0, 40) + '\"'\n\
                + (href ? ' ' + href : ''),\n\
              outline: s.outlineStyle + ' ' + s.outlineWidth,\n\
              on_screen: r.width > 0 && r.height > 0 && r.bottom > 0 && r.right > 0\n\
                && r.top < innerHeight && r.left < innerWidth,\n\
            };";
        let value = self
            .client
            .execute(SCRIPT, vec![json!(css)])
            .await
            .unwrap_or_else(|e| panic!("read the focused element: {e}"));
        if value.is_null() {
            return None;
        }
        let text = |key: &str| value[key].as_str().unwrap_or_default().to_string();
        let focused = Focused {
            description: text("description"),
            outline: text("outline"),
            on_screen: value["on_screen"] == true,
        };
        Some((focused, value["matches"] == true))
    }

    /// The first table matching `css` (e.g. `table`, `#versions`), as rows of cell texts (header
    /// rows included, each cell's text trimmed).
    pub async fn table(&self, css: &str) -> Vec<Vec<String>> {
        let script = "const t = document.querySelector(arguments[0]);\n\
                      if (!t) return null;\n\
                      return Array.from(t.rows,\n\
                                        r => Array.from(r.cells, c => c.innerText.trim()));";
        let value = self
            .client
            .execute(script, vec![json!(css)])
            .await
            .unwrap_or_else(|e| panic!("read table {css:?}: {e}"));
        assert!(
            !value.is_null(),
            "no table {css:?} on {}",
            self.current_url_lossy().await
        );
        serde_json::from_value(value).expect("rows of strings")
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page; its return value.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("execute {script:?}: {e}"))
    }

    /// The session's cookies for the page shown, as `(name, value)`.
    pub async fn cookies(&self) -> Vec<(String, String)> {
        let cookies = self.client.get_all_cookies().await.expect("the cookies");
        cookies
            .iter()
            .map(|c| (c.name().to_string(), c.value().to_string()))
            .collect()
    }

    /// `GET url` (absolute, or relative to the page shown; on the page's origin) with the
    /// browser's cookies, through a plain HTTP client: a CSV export, say, to compare with the
    /// admin API.
    pub async fn download(&self, url: &str) -> Download {
        let page = self.current_url().await;
        let url = page
            .join(url)
            .unwrap_or_else(|e| panic!("{url} relative to {page}: {e}"));
        assert_eq!(
            url.origin(),
            page.origin(),
            "the browser's cookies are those of {page}"
        );
        let cookie = self
            .cookies()
            .await
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut request = self.http.get(url.clone());
        if !cookie.is_empty() {
            request = request.header(reqwest::header::COOKIE, cookie);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("download {url}: {e}"));
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header(reqwest::header::CONTENT_TYPE);
        let content_disposition = header(reqwest::header::CONTENT_DISPOSITION);
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("download {url}: {e}"))
            .to_vec();
        Download {
            status,
            content_type,
            content_disposition,
            body,
        }
    }

    /// Saves a PNG of the window as `target/ui-screenshots/{name}.png`; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = target_dir().join("ui-screenshots");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Moves the browser's new console entries into the list of errors.
    async fn drain_log(&self) {
        let url = format!("{}/session/{}/se/log", self.driver_url, self.session);
        let answer: Value = self
            .http
            .post(&url)
            .json(&json!({ "type": "browser" }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("read the browser log: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("read the browser log: {e}"));
        let entries = answer["value"]
            .as_array()
            .unwrap_or_else(|| panic!("the browser log is not a list: {answer}"));
        let documents = self.documents.lock().unwrap().clone();
        let mut errors = self.errors.lock().unwrap();
        for entry in entries {
            if entry["level"] != "SEVERE" {
                continue;
            }
            let error = JsError {
                source: entry["source"].as_str().unwrap_or("").to_string(),
                message: entry["message"].as_str().unwrap_or("").to_string(),
            };
            if error.source == "network" {
                // "URL - Failed to load resource: …": the favicon Chromium asks for by itself, and
                // a page the test opened (it may be a 404 on purpose), are not the page's errors.
                let url = error.message.split(' ').next().unwrap_or("");
                if url.ends_with("/favicon.ico") || documents.iter().any(|d| d == url) {
                    continue;
                }
            }
            errors.push(error);
        }
    }

    /// Every error the browser reported since it started (or since [`Browser::take_js_errors`]).
    pub async fn js_errors(&self) -> Vec<JsError> {
        self.drain_log().await;
        self.errors.lock().unwrap().clone()
    }

    /// Like [`Browser::js_errors`], and forgets them (for a test that expects some).
    pub async fn take_js_errors(&self) -> Vec<JsError> {
        self.drain_log().await;
        std::mem::take(&mut *self.errors.lock().unwrap())
    }

    /// Panics, listing them, when any page the browser showed reported an error.
    pub async fn assert_no_js_errors(&self) {
        let errors = self.js_errors().await;
        if !errors.is_empty() {
            let list: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
            panic!(
                "the browser reported {} error(s):\n{}",
                errors.len(),
                list.join("\n")
            );
        }
    }
}

/// The CSS selector of the form field named `name`.
fn field_selector(name: &str) -> String {
    let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
    format!("[name=\"{escaped}\"]")
}

async fn fill_element(field: &Element, name: &str, value: &str) {
    let tag = field
        .tag_name()
        .await
        .unwrap_or_else(|e| panic!("field {name:?}: {e}"));
    if tag.eq_ignore_ascii_case("select") {
        field
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("select {value:?} in {name:?}: {e}"));
    } else {
        field
            .clear()
            .await
            .unwrap_or_else(|e| panic!("clear {name:?}: {e}"));
        field
            .send_keys(value)
            .await
            .unwrap_or_else(|e| panic!("type into {name:?}: {e}"));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session lets chromedriver close Chromium; killing the process group
        // afterwards leaves nothing running whatever happened.
        let url = format!("{}/session/{}", self.driver_url, self.session);
        // A client of its own: the pooled connections of `self.http` belong to the test's runtime,
        // which waits for this drop.
        let _ = block_on(async move {
            let http = reqwest::Client::builder().no_proxy().build()?;
            http.delete(url)
                .timeout(Duration::from_secs(10))
                .send()
                .await
        });
        self.driver.take();
    }
}

/// chromedriver, leader of its own process group: dropping it kills the whole group (chromedriver
/// and every Chromium process it started), then reaps chromedriver.
struct DriverGroup(ChildGuard);

impl Drop for DriverGroup {
    fn drop(&mut self) {
        let group = rustix::process::Pid::from_child(&self.0);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
}
