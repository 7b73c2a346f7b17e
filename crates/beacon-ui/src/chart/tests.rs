use super::*;
use crate::testutil::{assert_balanced, assert_coordinates, attributes};

fn day(s: &str) -> NaiveDate {
    s.parse().expect("date")
}

fn days(from: &str, values: &[f64]) -> Vec<(NaiveDate, f64)> {
    let first = day(from);
    values
        .iter()
        .enumerate()
        .map(|(i, v)| (first + chrono::Days::new(i as u64), *v))
        .collect()
}

fn servers() -> LineChart {
    let values: Vec<f64> = (0..30).map(|i| 120.0 + f64::from(i * 7 % 61)).collect();
    LineChart {
        title: "Servers per day".into(),
        x_label: "Day".into(),
        y_label: "Servers".into(),
        series: vec![Series {
            name: "servers".into(),
            points: days("2026-11-01", &values),
        }],
    }
}

/// The first element `<tag …>` … `</tag>` in `html`, as text.
fn element<'a>(html: &'a str, tag: &str) -> &'a str {
    let start = html
        .find(&format!("<{tag}"))
        .unwrap_or_else(|| panic!("no <{tag}> in {html}"));
    let end = html[start..].find(&format!("</{tag}>")).expect("closed") + start + tag.len() + 3;
    &html[start..end]
}

#[test]
fn a_line_chart_is_an_accessible_figure() {
    let html = line(&servers()).into_string();
    assert_balanced(&html);
    assert_coordinates(&html);
    assert!(html.starts_with("<figure class=\"chart\"><figcaption>Servers per day</figcaption><svg role=\"img\" aria-labelledby=\"chart-"));
    let svg = element(&html, "svg");
    let labelled = attributes(svg)
        .into_iter()
        .find(|a| a.1 == "aria-labelledby")
        .expect("aria-labelledby")
        .2;
    let ids: Vec<&str> = labelled.split(' ').collect();
    assert_eq!(ids.len(), 2);
    assert!(svg.contains(&format!("<title id=\"{}\">Servers per day</title>", ids[0])));
    let values: Vec<f64> = servers().series[0].points.iter().map(|p| p.1).collect();
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(0.0, f64::max);
    assert!(svg.contains(&format!(
        "<desc id=\"{}\">Servers per day from 2026-11-01 to 2026-11-30: min {min}, max {max}, last {}</desc>",
        ids[1],
        values[29]
    )));
    assert!(svg.contains(">Day (UTC)</text>"), "the x axis says UTC");
    assert!(svg.contains(">Servers</text>"), "the y axis is named");
    assert!(svg.contains(">2026-11-01</text>") && svg.contains(">2026-11-30</text>"));
    assert_eq!(svg.matches("<polyline class=\"line s0\"").count(), 1);
    assert_eq!(svg.matches("<circle class=\"dot s0\"").count(), 30);
    assert!(html.contains("<ul class=\"legend\"><li><span class=\"swatch s0\" aria-hidden=\"true\"></span>servers</li></ul>"));
    assert!(html.contains(
        "<details class=\"data\"><summary>Data</summary><div class=\"table-wrap\"><table>"
    ));
    assert!(!html.contains("<script"));
}

#[test]
fn every_value_appears_in_the_data_table() {
    let chart = LineChart {
        title: "Growth".into(),
        x_label: "Day".into(),
        y_label: "Servers".into(),
        series: vec![
            Series {
                name: "servers".into(),
                points: days("2026-10-01", &[1500.0, 1520.5, 1490.25, 1600.0]),
            },
            Series {
                name: "new".into(),
                points: days("2026-10-02", &[12.0, 3.0, 0.0, 7.0]),
            },
        ],
    };
    let html = line(&chart).into_string();
    let data = element(&html, "details");
    for s in &chart.series {
        assert!(data.contains(&format!("<th scope=\"col\" class=\"num\">{}</th>", s.name)));
        for (d, v) in &s.points {
            assert!(data.contains(&format!("<td>{d}</td>")), "{d}");
            assert!(
                data.contains(&format!(">{}</td>", format::number(*v))),
                "{v}"
            );
        }
    }
    // The union of days: 2026-10-01 has no "new", 2026-10-05 no "servers".
    assert!(data.contains(
        "<tr><td>2026-10-01</td><td class=\"num\">1,500</td><td class=\"num\">—</td></tr>"
    ));
    assert!(
        data.contains(
            "<tr><td>2026-10-05</td><td class=\"num\">—</td><td class=\"num\">7</td></tr>"
        )
    );
    assert_eq!(
        chart.table().csv(),
        "Day (UTC),servers,new\n2026-10-01,1500,\n2026-10-02,1520.5,12\n2026-10-03,1490.25,3\n2026-10-04,1600,0\n2026-10-05,,7\n"
    );
    // Two series: two lines, told apart by class (colour and dash), both in the legend and summary.
    let svg = element(&html, "svg");
    assert!(
        svg.contains("<polyline class=\"line s0\"") && svg.contains("<polyline class=\"line s1\"")
    );
    assert!(html.contains("<span class=\"swatch s1\" aria-hidden=\"true\"></span>new</li>"));
    assert!(svg.contains(
        "Growth from 2026-10-01 to 2026-10-05, 2 series. servers: min 1,490.25, max 1,600, last 1,600; new: min 0, max 12, last 7.</desc>"
    ));
}

#[test]
fn points_map_onto_the_plot_in_order() {
    let chart = LineChart {
        title: "t".into(),
        x_label: "Day".into(),
        y_label: String::new(),
        // Out of order on purpose; the chart sorts by day.
        series: vec![Series {
            name: "a".into(),
            points: vec![
                (day("2026-01-03"), 10.0),
                (day("2026-01-01"), 0.0),
                (day("2026-01-02"), 5.0),
            ],
        }],
    };
    let html = line(&chart).into_string();
    // x: 56..600 over 2 days; y: 216 (0) .. 24 (10).
    assert!(
        html.contains("<polyline class=\"line s0\" points=\"56,216 328,120 600,24\"></polyline>"),
        "{html}"
    );
    // Whole numbers: ticks step by 2, not 2.5.
    for t in ["0", "2", "4", "6", "8", "10"] {
        assert!(
            html.contains(&format!("text-anchor=\"end\">{t}</text>")),
            "tick {t}"
        );
    }
}

#[test]
fn a_single_day_is_a_dot_in_the_middle() {
    let chart = LineChart {
        title: "Today".into(),
        x_label: "Day (UTC)".into(),
        y_label: "Servers".into(),
        series: vec![Series {
            name: "servers".into(),
            points: vec![(day("2026-12-02"), 42.0)],
        }],
    };
    let html = line(&chart).into_string();
    assert_balanced(&html);
    assert!(!html.contains("<polyline"));
    assert!(html.contains("<circle class=\"dot s0\" cx=\"328\""));
    assert!(html.contains("Today on 2026-12-02: min 42, max 42, last 42</desc>"));
    assert!(html.contains(">Day (UTC)</text>") && !html.contains("(UTC) (UTC)"));
}

#[test]
fn empty_data_says_so_without_an_svg() {
    let expected = "<figure class=\"chart\"><figcaption>Servers per day</figcaption><p class=\"empty\">No data in this range</p></figure>";
    let mut chart = servers();
    chart.series[0].points.clear();
    assert_eq!(line(&chart).into_string(), expected);
    chart.series.clear();
    assert_eq!(line(&chart).into_string(), expected);
    chart.series.push(Series {
        name: "nan".into(),
        points: vec![(day("2026-11-01"), f64::NAN)],
    });
    assert_eq!(line(&chart).into_string(), expected);
    let bars_empty = bars(&BarChart {
        title: "Servers per day".into(),
        bars: vec![],
        unit: String::new(),
    });
    assert_eq!(bars_empty.into_string(), expected);
    let zero = histogram(&Histogram {
        title: "Servers per day".into(),
        buckets: vec![("0–1".into(), 0)],
    });
    assert_eq!(zero.into_string(), expected);
    assert_eq!(
        sparkline(&[], "x").into_string(),
        "<span class=\"muted\">no data</span>"
    );
    assert_eq!(
        sparkline(&[f64::NAN], "x").into_string(),
        "<span class=\"muted\">no data</span>"
    );
}

#[test]
fn text_is_escaped_everywhere() {
    let evil = "<script>alert(\"x\")</script>";
    let chart = LineChart {
        title: evil.into(),
        x_label: evil.into(),
        y_label: evil.into(),
        series: vec![Series {
            name: evil.into(),
            points: days("2026-11-01", &[1.0, 2.0]),
        }],
    };
    for html in [
        line(&chart).into_string(),
        bars(&BarChart {
            title: evil.into(),
            bars: vec![(evil.into(), 1.0)],
            unit: evil.into(),
        })
        .into_string(),
        histogram(&Histogram {
            title: evil.into(),
            buckets: vec![(evil.into(), 3)],
        })
        .into_string(),
        sparkline(&[1.0, 2.0], evil).into_string(),
    ] {
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert_balanced(&html);
    }
}

#[test]
fn bars_are_labelled_with_their_values() {
    let chart = BarChart {
        title: "Servers by version".into(),
        bars: vec![
            ("7.8.1".into(), 800.0),
            ("7.9.0".into(), 1200.0),
            ("7.7.0".into(), 0.0),
            ("old".into(), -3.0),
        ],
        unit: "servers".into(),
    };
    let html = bars(&chart).into_string();
    assert_balanced(&html);
    assert_coordinates(&html);
    assert!(html.contains("Servers by version: 4 bars; largest: 7.9.0 1,200 servers, 7.8.1 800 servers, 7.7.0 0 servers.</desc>"));
    for (label, v) in &chart.bars {
        assert!(html.contains(&format!(">{label}</text>")), "{label}");
        assert!(
            html.contains(&format!(">{}</text>", format::with_unit(*v, "servers"))),
            "{v}"
        );
        assert!(
            html.contains(&format!("<td>{label}</td>")),
            "{label} in the table"
        );
    }
    let widths: Vec<f64> = attributes(&html)
        .into_iter()
        .filter(|(tag, name, _)| tag == "rect" && name == "width")
        .map(|(_, _, v)| v.parse().expect("number"))
        .collect();
    // 640 − label column (5 chars × 6.6 + 12 = 45 → 48) − 120 for the values = 472 for the longest bar.
    assert_eq!(widths, [314.7, 472.0, 0.0, 0.0]);
    assert!(html.contains("<th scope=\"col\" class=\"num\">Value (servers)</th>"));
}

#[test]
fn long_bar_labels_are_cut_with_the_full_text_kept() {
    let long = "a-very-long-database-version-string-1.2.3";
    let html = bars(&BarChart {
        title: "t".into(),
        bars: vec![(long.into(), 5.0)],
        unit: "%".into(),
    })
    .into_string();
    assert!(
        html.contains(&format!(
            "<title>{long}</title>a-very-long-database-ve…</text>"
        )),
        "{html}"
    );
    assert!(html.contains(">5%</text>"));
    assert!(html.contains(&format!("<td>{long}</td>")));
}

#[test]
fn a_histogram_counts_every_bucket() {
    let buckets: Vec<(String, u64)> = (0..40)
        .map(|i| {
            (
                format!("{}–{} ms", i * 50, (i + 1) * 50),
                (i * 37 % 23) as u64,
            )
        })
        .collect();
    let chart = Histogram {
        title: "Start time".into(),
        buckets: buckets.clone(),
    };
    let html = histogram(&chart).into_string();
    assert_balanced(&html);
    assert_coordinates(&html);
    let total: u64 = buckets.iter().map(|b| b.1).sum();
    assert!(html.contains(&format!("Start time: 40 buckets, {total} in all; most in ")));
    assert_eq!(html.matches("<rect class=\"bar s0\"").count(), 40);
    // 40 buckets over 544 px: a label every 6th bucket (72 px each), all of them in the table.
    assert_eq!(element(&html, "svg").matches(" ms</text>").count(), 7);
    for (label, n) in &buckets {
        assert!(
            html.contains(&format!(
                "<tr><td>{label}</td><td class=\"num\">{n}</td></tr>"
            )),
            "{label}"
        );
    }
    // Counts get whole-number ticks.
    let small = histogram(&Histogram {
        title: "t".into(),
        buckets: vec![("a".into(), 1), ("b".into(), 2)],
    })
    .into_string();
    for t in ["0", "1", "2"] {
        assert!(
            small.contains(&format!("text-anchor=\"end\">{t}</text>")),
            "tick {t}"
        );
    }
    assert!(!small.contains(">0.5</text>"));
}

#[test]
fn sparklines_are_small_labelled_images() {
    assert_eq!(
        sparkline(&[1.0, 3.0, 2.0], "Events per day").into_string(),
        concat!(
            "<svg class=\"spark\" role=\"img\" aria-label=\"Events per day: min 1, max 3, last 2\" ",
            "viewBox=\"0 0 100 24\" width=\"100\" height=\"24\"><polyline points=\"2,22 50,2 98,12\"></polyline></svg>"
        )
    );
    assert_eq!(
        sparkline(&[5.0], "x").into_string(),
        concat!(
            "<svg class=\"spark\" role=\"img\" aria-label=\"x: min 5, max 5, last 5\" ",
            "viewBox=\"0 0 100 24\" width=\"100\" height=\"24\"><polyline points=\"2,12 98,12\"></polyline></svg>"
        )
    );
    let many: Vec<f64> = (0..365).map(|i| f64::from(i).sin() * 1000.0).collect();
    let html = sparkline(&many, "x").into_string();
    assert_coordinates(&html);
    assert_balanced(&html);
}

#[test]
fn scales_end_on_round_numbers() {
    let s = Scale::new(120.0, 180.0, true);
    assert_eq!((s.lo, s.hi), (0.0, 200.0));
    assert_eq!(s.ticks, [0.0, 50.0, 100.0, 150.0, 200.0]);
    let s = Scale::new(0.0, 0.0, true);
    assert_eq!(s.ticks, [0.0, 1.0]);
    let s = Scale::new(-3.0, 7.0, false);
    assert_eq!((s.lo, s.hi), (-5.0, 7.5));
    let s = Scale::new(0.0, 0.9, false);
    assert_eq!(s.ticks, [0.0, 0.25, 0.5, 0.75, 1.0]);
    let s = Scale::new(0.0, 10.0, false);
    assert_eq!(s.ticks, [0.0, 2.5, 5.0, 7.5, 10.0]);
    let s = Scale::new(0.0, 10.0, true);
    assert_eq!(s.ticks, [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
    let s = Scale::new(0.0, 3.0, true);
    assert_eq!(s.ticks, [0.0, 1.0, 2.0, 3.0]);
    let huge = Scale::new(-f64::MAX, f64::MAX, false);
    assert_eq!(huge.ticks.len(), 2);
    for max in [1.0, 7.0, 13.0, 99.0, 101.0, 12345.0, 1e9 + 7.0] {
        let s = Scale::new(0.0, max, true);
        assert!(
            s.hi >= max && s.ticks.len() <= 7 && s.ticks.len() >= 2,
            "{max}: {s:?}"
        );
    }
}

#[test]
fn chart_ids_differ_between_charts() {
    let a = line(&servers()).into_string();
    let mut other = servers();
    other.title = "Other".into();
    let b = line(&other).into_string();
    let id = |h: &str| {
        attributes(h)
            .into_iter()
            .find(|a| a.1 == "aria-labelledby")
            .expect("id")
            .2
    };
    assert_ne!(id(&a), id(&b));
    assert_eq!(
        id(&a),
        id(&line(&servers()).into_string()),
        "the same chart renders the same"
    );
}
