//! Every HTTP route of the collector, by name, in one table.
//!
//! [`ALL`] is the one list: `server::router` mounts each entry's handler on its method and path (and
//! refuses to start a router where an entry is missing or mounted twice), the request-latency metric
//! labels requests with [`Route::path`], the guards take each route's body limit from here, a unit
//! test checks the admin entries against `openapi.json` both ways, and the integration tests walk the
//! list to check that every route needing credentials refuses a request without them. Adding a route
//! is one entry here plus its handler (and its operation in `openapi.json` for an admin route).

use axum::http::Method as HttpMethod;

/// Where a route's paths under the admin API start.
pub const ADMIN_PREFIX: &str = "/admin/v1";

/// The HTTP methods routes use (a `Copy` enum, so the table can be `const`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    GET,
    POST,
    PATCH,
    DELETE,
}

impl Method {
    pub fn http(self) -> HttpMethod {
        match self {
            Method::GET => HttpMethod::GET,
            Method::POST => HttpMethod::POST,
            Method::PATCH => HttpMethod::PATCH,
            Method::DELETE => HttpMethod::DELETE,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::GET => "GET",
            Method::POST => "POST",
            Method::PATCH => "PATCH",
            Method::DELETE => "DELETE",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a request must carry to be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nothing: the security check, bulletin pages, health, metrics.
    Public,
    /// A Sentry DSN public key (header, query string or the envelope header's `dsn`).
    DsnKey,
    /// A mobile API key in `x-api-key`.
    ApiKey,
    /// `Authorization: Bearer <admin token>`.
    AdminToken,
    /// A dashboard session cookie (`ui::protect`); without one a request is redirected to the login page.
    Session,
}

/// One route: a method on a path pattern (axum syntax), and what it takes.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// A stable name for messages and tests, `channel.operation`.
    pub name: &'static str,
    pub method: Method,
    /// The full path pattern, as matched (and used as the metrics label).
    pub path: &'static str,
    pub access: Access,
    /// The largest body this route reads, when it differs from the server's default.
    pub body_limit: Option<usize>,
}

const fn route(name: &'static str, method: Method, path: &'static str, access: Access) -> Route {
    Route {
        name,
        method,
        path,
        access,
        body_limit: None,
    }
}

const fn admin(name: &'static str, method: Method, path: &'static str) -> Route {
    route(name, method, path, Access::AdminToken)
}

use Access::*;

// Channel 1: security update checks.
pub const SECURITY_CHECK: Route = route("security.check", Method::GET, "/security", Public);
pub const BULLETIN_PAGE: Route = route(
    "security.bulletin_page",
    Method::GET,
    "/bulletins/{id}",
    Public,
);
// Channel 2: Sentry-compatible error reports.
pub const SENTRY_ENVELOPE: Route = Route {
    body_limit: Some(crate::sentry::MAX_BODY_BYTES),
    ..route(
        "sentry.envelope",
        Method::POST,
        "/api/{project_id}/envelope/",
        DsnKey,
    )
};
pub const SENTRY_STORE: Route = Route {
    body_limit: Some(crate::sentry::MAX_BODY_BYTES),
    ..route(
        "sentry.store",
        Method::POST,
        "/api/{project_id}/store/",
        DsnKey,
    )
};
// Channel 3: mobile app performance. One byte over the limit still reaches the handler, which
// answers 413 itself.
pub const MOBILE_METRICS: Route = Route {
    body_limit: Some(beacon_wire::mobile::MAX_BODY_BYTES + 1),
    ..route("mobile.metrics", Method::POST, "/v1/mobile/metrics", ApiKey)
};
// Deletion requests: an agent asks for its own server's data to be forgotten.
pub const AGENT_FORGET: Route = Route {
    body_limit: Some(1024),
    ..route("forget.agent", Method::POST, "/v1/forget", Public)
};
// Operations.
pub const HEALTHZ: Route = route("ops.healthz", Method::GET, "/healthz", Public);
pub const READYZ: Route = route("ops.readyz", Method::GET, "/readyz", Public);
pub const METRICS: Route = route("ops.metrics", Method::GET, "/metrics", Public);
// The admin API.
pub const ADMIN_OPENAPI: Route = admin("admin.openapi", Method::GET, "/admin/v1/openapi.json");
pub const ADMIN_DEAD_LETTERS: Route =
    admin("admin.dead_letters", Method::GET, "/admin/v1/deadletters");
pub const FORGET: Route = admin("admin.forget", Method::POST, "/admin/v1/forget");
pub const FORGET_LOG: Route = admin("admin.forget_log", Method::GET, "/admin/v1/forget/log");
pub const BULLETINS_LIST: Route = admin(
    "security.bulletins_list",
    Method::GET,
    "/admin/v1/bulletins",
);
pub const BULLETINS_ADD: Route = admin(
    "security.bulletins_add",
    Method::POST,
    "/admin/v1/bulletins",
);
pub const BULLETINS_SHOW: Route = admin(
    "security.bulletins_show",
    Method::GET,
    "/admin/v1/bulletins/{id}",
);
pub const BULLETINS_RETRACT: Route = admin(
    "security.bulletins_retract",
    Method::POST,
    "/admin/v1/bulletins/{id}/retract",
);
pub const REPORT_FLEET: Route = admin(
    "security.report_fleet",
    Method::GET,
    "/admin/v1/reports/fleet",
);
pub const REPORT_GROWTH: Route = admin(
    "security.report_growth",
    Method::GET,
    "/admin/v1/reports/growth",
);
pub const REPORT_EXPOSURE: Route = admin(
    "security.report_exposure",
    Method::GET,
    "/admin/v1/reports/exposure",
);
pub const REPORT_RELEASES: Route = admin(
    "security.report_releases",
    Method::GET,
    "/admin/v1/reports/releases",
);
pub const PROJECTS_LIST: Route = admin("sentry.projects_list", Method::GET, "/admin/v1/projects");
pub const PROJECTS_CREATE: Route =
    admin("sentry.projects_create", Method::POST, "/admin/v1/projects");
pub const KEY_UPDATE: Route = admin("sentry.key_update", Method::PATCH, "/admin/v1/keys/{key}");
pub const ISSUES_LIST: Route = admin("sentry.issues_list", Method::GET, "/admin/v1/issues");
pub const ISSUES_SHOW: Route = admin("sentry.issues_show", Method::GET, "/admin/v1/issues/{id}");
pub const APIKEYS_LIST: Route = admin("mobile.apikeys_list", Method::GET, "/admin/v1/apikeys");
pub const APIKEYS_CREATE: Route = admin("mobile.apikeys_create", Method::POST, "/admin/v1/apikeys");
pub const APIKEYS_REVOKE: Route = admin(
    "mobile.apikeys_revoke",
    Method::DELETE,
    "/admin/v1/apikeys/{name}",
);
pub const PERF_PERCENTILES: Route = admin(
    "mobile.perf_percentiles",
    Method::GET,
    "/admin/v1/perf/percentiles",
);
pub const PERF_HISTOGRAM: Route = admin(
    "mobile.perf_histogram",
    Method::GET,
    "/admin/v1/perf/histogram",
);
pub const PERF_REGRESSIONS: Route = admin(
    "mobile.perf_regressions",
    Method::GET,
    "/admin/v1/perf/regressions",
);

// The web dashboard.
pub const UI_ROOT: Route = route("ui.root", Method::GET, "/", Public);
pub const UI_STATIC: Route = route("ui.static", Method::GET, "/ui/static/{file}", Public);
pub const UI_LOGIN_FORM: Route = route("ui.login_form", Method::GET, "/ui/login", Public);
pub const UI_LOGIN: Route = route("ui.login", Method::POST, "/ui/login", Public);
pub const UI_LOGIN_LINK: Route = route("ui.login_link", Method::GET, "/ui/login/link", Public);
pub const UI_LOGOUT: Route = route("ui.logout", Method::POST, "/ui/logout", Session);
pub const UI_OVERVIEW: Route = route("ui.overview", Method::GET, "/ui/", Session);
pub const UI_FLEET: Route = route("ui.fleet", Method::GET, "/ui/fleet", Session);
pub const UI_GROWTH: Route = route("ui.growth", Method::GET, "/ui/growth", Session);
pub const UI_BULLETINS: Route = route("ui.bulletins", Method::GET, "/ui/bulletins", Session);
pub const UI_BULLETINS_PUBLISH: Route = route(
    "ui.bulletins_publish",
    Method::POST,
    "/ui/bulletins",
    Session,
);
pub const UI_BULLETIN: Route = route("ui.bulletin", Method::GET, "/ui/bulletins/{id}", Session);
pub const UI_BULLETIN_RETRACT: Route = route(
    "ui.bulletin_retract",
    Method::POST,
    "/ui/bulletins/{id}/retract",
    Session,
);

pub const UI_ISSUES: Route = route("ui.issues", Method::GET, "/ui/issues", Session);
pub const UI_ISSUE: Route = route("ui.issue", Method::GET, "/ui/issues/{id}", Session);
pub const UI_RELEASES: Route = route("ui.releases", Method::GET, "/ui/releases", Session);
pub const UI_PERF: Route = route("ui.perf", Method::GET, "/ui/perf", Session);
pub const UI_REGRESSIONS: Route = route("ui.regressions", Method::GET, "/ui/regressions", Session);
pub const UI_SETTINGS: Route = route("ui.settings", Method::GET, "/ui/settings", Session);
pub const UI_TOKEN_CREATE: Route = route(
    "ui.token_create",
    Method::POST,
    "/ui/settings/tokens",
    Session,
);
pub const UI_TOKEN_REVOKE: Route = route(
    "ui.token_revoke",
    Method::POST,
    "/ui/settings/tokens/{id}/revoke",
    Session,
);
pub const UI_APIKEY_CREATE: Route = route(
    "ui.apikey_create",
    Method::POST,
    "/ui/settings/apikeys",
    Session,
);
pub const UI_APIKEY_REVOKE: Route = route(
    "ui.apikey_revoke",
    Method::POST,
    "/ui/settings/apikeys/{name}/revoke",
    Session,
);
pub const UI_PROJECT_CREATE: Route = route(
    "ui.project_create",
    Method::POST,
    "/ui/settings/projects",
    Session,
);
pub const UI_KEY_UPDATE: Route = route(
    "ui.key_update",
    Method::POST,
    "/ui/settings/keys/{key}",
    Session,
);
// Retention (`[retention]`).
pub const RETENTION_STATUS: Route =
    admin("admin.retention_status", Method::GET, "/admin/v1/retention");
pub const RETENTION_APPLY: Route = admin(
    "admin.retention_apply",
    Method::POST,
    "/admin/v1/retention/apply",
);
// Alerts (`beacon alert`).
pub const ALERTS_LIST: Route = admin("admin.alerts_list", Method::GET, "/admin/v1/alerts");
pub const ALERTS_CREATE: Route = admin("admin.alerts_create", Method::POST, "/admin/v1/alerts");
pub const ALERTS_HISTORY: Route = admin(
    "admin.alerts_history",
    Method::GET,
    "/admin/v1/alerts/history",
);
pub const ALERTS_SHOW: Route = admin("admin.alerts_show", Method::GET, "/admin/v1/alerts/{id}");
pub const ALERTS_REMOVE: Route = admin(
    "admin.alerts_remove",
    Method::DELETE,
    "/admin/v1/alerts/{id}",
);
pub const ALERTS_TEST: Route = admin(
    "admin.alerts_test",
    Method::POST,
    "/admin/v1/alerts/{id}/test",
);
pub const UI_ALERT_CREATE: Route = route(
    "ui.alert_create",
    Method::POST,
    "/ui/settings/alerts",
    Session,
);
pub const UI_ALERT_REMOVE: Route = route(
    "ui.alert_remove",
    Method::POST,
    "/ui/settings/alerts/{id}/remove",
    Session,
);
pub const UI_ALERT_TEST: Route = route(
    "ui.alert_test",
    Method::POST,
    "/ui/settings/alerts/{id}/test",
    Session,
);

/// Every route the collector serves.
pub const ALL: &[Route] = &[
    SECURITY_CHECK,
    BULLETIN_PAGE,
    SENTRY_ENVELOPE,
    SENTRY_STORE,
    MOBILE_METRICS,
    HEALTHZ,
    READYZ,
    METRICS,
    ADMIN_OPENAPI,
    ADMIN_DEAD_LETTERS,
    FORGET,
    FORGET_LOG,
    AGENT_FORGET,
    BULLETINS_LIST,
    BULLETINS_ADD,
    BULLETINS_SHOW,
    BULLETINS_RETRACT,
    REPORT_FLEET,
    REPORT_GROWTH,
    REPORT_EXPOSURE,
    REPORT_RELEASES,
    PROJECTS_LIST,
    PROJECTS_CREATE,
    KEY_UPDATE,
    ISSUES_LIST,
    ISSUES_SHOW,
    APIKEYS_LIST,
    APIKEYS_CREATE,
    APIKEYS_REVOKE,
    PERF_PERCENTILES,
    PERF_HISTOGRAM,
    PERF_REGRESSIONS,
    UI_ROOT,
    UI_STATIC,
    UI_LOGIN_FORM,
    UI_LOGIN,
    UI_LOGIN_LINK,
    UI_LOGOUT,
    UI_OVERVIEW,
    UI_FLEET,
    UI_GROWTH,
    UI_BULLETINS,
    UI_BULLETINS_PUBLISH,
    UI_BULLETIN,
    UI_BULLETIN_RETRACT,
    UI_ISSUES,
    UI_ISSUE,
    UI_RELEASES,
    UI_PERF,
    UI_REGRESSIONS,
    UI_SETTINGS,
    UI_TOKEN_CREATE,
    UI_TOKEN_REVOKE,
    UI_APIKEY_CREATE,
    UI_APIKEY_REVOKE,
    UI_PROJECT_CREATE,
    UI_KEY_UPDATE,
    // Retention.
    RETENTION_STATUS,
    RETENTION_APPLY,
    // Alerts.
    ALERTS_LIST,
    ALERTS_CREATE,
    ALERTS_HISTORY,
    ALERTS_SHOW,
    ALERTS_REMOVE,
    ALERTS_TEST,
    UI_ALERT_CREATE,
    UI_ALERT_REMOVE,
    UI_ALERT_TEST,
];

/// The static form of a matched path pattern, for metric labels; `other` when it is not ours.
pub fn static_path(matched: &str) -> &'static str {
    ALL.iter()
        .find(|r| r.path == matched)
        .map_or("other", |r| r.path)
}

/// The body limit of the route matched by `matched`, if it has its own.
pub fn body_limit(matched: &str) -> Option<usize> {
    ALL.iter()
        .filter(|r| r.path == matched)
        .find_map(|r| r.body_limit)
}

impl Route {
    /// The path with every `{param}` replaced by `value`.
    pub fn with_params(&self, value: &str) -> String {
        let mut out = String::with_capacity(self.path.len());
        let mut rest = self.path;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            match rest[open..].find('}') {
                Some(close) => {
                    out.push_str(value);
                    rest = &rest[open + close + 1..];
                }
                None => {
                    rest = &rest[open..];
                    break;
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// The path under the admin prefix (`/bulletins` for `/admin/v1/bulletins`), for admin routes.
    pub fn admin_path(&self) -> Option<&'static str> {
        self.path.strip_prefix(ADMIN_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_and_method_paths_are_unique() {
        let mut names = HashSet::new();
        let mut ops = HashSet::new();
        for r in ALL {
            assert!(names.insert(r.name), "{} named twice", r.name);
            assert!(
                ops.insert((r.method, r.path)),
                "{} {} twice",
                r.method,
                r.path
            );
        }
    }

    #[test]
    fn admin_routes_and_only_they_live_under_the_prefix() {
        for r in ALL {
            assert_eq!(
                r.access == Access::AdminToken,
                r.path.starts_with(ADMIN_PREFIX),
                "{}",
                r.name
            );
        }
    }

    #[test]
    fn params_are_filled() {
        assert_eq!(
            BULLETINS_RETRACT.with_params("x"),
            "/admin/v1/bulletins/x/retract"
        );
        assert_eq!(SENTRY_STORE.with_params("1"), "/api/1/store/");
        assert_eq!(HEALTHZ.with_params("1"), "/healthz");
        assert_eq!(
            static_path("/api/{project_id}/store/"),
            "/api/{project_id}/store/"
        );
        assert_eq!(static_path("/nope"), "other");
    }
}
