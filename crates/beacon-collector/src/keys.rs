//! Credentials and secrets, for every channel: admin tokens and mobile API keys (random, shown once,
//! stored only as a SHA-256 hash), the cache of Sentry DSN keys, and the collector's device-hash
//! secret. Checking them against a request is each channel's own business (`sentry`, `mobile`,
//! `admin`); making, hashing and caching them is here.

use beacon_store::{Store, StoreError};
use beacon_wire::admin::KeyInfo;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// Prefix of every admin token Beacon makes, so a leaked one is easy to recognise and scan for.
pub const TOKEN_PREFIX: &str = "bcn_";
/// Prefix of every mobile API key, so a leaked one is easy to recognise.
pub const API_KEY_PREFIX: &str = "bmk_";
/// Under this name the store keeps the device-hash secret, shared by every collector on a database.
const SECRET_NAME: &str = "mobile_device_hmac_sha256";

/// Sentry DSN public keys by key: the project they belong to, or `None` for an unknown key.
pub type KeyCache = crate::cache::TtlCache<Option<KeyInfo>>;

/// A new admin token: `bcn_` and 64 hex characters (256 random bits).
pub fn generate_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// The hex SHA-256 of a token or API key, as stored. Both carry 256 bits of entropy, so a fast hash is enough.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Replaces a raw `device_unique_id` by HMAC-SHA-256 with the collector's secret (hex).
#[derive(Clone)]
pub struct DeviceHasher(Hmac<Sha256>);

impl DeviceHasher {
    /// Loads the secret from the store, generating it (32 random bytes) on the very first start.
    pub async fn load(store: &dyn Store) -> Result<Self, StoreError> {
        let candidate: [u8; 32] = rand::random();
        let secret = store.secret(SECRET_NAME, &candidate).await?;
        Ok(Self::new(&secret))
    }

    pub fn new(secret: &[u8]) -> Self {
        DeviceHasher(Hmac::new_from_slice(secret).expect("hmac takes keys of any length"))
    }

    pub fn hash(&self, raw: &str) -> String {
        let mut mac = self.0.clone();
        mac.update(raw.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// A new API key: `bmk_` and 64 hex characters (256 random bits).
pub fn generate_api_key() -> String {
    format!(
        "{API_KEY_PREFIX}{}",
        hex::encode(rand::random::<[u8; 32]>())
    )
}
