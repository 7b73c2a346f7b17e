//! `beacon config check`: validate configuration.

use anyhow::{Result, bail};
use beacon_collector::Config;
use clap::Subcommand;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration file (and BEACON_* variables) and say what is wrong.
    Check { file: PathBuf },
}

pub fn run(cmd: ConfigCommand) -> Result<()> {
    match cmd {
        ConfigCommand::Check { file } => check(&file),
    }
}

fn check(file: &Path) -> Result<()> {
    let config = match Config::load(Some(file), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            for p in &e.0 {
                eprintln!("error: {p}");
            }
            bail!(
                "{} is not a valid configuration ({} problem(s))",
                file.display(),
                e.0.len()
            );
        }
    };
    let problems = config.problems();
    for p in &problems {
        eprintln!("error: {p}");
    }
    if !problems.is_empty() {
        bail!(
            "{} is not a valid configuration ({} problem(s))",
            file.display(),
            problems.len()
        );
    }
    println!("{}: ok", file.display());
    Ok(())
}
