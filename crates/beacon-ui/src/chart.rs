//! Charts as inline SVG, drawn on the server. Every chart is a `<figure>`: a visible caption, an
//! `<svg role="img">` named by its `<title>` and `<desc>` (a text summary of the data), and the data
//! itself as a table in a `<details>` beside it, so the figures are there for screen readers,
//! keyboards and copying. Colours come from CSS custom properties (`--c0`…`--c5`), so dark mode
//! changes them; series after the first are also dashed or dotted, so colour is never the only cue.
//! Empty data draws no SVG: the figure says "No data in this range". Coordinates carry at most one
//! decimal. No JavaScript.

use crate::format;
use crate::table::{Cell, Column, Table};
use chrono::NaiveDate;
use maud::{Markup, html};
use std::collections::BTreeMap;

/// What a figure without data says.
pub const NO_DATA: &str = "No data in this range";

const W: f64 = 640.0;
/// Plot margins of the line chart and histogram: room for y tick labels on the left, for half a
/// date label on the right, for the y-axis name on top and the x labels and axis name below.
const ML: f64 = 56.0;
const MR: f64 = 40.0;
const MT: f64 = 24.0;
const MB: f64 = 44.0;
const H: f64 = 260.0;
const SERIES_CLASSES: usize = 6;
/// Series with at most this many points also get a dot per point.
const MAX_DOTS: usize = 62;

/// One named series of daily values.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(NaiveDate, f64)>,
}

/// A line chart over days (UTC), one line per series.
#[derive(Clone, Debug, PartialEq)]
pub struct LineChart {
    pub title: String,
    /// The x-axis name, e.g. "Day"; " (UTC)" is added unless it names UTC already.
    pub x_label: String,
    /// The y-axis name, e.g. "Servers".
    pub y_label: String,
    pub series: Vec<Series>,
}

/// Horizontal bars, one per label, with the value written beside each.
#[derive(Clone, Debug, PartialEq)]
pub struct BarChart {
    pub title: String,
    pub bars: Vec<(String, f64)>,
    /// The values' unit, e.g. "servers", "ms", "%"; may be empty.
    pub unit: String,
}

/// Counts per bucket, as adjacent vertical bars.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub title: String,
    pub buckets: Vec<(String, u64)>,
}

/// A line chart figure.
pub fn line(chart: &LineChart) -> Markup {
    let series: Vec<Vec<(NaiveDate, f64)>> = chart
        .series
        .iter()
        .map(|s| {
            let mut points: Vec<_> = s
                .points
                .iter()
                .copied()
                .filter(|(_, v)| v.is_finite())
                .collect();
            points.sort_by_key(|(d, _)| *d);
            points
        })
        .collect();
    let all = || series.iter().flatten();
    let (Some(first), Some(last)) = (all().map(|p| p.0).min(), all().map(|p| p.0).max()) else {
        return empty(&chart.title);
    };
    let min = all().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let max = all().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let scale = Scale::new(min, max, all().all(|p| p.1.fract() == 0.0));

    let pw = W - ML - MR;
    let ph = H - MT - MB;
    let span = (last - first).num_days();
    let x = |d: NaiveDate| {
        if span == 0 {
            ML + pw / 2.0
        } else {
            ML + (d - first).num_days() as f64 / span as f64 * pw
        }
    };
    let y = |v: f64| MT + ph - scale.fraction(v) * ph;
    let x_ticks: Vec<NaiveDate> = if span == 0 {
        vec![first]
    } else {
        let k = span.min(5);
        (0..=k)
            .map(|i| first + chrono::Days::new(((span * i) as f64 / k as f64).round() as u64))
            .collect()
    };
    let x_name = chart.x_name();

    let desc = line_desc(chart, &series, first, last);
    let svg = html! {
        (axes_y(&scale, &y, &chart.y_label))
        line.axis x1=(c(ML)) x2=(c(W - MR)) y1=(c(MT + ph)) y2=(c(MT + ph)) {}
        @for d in &x_ticks {
            line.axis x1=(c(x(*d))) x2=(c(x(*d))) y1=(c(MT + ph)) y2=(c(MT + ph + 4.0)) {}
            text x=(c(x(*d))) y=(c(MT + ph + 17.0)) text-anchor="middle" { (d.to_string()) }
        }
        text x=(c(ML + pw / 2.0)) y=(c(H - 6.0)) text-anchor="middle" { (x_name) }
        @for (i, points) in series.iter().enumerate() {
            @let class = format!("s{}", i % SERIES_CLASSES);
            @if points.len() > 1 {
                polyline class={ "line " (class) }
                    points=(points.iter().map(|(d, v)| format!("{},{}", c(x(*d)), c(y(*v)))).collect::<Vec<_>>().join(" ")) {}
            }
            @if points.len() <= MAX_DOTS {
                @for (d, v) in points {
                    circle class={ "dot " (class) } cx=(c(x(*d))) cy=(c(y(*v))) r="2.5" {}
                }
            }
        }
    };
    let legend = html! {
        ul.legend {
            @for (i, s) in chart.series.iter().enumerate() {
                li { span class={ "swatch s" (i % SERIES_CLASSES) } aria-hidden="true" {} (s.name) }
            }
        }
    };
    figure(
        &chart.title,
        "line",
        &desc,
        H,
        svg,
        Some(legend),
        &chart.table(),
    )
}

impl LineChart {
    /// The x-axis name with " (UTC)" (unless it says UTC already); "Day (UTC)" when empty.
    pub fn x_name(&self) -> String {
        if self.x_label.contains("UTC") {
            self.x_label.clone()
        } else if self.x_label.is_empty() {
            "Day (UTC)".to_string()
        } else {
            format!("{} (UTC)", self.x_label)
        }
    }

    /// The chart's data: a row per day (ascending) that any series has, a column per series; a day
    /// a series lacks is empty.
    pub fn table(&self) -> Table {
        let mut columns = vec![Column::text(self.x_name())];
        columns.extend(self.series.iter().map(|s| Column::number(s.name.clone())));
        let mut days: BTreeMap<NaiveDate, Vec<Option<f64>>> = BTreeMap::new();
        for (i, s) in self.series.iter().enumerate() {
            for (d, v) in &s.points {
                if v.is_finite() {
                    days.entry(*d)
                        .or_insert_with(|| vec![None; self.series.len()])[i] = Some(*v);
                }
            }
        }
        let mut table = Table::new(columns);
        for (day, values) in days {
            let mut row = vec![Cell::Text(day.to_string())];
            row.extend(
                values
                    .into_iter()
                    .map(|v| v.map_or(Cell::Empty, Cell::Float)),
            );
            table.push(row);
        }
        table
    }
}

fn line_desc(
    chart: &LineChart,
    series: &[Vec<(NaiveDate, f64)>],
    first: NaiveDate,
    last: NaiveDate,
) -> String {
    let when = if first == last {
        format!("on {first}")
    } else {
        format!("from {first} to {last}")
    };
    let stats = |points: &[(NaiveDate, f64)]| -> Option<String> {
        let min = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let max = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        let (_, last) = points.last()?;
        Some(format!(
            "min {}, max {}, last {}",
            format::number(min),
            format::number(max),
            format::number(*last)
        ))
    };
    if let [only] = series {
        let s = stats(only).unwrap_or_else(|| "no data".to_string());
        return format!("{} {when}: {s}", chart.title);
    }
    let parts: Vec<String> = chart
        .series
        .iter()
        .zip(series)
        .map(|(s, points)| {
            format!(
                "{}: {}",
                s.name,
                stats(points).unwrap_or_else(|| "no data".to_string())
            )
        })
        .collect();
    format!(
        "{} {when}, {} series. {}.",
        chart.title,
        series.len(),
        parts.join("; ")
    )
}

/// A horizontal bar chart figure. Negative values draw no bar (their label still shows the value).
pub fn bars(chart: &BarChart) -> Markup {
    let bars: Vec<(&str, f64)> = chart
        .bars
        .iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(l, v)| (l.as_str(), *v))
        .collect();
    if bars.is_empty() {
        return empty(&chart.title);
    }
    const ROW: f64 = 26.0;
    const THICK: f64 = 18.0;
    const LABEL_CHARS: usize = 24;
    const VALUE_WIDTH: f64 = 120.0;
    let longest = bars
        .iter()
        .map(|(l, _)| l.chars().count().min(LABEL_CHARS))
        .max()
        .unwrap_or(0);
    let label_width = (longest as f64 * 6.6 + 12.0).max(48.0);
    let bar_space = W - label_width - VALUE_WIDTH;
    let max = bars.iter().map(|b| b.1).fold(0.0, f64::max);
    let height = bars.len() as f64 * ROW + 8.0;

    let mut ranked = bars.clone();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let top: Vec<String> = ranked
        .iter()
        .take(3)
        .map(|(l, v)| format!("{l} {}", format::with_unit(*v, &chart.unit)))
        .collect();
    let desc = format!(
        "{}: {} {}; largest: {}.",
        chart.title,
        bars.len(),
        if bars.len() == 1 { "bar" } else { "bars" },
        top.join(", ")
    );

    let svg = html! {
        @for (i, (label, v)) in bars.iter().enumerate() {
            @let top = 4.0 + i as f64 * ROW;
            @let width = if max > 0.0 { v.max(0.0) / max * bar_space } else { 0.0 };
            @let (shown, cut) = truncate(label, LABEL_CHARS);
            text x=(c(label_width - 8.0)) y=(c(top + ROW / 2.0 + 4.0)) text-anchor="end" {
                @if cut { title { (label) } }
                (shown)
            }
            rect.bar.s0 x=(c(label_width)) y=(c(top + (ROW - THICK) / 2.0)) width=(c(width)) height=(c(THICK)) {}
            text.value-label x=(c(label_width + width + 6.0)) y=(c(top + ROW / 2.0 + 4.0)) {
                (format::with_unit(*v, &chart.unit))
            }
        }
        line.axis x1=(c(label_width)) x2=(c(label_width)) y1="0" y2=(c(height)) {}
    };
    figure(
        &chart.title,
        "bars",
        &desc,
        height,
        svg,
        None,
        &chart.table(),
    )
}

impl BarChart {
    /// The chart's data: label and value, in the given order.
    pub fn table(&self) -> Table {
        let value = if self.unit.is_empty() {
            "Value".to_string()
        } else {
            format!("Value ({})", self.unit)
        };
        let mut table = Table::new(vec![Column::text("Label"), Column::number(value)]);
        for (label, v) in &self.bars {
            table.push(vec![
                Cell::Text(label.clone()),
                if v.is_finite() {
                    Cell::Float(*v)
                } else {
                    Cell::Empty
                },
            ]);
        }
        table
    }
}

/// A histogram figure: adjacent bars, counts on the y axis, bucket labels below (every few
/// buckets when there are many; the data table has all).
pub fn histogram(chart: &Histogram) -> Markup {
    let total: u64 = chart
        .buckets
        .iter()
        .fold(0u64, |sum, (_, n)| sum.saturating_add(*n));
    if total == 0 {
        return empty(&chart.title);
    }
    let n = chart.buckets.len();
    let max = chart.buckets.iter().map(|b| b.1).max().unwrap_or(0);
    let scale = Scale::new(0.0, max as f64, true);
    let pw = W - ML - MR;
    let ph = H - MT - MB;
    let slot = pw / n as f64;
    let gap = if slot > 4.0 { 1.0 } else { 0.0 };
    let label_every = ((n as f64 * 72.0 / pw).ceil() as usize).max(1);
    let y = |v: f64| MT + ph - scale.fraction(v) * ph;
    let (most_label, most) = chart
        .buckets
        .iter()
        .max_by_key(|b| b.1)
        .map(|(l, n)| (l.as_str(), *n))
        .unwrap_or(("", 0));
    let desc = format!(
        "{}: {} buckets, {} in all; most in {} ({}).",
        chart.title,
        n,
        format::int(i64::try_from(total).unwrap_or(i64::MAX)),
        most_label,
        format::int(i64::try_from(most).unwrap_or(i64::MAX))
    );
    let svg = html! {
        (axes_y(&scale, &y, "Count"))
        @for (i, (label, count)) in chart.buckets.iter().enumerate() {
            @let left = ML + i as f64 * slot;
            @let top = y(*count as f64);
            rect.bar.s0 x=(c(left + gap / 2.0)) y=(c(top)) width=(c(slot - gap)) height=(c(MT + ph - top)) {}
            @if i.is_multiple_of(label_every) {
                text x=(c(left + slot / 2.0)) y=(c(MT + ph + 17.0)) text-anchor="middle" { (truncate(label, 12).0) }
            }
        }
        line.axis x1=(c(ML)) x2=(c(W - MR)) y1=(c(MT + ph)) y2=(c(MT + ph)) {}
    };
    figure(
        &chart.title,
        "histogram",
        &desc,
        H,
        svg,
        None,
        &chart.table(),
    )
}

impl Histogram {
    /// The chart's data: bucket and count.
    pub fn table(&self) -> Table {
        let mut table = Table::new(vec![Column::text("Bucket"), Column::number("Count")]);
        for (label, n) in &self.buckets {
            table.push(vec![Cell::Text(label.clone()), Cell::from(*n)]);
        }
        table
    }
}

/// A tiny line for a table cell (100×24): `role="img"` with an `aria-label` summing it up
/// (`"{label}: min …, max …, last …"`). Non-finite points are skipped; no points show "no data".
pub fn sparkline(points: &[f64], label: &str) -> Markup {
    const SW: f64 = 100.0;
    const SH: f64 = 24.0;
    const PAD: f64 = 2.0;
    let values: Vec<f64> = points.iter().copied().filter(|v| v.is_finite()).collect();
    let Some(last) = values.last() else {
        return html! { span.muted { "no data" } };
    };
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let summary = format!(
        "{label}: min {}, max {}, last {}",
        format::number(min),
        format::number(max),
        format::number(*last)
    );
    let step = if values.len() > 1 {
        (SW - 2.0 * PAD) / (values.len() - 1) as f64
    } else {
        0.0
    };
    let y = |v: f64| {
        if max > min {
            SH - PAD - (v - min) / (max - min) * (SH - 2.0 * PAD)
        } else {
            SH / 2.0
        }
    };
    let coords: Vec<String> = if values.len() == 1 {
        vec![
            format!("{},{}", c(PAD), c(y(*last))),
            format!("{},{}", c(SW - PAD), c(y(*last))),
        ]
    } else {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{},{}", c(PAD + i as f64 * step), c(y(*v))))
            .collect()
    };
    html! {
        svg.spark role="img" aria-label=(summary) viewBox="0 0 100 24" width="100" height="24" {
            polyline points=(coords.join(" ")) {}
        }
    }
}

/// "No data in this range", in the same figure frame as a chart.
fn empty(title: &str) -> Markup {
    html! {
        figure.chart {
            figcaption { (title) }
            p.empty { (NO_DATA) }
        }
    }
}

fn figure(
    title: &str,
    kind: &str,
    desc: &str,
    height: f64,
    svg: Markup,
    legend: Option<Markup>,
    data: &Table,
) -> Markup {
    let id = format!(
        "chart-{:012x}",
        crate::style::fnv1a64(format!("{kind}\0{title}\0{desc}").as_bytes()) >> 16
    );
    html! {
        figure.chart {
            figcaption { (title) }
            svg role="img" aria-labelledby={ (id) "-t " (id) "-d" } viewBox={ "0 0 " (c(W)) " " (c(height)) }
                width=(c(W)) height=(c(height)) {
                title id={ (id) "-t" } { (title) }
                desc id={ (id) "-d" } { (desc) }
                (svg)
            }
            @if let Some(legend) = legend {
                (legend)
            }
            details.data {
                summary { "Data" }
                (data.html())
            }
        }
    }
}

/// Horizontal grid lines and labels at the scale's ticks, and the y-axis name above them.
fn axes_y(scale: &Scale, y: &dyn Fn(f64) -> f64, name: &str) -> Markup {
    html! {
        @for t in &scale.ticks {
            line.grid x1=(c(ML)) x2=(c(W - MR)) y1=(c(y(*t))) y2=(c(y(*t))) {}
            text x=(c(ML - 6.0)) y=(c(y(*t) + 4.0)) text-anchor="end" { (format::compact(*t)) }
        }
        @if !name.is_empty() {
            text x="4" y="12" { (name) }
        }
    }
}

/// A value axis from a round number at or below the data (0 when no value is negative) to a round
/// number at or above it, with ticks at a step of 1, 2, 2.5 or 5 × 10ⁿ (whole steps for counts).
#[derive(Debug, PartialEq)]
struct Scale {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Scale {
    fn new(min: f64, max: f64, integral: bool) -> Scale {
        let lo = min.min(0.0);
        let hi = if max > lo { max } else { lo + 1.0 };
        let raw = (hi - lo) / 4.0;
        if !raw.is_finite() || raw <= 0.0 {
            return Scale {
                lo,
                hi,
                ticks: vec![lo, hi],
            };
        }
        let magnitude = 10f64.powi(raw.log10().floor() as i32);
        let f = raw / magnitude;
        let nice = if f <= 1.0 {
            1.0
        } else if f <= 2.0 {
            2.0
        } else if f <= 2.5 {
            // Counts step by whole numbers: 2 rather than 2.5.
            if integral && magnitude < 10.0 {
                2.0
            } else {
                2.5
            }
        } else if f <= 5.0 {
            5.0
        } else {
            10.0
        };
        let mut step = nice * magnitude;
        if integral && step < 1.0 {
            step = 1.0;
        }
        let first = (lo / step).floor();
        let last = (hi / step).ceil();
        let count = (last - first).round();
        if !(1.0..=20.0).contains(&count) {
            return Scale {
                lo,
                hi,
                ticks: vec![lo, hi],
            };
        }
        let ticks: Vec<f64> = (0..=count as u32)
            .map(|i| (first + f64::from(i)) * step)
            .collect();
        Scale {
            lo: first * step,
            hi: last * step,
            ticks,
        }
    }

    /// Where `v` sits between the ends, 0..=1.
    fn fraction(&self, v: f64) -> f64 {
        ((v - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0)
    }
}

/// The first `max` characters of `s`, with `…` when cut, and whether it was.
fn truncate(s: &str, max: usize) -> (String, bool) {
    if s.chars().count() <= max {
        (s.to_string(), false)
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        (out, true)
    }
}

fn c(v: f64) -> String {
    format::coord(v)
}

#[cfg(test)]
mod tests;
