//! Dashboard sessions: the cookie, CSRF tokens, and the limit on failed logins.
//!
//! A session id is 256 random bits, sent to the browser once in an `HttpOnly`, `SameSite=Strict`
//! cookie (`Secure` under TLS) and stored only as its SHA-256, so sessions work across collectors
//! on one database and a database dump does not hold a usable cookie. A form that changes state
//! carries a CSRF token derived from the session id (HMAC-SHA-256 of a fixed label keyed with the
//! id): only a page served to the holder of the cookie can know it. The login form, which has no
//! session yet, uses a double-submit token: a random value both in a short-lived cookie and in the
//! form.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie.
pub const SESSION_COOKIE: &str = "beacon_session";
/// The login form's double-submit cookie.
pub const LOGIN_COOKIE: &str = "beacon_login";
/// How long a login form stays valid.
pub const LOGIN_FORM_SECS: u64 = 3600;

/// A new session id or login-form token: 64 hex characters (256 random bits).
pub fn new_id() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The CSRF token of the session whose id is `session_id`.
pub fn csrf_token(session_id: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(session_id.as_bytes()).expect("hmac takes any key length");
    mac.update(b"beacon dashboard csrf v1");
    hex::encode(mac.finalize().into_bytes())
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The value of cookie `name` in a `Cookie` request header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v.trim())
    })
}

/// A `Set-Cookie` value for a cookie of the dashboard: `HttpOnly`, `SameSite=Strict`, path `/ui`,
/// `Secure` under TLS; `max_age` 0 removes it.
pub fn set_cookie(name: &str, value: &str, max_age_secs: u64, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/ui; Max-Age={max_age_secs}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Failed logins per client address in fixed one-minute windows.
pub struct LoginLimiter {
    per_minute: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// Addresses tracked at most; older windows are dropped first when it is reached.
const MAX_TRACKED: usize = 100_000;
const WINDOW: Duration = Duration::from_secs(60);

impl LoginLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds until the window ends)` when `addr` has used up its failed attempts.
    pub fn check(&self, addr: IpAddr, now: Instant) -> Result<(), u64> {
        let w = self.windows.lock().expect("login limiter lock");
        match w.get(&addr) {
            Some((start, failed))
                if now.duration_since(*start) < WINDOW && *failed >= self.per_minute =>
            {
                let left = WINDOW.saturating_sub(now.duration_since(*start));
                Err(left.as_secs().max(1))
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed attempt of `addr`.
    pub fn failed(&self, addr: IpAddr, now: Instant) {
        let mut w = self.windows.lock().expect("login limiter lock");
        if w.len() >= MAX_TRACKED {
            w.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let entry = w.entry(addr).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }

    /// Forgets `addr`'s failures after a successful login.
    pub fn succeeded(&self, addr: IpAddr) {
        self.windows
            .lock()
            .expect("login limiter lock")
            .remove(&addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_by_exact_name() {
        let h = "a=1; beacon_session=abc; beacon_session_x=no; b=2";
        assert_eq!(cookie(h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(h, "b"), Some("2"));
        assert_eq!(cookie(h, "beacon"), None);
        assert_eq!(cookie("", SESSION_COOKIE), None);
    }

    #[test]
    fn set_cookie_is_strict_and_http_only() {
        let c = set_cookie(SESSION_COOKIE, "v", 60, true);
        assert_eq!(
            c,
            "beacon_session=v; Path=/ui; Max-Age=60; HttpOnly; SameSite=Strict; Secure"
        );
        assert!(!set_cookie(SESSION_COOKIE, "v", 60, false).contains("Secure"));
    }

    #[test]
    fn csrf_tokens_depend_on_the_session() {
        let (a, b) = (new_id(), new_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(csrf_token(&a), csrf_token(&a));
        assert_ne!(csrf_token(&a), csrf_token(&b));
        assert!(same_secret(&csrf_token(&a), &csrf_token(&a)));
        assert!(!same_secret(&csrf_token(&a), &csrf_token(&b)));
        assert!(!same_secret("abc", "abcd"));
    }

    #[test]
    fn failed_logins_are_limited_per_address_and_window() {
        let l = LoginLimiter::new(3);
        let t0 = Instant::now();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert_eq!(l.check(a, t0), Ok(()));
            l.failed(a, t0);
        }
        assert!(l.check(a, t0 + Duration::from_secs(1)).is_err());
        assert_eq!(l.check(b, t0), Ok(()), "another address is not limited");
        assert_eq!(
            l.check(a, t0 + WINDOW),
            Ok(()),
            "a new window starts afresh"
        );
        l.failed(b, t0);
        l.succeeded(b);
        assert_eq!(l.check(b, t0), Ok(()));
    }
}
