//! One page using every component, written to `target/ui-sample.html` (with its stylesheet beside
//! it, and the login page as `target/ui-login.html`) for a person to open in a browser; the test
//! checks what a browser would need from it.

use beacon_ui::chart::{self, BarChart, Histogram, LineChart, Series};
use beacon_ui::filters;
use beacon_ui::layout::{self, Login, Nav, Page, Tile};
use beacon_ui::maud::{Markup, html};
use beacon_ui::table::{self, Cell, Column, Table};
use beacon_ui::{STYLE_CSS, style_hash};
use chrono::{Days, NaiveDate};
use std::collections::BTreeSet;
use std::path::PathBuf;

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 2).expect("date")
}

fn daily(days: u64, f: impl Fn(u64) -> f64) -> Vec<(NaiveDate, f64)> {
    let first = today() - Days::new(days - 1);
    (0..days).map(|i| (first + Days::new(i), f(i))).collect()
}

fn body() -> Markup {
    let servers = daily(30, |i| 1180.0 + (i * 13 % 37) as f64 + i as f64 * 4.0);
    let trend: Vec<f64> = servers.iter().map(|p| p.1).collect();
    let growth = LineChart {
        title: "Servers per day".into(),
        x_label: "Day".into(),
        y_label: "Servers".into(),
        series: vec![
            Series {
                name: "servers".into(),
                points: servers.clone(),
            },
            Series {
                name: "new".into(),
                points: daily(30, |i| (i * 7 % 11) as f64 * 9.0),
            },
            Series {
                name: "gone".into(),
                points: daily(30, |i| (i * 5 % 13) as f64 * 6.0),
            },
        ],
    };
    let adoption = LineChart {
        title: "Patch adoption after bulletin MMSA-2026-0042".into(),
        x_label: "Day".into(),
        y_label: "Servers exposed".into(),
        series: vec![Series {
            name: "exposed".into(),
            points: daily(14, |i| 900.0 / (1.0 + i as f64 * 0.6)),
        }],
    };
    let versions = BarChart {
        title: "Servers by version".into(),
        bars: vec![
            ("10.2.1".into(), 612.0),
            ("10.2.0".into(), 344.0),
            ("10.1.4".into(), 151.0),
            ("9.11.12 (extended support)".into(), 88.0),
            ("other (folded below threshold)".into(), 17.0),
        ],
        unit: "servers".into(),
    };
    let starts = Histogram {
        title: "App start, Android, last 30 days".into(),
        buckets: (0..24u64)
            .map(|i| {
                (
                    format!("{}–{} ms", i * 100, (i + 1) * 100),
                    (-((i as f64 - 7.0) / 3.0).powi(2))
                        .exp()
                        .mul_add(4000.0, 12.0) as u64,
                )
            })
            .collect(),
    };
    let mut issues = Table::new(vec![
        Column::text("Issue"),
        Column::text("Level"),
        Column::number("Events"),
        Column::number("Servers"),
        Column::text("Last 14 days"),
        Column::text("Last seen (UTC)"),
    ])
    .with_caption("Top issues, last 24 hours");
    for (i, (title, level)) in [
        (
            "TypeError: cannot read properties of undefined (reading 'id')",
            "error",
        ),
        (
            "panic: runtime error: index out of range [3] with length 3",
            "fatal",
        ),
        (
            "pq: canceling statement due to statement timeout, \"channels\" query",
            "error",
        ),
        (
            "<img src=x onerror=alert(1)> — a title that tries to be HTML",
            "warning",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let counts: Vec<f64> = (0..14u64)
            .map(|d| ((d + i as u64 * 3) * 37 % 23) as f64)
            .collect();
        issues.push(vec![
            Cell::link(format!("/ui/issues/{}", 101 + i), title),
            Cell::markup(html! { span.badge { (level) } }, level),
            Cell::Int(12_840 / (i as i64 + 1)),
            Cell::Int(311 / (i as i64 + 1)),
            Cell::markup(
                chart::sparkline(&counts, "Events per day"),
                counts
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            Cell::Text(format!("2026-12-02 0{i}:1{i}")),
        ]);
    }
    let mut releases = Table::new(vec![
        Column::text("Release"),
        Column::number("Servers"),
        Column::number("With errors"),
        Column::number("Error-free"),
    ])
    .with_caption("Release health (servers seen in security checks)");
    releases.push(vec![
        "10.2.1".into(),
        612u64.into(),
        9u64.into(),
        Cell::Ratio(0.985),
    ]);
    releases.push(vec![
        "10.2.0".into(),
        344u64.into(),
        31u64.into(),
        Cell::Ratio(0.91),
    ]);
    releases.push(vec![
        "10.1.4".into(),
        151u64.into(),
        Cell::Empty,
        Cell::Empty,
    ]);
    let query = "by=version&range=30d";
    html! {
        (layout::notice("ok", "Bulletin MMSA-2026-0042 published."))
        (layout::tiles(&[
            Tile {
                title: "Servers checked in today",
                href: Nav::Growth.href(),
                value: "1,314",
                note: Some("+2.1% on 30 days ago"),
                body: Some(chart::sparkline(&trend, "Servers per day, last 30 days")),
            },
            Tile { title: "Newest bulletin", href: "/ui/bulletins/7", value: "MMSA-2026-0042", note: Some("Exposed: 412 servers (31%)"), body: None },
            Tile { title: "Issues, last 24 hours", href: Nav::Issues.href(), value: "27", note: Some("4 new"), body: None },
            Tile { title: "Regressions flagged", href: Nav::Regressions.href(), value: "2", note: Some("channel_switch p75 +18%"), body: None },
        ]))
        (filters::form("/ui/fleet", &[
            filters::select("by", "Group by", &[("version", "Version"), ("edition", "Edition"), ("os", "OS"), ("database", "Database")], Some("version")),
            filters::select("range", "Range", &filters::RANGES, Some("30d")),
            filters::date_range(Some(today() - Days::new(29)), Some(today())),
            filters::number("threshold", "Threshold (%)", Some("10"), Some("0"), Some("0.5")),
        ]))
        div.actions {
            (table::csv_link("/ui/fleet", query))
            @if let Some(link) = filters::permalink_link("/ui/fleet", query, today()) {
                (link)
            }
        }
        h2 { "Growth" }
        (chart::line(&growth))
        (chart::line(&adoption))
        h2 { "Fleet" }
        (chart::bars(&versions))
        h2 { "Performance" }
        (chart::histogram(&starts))
        (chart::line(&LineChart { title: "p50 and p95 per day".into(), x_label: "Day".into(), y_label: "ms".into(), series: vec![] }))
        h2 { "Issues" }
        (issues.html())
        h2 { "Releases" }
        (releases.html())
        h2 { "Issue detail" }
        ol.frames {
            li { "libc.so.6 in __GI_raise" }
            li.in-app { "server/app/channels.go:412 in (*App).GetChannel" }
            li { "net/http/server.go:2136 in HandlerFunc.ServeHTTP" }
        }
        h2 { "Settings" }
        div.notice.ok.secret { "New admin token (shown once): " code { "bcn_3f0c9a1e5b7d4c2a8f6e0b1d3c5a7e9f" } }
        form.stack method="post" action="/ui/settings/tokens" {
            (layout::csrf_field("demo-csrf"))
            div.field {
                label for="label" { "Label" }
                input id="label" type="text" name="label";
            }
            div { button type="submit" { "Create token" } " " button.danger type="submit" formaction="/ui/settings/tokens/3/revoke" { "Revoke token 3" } }
        }
    }
}

fn target_dir() -> PathBuf {
    // Integration tests get target/tmp; the sample goes beside it, in target/.
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().map(PathBuf::from).unwrap_or(tmp)
}

/// The values of every `class="…"` attribute.
fn classes(html: &str) -> BTreeSet<String> {
    html.split(" class=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .flat_map(|v| v.split(' ').map(str::to_string).collect::<Vec<_>>())
        .collect()
}

#[test]
fn demo_page_renders_every_component() {
    let css_name = format!("style.{}.css", style_hash());
    let html = layout::page(&Page {
        title: "Component sample",
        active: Nav::Overview,
        user_label: Some("ops laptop"),
        csrf: Some("demo-csrf"),
        body: body(),
        static_css_href: &css_name,
    })
    .into_string();
    let login = layout::login_page(&Login {
        error: Some("That token is not valid."),
        next: None,
        form_token: "0123456789abcdef",
        static_css_href: &css_name,
    })
    .into_string();

    let dir = target_dir();
    std::fs::create_dir_all(&dir).expect("target dir");
    std::fs::write(dir.join(&css_name), STYLE_CSS).expect("write css");
    std::fs::write(dir.join("ui-sample.html"), &html).expect("write sample");
    std::fs::write(dir.join("ui-login.html"), &login).expect("write login");
    println!("wrote {}", dir.join("ui-sample.html").display());

    // Every chart with data carries an SVG with a title and summary, and its data table.
    assert_eq!(html.matches("<figure class=\"chart\">").count(), 5);
    assert_eq!(
        html.matches("<svg role=\"img\" aria-labelledby=").count(),
        4
    );
    assert_eq!(
        html.matches("<details class=\"data\"><summary>Data</summary>")
            .count(),
        4
    );
    assert_eq!(
        html.matches("<p class=\"empty\">No data in this range</p>")
            .count(),
        1
    );
    assert_eq!(
        html.matches("<svg class=\"spark\" role=\"img\" aria-label=")
            .count(),
        5
    );
    // Caller text that looks like HTML stays text.
    assert!(!html.contains("<img"));
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    // No JavaScript and nothing loaded from elsewhere.
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));
    // Every class the markup uses is styled.
    for class in classes(&html).iter().chain(&classes(&login)) {
        assert!(
            STYLE_CSS.contains(&format!(".{class}")),
            "class {class} has no rule in style.css"
        );
    }
    // Every id is unique.
    let ids: Vec<&str> = html
        .split(" id=\"")
        .skip(1)
        .filter_map(|r| r.split('"').next())
        .collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "{ids:?}");
    // Every label points at a control that exists.
    for target in html
        .split("<label for=\"")
        .skip(1)
        .filter_map(|r| r.split('"').next())
    {
        assert!(unique.contains(target), "label for {target}");
    }
}

#[test]
fn csv_of_a_chart_table_reads_back() {
    let chart = LineChart {
        title: "Servers per day".into(),
        x_label: "Day".into(),
        y_label: "Servers".into(),
        series: vec![Series {
            name: "servers, all".into(),
            points: daily(3, |i| i as f64 * 0.5),
        }],
    };
    let csv = chart.table().csv();
    assert_eq!(
        csv,
        "Day (UTC),\"servers, all\"\n2026-11-30,0\n2026-12-01,0.5\n2026-12-02,1\n"
    );
}
