//! The page shell every dashboard page shares, and the login page.
//!
//! A page is a full HTML5 document: language, charset, viewport, title, the stylesheet (its hashed
//! URL given by the caller), a skip link, the header with the product name, the navigation (the
//! current page marked `aria-current="page"`), who is logged in and a logout **form** (state changes
//! are POST with a CSRF field, never a GET link), then `<main>` with the page's `<h1>` and body.

use maud::{DOCTYPE, Markup, html};

/// The product name in every header and title.
pub const PRODUCT: &str = "Beacon";
/// Where the login form posts.
pub const LOGIN_PATH: &str = "/ui/login";
/// Where the logout form posts.
pub const LOGOUT_PATH: &str = "/ui/logout";
/// The name of the hidden CSRF field in every form that changes state.
pub const CSRF_FIELD: &str = "csrf";
/// The login form's one field: an admin token.
pub const TOKEN_FIELD: &str = "token";
/// The login form's hidden anti-forgery field.
pub const FORM_TOKEN_FIELD: &str = "form_token";

/// The pages in the navigation, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Nav {
    Overview,
    Fleet,
    Growth,
    Bulletins,
    Issues,
    Releases,
    Performance,
    Regressions,
    Settings,
}

impl Nav {
    /// Every entry, in navigation order.
    pub const ALL: [Nav; 9] = [
        Nav::Overview,
        Nav::Fleet,
        Nav::Growth,
        Nav::Bulletins,
        Nav::Issues,
        Nav::Releases,
        Nav::Performance,
        Nav::Regressions,
        Nav::Settings,
    ];

    /// The link text.
    pub fn label(self) -> &'static str {
        match self {
            Nav::Overview => "Overview",
            Nav::Fleet => "Fleet",
            Nav::Growth => "Growth",
            Nav::Bulletins => "Bulletins",
            Nav::Issues => "Issues",
            Nav::Releases => "Releases",
            Nav::Performance => "Performance",
            Nav::Regressions => "Regressions",
            Nav::Settings => "Settings",
        }
    }

    /// The page's path.
    pub fn href(self) -> &'static str {
        match self {
            Nav::Overview => "/ui/",
            Nav::Fleet => "/ui/fleet",
            Nav::Growth => "/ui/growth",
            Nav::Bulletins => "/ui/bulletins",
            Nav::Issues => "/ui/issues",
            Nav::Releases => "/ui/releases",
            Nav::Performance => "/ui/perf",
            Nav::Regressions => "/ui/regressions",
            Nav::Settings => "/ui/settings",
        }
    }
}

/// One dashboard page.
pub struct Page<'a> {
    /// The page's `<h1>`, and its `<title>` before " · Beacon".
    pub title: &'a str,
    /// The navigation entry marked current.
    pub active: Nav,
    /// Who is logged in (e.g. the admin token's label); `None` hides the logout form.
    pub user_label: Option<&'a str>,
    /// The session's CSRF token, put in the logout form.
    pub csrf: Option<&'a str>,
    /// Everything below the `<h1>`.
    pub body: Markup,
    /// The stylesheet's URL, e.g. `/ui/static/style.<hash>.css` (see [`crate::style_hash`]).
    pub static_css_href: &'a str,
}

/// A full document for `page`.
pub fn page(page: &Page<'_>) -> Markup {
    let header = html! {
        nav aria-label="Main" {
            ul {
                @for item in Nav::ALL {
                    li {
                        a href=(item.href()) aria-current=[(item == page.active).then_some("page")] {
                            (item.label())
                        }
                    }
                }
            }
        }
        @if let Some(user) = page.user_label {
            div.user {
                span { "Signed in as " strong { (user) } }
                form method="post" action=(LOGOUT_PATH) {
                    @if let Some(csrf) = page.csrf {
                        (csrf_field(csrf))
                    }
                    button.secondary type="submit" { "Log out" }
                }
            }
        }
    };
    document(
        page.title,
        page.static_css_href,
        header,
        html! { h1 { (page.title) } (page.body) },
    )
}

/// The login page.
pub struct Login<'a> {
    /// Shown above the form, e.g. "That token is not valid." or "Too many attempts; wait a minute."
    pub error: Option<&'a str>,
    /// Where to go after logging in, carried in a hidden `next` field; the server must check it is
    /// a `/ui/` path before redirecting there.
    pub next: Option<&'a str>,
    /// The login form's anti-forgery token (double submit: the server also sets it in a cookie and
    /// compares the two), in a hidden [`FORM_TOKEN_FIELD`] field.
    pub form_token: &'a str,
    /// The stylesheet's URL.
    pub static_css_href: &'a str,
}

/// The login page: a form posting to [`LOGIN_PATH`] with exactly one visible field, `token` (a
/// password input labelled "Admin token", autocomplete off), a hidden anti-forgery token (there is
/// no session yet to derive a CSRF token from), and a submit button.
pub fn login_page(login: &Login<'_>) -> Markup {
    let title = "Log in";
    let body = html! {
        h1 { "Log in to " (PRODUCT) }
        @if let Some(error) = login.error {
            p.notice.error role="alert" { (error) }
        }
        form.stack method="post" action=(LOGIN_PATH) {
            div.field {
                label for="token" { "Admin token" }
                input id="token" type="password" name=(TOKEN_FIELD) autocomplete="off" required
                    spellcheck="false" autocapitalize="off" aria-describedby="token-hint";
            }
            input type="hidden" name=(FORM_TOKEN_FIELD) value=(login.form_token);
            @if let Some(next) = login.next {
                input type="hidden" name="next" value=(next);
            }
            div { button type="submit" { "Log in" } }
        }
        p.muted id="token-hint" {
            "An admin token, as printed on the collector's first start or by "
            code { "beacon token create" } "."
        }
    };
    document(
        title,
        login.static_css_href,
        html! {},
        html! { div.login { (body) } },
    )
}

/// An error page: the status and what went wrong, with a way back. It shows no navigation (the
/// request may have no session).
pub fn error_page(status: u16, message: &str, static_css_href: &str) -> Markup {
    let title = match status {
        400 => "Bad request",
        401 | 403 => "Not allowed",
        404 => "Not found",
        409 => "Conflict",
        429 => "Too many attempts",
        503 => "Unavailable",
        _ if status >= 500 => "Error",
        _ => "Problem",
    };
    document(
        title,
        static_css_href,
        html! {},
        html! {
            h1 { (title) }
            (notice("error", message))
            p { a href=(Nav::Overview.href()) { "Back to the overview" } }
        },
    )
}

/// The hidden CSRF field to put in every form that changes state.
pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(token); }
}

/// A message box: `kind` is `"ok"`, `"error"` or `""` (neutral). Errors are announced (`role="alert"`).
pub fn notice(kind: &str, text: &str) -> Markup {
    let class = if kind.is_empty() {
        "notice".to_string()
    } else {
        format!("notice {kind}")
    };
    html! { p class=(class) role=[(kind == "error").then_some("alert")] { (text) } }
}

/// An overview tile: a heading linking to its page, a big figure, a note, and optional content
/// (e.g. a sparkline or a short list).
pub struct Tile<'a> {
    pub title: &'a str,
    pub href: &'a str,
    pub value: &'a str,
    pub note: Option<&'a str>,
    pub body: Option<Markup>,
}

/// Overview tiles in a responsive grid.
pub fn tiles(tiles: &[Tile<'_>]) -> Markup {
    html! {
        div.tiles {
            @for tile in tiles {
                section.tile {
                    h2 { a href=(tile.href) { (tile.title) } }
                    p.value { (tile.value) }
                    @if let Some(note) = tile.note {
                        p.note { (note) }
                    }
                    @if let Some(body) = &tile.body {
                        (body)
                    }
                }
            }
        }
    }
}

fn document(title: &str, css_href: &str, header: Markup, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                meta name="referrer" content="same-origin";
                title { (title) " · " (PRODUCT) }
                link rel="stylesheet" href=(css_href);
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href=(Nav::Overview.href()) { (PRODUCT) }
                    (header)
                }
                main id="main" tabindex="-1" {
                    (main)
                }
                footer.foot { "All days and times are UTC." }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(active: Nav, user: Option<&str>) -> String {
        page(&Page {
            title: "Fleet",
            active,
            user_label: user,
            csrf: Some("c5rf"),
            body: html! { p { "body" } },
            static_css_href: "/ui/static/style.abc.css",
        })
        .into_string()
    }

    #[test]
    fn a_page_is_a_full_document() {
        let html = sample(Nav::Fleet, Some("ops"));
        assert!(
            html.starts_with("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">")
        );
        assert!(
            html.contains(
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            )
        );
        assert!(html.contains("<title>Fleet · Beacon</title>"));
        assert!(html.contains("<link rel=\"stylesheet\" href=\"/ui/static/style.abc.css\">"));
        assert!(html.contains("<a class=\"skip\" href=\"#main\">Skip to content</a>"));
        assert!(html.contains("<a class=\"brand\" href=\"/ui/\">Beacon</a>"));
        assert!(
            html.contains("<main id=\"main\" tabindex=\"-1\"><h1>Fleet</h1><p>body</p></main>")
        );
        assert!(html.ends_with("</body></html>"));
    }

    #[test]
    fn the_navigation_marks_exactly_the_active_page() {
        for active in Nav::ALL {
            let html = sample(active, None);
            assert_eq!(html.matches("aria-current=\"page\"").count(), 1);
            let marked = format!(
                "<a href=\"{}\" aria-current=\"page\">{}</a>",
                active.href(),
                active.label()
            );
            assert!(html.contains(&marked), "{marked}");
            for other in Nav::ALL.into_iter().filter(|n| *n != active) {
                let plain = format!("<a href=\"{}\">{}</a>", other.href(), other.label());
                assert!(html.contains(&plain), "{plain}");
            }
        }
        let html = sample(Nav::Performance, None);
        let labels: Vec<&str> = Nav::ALL.iter().map(|n| n.label()).collect();
        assert_eq!(
            labels,
            [
                "Overview",
                "Fleet",
                "Growth",
                "Bulletins",
                "Issues",
                "Releases",
                "Performance",
                "Regressions",
                "Settings"
            ]
        );
        assert!(html.contains("<a href=\"/ui/perf\" aria-current=\"page\">Performance</a>"));
    }

    #[test]
    fn logged_in_pages_have_a_logout_form_with_csrf() {
        let html = sample(Nav::Overview, Some("ops <laptop>"));
        assert!(html.contains(concat!(
            "<div class=\"user\"><span>Signed in as <strong>ops &lt;laptop&gt;</strong></span>",
            "<form method=\"post\" action=\"/ui/logout\">",
            "<input type=\"hidden\" name=\"csrf\" value=\"c5rf\">",
            "<button class=\"secondary\" type=\"submit\">Log out</button></form></div>"
        )));
        let anonymous = sample(Nav::Overview, None);
        assert!(!anonymous.contains("/ui/logout"));
        assert!(!anonymous.contains("Signed in"));
    }

    #[test]
    fn titles_and_labels_are_escaped() {
        let html = page(&Page {
            title: "<script>alert(1)</script>",
            active: Nav::Issues,
            user_label: Some("\"quoted\""),
            csrf: Some("\"><x"),
            body: html! {},
            static_css_href: "/s.css",
        })
        .into_string();
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; · Beacon"));
        assert!(html.contains("value=\"&quot;&gt;&lt;x\""));
    }

    #[test]
    fn the_login_form_has_one_token_field() {
        let html = login_page(&Login {
            error: Some("That token is not valid."),
            next: None,
            form_token: "f00d",
            static_css_href: "/s.css",
        })
        .into_string();
        assert!(html.contains("<title>Log in · Beacon</title>"));
        assert!(
            html.contains("<p class=\"notice error\" role=\"alert\">That token is not valid.</p>")
        );
        assert!(html.contains(concat!(
            "<form class=\"stack\" method=\"post\" action=\"/ui/login\">",
            "<div class=\"field\"><label for=\"token\">Admin token</label>",
            "<input id=\"token\" type=\"password\" name=\"token\" autocomplete=\"off\" required ",
            "spellcheck=\"false\" autocapitalize=\"off\" aria-describedby=\"token-hint\"></div>",
            "<input type=\"hidden\" name=\"form_token\" value=\"f00d\">",
            "<div><button type=\"submit\">Log in</button></div></form>"
        )));
        assert_eq!(html.matches("<input").count(), 2);
        assert_eq!(
            html.matches("type=\"hidden\"").count(),
            1,
            "one visible field"
        );
        assert!(!html.contains("<nav"), "no navigation before logging in");
        assert!(!html.contains("method=\"get\""));

        let with_next = login_page(&Login {
            error: None,
            next: Some("/ui/fleet?by=os"),
            form_token: "f00d",
            static_css_href: "/s.css",
        })
        .into_string();
        assert!(!with_next.contains("role=\"alert\""));
        assert!(
            with_next.contains("<input type=\"hidden\" name=\"next\" value=\"/ui/fleet?by=os\">")
        );
    }

    #[test]
    fn notices_and_tiles() {
        assert_eq!(
            notice("error", "No <such> bulletin").into_string(),
            "<p class=\"notice error\" role=\"alert\">No &lt;such&gt; bulletin</p>"
        );
        assert_eq!(
            notice("ok", "Published.").into_string(),
            "<p class=\"notice ok\">Published.</p>"
        );
        assert_eq!(
            tiles(&[Tile {
                title: "Servers today",
                href: "/ui/growth",
                value: "1,204",
                note: Some("30-day trend"),
                body: None
            }])
            .into_string(),
            concat!(
                "<div class=\"tiles\"><section class=\"tile\"><h2><a href=\"/ui/growth\">Servers today</a></h2>",
                "<p class=\"value\">1,204</p><p class=\"note\">30-day trend</p></section></div>"
            )
        );
    }
}
