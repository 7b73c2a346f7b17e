//! What the host tells the agent about itself: the facts of the daily security check.

use crate::BoxError;
use beacon_wire::security::SecurityCheck;
use serde::{Deserialize, Serialize};

/// The host's facts, as sent in the security check (`b`, `be`, `os`, `db`, `dbv`, `tc`, `uc`, `auc`,
/// `ut`). The diagnostic id and the last-check time come from the agent's [`State`](crate::State).
///
/// Deserializable with the same keys, so a stand-alone agent can read them from its configuration or
/// from a command that prints them as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostFacts {
    /// The product version, `X.Y.Z` (`b`).
    pub version: semver::Version,
    /// The build, sent as `X.Y.Z.BUILD` (`[A-Za-z0-9_-]{1,64}`).
    #[serde(default)]
    pub build: Option<String>,
    /// An enterprise build (`be`).
    #[serde(default)]
    pub enterprise: bool,
    /// The operating system (`os`, `[a-z0-9_]{1,32}`); default: this machine's, named as Go names it
    /// (`linux`, `windows`, `darwin`, `freebsd` …), as a Mattermost server reports it.
    #[serde(default = "default_os")]
    pub os: String,
    /// The database type (`db`, `[a-z0-9_]{1,32}`: `postgres`, `mysql` …).
    pub database: String,
    /// The database version (`dbv`, at most 64 printable ASCII characters).
    #[serde(default)]
    pub database_version: Option<String>,
    /// Number of teams (`tc`).
    #[serde(default)]
    pub teams: Option<u64>,
    /// Number of users (`uc`).
    #[serde(default)]
    pub users: Option<u64>,
    /// Number of activated users (`auc`).
    #[serde(default)]
    pub activated_users: Option<u64>,
    /// Whether the unit tests have been run: a test install (`ut`).
    #[serde(default)]
    pub unit_tests: bool,
}

/// This machine's operating system as Go's `runtime.GOOS` names it.
pub fn default_os() -> String {
    match std::env::consts::OS {
        "macos" => "darwin".into(),
        other => other.into(),
    }
}

impl HostFacts {
    /// Facts with a version and a database type; everything else at its default.
    pub fn new(version: semver::Version, database: impl Into<String>) -> Self {
        Self {
            version,
            build: None,
            enterprise: false,
            os: default_os(),
            database: database.into(),
            database_version: None,
            teams: None,
            users: None,
            activated_users: None,
            unit_tests: false,
        }
    }

    /// The check these facts make, for a diagnostic id and the previous check's time.
    pub(crate) fn to_check(&self, server_id: &str, last_check_ms: Option<i64>) -> SecurityCheck {
        let count = |n: Option<u64>| n.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        SecurityCheck {
            server_id: server_id.to_string(),
            version: self.version.clone(),
            build: self.build.clone(),
            enterprise: self.enterprise,
            os: self.os.clone(),
            db: self.database.clone(),
            db_version: self.database_version.clone(),
            teams: count(self.teams),
            users: count(self.users),
            activated_users: count(self.activated_users),
            unit_tests: self.unit_tests,
            last_check_ms,
        }
    }

    /// Checks the facts the way the collector will: the query they make must parse.
    pub fn validate(&self) -> Result<(), beacon_wire::FieldError> {
        let probe = self.to_check(&"0".repeat(26), None);
        beacon_wire::security::parse_query(&beacon_wire::security::build_query(&probe)).map(|_| ())
    }
}

/// Where the agent gets the host's facts, once per check, on a blocking thread (so an implementation
/// may query the host's database).
pub trait Facts: Send + Sync + 'static {
    fn facts(&self) -> Result<HostFacts, BoxError>;
}

/// Fixed facts.
impl Facts for HostFacts {
    fn facts(&self) -> Result<HostFacts, BoxError> {
        Ok(self.clone())
    }
}

/// Facts from a closure.
impl<F> Facts for F
where
    F: Fn() -> Result<HostFacts, BoxError> + Send + Sync + 'static,
{
    fn facts(&self) -> Result<HostFacts, BoxError> {
        self()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_make_a_mattermost_query() {
        let mut f = HostFacts::new(semver::Version::new(5, 37, 0), "postgres");
        f.os = "linux".into();
        f.build = Some("1234".into());
        f.enterprise = true;
        f.teams = Some(3);
        f.users = Some(42);
        f.activated_users = Some(37);
        let q = beacon_wire::security::build_query(&f.to_check("abcdefghijklmnopqrstuvwxyz", None));
        assert_eq!(
            q,
            "auc=37&b=5.37.0.1234&be=true&db=postgres&id=abcdefghijklmnopqrstuvwxyz&os=linux&tc=3&uc=42&ut=0"
        );
        assert!(f.validate().is_ok());
        f.database = "Postgres".into();
        assert_eq!(f.validate().unwrap_err().field, "db");
    }
}
