//! `beacon project create | list`: error-reporting projects, their keys and DSNs.

use crate::client::{AdminArgs, Client};
use crate::output::{self, Render};
use anyhow::Result;
use beacon_wire::admin::{KeyInfo, NewProject, ProjectInfo};
use clap::Subcommand;
use serde::Serialize;

#[derive(Subcommand)]
pub enum ProjectCommand {
    /// Create a project; prints its DSN.
    Create {
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List projects, their keys and DSNs.
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// The DSN of a key, for the collector at `url` (scheme and host of the admin URL).
fn dsn(url: &str, key: &KeyInfo) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let host = rest.split('/').next().unwrap_or(rest);
    beacon_wire::sentry::auth::format_dsn(scheme, &key.public_key, host, key.project_id as u64)
}

/// One row per key.
fn rows(list: &[ProjectInfo]) -> Vec<Vec<String>> {
    list.iter()
        .flat_map(|p| {
            p.keys.iter().map(move |k| {
                vec![
                    p.id.to_string(),
                    p.name.clone(),
                    if k.enabled { "enabled" } else { "disabled" }.to_string(),
                    k.rate_limit_per_minute
                        .map(|r| format!("{r}/min"))
                        .unwrap_or_else(|| "default".into()),
                    k.dsn.clone().unwrap_or_default(),
                ]
            })
        })
        .collect()
}

const COLUMNS: [&str; 5] = ["ID", "NAME", "KEY", "RATE LIMIT", "DSN"];

impl Render for Vec<ProjectInfo> {
    fn columns(&self) -> Vec<String> {
        COLUMNS.map(String::from).to_vec()
    }
    fn rows(&self) -> Vec<Vec<String>> {
        rows(self)
    }
}

/// `project create`: a sentence and the DSN for people.
#[derive(Serialize)]
#[serde(transparent)]
struct Created(ProjectInfo);

impl Render for Created {
    fn columns(&self) -> Vec<String> {
        COLUMNS.map(String::from).to_vec()
    }
    fn rows(&self) -> Vec<Vec<String>> {
        rows(std::slice::from_ref(&self.0))
    }
    fn table(&self) -> Result<()> {
        println!("created project {} ({})", self.0.id, self.0.name);
        for k in &self.0.keys {
            println!("DSN: {}", k.dsn.as_deref().unwrap_or_default());
        }
        Ok(())
    }
}

pub async fn run(cmd: ProjectCommand) -> Result<()> {
    match cmd {
        ProjectCommand::Create { name, admin } => {
            let mut p: ProjectInfo = Client::new(&admin)?
                .post(&["projects"], Some(&NewProject { name }))
                .await?;
            for k in &mut p.keys {
                k.dsn = Some(dsn(&admin.url, k));
            }
            output::print(admin.format(), &Created(p))
        }
        ProjectCommand::List { admin } => {
            let mut list: Vec<ProjectInfo> = Client::new(&admin)?.get(&["projects"], &[]).await?;
            for k in list.iter_mut().flat_map(|p| p.keys.iter_mut()) {
                k.dsn = Some(dsn(&admin.url, k));
            }
            output::print(admin.format(), &list)
        }
    }
}
