//! The library half of `beacon-bench`: what both the benchmark binary and the workspace's tests use.
//!
//! [`hostile`] lists malformed and hostile requests against every endpoint of a collector, each with
//! the answer it must get; the hostile-input test suite (`crates/beacon-cli/tests/hostile.rs`) runs
//! them one by one against a real `beacon serve`, and `beacon-bench soak` sends them at a low rate
//! beside its load.

pub mod hostile;
