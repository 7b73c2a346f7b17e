//! `beacon apikey create | list | revoke`: mobile API keys for `POST /v1/mobile/metrics`.

use crate::client::{AdminArgs, Client};
use crate::output::{self, Done, Row, time};
use anyhow::Result;
use beacon_wire::admin::{ApiKeyInfo, CreatedApiKey, NewApiKey};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum ApikeyCommand {
    /// Create a key for the mobile app; prints it once.
    Create {
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List keys (names and prefixes; keys themselves are never shown again).
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Revoke a key: batches sent with it are refused (403).
    Revoke {
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

impl Row for ApiKeyInfo {
    const COLUMNS: &'static [&'static str] = &["NAME", "KEY", "CREATED", "REVOKED"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            format!("{}…", self.prefix),
            time(&self.created_at),
            self.revoked_at
                .as_ref()
                .map(time)
                .unwrap_or_else(|| "-".into()),
        ]
    }
}

/// The new key in full: it is shown only now.
impl Row for CreatedApiKey {
    const COLUMNS: &'static [&'static str] = &["NAME", "KEY", "CREATED"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.info.name.clone(),
            self.key.clone(),
            time(&self.info.created_at),
        ]
    }
}

pub async fn run(cmd: ApikeyCommand) -> Result<()> {
    match cmd {
        ApikeyCommand::Create { name, admin } => {
            let k: CreatedApiKey = Client::new(&admin)?
                .post(&["apikeys"], Some(&NewApiKey { name }))
                .await?;
            let message = format!(
                "created api key {:?}; it is shown only now:\n{}",
                k.info.name, k.key
            );
            output::print(admin.format(), &Done { value: &k, message })
        }
        ApikeyCommand::List { admin } => {
            let keys: Vec<ApiKeyInfo> = Client::new(&admin)?.get(&["apikeys"], &[]).await?;
            output::print(admin.format(), &keys)
        }
        ApikeyCommand::Revoke { name, admin } => {
            let k: ApiKeyInfo = Client::new(&admin)?.delete(&["apikeys", &name]).await?;
            let message = format!(
                "revoked api key {:?} at {}",
                k.name,
                k.revoked_at.as_ref().map(time).unwrap_or_default()
            );
            output::print(admin.format(), &Done { value: &k, message })
        }
    }
}
