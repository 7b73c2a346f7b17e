//! `beacon deadletter list`: items the collector rejected.

use crate::client::{AdminArgs, Client, opt};
use crate::output::{self, Row, time};
use anyhow::Result;
use beacon_wire::admin::DeadLetter;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum DeadletterCommand {
    /// The newest rejected items, with reason and a scrubbed copy.
    List {
        /// Only this channel (security, …).
        #[arg(long)]
        channel: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

impl Row for DeadLetter {
    const COLUMNS: &'static [&'static str] = &["ID", "RECEIVED", "CHANNEL", "REASON", "PAYLOAD"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            time(&self.received_at),
            self.channel.clone(),
            self.reason.clone(),
            self.payload.clone(),
        ]
    }
    /// The payload's first 80 characters.
    fn table_cells(&self) -> Vec<String> {
        let mut cells = self.cells();
        cells[4] = self.payload.chars().take(80).collect();
        cells
    }
}

pub async fn run(cmd: DeadletterCommand) -> Result<()> {
    match cmd {
        DeadletterCommand::List {
            channel,
            limit,
            admin,
        } => {
            let q: Vec<_> = [opt("channel", channel), Some(("limit", limit.to_string()))]
                .into_iter()
                .flatten()
                .collect();
            let list: Vec<DeadLetter> = Client::new(&admin)?.get(&["deadletters"], &q).await?;
            output::print(admin.format(), &list)
        }
    }
}
