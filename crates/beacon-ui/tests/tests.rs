//! beacon-ui's integration tests: one binary, a module per theme.

mod demo;
