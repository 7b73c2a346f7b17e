//! Tables that render as HTML for people and as CSV for programs, from the same cells: what a page
//! shows and what `?format=csv` on the same URL returns cannot drift apart.

use crate::format;
use maud::{Markup, html};

/// One column: its header (also the CSV header), whether it holds numbers (right-aligned), and
/// whether CSV has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub numeric: bool,
    /// `false` for a column only people read (a sparkline of figures another page has): CSV, which
    /// equals the admin API's JSON, leaves it out.
    pub in_csv: bool,
}

impl Column {
    /// A text column.
    pub fn text(name: impl Into<String>) -> Column {
        Column {
            name: name.into(),
            numeric: false,
            in_csv: true,
        }
    }

    /// A numeric column.
    pub fn number(name: impl Into<String>) -> Column {
        Column {
            name: name.into(),
            numeric: true,
            in_csv: true,
        }
    }

    /// A column the HTML table shows and CSV leaves out.
    pub fn html_only(name: impl Into<String>) -> Column {
        Column {
            name: name.into(),
            numeric: false,
            in_csv: false,
        }
    }
}

/// One cell. HTML shows numbers grouped and rounded ([`crate::format`]); CSV gets the plain value.
#[derive(Clone, Debug)]
pub enum Cell {
    /// Nothing: `—` in HTML, an empty CSV field.
    Empty,
    Text(String),
    /// A count: `1,234` in HTML, `1234` in CSV.
    Int(i64),
    /// A measurement: at most two decimals in HTML, the shortest exact form in CSV (`0.1`, `3`).
    Float(f64),
    /// A share in 0..=1: `97.5%` in HTML, `0.975` in CSV.
    Ratio(f64),
    /// A link: the text in CSV.
    Link {
        href: String,
        text: String,
    },
    /// Markup for the HTML side (e.g. a sparkline or a badge), `plain` for CSV.
    Markup {
        html: Markup,
        plain: String,
    },
}

impl Cell {
    /// A link cell.
    pub fn link(href: impl Into<String>, text: impl Into<String>) -> Cell {
        Cell::Link {
            href: href.into(),
            text: text.into(),
        }
    }

    /// A cell showing `html` on the page and `plain` in CSV.
    pub fn markup(html: Markup, plain: impl Into<String>) -> Cell {
        Cell::Markup {
            html,
            plain: plain.into(),
        }
    }

    /// The value CSV gets.
    pub fn plain(&self) -> String {
        match self {
            Cell::Empty => String::new(),
            Cell::Text(text) | Cell::Link { text, .. } | Cell::Markup { plain: text, .. } => {
                text.clone()
            }
            Cell::Int(n) => n.to_string(),
            Cell::Float(v) | Cell::Ratio(v) => plain_float(*v),
        }
    }

    /// What a person reads in the HTML table, as text (links and markup: their text).
    pub fn display(&self) -> String {
        match self {
            Cell::Empty => format::MISSING.to_string(),
            Cell::Text(text) | Cell::Link { text, .. } | Cell::Markup { plain: text, .. } => {
                text.clone()
            }
            Cell::Int(n) => format::int(*n),
            Cell::Float(v) => format::number(*v),
            Cell::Ratio(v) => format::percent(*v),
        }
    }

    fn html(&self) -> Markup {
        match self {
            Cell::Link { href, text } => html! { a href=(href) { (text) } },
            Cell::Markup { html, .. } => html.clone(),
            other => html! { (other.display()) },
        }
    }
}

/// A float as CSV and JSON readers expect it: the shortest form that reads back to the same value,
/// without a trailing `.0`; NaN and infinities (which JSON cannot hold) as an empty field.
fn plain_float(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        String::new()
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Cell {
        Cell::Text(s.to_string())
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Cell {
        Cell::Text(s)
    }
}

impl From<i64> for Cell {
    fn from(n: i64) -> Cell {
        Cell::Int(n)
    }
}

impl From<u32> for Cell {
    fn from(n: u32) -> Cell {
        Cell::Int(i64::from(n))
    }
}

impl From<u64> for Cell {
    /// Counts above `i64::MAX` saturate (no report comes near).
    fn from(n: u64) -> Cell {
        Cell::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

impl From<usize> for Cell {
    fn from(n: usize) -> Cell {
        Cell::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

impl From<f64> for Cell {
    fn from(v: f64) -> Cell {
        Cell::Float(v)
    }
}

impl<T: Into<Cell>> From<Option<T>> for Cell {
    fn from(v: Option<T>) -> Cell {
        v.map_or(Cell::Empty, Into::into)
    }
}

/// A table: columns, rows of cells (one per column), an optional caption.
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub caption: Option<String>,
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    /// A table with these columns and no rows.
    pub fn new(columns: Vec<Column>) -> Table {
        Table {
            caption: None,
            columns,
            rows: Vec::new(),
        }
    }

    /// The same table with a caption.
    pub fn with_caption(mut self, caption: impl Into<String>) -> Table {
        self.caption = Some(caption.into());
        self
    }

    /// Adds a row.
    pub fn push(&mut self, row: Vec<Cell>) {
        self.rows.push(row);
    }

    /// The HTML table, in a wrapper that scrolls sideways on narrow screens. Column headers are
    /// `<th scope="col">`; numeric columns get class `num` (right-aligned). A table without rows
    /// shows one row saying so.
    pub fn html(&self) -> Markup {
        let class = |c: &Column| c.numeric.then_some("num");
        html! {
            div.table-wrap {
                table {
                    @if let Some(caption) = &self.caption {
                        caption { (caption) }
                    }
                    thead {
                        tr {
                            @for column in &self.columns {
                                th scope="col" class=[class(column)] { (column.name) }
                            }
                        }
                    }
                    tbody {
                        @if self.rows.is_empty() {
                            tr { td.muted colspan=(self.columns.len().max(1)) { "No rows in this range." } }
                        }
                        @for row in &self.rows {
                            tr {
                                @for (i, cell) in row.iter().enumerate() {
                                    td class=[self.columns.get(i).and_then(class)] { (cell.html()) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The table as CSV (RFC 4180 quoting, `\n` line ends like the CLI's `--format csv`): a header
    /// row of column names, then every row's plain values; [`Column::html_only`] columns left out.
    pub fn csv(&self) -> String {
        let mut writer = csv::WriterBuilder::new()
            .flexible(true)
            .from_writer(Vec::new());
        // A cell past the last column (a malformed row) is kept: nothing is dropped silently.
        let in_csv = |i: usize| self.columns.get(i).is_none_or(|c| c.in_csv);
        // Writing to a Vec<u8> has no I/O to fail and `flexible` accepts rows of any length, so
        // these cannot fail on any input.
        writer
            .write_record(
                self.columns
                    .iter()
                    .filter(|c| c.in_csv)
                    .map(|c| c.name.as_str()),
            )
            .expect("csv into memory");
        for row in &self.rows {
            writer
                .write_record(
                    row.iter()
                        .enumerate()
                        .filter(|(i, _)| in_csv(*i))
                        .map(|(_, c)| c.plain()),
                )
                .expect("csv into memory");
        }
        let bytes = writer.into_inner().expect("csv into memory");
        // Every field was a `&str` or `String`.
        String::from_utf8(bytes).expect("csv of strings is UTF-8")
    }
}

/// The href of the current page as CSV: the current query string (raw, as received, without `?`)
/// with `format=csv` appended and any earlier `format` dropped.
pub fn csv_href(path: &str, query: &str) -> String {
    let mut params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && p.split('=').next() != Some("format"))
        .collect();
    params.push("format=csv");
    format!("{path}?{}", params.join("&"))
}

/// A "Download CSV" link to the current page as CSV (see [`csv_href`]).
pub fn csv_link(path: &str, query: &str) -> Markup {
    html! { a.csv href=(csv_href(path, query)) download { "Download CSV" } }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new(vec![
            Column::text("Version"),
            Column::number("Servers"),
            Column::number("Share"),
        ])
        .with_caption("Servers by version");
        t.push(vec!["7.8.1".into(), 1234u64.into(), Cell::Ratio(0.625)]);
        t.push(vec![
            Cell::link("/ui/fleet?version=7.9.0", "7.9.0"),
            5u64.into(),
            Cell::Ratio(0.003),
        ]);
        t
    }

    #[test]
    fn html_has_a_caption_scoped_headers_and_aligned_numbers() {
        assert_eq!(
            sample().html().into_string(),
            concat!(
                "<div class=\"table-wrap\"><table><caption>Servers by version</caption>",
                "<thead><tr><th scope=\"col\">Version</th><th scope=\"col\" class=\"num\">Servers</th>",
                "<th scope=\"col\" class=\"num\">Share</th></tr></thead><tbody>",
                "<tr><td>7.8.1</td><td class=\"num\">1,234</td><td class=\"num\">62.5%</td></tr>",
                "<tr><td><a href=\"/ui/fleet?version=7.9.0\">7.9.0</a></td><td class=\"num\">5</td>",
                "<td class=\"num\">0.3%</td></tr></tbody></table></div>"
            )
        );
    }

    #[test]
    fn csv_has_the_header_and_plain_values() {
        assert_eq!(
            sample().csv(),
            "Version,Servers,Share\n7.8.1,1234,0.625\n7.9.0,5,0.003\n"
        );
    }

    #[test]
    fn html_only_columns_are_shown_and_left_out_of_csv() {
        let mut t = Table::new(vec![
            Column::text("title"),
            Column::html_only("last 14 days"),
            Column::number("count"),
        ]);
        t.push(vec![
            "a".into(),
            Cell::markup(html! { svg {} }, "sparkline"),
            3u64.into(),
        ]);
        assert_eq!(t.csv(), "title,count\na,3\n");
        let page = t.html().into_string();
        assert!(
            page.contains("<th scope=\"col\">last 14 days</th>"),
            "{page}"
        );
        assert!(page.contains("<td><svg></svg></td>"), "{page}");
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let mut t = Table::new(vec![Column::text("Title"), Column::number("p75 (ms)")]);
        t.push(vec!["RCE, \"critical\"".into(), 0.1.into()]);
        t.push(vec!["two\nlines".into(), Cell::Empty]);
        t.push(vec![
            Cell::markup(html! { b { "x" } }, "x"),
            f64::NAN.into(),
        ]);
        assert_eq!(
            t.csv(),
            "Title,p75 (ms)\n\"RCE, \"\"critical\"\"\",0.1\n\"two\nlines\",\nx,\n"
        );
    }

    #[test]
    fn html_escapes_text_and_shows_missing_values() {
        let mut t = Table::new(vec![Column::text("Culprit"), Column::number("Count")]);
        t.push(vec![
            "<img src=x onerror=alert(1)>".into(),
            Cell::from(None::<u64>),
        ]);
        let html = t.html().into_string();
        assert!(
            html.contains("<td>&lt;img src=x onerror=alert(1)&gt;</td><td class=\"num\">—</td>")
        );
        assert!(!html.contains("<img"));
    }

    #[test]
    fn an_empty_table_says_so() {
        let t = Table::new(vec![Column::text("A"), Column::number("B")]);
        assert!(t.html().into_string().contains(
            "<tbody><tr><td class=\"muted\" colspan=\"2\">No rows in this range.</td></tr></tbody>"
        ));
        assert_eq!(t.csv(), "A,B\n");
    }

    #[test]
    fn every_value_appears_in_both_forms() {
        let mut t = Table::new(vec![
            Column::text("Day"),
            Column::number("Servers"),
            Column::number("p95"),
        ]);
        for i in 0..40i64 {
            t.push(vec![
                format!("2026-11-{:02}", i % 30 + 1).into(),
                (i * 997).into(),
                (i as f64 / 7.0).into(),
            ]);
        }
        let html = t.html().into_string();
        let csv = t.csv();
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let records: Vec<csv::StringRecord> =
            reader.records().map(|r| r.expect("valid csv")).collect();
        assert_eq!(records.len(), t.rows.len());
        for (row, record) in t.rows.iter().zip(&records) {
            assert_eq!(record.len(), row.len());
            for (cell, field) in row.iter().zip(record.iter()) {
                assert_eq!(cell.plain(), field);
                assert!(
                    html.contains(&format!(">{}</td>", cell.display())),
                    "{}",
                    cell.display()
                );
                if let Cell::Float(v) = cell {
                    assert_eq!(
                        field.parse::<f64>().ok(),
                        Some(*v),
                        "CSV keeps the exact value"
                    );
                }
            }
        }
    }

    #[test]
    fn csv_links_replace_the_format_parameter() {
        assert_eq!(csv_href("/ui/fleet", ""), "/ui/fleet?format=csv");
        assert_eq!(
            csv_href("/ui/fleet", "by=os&from=2026-11-01"),
            "/ui/fleet?by=os&from=2026-11-01&format=csv"
        );
        assert_eq!(
            csv_href("/ui/fleet", "format=html&by=os&"),
            "/ui/fleet?by=os&format=csv"
        );
        assert_eq!(
            csv_href("/ui/fleet", "formats=1"),
            "/ui/fleet?formats=1&format=csv"
        );
        assert_eq!(
            csv_link("/ui/issues", "sort=count").into_string(),
            "<a class=\"csv\" href=\"/ui/issues?sort=count&amp;format=csv\" download>Download CSV</a>"
        );
    }
}
