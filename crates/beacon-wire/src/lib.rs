//! Beacon's wire formats and their validation. No I/O happens here.
//!
//! Every format Beacon speaks is parsed and built in exactly one module of this crate:
//!
//! * [`security`]: the `GET /security` query a Mattermost server sends, and the bulletin list it gets back;
//! * [`bulletin`]: security bulletins as the vendor publishes them;
//! * [`sentry`]: error reports as Sentry SDKs send them (`POST /api/{project_id}/envelope/` and
//!   `/store/`): auth headers and DSNs, envelopes, the projection of an event onto what is stored,
//!   and grouping into issues;
//! * [`mobile`]: the mobile app's trace batches (`POST /v1/mobile/metrics`);
//! * [`admin`]: the JSON bodies of the admin API (`/admin/v1/…`), shared by the collector and the CLI;
//! * [`alert`]: alert rules, their notifications and the signed webhook body.
//!
//! [`text`] holds the one rule every parser applies to the strings it hands on: no NUL reaches a store.

pub mod admin;
pub mod alert;
pub mod bulletin;
pub mod mobile;
pub mod security;
pub mod sentry;
pub mod text;

use serde::{Deserialize, Serialize};

/// A problem with one named field of an input. Rendered as `field: problem`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{field}: {problem}")]
pub struct FieldError {
    /// The field (query key, JSON key) that is wrong.
    pub field: String,
    /// What is wrong with it, lower case, no trailing period.
    pub problem: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}
