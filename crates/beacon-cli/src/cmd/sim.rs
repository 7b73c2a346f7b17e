//! `beacon sim`: drive a running collector with a simulated fleet.

use anyhow::{Context, Result};
use beacon_sim::{Hooks, SimConfig};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct SimArgs {
    /// The collector to drive.
    #[arg(long, env = "BEACON_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, default_value_t = 1000)]
    servers: u32,
    #[arg(long, default_value_t = 500)]
    devices: u32,
    /// Simulated days; the last one is today.
    #[arg(long, default_value_t = 30)]
    days: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Most requests per second (default: as fast as the collector answers).
    #[arg(long)]
    rate: Option<u32>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Send error events to this DSN (`beacon project create`).
    #[arg(long)]
    project_dsn: Option<String>,
    /// Send mobile batches with this API key (`beacon apikey create`).
    #[arg(long)]
    api_key: Option<String>,
    /// Extra CA certificate (PEM) for an https collector with a private CA.
    #[arg(long, env = "BEACON_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Append every acknowledged item (`check ID`, `event ID`, `traces N`) to this file.
    #[arg(long)]
    record: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

pub async fn run(a: SimArgs) -> Result<()> {
    let ca_cert = a
        .ca_cert
        .as_ref()
        .map(|p| std::fs::read(p).with_context(|| format!("cannot read {}", p.display())))
        .transpose()?;
    let config = SimConfig {
        url: a.url,
        servers: a.servers,
        devices: a.devices,
        days: a.days,
        seed: a.seed,
        rate: a.rate,
        concurrency: a.concurrency,
        project_dsn: a.project_dsn,
        api_key: a.api_key,
        ca_cert,
        progress: !a.quiet,
        record: a.record,
    };
    eprintln!("{}", beacon_sim::describe(&config));
    let summary = beacon_sim::run(config, Hooks::default()).await?;
    print!("{summary}");
    Ok(())
}
