//! What the agent would send, shown without sending it.

use crate::security::{self, CHECK_INTERVAL, CheckError};
use crate::{Inner, Switches, blocking};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::Arc;

/// The result of [`Agent::preview`](crate::Agent::preview).
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    pub switches: Switches,
    /// The next check; `None` when security alerts are off.
    pub next_check: Option<NextCheck>,
    pub error_report: ErrorPreview,
    /// Where every payload sent is appended, when `payload_log` is on.
    pub payload_log: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NextCheck {
    /// The exact URL the next check requests (`GET`).
    pub url: String,
    /// When it is due; `None`: at the first tick.
    pub due: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorPreview {
    /// Whether error reports are sent (diagnostics on and a DSN set).
    pub enabled: bool,
    /// Where they are posted.
    pub url: Option<String>,
    /// A sample report, built and scrubbed like a real one: the Sentry envelope as it would be posted.
    pub envelope: String,
}

pub(crate) async fn preview(inner: &Arc<Inner>) -> Result<Preview, CheckError> {
    let any_on = inner.collector.is_some() || inner.endpoint.is_some();
    let state = inner.state.clone();
    let state = blocking(move || {
        if any_on {
            state.update(&mut |s| {
                s.ensure_diagnostic_id();
            })
        } else {
            state.load()
        }
    })
    .await
    .map_err(|_| CheckError::Panicked("state"))??;

    let next_check = match &inner.collector {
        Some(base) => {
            let facts = security::host_facts(inner).await?;
            let id = state.diagnostic_id.clone().unwrap_or_default();
            let url = security::check_url(base, &facts, &id, state.last_check);
            let now = inner.clock.now();
            let due = state
                .last_check
                .filter(|_| !security::is_due(state.last_check, now))
                .map(|t| t + CHECK_INTERVAL);
            Some(NextCheck { url, due })
        }
        None => None,
    };
    let meta = crate::sentry::EventMeta {
        server_id: state.diagnostic_id.clone(),
        ..inner.event_meta.clone()
    };
    // The stack of this call (the caller's thread), resolved on a blocking thread.
    let backtrace = crate::sentry::capture_stack();
    let envelope = blocking(move || crate::sentry::sample_envelope(&meta, backtrace))
        .await
        .map_err(|_| CheckError::Panicked("sample report"))?;
    Ok(Preview {
        switches: inner.switches.clone(),
        next_check,
        error_report: ErrorPreview {
            enabled: inner.endpoint.is_some(),
            url: inner.endpoint.as_ref().map(|e| e.url.to_string()),
            envelope: String::from_utf8_lossy(&envelope).into_owned(),
        },
        payload_log: inner
            .config
            .payload_log
            .then(|| crate::payload_log::payload_log_path(&inner.config)),
    })
}

impl std::fmt::Display for Preview {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let on = |b: bool| if b { "on" } else { "off" };
        writeln!(
            f,
            "deployment: {}",
            match self.switches.deployment {
                crate::Deployment::SelfHosted => "self_hosted",
                crate::Deployment::Cloud => "cloud",
            }
        )?;
        writeln!(f, "security_alerts: {}", on(self.switches.security_alerts))?;
        writeln!(f, "diagnostics: {}", on(self.switches.diagnostics))?;
        for note in &self.switches.notes {
            writeln!(f, "note: {note}")?;
        }
        writeln!(f)?;
        match &self.next_check {
            Some(c) => {
                match c.due {
                    Some(t) => writeln!(f, "next security check (due {}):", t.to_rfc3339())?,
                    None => writeln!(f, "next security check (due at the next tick):")?,
                }
                writeln!(f, "GET {}", c.url)?;
            }
            None => writeln!(f, "security check: off, nothing is sent")?,
        }
        writeln!(f)?;
        match (&self.error_report.url, self.error_report.enabled) {
            (Some(url), true) => writeln!(
                f,
                "error reports: POST {url}\nsample report, after scrubbing (not sent):"
            )?,
            _ => writeln!(
                f,
                "error reports: off, nothing is sent (diagnostics off or no errors.dsn)\nsample report, after scrubbing, as it would be sent:"
            )?,
        }
        writeln!(f, "{}", self.error_report.envelope.trim_end())?;
        if let Some(p) = &self.payload_log {
            writeln!(f, "\npayload log: {}", p.display())?;
        }
        Ok(())
    }
}
