//! `beacon perf percentiles | histogram | regressions`: mobile app performance.

use crate::client::{AdminArgs, Client, opt};
use crate::output::{self, Render};
use crate::table;
use anyhow::Result;
use beacon_wire::admin::{HistogramReport, PercentileReport, RegressionReport};
use chrono::NaiveDate;
use clap::{Args, Subcommand};

#[derive(Args, Default)]
pub struct Range {
    /// First day (YYYY-MM-DD); default 29 days before --to.
    #[arg(long)]
    from: Option<NaiveDate>,
    /// Last day (YYYY-MM-DD); default today (UTC).
    #[arg(long)]
    to: Option<NaiveDate>,
    /// Count emulators too.
    #[arg(long)]
    include_emulators: bool,
}

impl Range {
    /// The range's query parameters, then `extra` ones when given.
    fn query<const N: usize>(
        &self,
        extra: [(&'static str, Option<String>); N],
    ) -> Vec<(&'static str, String)> {
        [
            opt("from", self.from.map(|d| d.to_string())),
            opt("to", self.to.map(|d| d.to_string())),
            opt(
                "include_emulators",
                self.include_emulators.then(|| "true".into()),
            ),
        ]
        .into_iter()
        .chain(extra.into_iter().map(|(k, v)| opt(k, v)))
        .flatten()
        .collect()
    }
}

#[derive(Subcommand)]
pub enum PerfCommand {
    /// Count and p50/p75/p90/p95/p99 of a trace, optionally per group.
    Percentiles {
        /// Trace name, e.g. channel:switch_loaded.
        #[arg(long)]
        trace: String,
        /// app_version, os_version, model, manufacturer, tablet, country or server_version.
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        range: Range,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Counts per duration bucket of a trace, optionally per group.
    Histogram {
        #[arg(long)]
        trace: String,
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        range: Range,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Per trace, each app version against the previous one; flags slower p75 or p95.
    Regressions {
        /// Only this trace name.
        #[arg(long)]
        trace: Option<String>,
        /// How much slower counts as a regression: 10% or 0.1.
        #[arg(long, default_value = "10%")]
        threshold: String,
        /// Samples needed on both sides.
        #[arg(long, default_value_t = 100)]
        min_samples: u64,
        #[command(flatten)]
        range: Range,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn footer(thresholded: bool, min_group_size: u64) {
    if thresholded {
        println!("(groups seen on fewer than {min_group_size} devices are folded into \"other\")");
    }
}

fn strings<const N: usize>(c: [&str; N]) -> Vec<String> {
    c.map(String::from).to_vec()
}

/// The group column's header and cell: the `--by` dimension, or `all`.
fn group_label(r: &PercentileReport) -> String {
    r.by.map(|b| b.as_str().to_uppercase())
        .unwrap_or_else(|| "ALL".into())
}

fn group_value(value: &str) -> String {
    if value.is_empty() {
        "all".into()
    } else {
        value.to_string()
    }
}

/// CSV: one row per group, durations in milliseconds as the API gives them.
impl Render for PercentileReport {
    fn columns(&self) -> Vec<String> {
        let mut c = vec![group_label(self)];
        c.extend(strings([
            "COUNT", "DEVICES", "MEAN", "P50", "P75", "P90", "P95", "P99",
        ]));
        c
    }
    fn rows(&self) -> Vec<Vec<String>> {
        self.groups
            .iter()
            .map(|g| {
                vec![
                    group_value(&g.value),
                    g.count.to_string(),
                    g.devices.to_string(),
                    g.mean_ms.to_string(),
                    g.p50_ms.to_string(),
                    g.p75_ms.to_string(),
                    g.p90_ms.to_string(),
                    g.p95_ms.to_string(),
                    g.p99_ms.to_string(),
                ]
            })
            .collect()
    }
    fn table(&self) -> Result<()> {
        println!(
            "{} from {} to {} (ms; within {}% of exact)",
            self.trace,
            self.from,
            self.to,
            self.relative_accuracy * 100.0
        );
        let label = group_label(self);
        let rows: Vec<_> = self
            .groups
            .iter()
            .map(|g| {
                vec![
                    group_value(&g.value),
                    g.count.to_string(),
                    g.devices.to_string(),
                    ms(g.p50_ms),
                    ms(g.p75_ms),
                    ms(g.p90_ms),
                    ms(g.p95_ms),
                    ms(g.p99_ms),
                ]
            })
            .collect();
        table::print(
            &[
                &label, "COUNT", "DEVICES", "P50", "P75", "P90", "P95", "P99",
            ],
            &rows,
        );
        footer(self.thresholded, self.min_group_size);
        Ok(())
    }
}

/// CSV: one row per bucket of each group.
impl Render for HistogramReport {
    fn columns(&self) -> Vec<String> {
        strings(["GROUP", "LOWER MS", "UPPER MS", "COUNT"])
    }
    fn rows(&self) -> Vec<Vec<String>> {
        self.groups
            .iter()
            .flat_map(|g| {
                g.buckets.iter().map(|b| {
                    vec![
                        group_value(&g.value),
                        b.lower_ms.to_string(),
                        b.upper_ms.to_string(),
                        b.count.to_string(),
                    ]
                })
            })
            .collect()
    }
    fn table(&self) -> Result<()> {
        println!("{} from {} to {}", self.trace, self.from, self.to);
        for g in &self.groups {
            if !g.value.is_empty() {
                println!("\n{} ({} events, {} devices)", g.value, g.count, g.devices);
            }
            let max = g.buckets.iter().map(|b| b.count).max().unwrap_or(1).max(1);
            for b in &g.buckets {
                let bar = "#".repeat(((b.count * 40).div_ceil(max)) as usize);
                println!(
                    "{:>9} – {:<9} ms {:>9}  {bar}",
                    ms(b.lower_ms),
                    ms(b.upper_ms),
                    b.count
                );
            }
        }
        footer(self.thresholded, self.min_group_size);
        Ok(())
    }
}

fn verdict(flagged: bool, too_few_samples: bool) -> &'static str {
    if flagged {
        "REGRESSION"
    } else if too_few_samples {
        "too few samples"
    } else {
        "ok"
    }
}

/// CSV: one row per comparison, each number in a column of its own.
impl Render for RegressionReport {
    fn columns(&self) -> Vec<String> {
        strings([
            "TRACE",
            "PREVIOUS VERSION",
            "VERSION",
            "PREVIOUS SAMPLES",
            "SAMPLES",
            "PREVIOUS P75 MS",
            "P75 MS",
            "P75 CHANGE",
            "PREVIOUS P95 MS",
            "P95 MS",
            "P95 CHANGE",
            "VERDICT",
        ])
    }
    fn rows(&self) -> Vec<Vec<String>> {
        self.comparisons
            .iter()
            .map(|c| {
                vec![
                    c.trace.clone(),
                    c.previous_version.clone(),
                    c.version.clone(),
                    c.previous_samples.to_string(),
                    c.samples.to_string(),
                    c.previous_p75_ms.to_string(),
                    c.p75_ms.to_string(),
                    c.p75_change.to_string(),
                    c.previous_p95_ms.to_string(),
                    c.p95_ms.to_string(),
                    c.p95_change.to_string(),
                    verdict(c.flagged, c.too_few_samples).to_string(),
                ]
            })
            .collect()
    }
    fn table(&self) -> Result<()> {
        let pct = |c: f64| format!("{:+.1}%", c * 100.0);
        let rows: Vec<_> = self
            .comparisons
            .iter()
            .map(|c| {
                vec![
                    c.trace.clone(),
                    format!("{} → {}", c.previous_version, c.version),
                    format!("{} / {}", c.previous_samples, c.samples),
                    format!(
                        "{} → {} ({})",
                        ms(c.previous_p75_ms),
                        ms(c.p75_ms),
                        pct(c.p75_change)
                    ),
                    format!(
                        "{} → {} ({})",
                        ms(c.previous_p95_ms),
                        ms(c.p95_ms),
                        pct(c.p95_change)
                    ),
                    verdict(c.flagged, c.too_few_samples).to_string(),
                ]
            })
            .collect();
        println!(
            "from {} to {}; flagged when p75 or p95 is more than {}% slower with at least {} samples on both sides",
            self.from,
            self.to,
            self.threshold * 100.0,
            self.min_samples
        );
        table::print(
            &["TRACE", "VERSIONS", "SAMPLES", "P75 MS", "P95 MS", ""],
            &rows,
        );
        footer(self.thresholded, self.min_group_size);
        Ok(())
    }
}

pub async fn run(cmd: PerfCommand) -> Result<()> {
    match cmd {
        PerfCommand::Percentiles {
            trace,
            by,
            range,
            admin,
        } => {
            let q = range.query([("trace", Some(trace)), ("by", by)]);
            let r: PercentileReport = Client::new(&admin)?
                .get(&["perf", "percentiles"], &q)
                .await?;
            output::print(admin.format(), &r)
        }
        PerfCommand::Histogram {
            trace,
            by,
            range,
            admin,
        } => {
            let q = range.query([("trace", Some(trace)), ("by", by)]);
            let r: HistogramReport = Client::new(&admin)?.get(&["perf", "histogram"], &q).await?;
            output::print(admin.format(), &r)
        }
        PerfCommand::Regressions {
            trace,
            threshold,
            min_samples,
            range,
            admin,
        } => {
            let q = range.query([
                ("trace", trace),
                ("threshold", Some(threshold)),
                ("min_samples", Some(min_samples.to_string())),
            ]);
            let r: RegressionReport = Client::new(&admin)?
                .get(&["perf", "regressions"], &q)
                .await?;
            output::print(admin.format(), &r)
        }
    }
}
