//! The simulator's integration tests, one binary: a module per theme.

mod sim;
