//! The binary's integration tests, one binary: a module per theme. `connections` raises this
//! process's open-files limit (harmless to the other themes: their collectors are processes that
//! raise their own, and the tests that need 1,024 set it with `ulimit`); `sdk` binds the Rust
//! `sentry` client for the length of its test (no other theme uses `sentry`).

mod admin_edges;
mod agent;
mod alerts;
mod cli;
mod connections;
mod demo;
mod hostile;
mod lifecycle;
mod mobile;
mod output;
mod postgres;
mod sdk;
mod util;
