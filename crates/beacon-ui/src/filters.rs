//! Filter forms and permalinks. A filter form is a GET form: its fields become the page's query
//! string, so every view is a URL that can be shared; each field shows the value the page was asked
//! for. A permalink turns a relative range (`range=30d`, "last 30 days") into fixed dates
//! (`from=…&to=…`), so a shared URL shows the same data later.

use chrono::{Days, NaiveDate};
use maud::{Markup, html};

/// The relative ranges pages offer, as `(value, label)` for [`select`].
pub const RANGES: [(&str, &str); 4] = [
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("90d", "Last 90 days"),
    ("365d", "Last 365 days"),
];

/// The longest relative range accepted, in days (ten years).
pub const MAX_RANGE_DAYS: u32 = 3660;

/// A GET form to `action` holding `fields` and an "Apply" button.
pub fn form(action: &str, fields: &[Markup]) -> Markup {
    html! {
        form.filters method="get" action=(action) aria-label="Filters" {
            @for field in fields {
                (field)
            }
            div.field { button type="submit" { "Apply" } }
        }
    }
}

/// A labelled `<select>`; the option whose value is `current` is selected. `current` not among the
/// options (e.g. a value typed into the URL) selects none, so the browser shows the first.
pub fn select(name: &str, label: &str, options: &[(&str, &str)], current: Option<&str>) -> Markup {
    let id = field_id(name);
    html! {
        div.field {
            label for=(id) { (label) }
            select id=(id) name=(name) {
                @for (value, text) in options {
                    option value=(value) selected[current == Some(*value)] { (text) }
                }
            }
        }
    }
}

/// Two labelled date inputs, `from` and `to` (days, UTC), showing the current values.
pub fn date_range(from: Option<NaiveDate>, to: Option<NaiveDate>) -> Markup {
    html! {
        (date_input("from", "From (UTC)", from))
        (date_input("to", "To (UTC)", to))
    }
}

fn date_input(name: &str, label: &str, value: Option<NaiveDate>) -> Markup {
    let id = field_id(name);
    html! {
        div.field {
            label for=(id) { (label) }
            input id=(id) type="date" name=(name) value=[value.map(|d| d.to_string())];
        }
    }
}

/// A labelled number input showing `value` as it was given (e.g. the regression threshold).
pub fn number(
    name: &str,
    label: &str,
    value: Option<&str>,
    min: Option<&str>,
    step: Option<&str>,
) -> Markup {
    let id = field_id(name);
    html! {
        div.field {
            label for=(id) { (label) }
            input id=(id) type="number" name=(name) value=[value] min=[min] step=[step];
        }
    }
}

/// A labelled text input showing `value` (e.g. a release or environment filter).
pub fn text(name: &str, label: &str, value: Option<&str>) -> Markup {
    let id = field_id(name);
    html! {
        div.field {
            label for=(id) { (label) }
            input id=(id) type="text" name=(name) value=[value];
        }
    }
}

/// A hidden field, to carry a filter the form does not show (e.g. `trace` on a per-trace page).
pub fn hidden(name: &str, value: &str) -> Markup {
    html! { input type="hidden" name=(name) value=(value); }
}

fn field_id(name: &str) -> String {
    format!("f-{name}")
}

/// "The last N days", today included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelativeRange {
    days: u32,
}

impl RelativeRange {
    /// The last `days` days; `None` outside 1..=[`MAX_RANGE_DAYS`].
    pub fn days(days: u32) -> Option<RelativeRange> {
        (1..=MAX_RANGE_DAYS)
            .contains(&days)
            .then_some(RelativeRange { days })
    }

    /// `7d`, `30d`, `2w` (weeks); anything else is `None`.
    pub fn parse(s: &str) -> Option<RelativeRange> {
        let (digits, per) = if let Some(d) = s.strip_suffix('d') {
            (d, 1)
        } else if let Some(w) = s.strip_suffix('w') {
            (w, 7)
        } else {
            return None;
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u32 = digits.parse().ok()?;
        RelativeRange::days(n.checked_mul(per)?)
    }

    /// How many days.
    pub fn day_count(self) -> u32 {
        self.days
    }

    /// The fixed dates, both included: the last `n` days up to and including `today`
    /// (`30d` on 2026-11-30 is 2026-11-01..=2026-11-30). `None` only before the calendar's start.
    pub fn resolve(self, today: NaiveDate) -> Option<(NaiveDate, NaiveDate)> {
        let from = today.checked_sub_days(Days::new(u64::from(self.days - 1)))?;
        Some((from, today))
    }
}

/// The query string (raw, without `?`) with its `range=…` replaced by the fixed `from=…&to=…` it
/// means on `today`; `None` when the query has no valid `range` (it already names fixed dates, or
/// the page's default applies: spell that out with [`fixed_query`]).
pub fn permalink(query: &str, today: NaiveDate) -> Option<String> {
    let range = query
        .split('&')
        .rev()
        .find_map(|p| p.strip_prefix("range="))
        .and_then(RelativeRange::parse)?;
    let (from, to) = range.resolve(today)?;
    Some(fixed_query(query, from, to))
}

/// The query string with any `range`, `from` and `to` dropped and `from=…&to=…` appended.
pub fn fixed_query(query: &str, from: NaiveDate, to: NaiveDate) -> String {
    let mut params: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty() && !matches!(p.split('=').next(), Some("range" | "from" | "to")))
        .map(str::to_string)
        .collect();
    params.push(format!("from={from}"));
    params.push(format!("to={to}"));
    params.join("&")
}

/// A "Permalink" link to `path` with fixed dates, when the query has a relative range.
pub fn permalink_link(path: &str, query: &str, today: NaiveDate) -> Option<Markup> {
    Some(fixed_link(path, &permalink(query, today)?))
}

/// A "Permalink" link to `path` with the dates `from`..=`to` a page shows, when its query leaves
/// them relative: a `range`, or a missing or empty `from` or `to` (the page's default, "the last
/// N days"). `None` when the query is fixed already.
pub fn permalink_to(path: &str, query: &str, from: NaiveDate, to: NaiveDate) -> Option<Markup> {
    let given = |key: &str| {
        query.split('&').any(|p| {
            p.split_once('=')
                .is_some_and(|(k, v)| k == key && !v.is_empty())
        })
    };
    if given("from") && given("to") && !given("range") {
        return None;
    }
    Some(fixed_link(path, &fixed_query(query, from, to)))
}

fn fixed_link(path: &str, fixed_query: &str) -> Markup {
    html! {
        a.permalink href={ (path) "?" (fixed_query) } title="This view with fixed dates, to share" { "Permalink" }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    #[test]
    fn a_select_keeps_the_current_value() {
        assert_eq!(
            select(
                "by",
                "Group by",
                &[("version", "Version"), ("os", "OS")],
                Some("os")
            )
            .into_string(),
            concat!(
                "<div class=\"field\"><label for=\"f-by\">Group by</label>",
                "<select id=\"f-by\" name=\"by\"><option value=\"version\">Version</option>",
                "<option value=\"os\" selected>OS</option></select></div>"
            )
        );
        let none = select("by", "Group by", &[("version", "Version")], Some("x\"y")).into_string();
        assert!(!none.contains("selected"));
    }

    #[test]
    fn date_inputs_keep_their_values() {
        assert_eq!(
            date_range(Some(day("2026-11-01")), None).into_string(),
            concat!(
                "<div class=\"field\"><label for=\"f-from\">From (UTC)</label>",
                "<input id=\"f-from\" type=\"date\" name=\"from\" value=\"2026-11-01\"></div>",
                "<div class=\"field\"><label for=\"f-to\">To (UTC)</label>",
                "<input id=\"f-to\" type=\"date\" name=\"to\"></div>"
            )
        );
    }

    #[test]
    fn the_form_is_get_with_an_apply_button() {
        let html = form(
            "/ui/fleet",
            &[
                hidden("trace", "app_start"),
                text("release", "Release", Some("<1.2>")),
            ],
        )
        .into_string();
        assert_eq!(
            html,
            concat!(
                "<form class=\"filters\" method=\"get\" action=\"/ui/fleet\" aria-label=\"Filters\">",
                "<input type=\"hidden\" name=\"trace\" value=\"app_start\">",
                "<div class=\"field\"><label for=\"f-release\">Release</label>",
                "<input id=\"f-release\" type=\"text\" name=\"release\" value=\"&lt;1.2&gt;\"></div>",
                "<div class=\"field\"><button type=\"submit\">Apply</button></div></form>"
            )
        );
        assert_eq!(
            number("threshold", "Threshold (%)", Some("10"), Some("0"), None).into_string(),
            concat!(
                "<div class=\"field\"><label for=\"f-threshold\">Threshold (%)</label>",
                "<input id=\"f-threshold\" type=\"number\" name=\"threshold\" value=\"10\" min=\"0\"></div>"
            )
        );
    }

    #[test]
    fn relative_ranges_parse() {
        assert_eq!(
            RelativeRange::parse("30d").map(RelativeRange::day_count),
            Some(30)
        );
        assert_eq!(
            RelativeRange::parse("2w").map(RelativeRange::day_count),
            Some(14)
        );
        assert_eq!(
            RelativeRange::parse("1d").map(RelativeRange::day_count),
            Some(1)
        );
        assert_eq!(
            RelativeRange::parse("3660d").map(RelativeRange::day_count),
            Some(3660)
        );
        for bad in [
            "",
            "d",
            "0d",
            "3661d",
            "-1d",
            "+5d",
            "30",
            "30D",
            "1.5d",
            "99999999999d",
            "9999999999w",
        ] {
            assert_eq!(RelativeRange::parse(bad), None, "{bad}");
        }
        for (value, _) in RANGES {
            assert!(RelativeRange::parse(value).is_some(), "{value}");
        }
    }

    #[test]
    fn the_last_n_days_include_today() {
        let r = RelativeRange::parse("30d").expect("range");
        assert_eq!(
            r.resolve(day("2026-11-30")),
            Some((day("2026-11-01"), day("2026-11-30")))
        );
        let one = RelativeRange::parse("1d").expect("range");
        assert_eq!(
            one.resolve(day("2026-03-01")),
            Some((day("2026-03-01"), day("2026-03-01")))
        );
        let week = RelativeRange::parse("7d").expect("range");
        assert_eq!(
            week.resolve(day("2028-03-02")),
            Some((day("2028-02-25"), day("2028-03-02")))
        );
        assert_eq!(week.resolve(NaiveDate::MIN), None);
    }

    #[test]
    fn permalinks_fix_the_dates_and_keep_other_filters() {
        let today = day("2026-12-02");
        assert_eq!(
            permalink("by=os&range=30d&project=3", today).as_deref(),
            Some("by=os&project=3&from=2026-11-03&to=2026-12-02")
        );
        assert_eq!(
            permalink("range=7d&from=2020-01-01", today).as_deref(),
            Some("from=2026-11-26&to=2026-12-02")
        );
        assert_eq!(permalink("from=2026-11-01&to=2026-11-30", today), None);
        assert_eq!(permalink("range=forever", today), None);
        assert_eq!(permalink("", today), None);
        assert_eq!(
            fixed_query("", day("2026-11-01"), day("2026-11-30")),
            "from=2026-11-01&to=2026-11-30"
        );
        assert_eq!(
            permalink_link("/ui/growth", "range=30d", today)
                .map(Markup::into_string)
                .as_deref(),
            Some(concat!(
                "<a class=\"permalink\" href=\"/ui/growth?from=2026-11-03&amp;to=2026-12-02\" ",
                "title=\"This view with fixed dates, to share\">Permalink</a>"
            ))
        );
        assert!(permalink_link("/ui/growth", "from=2026-11-01", today).is_none());
        let (from, to) = (day("2026-11-03"), day("2026-12-02"));
        let href = |q: &str| {
            permalink_to("/ui/fleet", q, from, to).map(|m| {
                let s = m.into_string();
                s.split('"').nth(3).unwrap_or_default().to_string()
            })
        };
        assert_eq!(
            href("by=os").as_deref(),
            Some("/ui/fleet?by=os&amp;from=2026-11-03&amp;to=2026-12-02"),
            "the page's default range is relative too"
        );
        assert_eq!(
            href("range=30d&from=&to=").as_deref(),
            Some("/ui/fleet?from=2026-11-03&amp;to=2026-12-02")
        );
        assert_eq!(
            href("from=2026-11-03&to=").as_deref(),
            Some("/ui/fleet?from=2026-11-03&amp;to=2026-12-02")
        );
        assert_eq!(href("from=2026-11-03&to=2026-12-02"), None, "fixed already");
    }
}
