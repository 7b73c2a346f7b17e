//! Beacon's scrubbing rules, as pure functions: no I/O, no global state beyond compiled patterns.
//!
//! [`scrub_text`] redacts personal data and secrets from free text: e-mail addresses (`[email]`),
//! IPv4/IPv6 addresses (`[ip]`), credit-card numbers, PEM keys, credentials in URLs, user home paths and
//! values of secret-looking `key=value` pairs (`[Filtered]`). Every redaction is counted so callers can
//! report what they removed.

use regex::{Captures, Regex};
use std::sync::LazyLock;

pub const FILTERED: &str = "[Filtered]";
pub const IP: &str = "[ip]";
pub const EMAIL: &str = "[email]";

/// Keys whose values are secrets, matched case-insensitively as substrings of a key.
pub const SECRET_KEY_WORDS: &[&str] = &[
    "password",
    "secret",
    "passwd",
    "api_key",
    "apikey",
    "auth",
    "credentials",
    "token",
    "bearer",
    "private_key",
    "cookie",
    "session",
];

/// Text after scrubbing, and how many redactions were made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scrubbed {
    pub text: String,
    pub redactions: usize,
}

/// Whether a key names a secret (`password`, `X-Auth-Token`, `sessionid` …).
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEY_WORDS.iter().any(|w| key.contains(w))
}

struct Rule {
    re: Regex,
    replace: fn(&Captures) -> Option<String>,
}

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let rule = |re: &str, replace: fn(&Captures) -> Option<String>| Rule {
        re: Regex::new(re).expect("scrub pattern"),
        replace,
    };
    vec![
        // PEM blocks, whole.
        rule(
            r"-----BEGIN [A-Z ]+-----[\s\S]*?(?:-----END [A-Z ]+-----|$)",
            |_| Some(FILTERED.into()),
        ),
        // user:password@ in URLs.
        rule(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@:]+:[^\s/@]+@", |c| {
            Some(format!("{}{FILTERED}@", &c[1]))
        }),
        // Bearer tokens without a key.
        rule(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+", |_| {
            Some(format!("Bearer {FILTERED}"))
        }),
        // Secret-looking key=value / key: value pairs (query strings, headers, logs).
        rule(
            r#"(?i)\b([a-z0-9_.-]*(?:password|secret|passwd|api_key|apikey|auth|credentials|token|bearer|private_key|cookie|session)[a-z0-9_.-]*)(\s*[=:]\s*|"\s*:\s*")([^\s&"',;]+)"#,
            |c| Some(format!("{}{}{FILTERED}", &c[1], &c[2])),
        ),
        rule(r"(?i)\b[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}\b", |_| {
            Some(EMAIL.into())
        }),
        // Home directories: keep the rest of the path, drop the user name.
        rule(r"(/home/|/Users/|(?i:[a-z]:\\+Users\\+))[^/\\\s]+", |c| {
            Some(format!("{}{FILTERED}", &c[1]))
        }),
        // IBAN.
        rule(
            r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
            |c| iban_valid(&c[0]).then(|| FILTERED.into()),
        ),
        // Card numbers: 13 to 19 digits, optionally grouped by spaces or dashes, passing Luhn.
        rule(r"\b(?:[0-9][ -]?){12,18}[0-9]\b", |c| {
            luhn_valid(&c[0]).then(|| FILTERED.into())
        }),
        rule(
            r"\b(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\b",
            |_| Some(IP.into()),
        ),
        // IPv6: at least three groups with colons, or a :: compression with hex around it.
        rule(
            r"(?i)(?:\b[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){7}\b|\b(?:[0-9a-f]{1,4}:){1,7}:(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6})?|::(?:[0-9a-f]{1,4}:){0,6}[0-9a-f]{1,4}\b)",
            |c| (c[0].len() > 2).then(|| IP.into()),
        ),
    ]
});

/// Scrubs free text. Idempotent: scrubbing scrubbed text changes nothing more.
pub fn scrub_text(input: &str) -> Scrubbed {
    let mut text = input.to_string();
    let mut redactions = 0;
    for rule in RULES.iter() {
        if !rule.re.is_match(&text) {
            continue;
        }
        let replaced = rule
            .re
            .replace_all(&text, |c: &Captures| match (rule.replace)(c) {
                Some(r) if r != c[0] => {
                    redactions += 1;
                    r
                }
                _ => c[0].to_string(),
            });
        text = replaced.into_owned();
    }
    Scrubbed { text, redactions }
}

/// Scrubs, then truncates to at most `max_bytes` (on a character boundary), marking the cut.
pub fn scrub_truncated(input: &str, max_bytes: usize) -> Scrubbed {
    let mut s = scrub_text(input);
    if s.text.len() > max_bytes {
        let mut cut = max_bytes;
        while !s.text.is_char_boundary(cut) {
            cut -= 1;
        }
        s.text.truncate(cut);
        s.text.push_str("…[truncated]");
    }
    s
}

fn luhn_valid(candidate: &str) -> bool {
    let digits: Vec<u32> = candidate.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn iban_valid(candidate: &str) -> bool {
    let s: String = candidate.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&s.len()) {
        return false;
    }
    let rearranged = format!("{}{}", &s[4..], &s[..4]);
    let mut rem: u64 = 0;
    for c in rearranged.chars() {
        let v = match c.to_digit(36) {
            Some(v) => v as u64,
            None => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_every_canary() {
        let cases = [
            ("mail alice@example.com now", "mail [email] now", 1),
            ("from 192.168.1.20 and 2001:db8::1", "from [ip] and [ip]", 2),
            ("card 4111 1111 1111 1111 ok", "card [Filtered] ok", 1),
            ("iban DE89 3704 0044 0532 0130 00", "iban [Filtered]", 1),
            (
                "https://bob:hunter2@db.example/x",
                "https://[Filtered]@db.example/x",
                1,
            ),
            ("password=hunter2&x=1", "password=[Filtered]&x=1", 1),
            ("X-Auth-Token: abc123", "X-Auth-Token: [Filtered]", 1),
            (
                "Authorization: Bearer abc.def",
                "Authorization: [Filtered] [Filtered]",
                2,
            ),
            ("/home/alice/src/main.rs", "/home/[Filtered]/src/main.rs", 1),
            (r"C:\Users\alice\app", r"C:\Users\[Filtered]\app", 1),
            (
                "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----",
                "[Filtered]",
                1,
            ),
            (
                "version 5.37.0 build 1234 at 12:30",
                "version 5.37.0 build 1234 at 12:30",
                0,
            ),
            (
                "card 4111 1111 1111 1112 fails luhn",
                "card 4111 1111 1111 1112 fails luhn",
                0,
            ),
        ];
        for (input, want, n) in cases {
            let got = scrub_text(input);
            assert_eq!(got.text, want, "{input}");
            assert_eq!(got.redactions, n, "{input}");
            assert_eq!(scrub_text(&got.text).text, got.text, "idempotent: {input}");
        }
    }

    #[test]
    fn truncates_on_char_boundary() {
        let s = scrub_truncated(&"é".repeat(100), 11);
        assert!(s.text.starts_with("ééééé"));
        assert!(s.text.ends_with("[truncated]"));
    }

    #[test]
    fn secret_keys() {
        assert!(is_secret_key("X-Api-Key") || is_secret_key("api_key"));
        assert!(is_secret_key("SESSIONID"));
        assert!(!is_secret_key("version"));
    }
}
