//! Sentry's wire formats: envelopes, store-endpoint events, auth headers, DSNs — and the projection of
//! an event onto what Beacon stores ([`StoredEvent`]): a whitelist, so `user`, `request`, breadcrumbs,
//! `server_name`, frame `vars` and everything else unnamed never get past this module.

pub mod auth;
pub mod envelope;
pub mod event;
pub mod grouping;

pub use event::{EventError, Level, Mechanism, StoredEvent, StoredException, StoredFrame, project};
