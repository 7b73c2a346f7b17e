//! Beacon's scrubbing rules, as pure functions: no I/O, no global state beyond compiled patterns.
//!
//! [`scrub_text`] redacts personal data and secrets from free text: e-mail addresses (`[email]`),
//! IPv4/IPv6 addresses (`[ip]`), credit-card numbers, IBANs, PEM keys, credentials in URLs, bearer tokens,
//! user home paths and values of secret-looking `key=value` pairs (`[Filtered]`). [`scrub_event`] applies
//! the same rules to every string of a [`StoredEvent`](beacon_wire::sentry::StoredEvent) in place, filters
//! values stored under secret-looking keys and drops `extra` entries that needed any redaction. Every
//! redaction is counted per [`Rule`] in [`ScrubStats`].
//!
//! | counter | what | becomes | not taken for it |
//! | --- | --- | --- | --- |
//! | `pem` | `-----BEGIN …-----` blocks, to `-----END …-----` or the end | `[Filtered]` | |
//! | `url_credentials` | `user:password` in `scheme://user:password@host` | `[Filtered]` | `http://host:8080/` |
//! | `secret_value` | value of `key=value`, `key: value`, `"key": "value"`, `'key': 'value'` with a secret-looking key ([`is_secret_key`]), with an auth scheme (`Basic …`) | `[Filtered]` | `auth::login`, `author: x`, `authenticate()` |
//! | `bearer` | token after `Bearer ` | `[Filtered]` | "bearer of bad news" |
//! | `email` | e-mail addresses | `[email]` | `app@1.2.3-beta.rc` (a release) |
//! | `home_path` | `<name>` in `/home/<name>`, `/Users/<name>`, `C:\Users\<name>` | `[Filtered]` | `https://host/home/index.html` |
//! | `iban` | IBANs passing mod-97 | `[Filtered]` | |
//! | `card` | 13–19 digits (single space/dash groups), IIN 2–6, passing Luhn | `[Filtered]` | Luhn failures, epoch millis, UUID parts, decimals |
//! | `ip` | IPv4, IPv6 (`Ipv6Addr` parses, has a digit, stands alone) | `[ip]` | `5.37.0.1234`, `1.2.3.4.5`, `12:30:45`, MACs, `Self::add`, `db::connect` |
//!
//! Scrubbing is idempotent (scrubbed text scrubs to itself, counting nothing) and cheap on clean input: a
//! single pass over the bytes, then a precise scan per remaining rule, decide which rules can possibly
//! match, so most patterns never run; text that needs no redaction is returned borrowed, without
//! allocating.

mod event;
mod rules;

use std::borrow::Cow;

pub use event::{scrub_event, scrub_value};

pub const FILTERED: &str = "[Filtered]";
pub const IP: &str = "[ip]";
pub const EMAIL: &str = "[email]";

/// Keys whose values are secrets, matched case-insensitively as substrings of a key (`-` counts as `_`).
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

/// One scrubbing rule; each redaction is counted under the rule that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// A PEM block (`-----BEGIN … KEY-----` … `-----END … KEY-----`), whole.
    Pem,
    /// The `user:password` of a URL (`scheme://user:password@host`).
    UrlCredentials,
    /// The value of a secret-looking `key=value` / `key: value` / `"key": "value"` pair in text, and any
    /// value stored under a secret-looking key in tags, contexts and `extra`.
    SecretValue,
    /// A token after `Bearer`.
    Bearer,
    /// An e-mail address (`[email]`).
    Email,
    /// The user name of a home path: `/home/<name>`, `/Users/<name>`, `C:\Users\<name>`.
    HomePath,
    /// An IBAN that passes the mod-97 check.
    Iban,
    /// A 13–19 digit card number (IIN starting 2–6) that passes the Luhn check.
    Card,
    /// An IPv4 or IPv6 address (`[ip]`).
    Ip,
}

impl Rule {
    /// Every rule, in the order the rules run.
    pub const ALL: [Rule; 9] = [
        Rule::Pem,
        Rule::UrlCredentials,
        Rule::SecretValue,
        Rule::Bearer,
        Rule::Email,
        Rule::HomePath,
        Rule::Iban,
        Rule::Card,
        Rule::Ip,
    ];

    /// The rule's counter name, as in [`ScrubStats`]: `pem`, `url_credentials`, `secret_value`, `bearer`,
    /// `email`, `home_path`, `iban`, `card`, `ip`.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Pem => "pem",
            Rule::UrlCredentials => "url_credentials",
            Rule::SecretValue => "secret_value",
            Rule::Bearer => "bearer",
            Rule::Email => "email",
            Rule::HomePath => "home_path",
            Rule::Iban => "iban",
            Rule::Card => "card",
            Rule::Ip => "ip",
        }
    }
}

/// Redactions counted per rule, plus the `extra` entries dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ScrubStats {
    pub pem: u64,
    pub url_credentials: u64,
    pub secret_value: u64,
    pub bearer: u64,
    pub email: u64,
    pub home_path: u64,
    pub iban: u64,
    pub card: u64,
    pub ip: u64,
    /// `extra` entries removed because their key looks secret or their value needed a redaction. Each one
    /// is also counted under the rule(s) that fired, so this is not part of [`ScrubStats::total`].
    pub extra_dropped: u64,
    /// Tags removed because their key names a host or a person ([`is_personal_tag_key`]). Not part of
    /// [`ScrubStats::total`] either: nothing was redacted, the tag is gone.
    pub tags_dropped: u64,
}

impl ScrubStats {
    /// All redactions, over every rule (`extra_dropped` is not added: each dropped entry already counted
    /// at least one redaction).
    pub fn total(&self) -> u64 {
        Rule::ALL.iter().map(|&r| self.get(r)).sum()
    }

    /// Whether nothing was redacted or dropped.
    pub fn is_empty(&self) -> bool {
        self.total() == 0 && self.extra_dropped == 0 && self.tags_dropped == 0
    }

    /// Redactions made by one rule.
    pub fn get(&self, rule: Rule) -> u64 {
        *self.slot(rule)
    }

    /// Counts `n` redactions for `rule`.
    pub fn add(&mut self, rule: Rule, n: u64) {
        *self.slot_mut(rule) += n;
    }

    /// Adds another tally to this one.
    pub fn merge(&mut self, other: &ScrubStats) {
        for rule in Rule::ALL {
            self.add(rule, other.get(rule));
        }
        self.extra_dropped += other.extra_dropped;
        self.tags_dropped += other.tags_dropped;
    }

    /// Every counter by name (the rules in [`Rule::ALL`] order, then `extra_dropped`, `tags_dropped`),
    /// zeros included.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Rule::ALL.iter().map(|&r| (r.name(), self.get(r))).chain([
            ("extra_dropped", self.extra_dropped),
            ("tags_dropped", self.tags_dropped),
        ])
    }

    fn slot(&self, rule: Rule) -> &u64 {
        match rule {
            Rule::Pem => &self.pem,
            Rule::UrlCredentials => &self.url_credentials,
            Rule::SecretValue => &self.secret_value,
            Rule::Bearer => &self.bearer,
            Rule::Email => &self.email,
            Rule::HomePath => &self.home_path,
            Rule::Iban => &self.iban,
            Rule::Card => &self.card,
            Rule::Ip => &self.ip,
        }
    }

    fn slot_mut(&mut self, rule: Rule) -> &mut u64 {
        match rule {
            Rule::Pem => &mut self.pem,
            Rule::UrlCredentials => &mut self.url_credentials,
            Rule::SecretValue => &mut self.secret_value,
            Rule::Bearer => &mut self.bearer,
            Rule::Email => &mut self.email,
            Rule::HomePath => &mut self.home_path,
            Rule::Iban => &mut self.iban,
            Rule::Card => &mut self.card,
            Rule::Ip => &mut self.ip,
        }
    }
}

/// Whether a key names a secret (`password`, `X-Auth-Token`, `X-Api-Key`, `sessionid` …): it contains one
/// of [`SECRET_KEY_WORDS`], ignoring ASCII case and taking `-` for `_`. `auth` does not count in `author`
/// or `authority` (it does in `authorization`, `authorize`, `oauth`). Allocation-free.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.as_bytes();
    SECRET_KEY_WORDS.iter().any(|w| {
        let w = w.as_bytes();
        key.len() >= w.len()
            && (0..=key.len() - w.len()).any(|i| {
                key[i..i + w.len()].iter().zip(w).all(|(&k, &c)| {
                    let k = k.to_ascii_lowercase();
                    k == c || (k == b'-' && c == b'_')
                }) && !(w == b"auth" && is_author(&key[i + w.len()..]))
            })
    })
}

/// Tag keys that name a host or a person. Some SDKs copy the machine's name into a tag
/// (`server_name`), others the user's; the top-level fields are never stored, and neither are these.
pub const PERSONAL_TAG_KEYS: &[&str] = &[
    "server_name",
    "servername",
    "hostname",
    "host_name",
    "host",
    "computer_name",
    "machine_name",
    "node_name",
    "user",
    "username",
    "user_name",
    "user_id",
    "userid",
    "user_email",
    "email",
    "e_mail",
    "ip",
    "ip_address",
    "ipaddress",
    "client_ip",
    "remote_addr",
    "remote_ip",
    "full_name",
    "first_name",
    "last_name",
    "phone",
    "login",
];

/// Whether a tag key names a host or a person: one of [`PERSONAL_TAG_KEYS`], ignoring ASCII case and
/// taking `-`, `.` and spaces for `_` (`Server-Name`, `user.email`).
pub fn is_personal_tag_key(key: &str) -> bool {
    let norm: String = key
        .trim()
        .chars()
        .map(|c| match c {
            '-' | '.' | ' ' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    PERSONAL_TAG_KEYS.contains(&norm.as_str())
}

/// Whether what follows `auth` makes it `author…` (but not `authoriz…` / `authoris…`).
fn is_author(rest: &[u8]) -> bool {
    let starts = |p: &[u8]| rest.len() >= p.len() && rest[..p.len()].eq_ignore_ascii_case(p);
    starts(b"or") && !starts(b"oriz") && !starts(b"oris")
}

/// Scrubs free text. Idempotent: scrubbing scrubbed text changes nothing more.
pub fn scrub_text(input: &str) -> Scrubbed {
    let mut stats = ScrubStats::default();
    let text = scrub_text_counted(input, &mut stats).into_owned();
    Scrubbed {
        text,
        redactions: stats.total() as usize,
    }
}

/// Scrubs free text, adding each redaction to `stats` under the rule that made it. Returns the input
/// borrowed, without allocating, when nothing needed redacting.
pub fn scrub_text_counted<'a>(input: &'a str, stats: &mut ScrubStats) -> Cow<'a, str> {
    rules::scrub(input, stats)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_tag_keys() {
        for k in [
            "server_name",
            "Server-Name",
            "hostname",
            "host",
            "user",
            "user.email",
            "IP",
            "ip_address",
        ] {
            assert!(is_personal_tag_key(k), "{k}");
        }
        for k in [
            "server_id",
            "browser",
            "hostile",
            "user_agent",
            "environment",
            "release",
        ] {
            assert!(!is_personal_tag_key(k), "{k}");
        }
    }

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
                "Authorization: [Filtered]",
                1,
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
    fn clean_text_is_borrowed() {
        let mut stats = ScrubStats::default();
        let s = "/usr/lib/python3.11/site-packages/requests/api.py";
        assert!(matches!(
            scrub_text_counted(s, &mut stats),
            Cow::Borrowed(_)
        ));
        assert!(stats.is_empty());
    }

    #[test]
    fn counts_per_rule() {
        let mut stats = ScrubStats::default();
        let out = scrub_text_counted(
            "alice@example.com bob@example.org 10.0.0.1 ::1 token=abc /home/carol/x",
            &mut stats,
        );
        assert_eq!(
            out,
            "[email] [email] [ip] [ip] token=[Filtered] /home/[Filtered]/x"
        );
        assert_eq!(stats.email, 2);
        assert_eq!(stats.ip, 2);
        assert_eq!(stats.secret_value, 1);
        assert_eq!(stats.home_path, 1);
        assert_eq!(stats.total(), 6);
        let names: Vec<_> = stats.iter().filter(|&(_, n)| n > 0).collect();
        assert_eq!(
            names,
            [
                ("secret_value", 1),
                ("email", 2),
                ("home_path", 1),
                ("ip", 2)
            ]
        );
    }

    #[test]
    fn truncates_on_char_boundary() {
        let s = scrub_truncated(&"é".repeat(100), 11);
        assert!(s.text.starts_with("ééééé"));
        assert!(s.text.ends_with("[truncated]"));
    }

    #[test]
    fn secret_keys() {
        assert!(is_secret_key("X-Api-Key"));
        assert!(is_secret_key("api_key"));
        assert!(is_secret_key("SESSIONID"));
        assert!(is_secret_key("X-Auth-Token"));
        assert!(is_secret_key("Private-Key"));
        assert!(is_secret_key("Authorization"));
        assert!(is_secret_key("oauth_state"));
        assert!(!is_secret_key("author"));
        assert!(!is_secret_key("commit_authority"));
        assert!(!is_secret_key("version"));
        assert!(!is_secret_key("api"));
        assert!(!is_secret_key(""));
    }
}
