//! `beacon issues list | show`: grouped errors.

use crate::client::{AdminArgs, Client, opt};
use crate::output::{self, Render, Row, time};
use crate::table;
use anyhow::Result;
use beacon_wire::admin::{IssueDetail, IssueSummary};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum IssuesCommand {
    /// Issues, newest first (or by count).
    List {
        #[arg(long)]
        project: Option<i64>,
        #[arg(long)]
        release: Option<String>,
        #[arg(long)]
        environment: Option<String>,
        /// debug, info, warning, error or fatal.
        #[arg(long)]
        level: Option<String>,
        /// last-seen or count.
        #[arg(long, default_value = "last-seen")]
        sort: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// One issue: its latest (scrubbed) event and counts by release and day.
    Show {
        id: i64,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

impl Row for IssueSummary {
    const COLUMNS: &'static [&'static str] = &[
        "ID",
        "LEVEL",
        "EVENTS",
        "SERVERS",
        "LAST SEEN",
        "TITLE",
        "CULPRIT",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            format!("{:?}", self.level).to_lowercase(),
            self.count.to_string(),
            self.servers.to_string(),
            time(&self.last_seen),
            self.title.clone(),
            self.culprit.clone().unwrap_or_default(),
        ]
    }
    /// The title's first 60 characters.
    fn table_cells(&self) -> Vec<String> {
        let mut cells = self.cells();
        cells[5] = self.title.chars().take(60).collect();
        cells
    }
}

/// CSV: the issue's row as `issues list` has it.
impl Render for IssueDetail {
    fn columns(&self) -> Vec<String> {
        IssueSummary::COLUMNS
            .iter()
            .map(|c| c.to_string())
            .collect()
    }
    fn rows(&self) -> Vec<Vec<String>> {
        vec![self.issue.cells()]
    }
    fn table(&self) -> Result<()> {
        let i = &self.issue;
        println!("issue {} — {}", i.id, i.title);
        println!("culprit: {}", i.culprit.as_deref().unwrap_or("-"));
        println!(
            "events: {}, servers: {}, first seen {}, last seen {}",
            i.count,
            i.servers,
            time(&i.first_seen),
            time(&i.last_seen)
        );
        let keyed = |counts: &[beacon_wire::admin::CountBy<Option<String>>]| -> Vec<Vec<String>> {
            counts
                .iter()
                .map(|c| {
                    vec![
                        c.key.clone().unwrap_or_else(|| "(none)".into()),
                        c.count.to_string(),
                    ]
                })
                .collect()
        };
        println!("\nby release:");
        table::print(&["RELEASE", "EVENTS"], &keyed(&self.by_release));
        println!("\nby environment:");
        table::print(&["ENVIRONMENT", "EVENTS"], &keyed(&self.by_environment));
        println!("\nby day:");
        let rows: Vec<_> = self
            .by_day
            .iter()
            .map(|c| vec![c.key.to_string(), c.count.to_string()])
            .collect();
        table::print(&["DAY", "EVENTS"], &rows);
        println!(
            "\nlatest event (scrubbed):\n{}",
            serde_json::to_string_pretty(&self.latest_event)?
        );
        Ok(())
    }
}

pub async fn run(cmd: IssuesCommand) -> Result<()> {
    match cmd {
        IssuesCommand::List {
            project,
            release,
            environment,
            level,
            sort,
            limit,
            admin,
        } => {
            let q: Vec<_> = [
                opt("project", project.map(|p| p.to_string())),
                opt("release", release),
                opt("environment", environment),
                opt("level", level),
                Some(("sort", sort)),
                Some(("limit", limit.to_string())),
            ]
            .into_iter()
            .flatten()
            .collect();
            let list: Vec<IssueSummary> = Client::new(&admin)?.get(&["issues"], &q).await?;
            output::print(admin.format(), &list)
        }
        IssuesCommand::Show { id, admin } => {
            let d: IssueDetail = Client::new(&admin)?
                .get(&["issues", &id.to_string()], &[])
                .await?;
            output::print(admin.format(), &d)
        }
    }
}
