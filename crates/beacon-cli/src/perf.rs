//! Mobile commands: API keys and performance reports, through the admin API.

use crate::admin::{json, opt, time};
use crate::client::{AdminArgs, Client};
use crate::table;
use anyhow::Result;
use beacon_wire::admin::{
    ApiKeyInfo, CreatedApiKey, HistogramReport, NewApiKey, PercentileReport, RegressionReport,
};
use chrono::NaiveDate;
use clap::{Args, Subcommand};

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

pub async fn apikey(cmd: ApikeyCommand) -> Result<()> {
    match cmd {
        ApikeyCommand::Create { name, admin } => {
            let k: CreatedApiKey = Client::new(&admin)?
                .post(&["apikeys"], Some(&NewApiKey { name }))
                .await?;
            if admin.json {
                return json(&k);
            }
            println!("created api key {:?}; it is shown only now:", k.info.name);
            println!("{}", k.key);
            Ok(())
        }
        ApikeyCommand::List { admin } => {
            let keys: Vec<ApiKeyInfo> = Client::new(&admin)?.get(&["apikeys"], &[]).await?;
            if admin.json {
                return json(&keys);
            }
            let rows: Vec<_> = keys
                .iter()
                .map(|k| {
                    vec![
                        k.name.clone(),
                        format!("{}…", k.prefix),
                        time(&k.created_at),
                        k.revoked_at
                            .as_ref()
                            .map(time)
                            .unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            table::print(&["NAME", "KEY", "CREATED", "REVOKED"], &rows);
            Ok(())
        }
        ApikeyCommand::Revoke { name, admin } => {
            let k: ApiKeyInfo = Client::new(&admin)?.delete(&["apikeys", &name]).await?;
            if admin.json {
                return json(&k);
            }
            println!(
                "revoked api key {:?} at {}",
                k.name,
                k.revoked_at.as_ref().map(time).unwrap_or_default()
            );
            Ok(())
        }
    }
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

pub async fn perf(cmd: PerfCommand) -> Result<()> {
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
            if admin.json {
                return json(&r);
            }
            println!(
                "{} from {} to {} (ms; within {}% of exact)",
                r.trace,
                r.from,
                r.to,
                r.relative_accuracy * 100.0
            );
            let label =
                r.by.map(|b| b.as_str().to_uppercase())
                    .unwrap_or_else(|| "ALL".into());
            let rows: Vec<_> = r
                .groups
                .iter()
                .map(|g| {
                    vec![
                        if g.value.is_empty() {
                            "all".into()
                        } else {
                            g.value.clone()
                        },
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
            footer(r.thresholded, r.min_group_size);
            Ok(())
        }
        PerfCommand::Histogram {
            trace,
            by,
            range,
            admin,
        } => {
            let q = range.query([("trace", Some(trace)), ("by", by)]);
            let r: HistogramReport = Client::new(&admin)?.get(&["perf", "histogram"], &q).await?;
            if admin.json {
                return json(&r);
            }
            println!("{} from {} to {}", r.trace, r.from, r.to);
            for g in &r.groups {
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
            footer(r.thresholded, r.min_group_size);
            Ok(())
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
            if admin.json {
                return json(&r);
            }
            let pct = |c: f64| format!("{:+.1}%", c * 100.0);
            let rows: Vec<_> = r
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
                        if c.flagged {
                            "REGRESSION".into()
                        } else if c.too_few_samples {
                            "too few samples".into()
                        } else {
                            "ok".into()
                        },
                    ]
                })
                .collect();
            println!(
                "from {} to {}; flagged when p75 or p95 is more than {}% slower with at least {} samples on both sides",
                r.from,
                r.to,
                r.threshold * 100.0,
                r.min_samples
            );
            table::print(
                &["TRACE", "VERSIONS", "SAMPLES", "P75 MS", "P95 MS", ""],
                &rows,
            );
            footer(r.thresholded, r.min_group_size);
            Ok(())
        }
    }
}
