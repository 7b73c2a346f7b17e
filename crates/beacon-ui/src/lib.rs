//! The dashboard's rendering, as pure functions: data in, HTML ([`maud::Markup`]) and CSV out. No I/O,
//! no HTTP types, no store types: page handlers in the collector read their reports and hand plain
//! values (labels, numbers, dates) to this crate, so every piece is testable on its exact output.
//!
//! - [`layout`]: the page shell (header, navigation, logout form, skip link) and the login page.
//! - [`STYLE_CSS`] and [`style_hash`]: the one stylesheet, served under a content-hashed name.
//! - [`chart`]: inline SVG charts (line, horizontal bars, histogram, sparkline), each with a `<title>`,
//!   a text summary and its data as a table beside it.
//! - [`table`]: tables that render as HTML and as CSV from the same cells.
//! - [`filters`]: GET filter forms that keep their values, and permalinks that turn a relative range
//!   (`range=30d`) into fixed dates.
//! - [`format`](mod@format): how numbers are shown to people.
//!
//! Every text is escaped by maud; nothing here wraps caller text in `PreEscaped`. No JavaScript.

pub mod chart;
pub mod filters;
pub mod format;
pub mod layout;
mod style;
pub mod table;

pub use maud;
pub use style::{STYLE_CSS, style_hash};

#[cfg(test)]
pub(crate) mod testutil;
