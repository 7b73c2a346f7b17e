//! The stand-alone agent's file (`beacon agent run | check | preview --config FILE`), for a server
//! that does not link the library: TOML with `[agent]` (a [`Config`]), `[agent.errors]`, `[facts]`
//! (the facts themselves, or a `command` printing them as JSON at each check) and `[notifier]`.
//!
//! Parsing lives here, not in the CLI, so that it is one function of text that tests and the fuzz
//! targets reach; the CLI turns the result into an [`Agent`](crate::Agent).

use crate::{Config, HostFacts};
use serde::Deserialize;
use std::path::PathBuf;

/// The whole file, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandaloneFile {
    pub agent: Config,
    pub facts: FactsSource,
    pub notifier: NotifierConfig,
}

/// Where the stand-alone agent's facts come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FactsSource {
    /// No `[facts]`: the agent's default.
    None,
    /// The facts are in the file (already validated).
    Fixed(HostFacts),
    /// A command (no shell) printing the facts as JSON, run at each check; see [`parse_facts_json`].
    Command(Vec<String>),
}

/// What the stand-alone agent does with a new bulletin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum NotifierConfig {
    /// Print each bulletin on standard output.
    #[default]
    Print,
    /// Append each bulletin to a file, one JSON object per line.
    File { path: PathBuf },
    /// Run a command (no shell) with the bulletin as JSON on its standard input; success is exit 0.
    Command { command: Vec<String> },
}

/// Why the file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    #[error("[facts]: {0}")]
    Facts(String),
    #[error("[facts] command is empty")]
    EmptyFactsCommand,
    #[error("[notifier] command is empty")]
    EmptyNotifierCommand,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    agent: Config,
    #[serde(default)]
    facts: Option<toml::Table>,
    #[serde(default)]
    notifier: NotifierConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandFacts {
    command: Vec<String>,
}

/// Parses and validates the stand-alone agent's file.
pub fn parse_file(text: &str) -> Result<StandaloneFile, FileError> {
    let file: RawFile = toml::from_str(text)?;
    let facts = match file.facts {
        None => FactsSource::None,
        Some(table) if table.contains_key("command") => {
            let c: CommandFacts = table
                .try_into()
                .map_err(|e: toml::de::Error| FileError::Facts(e.to_string()))?;
            if c.command.is_empty() {
                return Err(FileError::EmptyFactsCommand);
            }
            FactsSource::Command(c.command)
        }
        Some(table) => {
            let facts: HostFacts = table
                .try_into()
                .map_err(|e: toml::de::Error| FileError::Facts(e.to_string()))?;
            facts
                .validate()
                .map_err(|e| FileError::Facts(e.to_string()))?;
            FactsSource::Fixed(facts)
        }
    };
    if matches!(&file.notifier, NotifierConfig::Command { command } if command.is_empty()) {
        return Err(FileError::EmptyNotifierCommand);
    }
    Ok(StandaloneFile {
        agent: file.agent,
        facts,
        notifier: file.notifier,
    })
}

/// Reads the facts a facts command printed: the `[facts]` keys as one JSON object.
pub fn parse_facts_json(out: &[u8]) -> Result<HostFacts, serde_json::Error> {
    serde_json::from_slice(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_inline_or_from_a_command() {
        let f = parse_file(
            "[agent]\ncollector = \"https://b.example.com\"\n[facts]\nversion = \"5.37.0\"\ndatabase = \"postgres\"\n",
        )
        .unwrap();
        assert_eq!(f.agent.collector.as_deref(), Some("https://b.example.com"));
        let FactsSource::Fixed(facts) = f.facts else {
            panic!("{:?}", f.facts)
        };
        assert_eq!(facts.database, "postgres");
        assert_eq!(f.notifier, NotifierConfig::Print);
        let f = parse_file(
            "[agent]\n[facts]\ncommand = [\"facts\"]\n[notifier]\nkind = \"file\"\npath = \"/tmp/b\"\n",
        )
        .unwrap();
        assert_eq!(f.facts, FactsSource::Command(vec!["facts".into()]));
        assert_eq!(
            f.notifier,
            NotifierConfig::File {
                path: "/tmp/b".into()
            }
        );
        assert_eq!(parse_file("[agent]\n").unwrap().facts, FactsSource::None);
    }

    #[test]
    fn refusals_name_the_section() {
        for (text, want) in [
            (
                "[agent]\n[facts]\ncommand = []\n",
                "[facts] command is empty",
            ),
            (
                "[agent]\n[notifier]\nkind = \"command\"\ncommand = []\n",
                "[notifier] command is empty",
            ),
            (
                "[agent]\n[facts]\nversion = \"5.37.0\"\ndatabase = \"Postgres\"\n",
                "[facts]: db",
            ),
            (
                "[agent]\n[facts]\ncommand = [\"x\"]\nversion = \"1.0.0\"\n",
                "[facts]: unknown field",
            ),
            ("[agent]\nbogus = 1\n", "unknown field `bogus`"),
            ("", "missing field `agent`"),
        ] {
            let e = parse_file(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        assert!(parse_facts_json(br#"{"version":"5.37.0","database":"postgres"}"#).is_ok());
        assert!(parse_facts_json(br#"{"version":"5.37","database":"postgres"}"#).is_err());
    }
}
