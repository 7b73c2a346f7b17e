//! `beacon report fleet | growth | exposure`: what the security checks say about the fleet.

use crate::client::{AdminArgs, Client, opt};
use crate::output::{self, Render};
use crate::table;
use anyhow::Result;
use beacon_wire::admin::{ExposureReport, FleetGroup, FleetReport, GroupCounts, GrowthReport};
use chrono::NaiveDate;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum ReportCommand {
    /// Distinct servers by version, edition, OS or database, with sums and distributions.
    Fleet {
        /// One day (YYYY-MM-DD); default today.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        day: Option<NaiveDate>,
        #[arg(long)]
        from: Option<NaiveDate>,
        #[arg(long)]
        to: Option<NaiveDate>,
        /// version, edition, os, db or dbv.
        #[arg(long, default_value = "version")]
        by: String,
        /// Include test installs (ut=1).
        #[arg(long)]
        include_test: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Distinct servers per day, new and gone. Default: the last 30 days.
    Growth {
        #[arg(long)]
        from: Option<NaiveDate>,
        #[arg(long)]
        to: Option<NaiveDate>,
        #[arg(long)]
        include_test: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Servers and activated users on versions affected by each bulletin, and patch adoption.
    Exposure {
        #[arg(long)]
        bulletin: Option<String>,
        /// Each server's latest check within this many days counts.
        #[arg(long)]
        window_days: Option<u32>,
        #[arg(long)]
        include_test: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

const COUNT_COLUMNS: [&str; 4] = ["SERVERS", "USERS", "ACTIVATED", "TEAMS"];

fn count_row(key: &str, c: &GroupCounts) -> Vec<String> {
    vec![
        key.to_string(),
        c.servers.to_string(),
        c.users.to_string(),
        c.activated_users.to_string(),
        c.teams.to_string(),
    ]
}

fn group_rows(groups: &[FleetGroup]) -> Vec<Vec<String>> {
    groups
        .iter()
        .map(|g| count_row(&g.key, &g.counts))
        .collect()
}

fn thresholded_note(thresholded: bool, k: u64) {
    if thresholded {
        println!("(groups with fewer than {k} servers are folded into 'other')");
    }
}

/// CSV: the groups and the total, as the first table shows them.
impl Render for FleetReport {
    fn columns(&self) -> Vec<String> {
        std::iter::once(self.by.as_str().to_uppercase())
            .chain(COUNT_COLUMNS.iter().map(|c| c.to_string()))
            .collect()
    }
    fn rows(&self) -> Vec<Vec<String>> {
        let mut rows = group_rows(&self.groups);
        rows.push(count_row("total", &self.total));
        rows
    }
    fn table(&self) -> Result<()> {
        println!(
            "fleet {} .. {} by {}{}",
            self.from,
            self.to,
            self.by.as_str(),
            if self.include_test {
                " (test installs included)"
            } else {
                ""
            }
        );
        let columns = self.columns();
        let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
        table::print(&columns, &self.rows());
        for (name, buckets) in [
            ("users", &self.distributions.users),
            ("activated users", &self.distributions.activated_users),
            ("teams", &self.distributions.teams),
        ] {
            println!("\nservers by {name}:");
            let rows: Vec<_> = buckets
                .iter()
                .map(|b| vec![b.range.clone(), b.servers.to_string()])
                .collect();
            table::print(&["RANGE", "SERVERS"], &rows);
        }
        thresholded_note(self.thresholded, self.min_group_size);
        Ok(())
    }
}

impl Render for GrowthReport {
    fn columns(&self) -> Vec<String> {
        ["DAY", "SERVERS", "NEW", "GONE"].map(String::from).to_vec()
    }
    fn rows(&self) -> Vec<Vec<String>> {
        self.days
            .iter()
            .map(|d| {
                vec![
                    d.day.to_string(),
                    d.servers.to_string(),
                    d.new.to_string(),
                    d.gone.to_string(),
                ]
            })
            .collect()
    }
    fn table(&self) -> Result<()> {
        table::print(&["DAY", "SERVERS", "NEW", "GONE"], &self.rows());
        println!(
            "(a server is gone after {} days without a check)",
            self.gone_after_days
        );
        Ok(())
    }
}

/// CSV: one row per bulletin with its exposed servers and activated users.
impl Render for ExposureReport {
    fn columns(&self) -> Vec<String> {
        [
            "ID",
            "SEVERITY",
            "AFFECTED",
            "SERVERS",
            "ACTIVATED USERS",
            "TITLE",
        ]
        .map(String::from)
        .to_vec()
    }
    fn rows(&self) -> Vec<Vec<String>> {
        self.bulletins
            .iter()
            .map(|b| {
                vec![
                    b.id.clone(),
                    b.severity.to_string(),
                    b.affected.clone(),
                    b.servers.to_string(),
                    b.activated_users.to_string(),
                    b.title.clone(),
                ]
            })
            .collect()
    }
    fn table(&self) -> Result<()> {
        println!(
            "exposure as of {} ({}-day window, {} servers checked in)",
            self.as_of, self.window_days, self.servers_in_window
        );
        for b in &self.bulletins {
            println!(
                "\n{} [{}] {} — affects {}",
                b.id, b.severity, b.title, b.affected
            );
            println!(
                "  exposed: {} servers, {} activated users",
                b.servers, b.activated_users
            );
            if !b.by_version.is_empty() {
                table::print(
                    &["VERSION", "SERVERS", "USERS", "ACTIVATED", "TEAMS"],
                    &group_rows(&b.by_version),
                );
            }
            let rows: Vec<_> = b
                .timeline
                .iter()
                .filter(|d| d.servers_checked > 0)
                .map(|d| {
                    vec![
                        d.day.to_string(),
                        d.servers_checked.to_string(),
                        d.affected_servers.to_string(),
                        d.affected_activated_users.to_string(),
                    ]
                })
                .collect();
            if !rows.is_empty() {
                println!(
                    "  patch adoption (published {}):",
                    b.published_at.date_naive()
                );
                table::print(&["DAY", "CHECKED", "AFFECTED", "AFFECTED USERS"], &rows);
            }
        }
        thresholded_note(self.thresholded, self.min_group_size);
        Ok(())
    }
}

pub async fn run(cmd: ReportCommand) -> Result<()> {
    match cmd {
        ReportCommand::Fleet {
            day,
            from,
            to,
            by,
            include_test,
            admin,
        } => {
            let q: Vec<_> = [
                opt("day", day.map(|d| d.to_string())),
                opt("from", from.map(|d| d.to_string())),
                opt("to", to.map(|d| d.to_string())),
                Some(("by", by)),
                Some(("include_test", include_test.to_string())),
            ]
            .into_iter()
            .flatten()
            .collect();
            let r: FleetReport = Client::new(&admin)?.get(&["reports", "fleet"], &q).await?;
            output::print(admin.format(), &r)
        }
        ReportCommand::Growth {
            from,
            to,
            include_test,
            admin,
        } => {
            let q: Vec<_> = [
                opt("from", from.map(|d| d.to_string())),
                opt("to", to.map(|d| d.to_string())),
                Some(("include_test", include_test.to_string())),
            ]
            .into_iter()
            .flatten()
            .collect();
            let r: GrowthReport = Client::new(&admin)?.get(&["reports", "growth"], &q).await?;
            output::print(admin.format(), &r)
        }
        ReportCommand::Exposure {
            bulletin,
            window_days,
            include_test,
            admin,
        } => {
            let q: Vec<_> = [
                opt("bulletin", bulletin),
                opt("window_days", window_days.map(|d| d.to_string())),
                Some(("include_test", include_test.to_string())),
            ]
            .into_iter()
            .flatten()
            .collect();
            let r: ExposureReport = Client::new(&admin)?
                .get(&["reports", "exposure"], &q)
                .await?;
            output::print(admin.format(), &r)
        }
    }
}
