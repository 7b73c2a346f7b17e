//! `beacon demo`: a collector with a month of simulated traffic, to look around in.

use crate::client::AdminArgs;
use crate::cmd::issues::{self, IssuesCommand};
use crate::cmd::perf::{self, PerfCommand, Range};
use crate::cmd::report::{self, ReportCommand};
use crate::output::Format;
use anyhow::{Context, Result};
use beacon_collector::{Config, OffsetClock};
use beacon_sim::{Hooks, SimConfig};
use chrono::{NaiveTime, TimeZone, Utc};
use clap::Args;
use std::sync::Arc;

/// How long the demo's one-time dashboard login link is valid.
const LOGIN_LINK_HOURS: i64 = 24;

#[derive(Args)]
pub struct DemoArgs {
    /// Where to listen (default: a free loopback port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    #[arg(long, default_value_t = 300)]
    servers: u32,
    #[arg(long, default_value_t = 200)]
    devices: u32,
    #[arg(long, default_value_t = 30)]
    days: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub async fn run(a: DemoArgs) -> Result<()> {
    let dir = tempfile::tempdir().context("cannot create a temporary data directory")?;
    let mut config = Config::default();
    config.server.listen = a.listen;
    config.server.data_dir = dir.path().to_path_buf();
    // A demo never stalls on the rate limit.
    config.errors.rate_limit_per_minute = 10_000_000;
    let clock = Arc::new(OffsetClock::default());
    let running = beacon_collector::start(config, clock.clone()).await?;
    let token = running
        .initial_token
        .clone()
        .context("a fresh demo store has no admin token")?;
    let url = running.url();
    let admin = AdminArgs {
        url: url.clone(),
        token: Some(token.clone()),
        ca_cert: None,
        format: Format::Table,
        json: false,
        // The collector is this process.
        insecure: true,
    };
    let client = crate::client::Client::new(&admin)?;
    eprintln!(
        "demo collector on {url}, data in {} (deleted on exit)",
        dir.path().display()
    );

    let first_day =
        Utc::now().date_naive() - chrono::Days::new(u64::from(a.days.saturating_sub(1)));
    clock.set(Utc.from_utc_datetime(&first_day.and_time(NaiveTime::MIN)));
    let bulletin = beacon_wire::bulletin::NewBulletin {
        id: "BSA-DEMO-0001".into(),
        title: "Remote code execution in the markdown renderer".into(),
        severity: beacon_wire::bulletin::Severity::Critical,
        affected: ">=9.11.0, <10.2.1".into(),
        fixed_in: Some("10.2.1".into()),
        body: "<p>Upgrade to 10.2.1 or later.</p>".into(),
        published_at: None,
    };
    let _: beacon_wire::bulletin::Bulletin = client.post(&["bulletins"], Some(&bulletin)).await?;
    let project: beacon_wire::admin::ProjectInfo = client
        .post(
            &["projects"],
            Some(&beacon_wire::admin::NewProject {
                name: "demo-server".into(),
            }),
        )
        .await?;
    let key = &project.keys[0].public_key;
    let host = url.split_once("://").map(|(_, h)| h).unwrap_or(&url);
    let dsn = beacon_wire::sentry::auth::format_dsn("http", key, host, project.id as u64);
    let api_key: beacon_wire::admin::CreatedApiKey = client
        .post(
            &["apikeys"],
            Some(&beacon_wire::admin::NewApiKey {
                name: "demo-app".into(),
            }),
        )
        .await?;

    let sim = SimConfig {
        url: url.clone(),
        servers: a.servers,
        devices: a.devices,
        days: a.days,
        seed: a.seed,
        rate: None,
        concurrency: 16,
        project_dsn: Some(dsn.clone()),
        api_key: Some(api_key.key.clone()),
        ca_cert: None,
        progress: true,
        record: None,
    };
    eprintln!("simulating {} days: {}", a.days, beacon_sim::describe(&sim));
    let day_clock = clock.clone();
    let hooks =
        Hooks {
            on_day: Some(Box::new(move |d| {
                day_clock.set(Utc.from_utc_datetime(
                    &d.and_time(NaiveTime::from_hms_opt(12, 0, 0).expect("noon")),
                ));
            })),
        };
    let summary = beacon_sim::run(sim, hooks).await?;
    clock.reset();
    // Reports read sketches folded in the background; fold what is pending now.
    running.store.compact_perf().await?;
    println!("\n== what the simulator sent ==\n{summary}");

    println!("\n== beacon report fleet ==");
    report::run(ReportCommand::Fleet {
        day: None,
        from: None,
        to: None,
        by: "version".into(),
        include_test: false,
        admin: admin.clone(),
    })
    .await?;
    println!("\n== beacon report exposure ==");
    report::run(ReportCommand::Exposure {
        bulletin: None,
        window_days: None,
        include_test: false,
        admin: admin.clone(),
    })
    .await?;
    println!("\n== beacon issues list --sort count ==");
    issues::run(IssuesCommand::List {
        project: None,
        release: None,
        environment: None,
        level: None,
        sort: "count".into(),
        limit: 10,
        admin: admin.clone(),
    })
    .await?;
    println!("\n== beacon perf percentiles --trace channel:switch_loaded --by app_version ==");
    perf::run(PerfCommand::Percentiles {
        trace: "channel:switch_loaded".into(),
        by: Some("app_version".into()),
        range: Range::default(),
        admin: admin.clone(),
    })
    .await?;
    println!("\n== beacon perf regressions ==");
    perf::run(PerfCommand::Regressions {
        trace: None,
        threshold: "10%".into(),
        min_samples: 100,
        range: Range::default(),
        admin: admin.clone(),
    })
    .await?;

    // A one-time login link: the first visit opens a dashboard session, the link then stops working.
    let link = beacon_collector::ui::create_login_link(
        running.store.as_ref(),
        &token,
        Utc::now(),
        chrono::Duration::hours(LOGIN_LINK_HOURS),
    )
    .await
    .context("cannot create the dashboard login link")?;
    println!("\n== the dashboard ==");
    println!("    {url}/ui/  (admin token below)");
    println!("    one-time login link, valid {LOGIN_LINK_HOURS} hours: {url}{link}");

    println!("\nThe demo collector keeps serving until Ctrl-C:\n");
    println!("    export BEACON_URL={url}");
    println!("    export BEACON_TOKEN={token}");
    println!(
        "    beacon report growth; beacon issues list; beacon perf histogram --trace team:switch"
    );
    println!("\n    DSN for a Sentry SDK:  {dsn}");
    println!("    mobile API key:        {}", api_key.key);
    crate::shutdown_signal().await?;
    running
        .shutdown()
        .await
        .context("collector stopped with an error")?;
    drop(dir);
    Ok(())
}
