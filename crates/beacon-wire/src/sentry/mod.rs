//! Sentry's wire formats: envelopes, store-endpoint events, auth headers, DSNs — and the projection of
//! an event onto what Beacon stores ([`StoredEvent`]): a whitelist, so `user`, `request`, breadcrumbs,
//! `server_name`, frame `vars` and everything else unnamed never get past this module.

pub mod event;

pub use event::{Level, Mechanism, StoredEvent, StoredException, StoredFrame};
