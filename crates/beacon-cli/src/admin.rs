//! Admin commands: each one is a call to the admin API and a table (or `--json`).

use crate::client::{AdminArgs, Client};
use crate::table;
use anyhow::{Context, Result};
use beacon_wire::admin::{
    DeadLetter, ExposureReport, FleetGroup, FleetReport, GrowthReport, IssueDetail, IssueSummary,
    KeyInfo, KeyUpdate, NewProject, ProjectInfo,
};
use beacon_wire::bulletin::{Bulletin, NewBulletin, Severity};
use chrono::{DateTime, NaiveDate, Utc};
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

#[derive(Subcommand)]
pub enum DeadletterCommand {
    /// The newest rejected items, with reason and a scrubbed copy.
    List {
        /// Only this channel (security, …).
        #[arg(long)]
        channel: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

pub(crate) fn json<T: Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub(crate) fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M").to_string()
}

fn bulletin_table(list: &[Bulletin]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|b| {
            vec![
                b.id.clone(),
                b.severity.to_string(),
                b.affected.clone(),
                b.fixed_in.clone().unwrap_or_default(),
                time(&b.published_at),
                b.retracted_at.as_ref().map(time).unwrap_or_default(),
                b.title.clone(),
            ]
        })
        .collect();
    table::print(
        &[
            "ID",
            "SEVERITY",
            "AFFECTED",
            "FIXED IN",
            "PUBLISHED",
            "RETRACTED",
            "TITLE",
        ],
        &rows,
    );
}

pub async fn bulletin(cmd: BulletinCommand) -> Result<()> {
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
            if admin.json {
                return json(&b);
            }
            println!(
                "published {} ({}, affects {})",
                b.id, b.severity, b.affected
            );
            Ok(())
        }
        BulletinCommand::List { admin } => {
            let list: Vec<Bulletin> = Client::new(&admin)?.get(&["bulletins"], &[]).await?;
            if admin.json {
                return json(&list);
            }
            bulletin_table(&list);
            Ok(())
        }
        BulletinCommand::Show { id, admin } => {
            let b: Bulletin = Client::new(&admin)?.get(&["bulletins", &id], &[]).await?;
            if admin.json {
                return json(&b);
            }
            bulletin_table(std::slice::from_ref(&b));
            println!("\n{}", b.body);
            Ok(())
        }
        BulletinCommand::Retract { id, admin } => {
            let b: Bulletin = Client::new(&admin)?
                .post::<(), _>(&["bulletins", &id, "retract"], None)
                .await?;
            if admin.json {
                return json(&b);
            }
            println!(
                "retracted {} at {}",
                b.id,
                b.retracted_at.as_ref().map(time).unwrap_or_default()
            );
            Ok(())
        }
    }
}

fn group_rows(groups: &[FleetGroup]) -> Vec<Vec<String>> {
    groups
        .iter()
        .map(|g| {
            vec![
                g.key.clone(),
                g.counts.servers.to_string(),
                g.counts.users.to_string(),
                g.counts.activated_users.to_string(),
                g.counts.teams.to_string(),
            ]
        })
        .collect()
}

fn thresholded_note(thresholded: bool, k: u64) {
    if thresholded {
        println!("(groups with fewer than {k} servers are folded into 'other')");
    }
}

pub async fn report(cmd: ReportCommand) -> Result<()> {
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
            if admin.json {
                return json(&r);
            }
            println!(
                "fleet {} .. {} by {}{}",
                r.from,
                r.to,
                r.by.as_str(),
                if r.include_test {
                    " (test installs included)"
                } else {
                    ""
                }
            );
            let mut rows = group_rows(&r.groups);
            rows.push(vec![
                "total".into(),
                r.total.servers.to_string(),
                r.total.users.to_string(),
                r.total.activated_users.to_string(),
                r.total.teams.to_string(),
            ]);
            table::print(
                &[
                    r.by.as_str().to_uppercase().as_str(),
                    "SERVERS",
                    "USERS",
                    "ACTIVATED",
                    "TEAMS",
                ],
                &rows,
            );
            for (name, buckets) in [
                ("users", &r.distributions.users),
                ("activated users", &r.distributions.activated_users),
                ("teams", &r.distributions.teams),
            ] {
                println!("\nservers by {name}:");
                let rows: Vec<_> = buckets
                    .iter()
                    .map(|b| vec![b.range.clone(), b.servers.to_string()])
                    .collect();
                table::print(&["RANGE", "SERVERS"], &rows);
            }
            thresholded_note(r.thresholded, r.min_group_size);
            Ok(())
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
            if admin.json {
                return json(&r);
            }
            let rows: Vec<_> = r
                .days
                .iter()
                .map(|d| {
                    vec![
                        d.day.to_string(),
                        d.servers.to_string(),
                        d.new.to_string(),
                        d.gone.to_string(),
                    ]
                })
                .collect();
            table::print(&["DAY", "SERVERS", "NEW", "GONE"], &rows);
            println!(
                "(a server is gone after {} days without a check)",
                r.gone_after_days
            );
            Ok(())
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
            if admin.json {
                return json(&r);
            }
            println!(
                "exposure as of {} ({}-day window, {} servers checked in)",
                r.as_of, r.window_days, r.servers_in_window
            );
            for b in &r.bulletins {
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
            thresholded_note(r.thresholded, r.min_group_size);
            Ok(())
        }
    }
}

pub async fn deadletter(cmd: DeadletterCommand) -> Result<()> {
    match cmd {
        DeadletterCommand::List {
            channel,
            limit,
            admin,
        } => {
            let q: Vec<_> = [opt("channel", channel), Some(("limit", limit.to_string()))]
                .into_iter()
                .flatten()
                .collect();
            let list: Vec<DeadLetter> = Client::new(&admin)?.get(&["deadletters"], &q).await?;
            if admin.json {
                return json(&list);
            }
            let rows: Vec<_> = list
                .iter()
                .map(|d| {
                    vec![
                        d.id.to_string(),
                        time(&d.received_at),
                        d.channel.clone(),
                        d.reason.clone(),
                        d.payload.chars().take(80).collect(),
                    ]
                })
                .collect();
            table::print(&["ID", "RECEIVED", "CHANNEL", "REASON", "PAYLOAD"], &rows);
            Ok(())
        }
    }
}

/// A query parameter, when given.
pub(crate) fn opt(k: &'static str, v: Option<String>) -> Option<(&'static str, String)> {
    v.map(|v| (k, v))
}

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

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Accept events sent with this key again.
    Enable {
        key: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Refuse events sent with this key (403).
    Disable {
        key: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Events per minute for this key; 0 returns it to the collector's default.
    RateLimit {
        key: String,
        per_minute: u32,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

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

/// The DSN of a key, for the collector at `url` (scheme and host of the admin URL).
fn dsn(url: &str, key: &KeyInfo) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let host = rest.split('/').next().unwrap_or(rest);
    beacon_wire::sentry::auth::format_dsn(scheme, &key.public_key, host, key.project_id as u64)
}

pub async fn project(cmd: ProjectCommand) -> Result<()> {
    match cmd {
        ProjectCommand::Create { name, admin } => {
            let mut p: ProjectInfo = Client::new(&admin)?
                .post(&["projects"], Some(&NewProject { name }))
                .await?;
            for k in &mut p.keys {
                k.dsn = Some(dsn(&admin.url, k));
            }
            if admin.json {
                return json(&p);
            }
            println!("created project {} ({})", p.id, p.name);
            for k in &p.keys {
                println!("DSN: {}", k.dsn.as_deref().unwrap_or_default());
            }
            Ok(())
        }
        ProjectCommand::List { admin } => {
            let mut list: Vec<ProjectInfo> = Client::new(&admin)?.get(&["projects"], &[]).await?;
            for k in list.iter_mut().flat_map(|p| p.keys.iter_mut()) {
                k.dsn = Some(dsn(&admin.url, k));
            }
            if admin.json {
                return json(&list);
            }
            let rows: Vec<_> = list
                .iter()
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
                .collect();
            table::print(&["ID", "NAME", "KEY", "RATE LIMIT", "DSN"], &rows);
            Ok(())
        }
    }
}

pub async fn key(cmd: KeyCommand) -> Result<()> {
    let (key, update, admin) = match cmd {
        KeyCommand::Enable { key, admin } => (
            key,
            KeyUpdate {
                enabled: Some(true),
                ..Default::default()
            },
            admin,
        ),
        KeyCommand::Disable { key, admin } => (
            key,
            KeyUpdate {
                enabled: Some(false),
                ..Default::default()
            },
            admin,
        ),
        KeyCommand::RateLimit {
            key,
            per_minute,
            admin,
        } => (
            key,
            KeyUpdate {
                rate_limit_per_minute: Some(per_minute),
                ..Default::default()
            },
            admin,
        ),
    };
    let k: KeyInfo = Client::new(&admin)?.patch(&["keys", &key], &update).await?;
    if admin.json {
        return json(&k);
    }
    println!(
        "key {}: {}, rate limit {}",
        k.public_key,
        if k.enabled { "enabled" } else { "disabled" },
        k.rate_limit_per_minute
            .map(|r| format!("{r}/min"))
            .unwrap_or_else(|| "default".into())
    );
    Ok(())
}

pub async fn issues(cmd: IssuesCommand) -> Result<()> {
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
            if admin.json {
                return json(&list);
            }
            let rows: Vec<_> = list
                .iter()
                .map(|i| {
                    vec![
                        i.id.to_string(),
                        format!("{:?}", i.level).to_lowercase(),
                        i.count.to_string(),
                        i.servers.to_string(),
                        time(&i.last_seen),
                        i.title.chars().take(60).collect(),
                        i.culprit.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            table::print(
                &[
                    "ID",
                    "LEVEL",
                    "EVENTS",
                    "SERVERS",
                    "LAST SEEN",
                    "TITLE",
                    "CULPRIT",
                ],
                &rows,
            );
            Ok(())
        }
        IssuesCommand::Show { id, admin } => {
            let d: IssueDetail = Client::new(&admin)?
                .get(&["issues", &id.to_string()], &[])
                .await?;
            if admin.json {
                return json(&d);
            }
            let i = &d.issue;
            println!("issue {} — {}", i.id, i.title);
            println!("culprit: {}", i.culprit.as_deref().unwrap_or("-"));
            println!(
                "events: {}, servers: {}, first seen {}, last seen {}",
                i.count,
                i.servers,
                time(&i.first_seen),
                time(&i.last_seen)
            );
            println!("\nby release:");
            let rows: Vec<_> = d
                .by_release
                .iter()
                .map(|c| {
                    vec![
                        c.key.clone().unwrap_or_else(|| "(none)".into()),
                        c.count.to_string(),
                    ]
                })
                .collect();
            table::print(&["RELEASE", "EVENTS"], &rows);
            println!("\nby day:");
            let rows: Vec<_> = d
                .by_day
                .iter()
                .map(|c| vec![c.key.to_string(), c.count.to_string()])
                .collect();
            table::print(&["DAY", "EVENTS"], &rows);
            println!(
                "\nlatest event (scrubbed):\n{}",
                serde_json::to_string_pretty(&d.latest_event)?
            );
            Ok(())
        }
    }
}
