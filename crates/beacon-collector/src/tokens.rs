//! Admin tokens: random, shown once, stored only as a SHA-256 hash.

use sha2::{Digest, Sha256};

/// Prefix of every token Beacon makes, so a leaked one is easy to recognise and scan for.
pub const PREFIX: &str = "bcn_";

/// A new token: `bcn_` and 64 hex characters (256 random bits).
pub fn generate() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{PREFIX}{}", hex::encode(bytes))
}

/// The hex SHA-256 of a token, as stored. Tokens carry 256 bits of entropy, so a fast hash is enough.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
