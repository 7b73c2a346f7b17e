//! `beacon`: the collector (`serve`), its offline tools, and the admin CLI that talks to the admin API.
//! One module per subcommand under `cmd`; the admin commands print through `output`.

mod client;
mod cmd;
mod output;
mod table;

use anyhow::Result;
use beacon_collector::Config;
use clap::{Args, Parser, Subcommand};
use cmd::{
    agent, alert, apikey, backup, bulletin, config, deadletter, demo, forget, issues, key, perf,
    project, report, retention, serve, sim, token,
};
use std::path::PathBuf;
use std::process::ExitCode;

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
    Serve(serve::ServeArgs),
    /// Validate configuration.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Admin tokens (offline: works on the store directly).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Security bulletins (admin API).
    #[command(subcommand)]
    Bulletin(bulletin::BulletinCommand),
    /// Reports (admin API).
    #[command(subcommand)]
    Report(report::ReportCommand),
    /// Rejected items (admin API).
    #[command(subcommand)]
    Deadletter(deadletter::DeadletterCommand),
    /// Data retention: what each channel holds, and removing what expired (admin API).
    #[command(subcommand)]
    Retention(retention::RetentionCommand),
    /// Error-reporting projects and their DSNs (admin API).
    #[command(subcommand)]
    Project(project::ProjectCommand),
    /// Project keys: enable, disable, rate limit (admin API).
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Grouped errors (admin API).
    #[command(subcommand)]
    Issues(issues::IssuesCommand),
    /// Mobile API keys for `POST /v1/mobile/metrics` (admin API).
    #[command(subcommand)]
    Apikey(apikey::ApikeyCommand),
    /// Mobile app performance: percentiles, histograms, regressions (admin API).
    #[command(subcommand)]
    Perf(perf::PerfCommand),
    /// Alert rules posting to Mattermost, Slack or a signed webhook, and their history (admin API).
    #[command(subcommand)]
    Alert(alert::AlertCommand),
    /// Drive a running collector with a simulated fleet (security checks, errors, mobile).
    Sim(sim::SimArgs),
    /// Start a collector with a month of simulated traffic and print its reports; serves until Ctrl-C.
    Demo(demo::DemoArgs),
    /// The agent stand-alone: run, check once, or preview what it sends.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Erase a server's or a device's data, or list the deletion log (admin API).
    Forget(forget::ForgetArgs),
    /// Copy a SQLite store to a file, consistent while the collector runs (offline tool).
    Backup(backup::BackupArgs),
    /// Put a backup back as the store of a data directory (the collector stopped; offline tool).
    Restore(backup::RestoreArgs),
}

#[derive(Args, Clone, Default)]
pub struct StoreArgs {
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
    pub fn load(&self) -> Result<Config> {
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

/// Runs the command; an error is one line on stderr, `Error: ` and its causes joined by `: `, never
/// a backtrace (whatever `RUST_BACKTRACE` says), and the exit status is 1.
fn main() -> ExitCode {
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
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(run(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, `: `-joined like `{:#}`; a cause whose text the message
/// before it already quotes is left out, and a message of several lines (every problem of a
/// configuration) has them `; `-joined.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let mut text = String::new();
        for l in cause
            .to_string()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            if !text.is_empty() {
                text.push_str(if text.ends_with(':') { " " } else { "; " });
            }
            text.push_str(l);
        }
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Config(cmd) => config::run(cmd),
        Command::Token(cmd) => token::run(cmd).await,
        Command::Bulletin(cmd) => bulletin::run(cmd).await,
        Command::Report(cmd) => report::run(cmd).await,
        Command::Deadletter(cmd) => deadletter::run(cmd).await,
        Command::Retention(cmd) => retention::run(cmd).await,
        Command::Project(cmd) => project::run(cmd).await,
        Command::Key(cmd) => key::run(cmd).await,
        Command::Issues(cmd) => issues::run(cmd).await,
        Command::Apikey(cmd) => apikey::run(cmd).await,
        Command::Perf(cmd) => perf::run(cmd).await,
        Command::Alert(cmd) => alert::run(cmd).await,
        Command::Sim(args) => sim::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Agent(cmd) => agent::agent(cmd).await,
        Command::Forget(args) => forget::run(args).await,
        Command::Backup(args) => backup::backup(args).await,
        Command::Restore(args) => backup::restore(args).await,
    }
}

pub(crate) async fn shutdown_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::one_line;
    use anyhow::Context;

    #[test]
    fn errors_are_one_line() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = Err::<(), _>(io).context("cannot reach x").unwrap_err();
        assert_eq!(one_line(&e), "cannot reach x: connection refused");
        // A message quoting its source, as thiserror's `{source}` does: said once.
        #[derive(Debug)]
        struct Listen(std::io::Error);
        impl std::fmt::Display for Listen {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "cannot listen on :80: {}", self.0)
            }
        }
        impl std::error::Error for Listen {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = anyhow::Error::new(Listen(std::io::ErrorKind::AddrInUse.into()));
        assert_eq!(one_line(&e), "cannot listen on :80: address in use");
        let e = anyhow::anyhow!("invalid configuration:\na: bad\nb: worse\n");
        assert_eq!(one_line(&e), "invalid configuration: a: bad; b: worse");
    }
}

// glibc's malloc showed up at ~11% of the collector's CPU under load (arena contention and
// consolidation); mimalloc is a small, well-kept replacement.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
