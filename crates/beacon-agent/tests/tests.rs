//! The agent's integration tests, one binary (`panics.rs` aside: it installs the process's panic
//! hook and sets an environment variable, so it runs in a binary of its own).

mod bulletins;
mod mobile;
mod preview;
mod queue;
mod schedule;
mod switches;
mod transport;
mod util;
