//! `beacon key enable | disable | rate-limit`: project keys.

use crate::client::{AdminArgs, Client};
use crate::output::{self, Done, Row};
use anyhow::Result;
use beacon_wire::admin::{KeyInfo, KeyUpdate};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Accept events sent with this key again.
    Enable {
        key: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Refuse events sent with this key (403).
    Disable {
        key: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Events per minute for this key; 0 returns it to the collector's default.
    RateLimit {
        key: String,
        per_minute: u32,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

fn status(k: &KeyInfo) -> &'static str {
    if k.enabled { "enabled" } else { "disabled" }
}

fn rate_limit(k: &KeyInfo) -> String {
    k.rate_limit_per_minute
        .map(|r| format!("{r}/min"))
        .unwrap_or_else(|| "default".into())
}

impl Row for KeyInfo {
    const COLUMNS: &'static [&'static str] = &["KEY", "PROJECT", "STATUS", "RATE LIMIT"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.public_key.clone(),
            self.project_id.to_string(),
            status(self).to_string(),
            rate_limit(self),
        ]
    }
}

pub async fn run(cmd: KeyCommand) -> Result<()> {
    let (key, update, admin) = match cmd {
        KeyCommand::Enable { key, admin } => (
            key,
            KeyUpdate {
                enabled: Some(true),
                ..Default::default()
            },
            admin,
        ),
        KeyCommand::Disable { key, admin } => (
            key,
            KeyUpdate {
                enabled: Some(false),
                ..Default::default()
            },
            admin,
        ),
        KeyCommand::RateLimit {
            key,
            per_minute,
            admin,
        } => (
            key,
            KeyUpdate {
                rate_limit_per_minute: Some(per_minute),
                ..Default::default()
            },
            admin,
        ),
    };
    let k: KeyInfo = Client::new(&admin)?.patch(&["keys", &key], &update).await?;
    let message = format!(
        "key {}: {}, rate limit {}",
        k.public_key,
        status(&k),
        rate_limit(&k)
    );
    output::print(admin.format(), &Done { value: &k, message })
}
