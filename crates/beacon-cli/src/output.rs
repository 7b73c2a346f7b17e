//! How the admin commands print what the collector answered: a table for people, JSON (the API's
//! answer, pretty-printed) or CSV (the rows of the main table) for programs.

use crate::table;
use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// `--format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Tables and sentences for people.
    #[default]
    Table,
    /// The admin API's JSON answer, pretty-printed.
    Json,
    /// The rows of the main table, RFC 4180 quoting, long text in full.
    Csv,
}

/// A value a command prints.
pub trait Render: Serialize {
    /// The CSV header.
    fn columns(&self) -> Vec<String>;
    /// The CSV records.
    fn rows(&self) -> Vec<Vec<String>>;
    /// What a person reads: by default `rows` under `columns`.
    fn table(&self) -> Result<()> {
        let columns = self.columns();
        let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
        table::print(&columns, &self.rows());
        Ok(())
    }
}

/// One record of a list: a table row, a CSV record.
pub trait Row {
    const COLUMNS: &'static [&'static str];
    /// The cells, long text in full.
    fn cells(&self) -> Vec<String>;
    /// The cells as a table shows them; by default `cells`.
    fn table_cells(&self) -> Vec<String> {
        self.cells()
    }
}

fn columns(c: &[&str]) -> Vec<String> {
    c.iter().map(|s| s.to_string()).collect()
}

impl<T: Row + Serialize> Render for Vec<T> {
    fn columns(&self) -> Vec<String> {
        columns(T::COLUMNS)
    }
    fn rows(&self) -> Vec<Vec<String>> {
        self.iter().map(Row::cells).collect()
    }
    fn table(&self) -> Result<()> {
        let rows: Vec<_> = self.iter().map(Row::table_cells).collect();
        table::print(T::COLUMNS, &rows);
        Ok(())
    }
}

/// One record whose table form is a sentence saying what was done; JSON and CSV are the record's.
#[derive(Serialize)]
#[serde(transparent)]
pub struct Done<'a, T> {
    pub value: &'a T,
    #[serde(skip)]
    pub message: String,
}

impl<T: Row + Serialize> Render for Done<'_, T> {
    fn columns(&self) -> Vec<String> {
        columns(T::COLUMNS)
    }
    fn rows(&self) -> Vec<Vec<String>> {
        vec![self.value.cells()]
    }
    fn table(&self) -> Result<()> {
        println!("{}", self.message);
        Ok(())
    }
}

/// Prints `value` in `format` on stdout.
pub fn print<T: Render + ?Sized>(format: Format, value: &T) -> Result<()> {
    match format {
        Format::Table => value.table()?,
        Format::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Format::Csv => print!("{}", csv(&value.columns(), &value.rows())),
    }
    Ok(())
}

/// A header line and one line per row, each ending in `\n`; fields holding `,`, `"`, CR or LF are
/// quoted, inner quotes doubled (RFC 4180).
pub fn csv(columns: &[String], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    for record in std::iter::once(columns).chain(rows.iter().map(Vec::as_slice)) {
        for (i, field) in record.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            if field.contains([',', '"', '\r', '\n']) {
                out.push('"');
                out.push_str(&field.replace('"', "\"\""));
                out.push('"');
            } else {
                out.push_str(field);
            }
        }
        out.push('\n');
    }
    out
}

/// A time as tables show it, to the minute (UTC).
pub fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let out = csv(
            &s(&["ID", "TITLE"]),
            &[
                s(&["a", "plain"]),
                s(&["b", "RCE, \"critical\""]),
                s(&["c", "two\nlines"]),
                s(&["d", "cr\rhere"]),
                s(&["", "x"]),
            ],
        );
        assert_eq!(
            out,
            "ID,TITLE\na,plain\nb,\"RCE, \"\"critical\"\"\"\nc,\"two\nlines\"\nd,\"cr\rhere\"\n,x\n"
        );
    }

    #[test]
    fn done_serializes_as_its_value() {
        #[derive(Serialize)]
        struct K {
            name: &'static str,
        }
        let k = K { name: "x" };
        let done = Done {
            value: &k,
            message: "made x".into(),
        };
        assert_eq!(
            serde_json::to_string_pretty(&done).unwrap(),
            serde_json::to_string_pretty(&k).unwrap()
        );
    }
}
