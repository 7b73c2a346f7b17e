//! `beacon agent run | check | preview --config FILE`: the agent stand-alone, beside a server that does
//! not link the library. Facts come from the file or from a command printing them as JSON; bulletins
//! are printed, appended to a file, or handed to a command.

use anyhow::{Context, Result};
use beacon_agent::standalone::{self, FactsSource, NotifierConfig};
use beacon_agent::{
    Agent, BoxError, Bulletin, BulletinResult, CheckOutcome, Facts, HostFacts, Notifier,
};
use clap::{Args, Subcommand};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum AgentCommand {
    /// Run the agent until SIGTERM/SIGINT: a check whenever one is due, error reports.
    Run(AgentArgs),
    /// Check now, once (whenever the last check was), and notify new bulletins.
    Check(AgentArgs),
    /// Print the exact URL of the next check and a scrubbed sample error report; sends nothing.
    Preview(AgentArgs),
    /// Ask the collector to forget this server's data (its checks and error events); waits until
    /// the deletion is done.
    Forget(AgentArgs),
}

#[derive(Args)]
pub struct AgentArgs {
    /// Agent configuration (TOML): [agent], [agent.errors], [facts], [notifier].
    #[arg(long)]
    config: PathBuf,
}

/// How long a facts or notifier command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn agent(cmd: AgentCommand) -> Result<()> {
    match cmd {
        AgentCommand::Run(args) => run(&args.config).await,
        AgentCommand::Check(args) => check(&args.config).await,
        AgentCommand::Preview(args) => preview(&args.config).await,
        AgentCommand::Forget(args) => forget(&args.config).await,
    }
}

async fn forget(config: &Path) -> Result<()> {
    let agent = load(config)?;
    let done = agent
        .forget()
        .await
        .context("the collector did not forget this server")?;
    println!(
        "forgotten: {} checks, {} error events, {} dead letters (logged at {} as {})",
        done.checks,
        done.events,
        done.dead_letters,
        done.at.to_rfc3339(),
        done.id_hash
    );
    Ok(())
}

fn load(path: &Path) -> Result<Agent> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file = standalone::parse_file(&text)
        .with_context(|| format!("{} is not valid", path.display()))?;
    let mut builder = Agent::builder(file.agent);
    builder = match file.facts {
        FactsSource::None => builder,
        FactsSource::Fixed(facts) => builder.facts(facts),
        FactsSource::Command(command) => builder.facts(CommandFactsSource(command)),
    };
    builder = match file.notifier {
        NotifierConfig::Print => builder.notifier(PrintNotifier),
        NotifierConfig::File { path } => builder.notifier(FileNotifier(path)),
        NotifierConfig::Command { command } => builder.notifier(CommandNotifier(command)),
    };
    Ok(builder.build()?)
}

async fn run(path: &Path) -> Result<()> {
    let agent = load(path)?;
    let s = agent.switches().clone();
    let on = |b: bool| if b { "on" } else { "off" };
    println!(
        "beacon agent running: security_alerts {}, diagnostics {}",
        on(s.security_alerts),
        on(s.diagnostics)
    );
    let handle = agent.start_on(&tokio::runtime::Handle::current());
    crate::shutdown_signal().await?;
    let status = handle.shutdown(Duration::from_secs(5)).await;
    tracing::info!(?status, "agent stopped");
    Ok(())
}

async fn check(path: &Path) -> Result<()> {
    let agent = load(path)?;
    match agent.check_now().await? {
        CheckOutcome::Off => {
            println!("security_alerts is off: nothing was sent");
            for note in &agent.switches().notes {
                println!("note: {note}");
            }
        }
        CheckOutcome::NotDue { .. } => unreachable!("a forced check is always due"),
        CheckOutcome::Checked(report) => {
            println!("GET {}", report.url);
            if report.bulletins.is_empty() {
                println!("no bulletin applies to this version");
            }
            for b in &report.bulletins {
                let what = match &b.result {
                    BulletinResult::Notified => "notified".to_string(),
                    BulletinResult::AlreadyNotified => "already notified".to_string(),
                    BulletinResult::NotifierFailed(e) => {
                        format!("notifier failed (offered again at the next check): {e}")
                    }
                    BulletinResult::Gone => "retracted, not notified".to_string(),
                    BulletinResult::FetchFailed(e) => {
                        format!("not fetched (offered again at the next check): {e}")
                    }
                    BulletinResult::Ignored => "not for this version".to_string(),
                };
                println!("bulletin {}: {what}", b.id);
            }
        }
    }
    Ok(())
}

async fn preview(path: &Path) -> Result<()> {
    let agent = load(path)?;
    print!("{}", agent.preview().await?);
    Ok(())
}

/// Runs `argv` (no shell) with `input` on its standard input; returns its standard output, or an
/// error naming the exit status and the end of its standard error.
fn run_command(argv: &[String], input: Option<&[u8]>) -> Result<Vec<u8>, BoxError> {
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        // A command that does not read its input is not an error.
        let _ = stdin.write_all(input);
    }
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let reader = std::thread::spawn(move || {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        if let Some(s) = out.as_mut() {
            let _ = s.take(1 << 20).read_to_end(&mut o);
        }
        if let Some(s) = err.as_mut() {
            let _ = s.take(64 << 10).read_to_end(&mut e);
        }
        (o, e)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > COMMAND_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{} did not finish within {COMMAND_TIMEOUT:?}", argv[0]).into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = reader.join().map_err(|_| "output reader panicked")?;
    if !status.success() {
        let stderr = String::from_utf8_lossy(&stderr);
        return Err(format!("{} exited with {status}: {}", argv[0], stderr.trim()).into());
    }
    Ok(stdout)
}

/// Facts printed as JSON (the `[facts]` keys) by a command, run at each check.
struct CommandFactsSource(Vec<String>);

impl Facts for CommandFactsSource {
    fn facts(&self) -> Result<HostFacts, BoxError> {
        let out = run_command(&self.0, None)?;
        standalone::parse_facts_json(&out)
            .map_err(|e| format!("{} printed no facts JSON: {e}", self.0[0]).into())
    }
}

struct PrintNotifier;

impl Notifier for PrintNotifier {
    fn notify(&self, b: &Bulletin) -> Result<(), BoxError> {
        let n = &b.notice;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "SECURITY BULLETIN {} ({}): {}\napplies to {}{}\n{}\n",
            n.id,
            n.severity,
            n.title,
            n.applies_to_version,
            n.fixed_in
                .as_deref()
                .map(|f| format!(", fixed in {f}"))
                .unwrap_or_default(),
            b.body_html.trim()
        )?;
        out.flush()?;
        Ok(())
    }
}

struct FileNotifier(PathBuf);

impl Notifier for FileNotifier {
    fn notify(&self, b: &Bulletin) -> Result<(), BoxError> {
        let mut line = serde_json::to_vec(b)?;
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.0)
            .map_err(|e| format!("{}: {e}", self.0.display()))?;
        f.write_all(&line)?;
        f.sync_data()?;
        Ok(())
    }
}

struct CommandNotifier(Vec<String>);

impl Notifier for CommandNotifier {
    fn notify(&self, b: &Bulletin) -> Result<(), BoxError> {
        run_command(&self.0, Some(&serde_json::to_vec(b)?)).map(|_| ())
    }
}
