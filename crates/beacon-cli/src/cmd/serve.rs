//! `beacon serve`: run the collector.

use crate::StoreArgs;
use anyhow::{Context, Result};
use beacon_collector::SystemClock;
use clap::Args;
use std::sync::Arc;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on. Default 127.0.0.1:8080.
    #[arg(long)]
    listen: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
}

pub async fn run(args: ServeArgs) -> Result<()> {
    let mut config = args.store.load()?;
    if let Some(l) = args.listen {
        config.server.listen = l;
    }
    let running = beacon_collector::start(config, Arc::new(SystemClock)).await?;
    if let Some(token) = &running.initial_token {
        println!("Beacon admin token (shown once; only its hash is stored):\n\n    {token}\n");
    }
    println!("beacon collector listening on {}", running.url());
    crate::shutdown_signal().await?;
    tracing::info!("shutdown requested: no new connections, finishing accepted requests");
    running
        .shutdown()
        .await
        .context("collector stopped with an error")?;
    Ok(())
}
