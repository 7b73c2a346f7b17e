//! `beacon alert add | list | show | remove | test | history`: alert rules and their notifications.

use crate::client::{AdminArgs, Client, opt};
use crate::output::{self, Done, Row, time};
use anyhow::{Context, Result, bail};
use beacon_wire::alert::{
    AlertDelivery, AlertKind, AlertParams, AlertRule, AlertTestResult, CreatedAlertRule,
    DestinationKind, NewAlertRule,
};
use beacon_wire::sentry::Level;
use clap::{Args, Subcommand};

/// Where a rule's notifications go: exactly one of the three.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct Destination {
    /// A Mattermost incoming webhook URL (`-`: read it from standard input, so that it stays out
    /// of the shell's history).
    #[arg(long, value_name = "URL")]
    mattermost: Option<String>,
    /// A Slack incoming webhook URL (`-`: read it from standard input).
    #[arg(long, value_name = "URL")]
    slack: Option<String>,
    /// Any HTTP endpoint: a JSON body signed with HMAC-SHA-256 (`X-Beacon-Signature`); the
    /// signing secret is printed once (`-`: read the URL from standard input).
    #[arg(long, value_name = "URL")]
    webhook: Option<String>,
}

impl Destination {
    fn resolve(self) -> Result<(DestinationKind, String)> {
        let (kind, url) = match (self.mattermost, self.slack, self.webhook) {
            (Some(u), None, None) => (DestinationKind::Mattermost, u),
            (None, Some(u), None) => (DestinationKind::Slack, u),
            (None, None, Some(u)) => (DestinationKind::Webhook, u),
            _ => bail!("give exactly one of --mattermost, --slack and --webhook"),
        };
        if url != "-" {
            return Ok((kind, url));
        }
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the url from standard input")?;
        Ok((kind, line.trim().to_string()))
    }
}

/// `beacon alert add`.
#[derive(Args)]
pub struct AddArgs {
    /// The rule's name (unique).
    name: String,
    /// new_issue, issue_spike, perf_regression, exposure or fleet_drop.
    #[arg(long, value_parser = parse_kind)]
    kind: AlertKind,
    #[command(flatten)]
    destination: Destination,
    /// new_issue, issue_spike: only this project's issues.
    #[arg(long)]
    project: Option<i64>,
    /// new_issue: only issues at this level or above (debug, info, warning, error, fatal).
    #[arg(long, value_parser = parse_level)]
    level: Option<Level>,
    /// new_issue: only issues with events in this environment.
    #[arg(long)]
    environment: Option<String>,
    /// issue_spike: events in the last hour above this many times the hourly average of the
    /// previous 7 days.
    #[arg(long)]
    factor: Option<f64>,
    /// issue_spike: and at least this many events in the hour.
    #[arg(long)]
    min_count: Option<u64>,
    /// perf_regression: only this trace name.
    #[arg(long)]
    trace: Option<String>,
    /// perf_regression: how much slower counts, 10% or 0.1 (the rule of `beacon perf regressions`).
    #[arg(long)]
    threshold: Option<String>,
    /// perf_regression: samples both versions need.
    #[arg(long)]
    min_samples: Option<u64>,
    /// exposure: only this bulletin (default: every bulletin not retracted).
    #[arg(long)]
    bulletin: Option<String>,
    /// exposure: days after publication before a bulletin is judged.
    #[arg(long)]
    after_days: Option<u32>,
    /// exposure: fires while affected servers are at least this % of those that checked in;
    /// fleet_drop: fires while today's servers (pro rata) are below this % of the 7-day average.
    #[arg(long)]
    percent: Option<f64>,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Subcommand)]
pub enum AlertCommand {
    /// Add a rule. Each kind takes its own flags; the others are refused. Defaults: --factor 10
    /// --min-count 10 (issue_spike), --threshold 10% --min-samples 100 (perf_regression),
    /// --after-days 7 --percent 10 (exposure), --percent 50 (fleet_drop).
    Add(Box<AddArgs>),
    /// List rules (URLs masked; a webhook's secret is never shown again).
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// One rule with its parameters.
    Show {
        id: i64,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Remove a rule; its notifications not yet delivered are cancelled.
    Remove {
        id: i64,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Send the rule's destination a sample notification now.
    Test {
        id: i64,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Notifications, newest first: delivered, pending (with the next attempt), failed.
    History {
        /// Only this rule's.
        #[arg(long)]
        rule: Option<i64>,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

fn parse_kind(s: &str) -> Result<AlertKind, String> {
    AlertKind::parse(s).ok_or_else(|| {
        "must be new_issue, issue_spike, perf_regression, exposure or fleet_drop".into()
    })
}

fn parse_level(s: &str) -> Result<Level, String> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| "must be debug, info, warning, error or fatal".into())
}

/// `10%` or `0.1`.
fn parse_threshold(s: &str) -> Result<f64> {
    let v = match s.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => s.trim().parse::<f64>(),
    };
    v.with_context(|| {
        format!("--threshold: {s:?} is not a share like 0.1 or a percentage like 10%")
    })
}

/// `key=value, …` of the parameters set.
fn params_text(p: &AlertParams) -> String {
    serde_json::to_value(p)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .map(|o| {
            o.iter()
                .map(|(k, v)| format!("{k}={}", v.to_string().trim_matches('"')))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

impl Row for AlertRule {
    const COLUMNS: &'static [&'static str] = &[
        "ID",
        "NAME",
        "KIND",
        "PARAMETERS",
        "DESTINATION",
        "URL",
        "FIRING",
        "CREATED",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.name.clone(),
            self.kind.to_string(),
            params_text(&self.params),
            self.destination.to_string(),
            self.url.clone(),
            self.firing.to_string(),
            time(&self.created_at),
        ]
    }
}

impl Row for CreatedAlertRule {
    const COLUMNS: &'static [&'static str] = AlertRule::COLUMNS;
    fn cells(&self) -> Vec<String> {
        self.rule.cells()
    }
}

impl Row for AlertDelivery {
    const COLUMNS: &'static [&'static str] = &[
        "ID", "CREATED", "RULE", "EPISODE", "STATUS", "ATTEMPTS", "NEXT", "ERROR", "MESSAGE",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            time(&self.created_at),
            format!("{} ({})", self.rule_name, self.rule_id),
            format!("{} #{}", self.episode_key, self.episode),
            self.status.as_str().to_string(),
            self.attempts.to_string(),
            self.next_at
                .as_ref()
                .map(time)
                .unwrap_or_else(|| "-".into()),
            self.last_error.clone().unwrap_or_else(|| "-".into()),
            self.text.clone(),
        ]
    }
    fn table_cells(&self) -> Vec<String> {
        let mut c = self.cells();
        let text: String = self.text.chars().take(60).collect();
        c[8] = if text.len() < self.text.len() {
            format!("{text}…")
        } else {
            text
        };
        c
    }
}

impl Row for AlertTestResult {
    const COLUMNS: &'static [&'static str] = &["DELIVERED", "STATUS", "ERROR", "NOTIFICATION"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.delivered.to_string(),
            self.status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            self.error.clone().unwrap_or_else(|| "-".into()),
            self.delivery.id.to_string(),
        ]
    }
}

pub async fn run(cmd: AlertCommand) -> Result<()> {
    match cmd {
        AlertCommand::Add(add) => {
            let AddArgs {
                name,
                kind,
                destination,
                project,
                level,
                environment,
                factor,
                min_count,
                trace,
                threshold,
                min_samples,
                bulletin,
                after_days,
                percent,
                admin,
            } = *add;
            let (destination, url) = destination.resolve()?;
            let rule = NewAlertRule {
                name,
                kind,
                destination,
                url,
                params: AlertParams {
                    project_id: project,
                    min_level: level,
                    environment,
                    factor,
                    min_count,
                    trace,
                    threshold: threshold.as_deref().map(parse_threshold).transpose()?,
                    min_samples,
                    bulletin,
                    after_days,
                    percent,
                },
            };
            let created: CreatedAlertRule =
                Client::new(&admin)?.post(&["alerts"], Some(&rule)).await?;
            let mut message = format!(
                "added alert rule {} {:?} ({}: {}) to {} {}",
                created.rule.id,
                created.rule.name,
                created.rule.kind,
                params_text(&created.rule.params),
                created.rule.destination,
                created.rule.url
            );
            if let Some(secret) = &created.secret {
                message.push_str(&format!(
                    "\nits signing secret (X-Beacon-Signature: sha256=HMAC-SHA-256 of the body) is shown only now:\n{secret}"
                ));
            }
            message.push_str(&format!("\ntry it: beacon alert test {}", created.rule.id));
            output::print(
                admin.format(),
                &Done {
                    value: &created,
                    message,
                },
            )
        }
        AlertCommand::List { admin } => {
            let rules: Vec<AlertRule> = Client::new(&admin)?.get(&["alerts"], &[]).await?;
            output::print(admin.format(), &rules)
        }
        AlertCommand::Show { id, admin } => {
            let rule: AlertRule = Client::new(&admin)?
                .get(&["alerts", &id.to_string()], &[])
                .await?;
            output::print(admin.format(), &vec![rule])
        }
        AlertCommand::Remove { id, admin } => {
            let rule: AlertRule = Client::new(&admin)?
                .delete(&["alerts", &id.to_string()])
                .await?;
            let message = format!("removed alert rule {} {:?}", rule.id, rule.name);
            output::print(
                admin.format(),
                &Done {
                    value: &rule,
                    message,
                },
            )
        }
        AlertCommand::Test { id, admin } => {
            let r: AlertTestResult = Client::new(&admin)?
                .post::<(), _>(&["alerts", &id.to_string(), "test"], None)
                .await?;
            let message = if r.delivered {
                format!(
                    "sent a test notification of rule {id}: the destination answered {}",
                    r.status.unwrap_or(200)
                )
            } else {
                format!(
                    "the test notification of rule {id} was not delivered: {}",
                    r.error.clone().unwrap_or_default()
                )
            };
            output::print(admin.format(), &Done { value: &r, message })?;
            if !r.delivered {
                bail!("the destination did not take the test notification");
            }
            Ok(())
        }
        AlertCommand::History { rule, limit, admin } => {
            let query: Vec<(&str, String)> = [
                opt("rule", rule.map(|r| r.to_string())),
                opt("limit", Some(limit.to_string())),
            ]
            .into_iter()
            .flatten()
            .collect();
            let list: Vec<AlertDelivery> = Client::new(&admin)?
                .get(&["alerts", "history"], &query)
                .await?;
            output::print(admin.format(), &list)
        }
    }
}
