//! What the agent remembers: its diagnostic id, when the last check was made, and which bulletins the
//! administrators were already told about.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Length of a diagnostic id.
pub const DIAGNOSTIC_ID_LEN: usize = 26;

/// The agent's state. Every node of a cluster should see the same one (see [`State`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    /// The server's diagnostic id, 26 characters `[a-z0-9]`, made once and kept.
    #[serde(default)]
    pub diagnostic_id: Option<String>,
    /// When the last check was started (recorded before its request is sent).
    #[serde(default)]
    pub last_check: Option<DateTime<Utc>>,
    /// Bulletins whose notifier call succeeded.
    #[serde(default)]
    pub notified: BTreeSet<String>,
}

impl AgentState {
    /// The diagnostic id, made now when there is none (or the stored one is not a valid id).
    pub fn ensure_diagnostic_id(&mut self) -> &str {
        if !self.diagnostic_id.as_deref().is_some_and(is_diagnostic_id) {
            self.diagnostic_id = Some(new_diagnostic_id());
        }
        self.diagnostic_id.as_deref().expect("just set")
    }
}

/// A new random diagnostic id: 26 characters `[a-z0-9]` (about 134 bits).
pub fn new_diagnostic_id() -> String {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..DIAGNOSTIC_ID_LEN)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Whether `s` is a diagnostic id: 26 characters `[a-z0-9]`.
pub fn is_diagnostic_id(s: &str) -> bool {
    s.len() == DIAGNOSTIC_ID_LEN
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// A failure to read or write the state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write state file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state: {0}")]
    Other(crate::BoxError),
}

/// Where the agent keeps its [`AgentState`]. Called on a blocking thread, so an implementation may use
/// the host's database.
///
/// In a cluster, give every node the same state (for example a row in the product's database): the
/// diagnostic id is then the cluster's, one node checks per day, and each bulletin is notified once.
/// Override [`update`](State::update) to make the read-modify-write atomic (a transaction with
/// `SELECT … FOR UPDATE`); the agent changes the state only through it.
pub trait State: Send + Sync + 'static {
    /// The stored state; [`AgentState::default`] when none was stored yet.
    fn load(&self) -> Result<AgentState, StateError>;
    /// Stores the whole state.
    fn save(&self, state: &AgentState) -> Result<(), StateError>;
    /// Reads, changes with `f`, and writes back when something changed; returns the new state.
    fn update(&self, f: &mut dyn FnMut(&mut AgentState)) -> Result<AgentState, StateError> {
        let mut state = self.load()?;
        let before = state.clone();
        f(&mut state);
        if state != before {
            self.save(&state)?;
        }
        Ok(state)
    }
}

/// The default state: one JSON file, replaced atomically (written to a temporary file beside it,
/// synced, renamed over it, and the directory synced). Updates within one process are serialised.
#[derive(Debug)]
pub struct JsonFileState {
    path: PathBuf,
    lock: Mutex<()>,
}

impl JsonFileState {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            lock: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<AgentState, StateError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StateError::Parse {
                path: self.path.clone(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AgentState::default()),
            Err(source) => Err(StateError::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }

    fn write(&self, state: &AgentState) -> Result<(), StateError> {
        let err = |source| StateError::Write {
            path: self.path.clone(),
            source,
        };
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(err)?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "state.json".into());
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let mut json = serde_json::to_vec_pretty(state).expect("state serialises");
        json.push(b'\n');
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            // The rename is durable once the directory is synced (not possible on every platform).
            if let Ok(d) = std::fs::File::open(&dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(err)
    }
}

impl State for JsonFileState {
    fn load(&self) -> Result<AgentState, StateError> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.read()
    }

    fn save(&self, state: &AgentState) -> Result<(), StateError> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.write(state)
    }

    fn update(&self, f: &mut dyn FnMut(&mut AgentState)) -> Result<AgentState, StateError> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut state = self.read()?;
        let before = state.clone();
        f(&mut state);
        if state != before {
            self.write(&state)?;
        }
        Ok(state)
    }
}

/// State kept in memory only (tests, or a host that persists nothing): a new diagnostic id per process.
#[derive(Debug, Default)]
pub struct MemoryState(Mutex<AgentState>);

impl State for MemoryState {
    fn load(&self) -> Result<AgentState, StateError> {
        Ok(self.0.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    fn save(&self, state: &AgentState) -> Result<(), StateError> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = state.clone();
        Ok(())
    }

    fn update(&self, f: &mut dyn FnMut(&mut AgentState)) -> Result<AgentState, StateError> {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut state);
        Ok(state.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostic_ids_are_26_chars_and_made_once() {
        let a = new_diagnostic_id();
        assert!(is_diagnostic_id(&a), "{a}");
        assert_ne!(a, new_diagnostic_id());
        let mut s = AgentState::default();
        let id = s.ensure_diagnostic_id().to_string();
        assert_eq!(s.ensure_diagnostic_id(), id);
        s.diagnostic_id = Some("Not-An-Id".into());
        assert!(is_diagnostic_id(s.ensure_diagnostic_id()));
    }

    #[test]
    fn json_file_state_round_trips_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        let st = JsonFileState::new(&path);
        assert_eq!(st.load().unwrap(), AgentState::default());
        let saved = st
            .update(&mut |s| {
                s.ensure_diagnostic_id();
                s.notified.insert("BSA-1".into());
            })
            .unwrap();
        let again = JsonFileState::new(&path).load().unwrap();
        assert_eq!(again, saved);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
        std::fs::write(&path, "{not json").unwrap();
        assert!(matches!(st.load(), Err(StateError::Parse { .. })));
    }
}
