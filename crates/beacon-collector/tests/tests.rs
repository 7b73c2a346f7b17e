//! The collector's integration tests, one binary: a module per theme.

mod admin;
mod admin_edges;
mod alerts;
mod browser;
mod connections;
mod errors;
mod host;
mod mobile;
mod retention;
mod security;
mod tls_and_shutdown;
mod ui;
mod util;
