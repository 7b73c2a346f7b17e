//! `beacon`: the collector (`serve`), its offline tools, and the admin CLI that talks to the admin API.

mod admin;
mod agent;
mod client;
mod perf;
mod sim;
mod table;

use anyhow::{Context, Result, bail};
use beacon_collector::{Config, SystemClock};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "beacon",
    version,
    about = "Telemetry for self-hosted server software: security update checks, error reports, mobile performance"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector.
    Serve(ServeArgs),
    /// Validate configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Admin tokens (offline: works on the store directly).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Security bulletins (admin API).
    #[command(subcommand)]
    Bulletin(admin::BulletinCommand),
    /// Reports (admin API).
    #[command(subcommand)]
    Report(admin::ReportCommand),
    /// Rejected items (admin API).
    #[command(subcommand)]
    Deadletter(admin::DeadletterCommand),
    /// Error-reporting projects and their DSNs (admin API).
    #[command(subcommand)]
    Project(admin::ProjectCommand),
    /// Project keys: enable, disable, rate limit (admin API).
    #[command(subcommand)]
    Key(admin::KeyCommand),
    /// Grouped errors (admin API).
    #[command(subcommand)]
    Issues(admin::IssuesCommand),
    /// Mobile API keys for `POST /v1/mobile/metrics` (admin API).
    #[command(subcommand)]
    Apikey(perf::ApikeyCommand),
    /// Mobile app performance: percentiles, histograms, regressions (admin API).
    #[command(subcommand)]
    Perf(perf::PerfCommand),
    /// Drive a running collector with a simulated fleet (security checks, errors, mobile).
    Sim(sim::SimArgs),
    /// Start a collector with a month of simulated traffic and print its reports; serves until Ctrl-C.
    Demo(sim::DemoArgs),
    /// The agent stand-alone: run, check once, or preview what it sends.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
}

#[derive(Args, Clone, Default)]
struct StoreArgs {
    /// Configuration file (TOML).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (SQLite database). Default ./beacon-data.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Store URL: sqlite:PATH or postgres://USER@HOST:PORT/DB.
    #[arg(long)]
    store: Option<String>,
}

impl StoreArgs {
    /// File, then environment, then these flags.
    fn load(&self) -> Result<Config> {
        let mut config = Config::load(self.config.as_deref(), std::env::vars())?;
        if let Some(d) = &self.data_dir {
            config.server.data_dir = d.clone();
        }
        if let Some(s) = &self.store {
            config.store.url = Some(s.clone());
        }
        Ok(config)
    }
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on. Default 127.0.0.1:8080.
    #[arg(long)]
    listen: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a configuration file (and BEACON_* variables) and say what is wrong.
    Check { file: PathBuf },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a new admin token; prints it once, stores only its hash.
    Create {
        #[command(flatten)]
        store: StoreArgs,
        /// A label to recognise the token by.
        #[arg(long, default_value = "cli")]
        label: String,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BEACON_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Config(ConfigCommand::Check { file }) => config_check(&file),
        Command::Token(TokenCommand::Create { store, label }) => token_create(&store, &label).await,
        Command::Bulletin(cmd) => admin::bulletin(cmd).await,
        Command::Report(cmd) => admin::report(cmd).await,
        Command::Deadletter(cmd) => admin::deadletter(cmd).await,
        Command::Project(cmd) => admin::project(cmd).await,
        Command::Key(cmd) => admin::key(cmd).await,
        Command::Issues(cmd) => admin::issues(cmd).await,
        Command::Apikey(cmd) => perf::apikey(cmd).await,
        Command::Perf(cmd) => perf::perf(cmd).await,
        Command::Sim(args) => sim::sim(args).await,
        Command::Demo(args) => sim::demo(args).await,
        Command::Agent(cmd) => agent::agent(cmd).await,
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let mut config = args.store.load()?;
    if let Some(l) = args.listen {
        config.server.listen = l;
    }
    let running = beacon_collector::start(config, Arc::new(SystemClock)).await?;
    if let Some(token) = &running.initial_token {
        println!("Beacon admin token (shown once; only its hash is stored):\n\n    {token}\n");
    }
    println!("beacon collector listening on {}", running.url());
    shutdown_signal().await?;
    tracing::info!("shutdown requested: no new connections, finishing accepted requests");
    running
        .shutdown()
        .await
        .context("collector stopped with an error")?;
    Ok(())
}

pub(crate) async fn shutdown_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

fn config_check(file: &std::path::Path) -> Result<()> {
    let config = match Config::load(Some(file), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            for p in &e.0 {
                eprintln!("error: {p}");
            }
            bail!(
                "{} is not a valid configuration ({} problem(s))",
                file.display(),
                e.0.len()
            );
        }
    };
    let problems = config.problems();
    for p in &problems {
        eprintln!("error: {p}");
    }
    if !problems.is_empty() {
        bail!(
            "{} is not a valid configuration ({} problem(s))",
            file.display(),
            problems.len()
        );
    }
    println!("{}: ok", file.display());
    Ok(())
}

async fn token_create(args: &StoreArgs, label: &str) -> Result<()> {
    let config = args.load()?;
    let store = beacon_collector::open_store(&config).await?;
    let token = beacon_collector::keys::generate_token();
    store
        .add_admin_token(
            &beacon_collector::keys::hash(&token),
            label,
            chrono::Utc::now(),
        )
        .await?;
    println!("{token}");
    Ok(())
}

// glibc's malloc showed up at ~11% of the collector's CPU under load (arena contention and
// consolidation); mimalloc is a small, well-kept replacement.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
