//! The payload log: with `payload_log = true`, every payload the agent sends is appended to a local
//! file first, one JSON object per line (`at`, `channel`, `method`, `url`, `body`), so an administrator
//! can see exactly what left the server. The file is rotated (`FILE.1` … `FILE.N`) before it would
//! grow past `payload_log_max_bytes`.

use crate::config::Config;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub(crate) struct PayloadLog {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    lock: Mutex<()>,
}

#[derive(Serialize)]
struct Line<'a> {
    at: String,
    channel: &'a str,
    method: &'a str,
    url: &'a str,
    body: Option<&'a str>,
}

/// Where the payload log goes: the configured file, else beside the state file, else the working
/// directory.
pub(crate) fn payload_log_path(config: &Config) -> PathBuf {
    const NAME: &str = "beacon-agent-payloads.log";
    config.payload_log_file.clone().unwrap_or_else(|| {
        match config.state_file.as_deref().and_then(Path::parent) {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(NAME),
            _ => PathBuf::from(NAME),
        }
    })
}

impl PayloadLog {
    pub fn from_config(config: &Config) -> Option<Self> {
        config.payload_log.then(|| Self {
            path: payload_log_path(config),
            max_bytes: config.payload_log_max_bytes.max(1024),
            keep: config.payload_log_keep.max(1),
            lock: Mutex::new(()),
        })
    }

    pub fn append(
        &self,
        channel: &str,
        method: &str,
        url: &str,
        body: Option<&str>,
    ) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(&Line {
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            channel,
            method,
            url,
            body,
        })
        .map_err(std::io::Error::other)?;
        line.push(b'\n');
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let size = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        if size > 0 && size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(&line)
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn rotate(&self) -> std::io::Result<()> {
        let _ = std::fs::remove_file(self.rotated(self.keep));
        for n in (1..self.keep).rev() {
            let from = self.rotated(n);
            if from.exists() {
                std::fs::rename(&from, self.rotated(n + 1))?;
            }
        }
        std::fs::rename(&self.path, self.rotated(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_json_lines_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            payload_log: true,
            payload_log_file: Some(dir.path().join("p.log")),
            payload_log_max_bytes: 1024,
            payload_log_keep: 2,
            ..Config::default()
        };
        let log = PayloadLog::from_config(&config).unwrap();
        let body = "x".repeat(300);
        for i in 0..20 {
            log.append("errors", "POST", &format!("https://h/{i}"), Some(&body))
                .unwrap();
        }
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["p.log", "p.log.1", "p.log.2"]);
        for name in &names {
            let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
            assert!(text.len() <= 1024, "{name}: {}", text.len());
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(v["channel"], "errors");
                assert_eq!(v["body"].as_str().unwrap().len(), 300);
            }
        }
        let last = std::fs::read_to_string(dir.path().join("p.log")).unwrap();
        assert!(last.contains("https://h/19"));
        assert!(PayloadLog::from_config(&Config::default()).is_none());
    }
}
