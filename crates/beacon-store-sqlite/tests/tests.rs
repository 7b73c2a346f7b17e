//! The SQLite backend's integration tests, one binary: a module per theme.

mod conformance;
mod perf_recovery;
mod retention;
