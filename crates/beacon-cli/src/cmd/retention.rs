//! `beacon retention status|apply`: what each channel holds, and removing what `[retention]` says
//! has expired.

use crate::client::{AdminArgs, Client};
use crate::output::{self, Render, Row};
use anyhow::Result;
use beacon_wire::admin::{RetentionOutcome, RetentionRun, RetentionStatus};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum RetentionCommand {
    /// Per channel: days kept, oldest day, rows and bytes on disk.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Remove now what has expired (the collector also does it once a day).
    Apply {
        /// Count what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

fn days(d: u32) -> String {
    if d == 0 {
        "forever".into()
    } else {
        d.to_string()
    }
}

/// `1.5 MiB`: bytes for people.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl Row for RetentionStatus {
    const COLUMNS: &'static [&'static str] =
        &["CHANNEL", "KEEP_DAYS", "OLDEST_DAY", "ROWS", "BYTES"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.channel.to_string(),
            self.retention_days.to_string(),
            self.oldest_day.map(|d| d.to_string()).unwrap_or_default(),
            self.rows.to_string(),
            self.bytes.to_string(),
        ]
    }
    fn table_cells(&self) -> Vec<String> {
        let mut cells = self.cells();
        cells[1] = days(self.retention_days);
        cells[2] = self
            .oldest_day
            .map(|d| d.to_string())
            .unwrap_or_else(|| "-".into());
        cells[4] = size(self.bytes);
        cells
    }
}

impl Row for RetentionOutcome {
    const COLUMNS: &'static [&'static str] = &["CHANNEL", "KEEP_DAYS", "CUTOFF", "REMOVED"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.channel.to_string(),
            self.retention_days.to_string(),
            self.cutoff.map(|d| d.to_string()).unwrap_or_default(),
            self.removed.to_string(),
        ]
    }
    fn table_cells(&self) -> Vec<String> {
        let mut cells = self.cells();
        cells[1] = days(self.retention_days);
        cells[2] = self
            .cutoff
            .map(|d| format!("before {d}"))
            .unwrap_or_else(|| "-".into());
        cells
    }
}

/// A table of the channels, then a sentence for the issues; CSV: the channels' rows.
struct Run(RetentionRun);

impl serde::Serialize for Run {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl Render for Run {
    fn columns(&self) -> Vec<String> {
        RetentionOutcome::COLUMNS
            .iter()
            .map(|c| c.to_string())
            .collect()
    }
    fn rows(&self) -> Vec<Vec<String>> {
        self.0.channels.iter().map(Row::cells).collect()
    }
    fn table(&self) -> Result<()> {
        let rows: Vec<_> = self.0.channels.iter().map(Row::table_cells).collect();
        crate::table::print(RetentionOutcome::COLUMNS, &rows);
        let verb = if self.0.dry_run {
            "would be removed"
        } else {
            "removed"
        };
        println!(
            "{} issue(s) {verb} with their last event; ages judged on {} (UTC){}",
            self.0.issues_removed,
            self.0.today,
            if self.0.dry_run {
                ". Dry run: nothing was removed."
            } else {
                ""
            }
        );
        Ok(())
    }
}

pub async fn run(cmd: RetentionCommand) -> Result<()> {
    match cmd {
        RetentionCommand::Status { admin } => {
            let list: Vec<RetentionStatus> = Client::new(&admin)?.get(&["retention"], &[]).await?;
            output::print(admin.format(), &list)
        }
        RetentionCommand::Apply { dry_run, admin } => {
            let run: RetentionRun = Client::new(&admin)?
                .post_query(&["retention", "apply"], &[("dry_run", dry_run.to_string())])
                .await?;
            output::print(admin.format(), &Run(run))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_well() {
        assert_eq!(super::size(0), "0 B");
        assert_eq!(super::size(1023), "1023 B");
        assert_eq!(super::size(1536), "1.5 KiB");
        assert_eq!(super::size(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}
