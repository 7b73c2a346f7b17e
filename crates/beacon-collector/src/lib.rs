//! The Beacon collector: the HTTP service behind `beacon serve`.
//!
//! Endpoints are thin: they validate with `beacon-wire`, hand writes to the [`ingest`] service (which
//! group-commits them to the [`beacon_store::Store`]) and answer from in-memory state or the store's
//! report queries. One error type, [`ApiError`], maps every failure to one HTTP status.

pub mod admin;
pub mod alerts;
pub mod cache;
pub mod clock;
pub mod config;
pub mod cpu;
pub mod decode;
pub mod error;
pub mod forget;
pub mod guards;
pub mod host;
pub mod http;
pub mod ingest;
pub mod keys;
pub mod metrics;
pub mod mobile;
pub mod ops;
pub mod outcome;
pub mod retention;
pub mod routes;
pub mod security;
pub mod sentry;
pub mod server;
pub mod ui;

pub use clock::{Clock, ManualClock, OffsetClock, SystemClock};
pub use config::Config;
pub use error::ApiError;
pub use server::{RunningCollector, StartError, open_store, start};

use std::sync::Arc;

/// What every handler can reach. One `Arc`, so cloning it per request is one atomic increment.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub store: Arc<dyn beacon_store::Store>,
    pub ingest: ingest::Ingest,
    pub bulletins: Arc<security::bulletins::BulletinCache>,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<Config>,
    pub keys: keys::KeyCache,
    pub limiter: sentry::RateLimiter,
    /// Failed dashboard logins per client address.
    pub ui_logins: ui::session::LoginLimiter,
    /// Mobile API keys by SHA-256: valid or not.
    pub api_keys: cache::TtlCache<bool>,
    /// The keyed hash that replaces `device_unique_id`.
    pub device_hasher: keys::DeviceHasher,
    /// Posts alert notifications (the job's and `beacon alert test`'s).
    pub alerts: alerts::Sender,
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}
