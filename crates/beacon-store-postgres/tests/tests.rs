//! The PostgreSQL backend's integration tests, one binary: a module per theme.

mod conformance;
mod tls;
