//! One module per top-level subcommand of `beacon`.

pub mod agent;
pub mod alert;
pub mod apikey;
pub mod backup;
pub mod bulletin;
pub mod config;
pub mod deadletter;
pub mod demo;
pub mod forget;
pub mod issues;
pub mod key;
pub mod perf;
pub mod project;
pub mod report;
pub mod retention;
pub mod serve;
pub mod sim;
pub mod token;
