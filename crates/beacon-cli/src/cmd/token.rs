//! `beacon token create`: admin tokens, offline (on the store directly).

use crate::StoreArgs;
use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Make a new admin token; prints it once, stores only its hash.
    Create {
        #[command(flatten)]
        store: StoreArgs,
        /// A label to recognise the token by.
        #[arg(long, default_value = "cli")]
        label: String,
    },
}

pub async fn run(cmd: TokenCommand) -> Result<()> {
    match cmd {
        TokenCommand::Create { store, label } => create(&store, &label).await,
    }
}

async fn create(args: &StoreArgs, label: &str) -> Result<()> {
    let config = args.load()?;
    let store = beacon_collector::open_store(&config).await?;
    let token = beacon_collector::keys::generate_token();
    store
        .add_admin_token(
            &beacon_collector::keys::hash(&token),
            label,
            chrono::Utc::now(),
        )
        .await?;
    println!("{token}");
    Ok(())
}
