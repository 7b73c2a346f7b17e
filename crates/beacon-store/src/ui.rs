//! The dashboard's storage: sessions, and the public handles of admin tokens.
//!
//! A session is a row, not memory, so that every collector on one database knows it. The browser's
//! cookie holds a random session id; the store holds only its SHA-256 (`id_hash`) and the hash of
//! the admin token it was made from, so revoking the token ends its sessions.

use crate::{Result, StoreError};
use chrono::{DateTime, Utc};

/// A dashboard session. Times are kept to the millisecond.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiSession {
    /// SHA-256 (hex) of the random session id; the plain id is only in the browser's cookie.
    pub id_hash: String,
    /// The label of the admin token the session was made from, as it was at login.
    pub token_label: String,
    pub created_at: DateTime<Utc>,
    /// The session is over from this instant on.
    pub expires_at: DateTime<Utc>,
}

/// How many hex characters of a token's hash make its public id.
pub const ADMIN_TOKEN_ID_LEN: usize = 12;

/// The public id of an admin token: the first [`ADMIN_TOKEN_ID_LEN`] characters of its hash (the
/// whole string when shorter).
pub fn admin_token_id(token_hash: &str) -> String {
    token_hash
        .get(..ADMIN_TOKEN_ID_LEN)
        .unwrap_or(token_hash)
        .to_string()
}

/// Accepts exactly [`ADMIN_TOKEN_ID_LEN`] lowercase hex characters, else
/// [`StoreError::InvalidInput`].
pub fn check_admin_token_id(id: &str) -> Result<()> {
    if id.len() == ADMIN_TOKEN_ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err(StoreError::InvalidInput(format!(
            "an admin token id is {ADMIN_TOKEN_ID_LEN} lowercase hex characters, got {:?}",
            id.chars().take(40).collect::<String>()
        )))
    }
}

/// What [`revoke_admin_token`](crate::Store::revoke_admin_token) decides from the hashes of every
/// stored token: the one hash to delete, none (`Ok(None)`), or a refusal — the id is ambiguous, or
/// the token is the last one (nobody could log in any more). Every backend calls it inside the
/// transaction that deletes.
pub fn choose_token_to_revoke<'a>(
    id: &str,
    hashes: impl IntoIterator<Item = &'a str>,
) -> Result<Option<&'a str>> {
    let mut total = 0usize;
    let mut found = Vec::new();
    for h in hashes {
        total += 1;
        if h.starts_with(id) {
            found.push(h);
        }
    }
    match found.as_slice() {
        [] => Ok(None),
        [one] if total > 1 => Ok(Some(*one)),
        [_] => Err(StoreError::Conflict(
            "refusing to revoke the last admin token: create another one first".into(),
        )),
        many => Err(StoreError::Conflict(format!(
            "admin token id {id} matches {} tokens",
            many.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids() {
        let h = "0123456789abcdef".repeat(4);
        assert_eq!(admin_token_id(&h), "0123456789ab");
        assert_eq!(admin_token_id("abc"), "abc");
        assert!(check_admin_token_id("0123456789ab").is_ok());
        for bad in [
            "",
            "0123456789a",
            "0123456789abc",
            "0123456789AB",
            "0123456789ag",
            "0123456789a\u{e9}",
        ] {
            assert!(
                matches!(check_admin_token_id(bad), Err(StoreError::InvalidInput(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn revocation_choice() {
        let (a, b) = ("aaaaaaaaaaaa1", "bbbbbbbbbbbb2");
        let id = "aaaaaaaaaaaa";
        assert_eq!(choose_token_to_revoke(id, [a, b]).unwrap(), Some(a));
        assert_eq!(
            choose_token_to_revoke("cccccccccccc", [a, b]).unwrap(),
            None
        );
        assert!(matches!(
            choose_token_to_revoke(id, [a]),
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            choose_token_to_revoke(id, [a, "aaaaaaaaaaaa3", b]),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(choose_token_to_revoke(id, []).unwrap(), None);
    }
}
