//! `beacon forget`: erase one server's or one device's data (admin API), or list the deletion log.

use crate::client::{AdminArgs, Client};
use crate::output::{self, Row, time};
use anyhow::{Result, bail};
use beacon_wire::admin::{ForgetRecord, ForgetRequest};
use clap::Args;

#[derive(Args)]
pub struct ForgetArgs {
    /// Erase every security check and error event of this server (its diagnostic id).
    #[arg(long, conflicts_with_all = ["device", "log"])]
    server: Option<String>,
    /// Erase the raw trace events of this device (its raw device_unique_id; the collector hashes it).
    #[arg(long, conflicts_with = "log")]
    device: Option<String>,
    /// List the deletion log, newest first.
    #[arg(long)]
    log: bool,
    /// Entries of the log to list.
    #[arg(long, default_value_t = 50, requires = "log")]
    limit: u32,
    #[command(flatten)]
    admin: AdminArgs,
}

impl Row for ForgetRecord {
    const COLUMNS: &'static [&'static str] = &[
        "AT",
        "BY",
        "CHANNEL",
        "ID_HASH",
        "CHECKS",
        "EVENTS",
        "TRACE_EVENTS",
        "DEAD_LETTERS",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            time(&self.at),
            self.by.clone(),
            self.channel.clone(),
            self.id_hash.clone(),
            self.checks.to_string(),
            self.events.to_string(),
            self.trace_events.to_string(),
            self.dead_letters.to_string(),
        ]
    }
    /// The hash's first 16 characters.
    fn table_cells(&self) -> Vec<String> {
        let mut cells = self.cells();
        cells[3] = self.id_hash.chars().take(16).collect();
        cells
    }
}

pub async fn run(a: ForgetArgs) -> Result<()> {
    let client = Client::new(&a.admin)?;
    if a.log {
        let log: Vec<ForgetRecord> = client
            .get(&["forget", "log"], &[("limit", a.limit.to_string())])
            .await?;
        return output::print(a.admin.format(), &log);
    }
    let request = match (a.server, a.device) {
        (Some(server), None) => ForgetRequest {
            server: Some(server),
            device: None,
        },
        (None, Some(device)) => ForgetRequest {
            server: None,
            device: Some(device),
        },
        _ => bail!("give one of --server ID, --device RAW_ID or --log"),
    };
    let done: ForgetRecord = client.post(&["forget"], Some(&request)).await?;
    output::print(a.admin.format(), &vec![done])
}
