//! `beacon bulletin add | list | show | retract`: security bulletins.

use crate::client::{AdminArgs, Client};
use crate::output::{self, Done, Render, Row, time};
use anyhow::{Context, Result};
use beacon_wire::bulletin::{Bulletin, NewBulletin, Severity};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum BulletinCommand {
    /// Publish a bulletin.
    Add {
        /// Bulletin id, [A-Za-z0-9._-]{1,64}, e.g. BSA-2026-0001.
        #[arg(long)]
        id: String,
        #[arg(long)]
        title: String,
        /// low, medium, high or critical.
        #[arg(long)]
        severity: Severity,
        /// Affected versions, a semver requirement: '>=5.30.0, <5.37.2'.
        #[arg(long)]
        affected: String,
        /// First fixed version, X.Y.Z.
        #[arg(long)]
        fixed_in: Option<String>,
        /// HTML file with the bulletin's body.
        #[arg(long)]
        body_file: PathBuf,
        /// Publication time (RFC 3339); default now.
        #[arg(long)]
        published_at: Option<DateTime<Utc>>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List bulletins, retracted ones included.
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show one bulletin with its body.
    Show {
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Retract a bulletin: it disappears from /security answers and /bulletins/{id}.
    Retract {
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

impl Row for Bulletin {
    const COLUMNS: &'static [&'static str] = &[
        "ID",
        "SEVERITY",
        "AFFECTED",
        "FIXED IN",
        "PUBLISHED",
        "RETRACTED",
        "TITLE",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.severity.to_string(),
            self.affected.clone(),
            self.fixed_in.clone().unwrap_or_default(),
            time(&self.published_at),
            self.retracted_at.as_ref().map(time).unwrap_or_default(),
            self.title.clone(),
        ]
    }
}

/// `bulletin show`: the bulletin's row, then its body.
#[derive(Serialize)]
#[serde(transparent)]
struct Shown(Bulletin);

impl Render for Shown {
    fn columns(&self) -> Vec<String> {
        Bulletin::COLUMNS
            .iter()
            .chain(&["BODY"])
            .map(|c| c.to_string())
            .collect()
    }
    fn rows(&self) -> Vec<Vec<String>> {
        let mut row = self.0.cells();
        row.push(self.0.body.clone());
        vec![row]
    }
    fn table(&self) -> Result<()> {
        crate::table::print(Bulletin::COLUMNS, &[self.0.cells()]);
        println!("\n{}", self.0.body);
        Ok(())
    }
}

pub async fn run(cmd: BulletinCommand) -> Result<()> {
    match cmd {
        BulletinCommand::Add {
            id,
            title,
            severity,
            affected,
            fixed_in,
            body_file,
            published_at,
            admin,
        } => {
            let body = std::fs::read_to_string(&body_file)
                .with_context(|| format!("cannot read --body-file {}", body_file.display()))?;
            let new = NewBulletin {
                id,
                title,
                severity,
                affected,
                fixed_in,
                body,
                published_at,
            };
            // Refuse locally first, with the same message the collector would give.
            new.validate()
                .map_err(|e| anyhow::anyhow!("--{}: {}", e.field.replace('_', "-"), e.problem))?;
            let b: Bulletin = Client::new(&admin)?
                .post(&["bulletins"], Some(&new))
                .await?;
            let message = format!(
                "published {} ({}, affects {})",
                b.id, b.severity, b.affected
            );
            output::print(admin.format(), &Done { value: &b, message })
        }
        BulletinCommand::List { admin } => {
            let list: Vec<Bulletin> = Client::new(&admin)?.get(&["bulletins"], &[]).await?;
            output::print(admin.format(), &list)
        }
        BulletinCommand::Show { id, admin } => {
            let b: Bulletin = Client::new(&admin)?.get(&["bulletins", &id], &[]).await?;
            output::print(admin.format(), &Shown(b))
        }
        BulletinCommand::Retract { id, admin } => {
            let b: Bulletin = Client::new(&admin)?
                .post::<(), _>(&["bulletins", &id, "retract"], None)
                .await?;
            let message = format!(
                "retracted {} at {}",
                b.id,
                b.retracted_at.as_ref().map(time).unwrap_or_default()
            );
            output::print(admin.format(), &Done { value: &b, message })
        }
    }
}
