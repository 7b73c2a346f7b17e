//! The security update check: `GET /security?<query>` and its answer.
//!
//! The query is the one a Mattermost server builds with Go's `url.Values.Encode` (keys sorted:
//! `auc, b, be, db, id, os, tc, uc, ut`), plus `dbv` and `lc`, which Mattermost's telemetry
//! documentation lists but its code omits. [`parse_query`] is strict: every known key is validated,
//! unknown keys are counted and ignored.

use crate::FieldError;
use serde::{Deserialize, Serialize};

/// Longest query string accepted. A Mattermost query is about 150 bytes; a `dbv` of 64 characters,
/// fully percent-encoded, still fits with room to spare.
pub const MAX_QUERY_BYTES: usize = 2048;

/// Longest build suffix in `b` (`X.Y.Z.BUILD`).
pub const MAX_BUILD_LEN: usize = 64;

/// One validated security check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityCheck {
    /// `id`: the server's diagnostic id, 26 chars `[a-z0-9]`.
    pub server_id: String,
    /// `b`, first three parts: `X.Y.Z`.
    pub version: semver::Version,
    /// `b`, fourth part when present.
    pub build: Option<String>,
    /// `be`: enterprise build.
    pub enterprise: bool,
    /// `os`.
    pub os: String,
    /// `db`.
    pub db: String,
    /// `dbv`.
    pub db_version: Option<String>,
    /// `tc`.
    pub teams: Option<i64>,
    /// `uc`.
    pub users: Option<i64>,
    /// `auc`.
    pub activated_users: Option<i64>,
    /// `ut`: the unit tests have been run (a test install).
    pub unit_tests: bool,
    /// `lc`: the server's last check, Unix milliseconds.
    pub last_check_ms: Option<i64>,
}

/// The result of parsing a query: the check and how many unknown keys were ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCheck {
    pub check: SecurityCheck,
    pub unknown_keys: usize,
}

/// One element of the `/security` answer. Mattermost servers read `id` and `applies_to_version` and act
/// only when the latter equals their own version; the other keys are for humans and other clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulletinNotice {
    pub id: String,
    pub applies_to_version: String,
    pub severity: crate::bulletin::Severity,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub fixed_in: Option<String>,
}

const KNOWN_KEYS: [&str; 11] = [
    "auc", "b", "be", "db", "dbv", "id", "lc", "os", "tc", "uc", "ut",
];

/// What a dead letter may keep of a refused query: only the keys an accepted check keeps, each value
/// cut to [`MAX_BUILD_LEN`] characters (storable), re-encoded in the order sent; other keys only
/// counted (`unknown_keys=N`). Values still need scrubbing: this drops what is never kept, it does
/// not judge what is.
pub fn dead_letter_view(raw: &str) -> String {
    let raw = &raw[..floor_char_boundary(raw, MAX_QUERY_BYTES)];
    let mut out = form_urlencoded::Serializer::new(String::new());
    let mut unknown = 0usize;
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        if KNOWN_KEYS.contains(&k.as_ref()) {
            let v: String = v.chars().take(MAX_BUILD_LEN).collect();
            out.append_pair(&k, &crate::text::storable(&v));
        } else {
            unknown += 1;
        }
    }
    if unknown > 0 {
        out.append_pair("unknown_keys", &unknown.to_string());
    }
    out.finish()
}

fn floor_char_boundary(s: &str, mut at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Parses and validates a raw query string (without the `?`).
///
/// Errors name the first offending field in the order of the key table in `docs/protocol.md`;
/// `query` is used for problems with the string as a whole (size, encoding).
pub fn parse_query(raw: &str) -> Result<ParsedCheck, FieldError> {
    if raw.len() > MAX_QUERY_BYTES {
        return Err(FieldError::new(
            "query",
            format!(
                "query string is {} bytes, at most {MAX_QUERY_BYTES} are accepted",
                raw.len()
            ),
        ));
    }
    let mut values: [Option<std::borrow::Cow<'_, str>>; KNOWN_KEYS.len()] = Default::default();
    let mut unknown_keys = 0;
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode_component(k).map_err(|p| FieldError::new("query", format!("key: {p}")))?;
        // Values of unknown keys are ignored, not decoded: they cannot make a check invalid.
        match KNOWN_KEYS.iter().position(|known| *known == key) {
            Some(i) if values[i].is_some() => {
                return Err(FieldError::new(key.into_owned(), "given more than once"));
            }
            Some(i) => {
                values[i] =
                    Some(decode_component(v).map_err(|p| FieldError::new(key.into_owned(), p))?);
            }
            None => unknown_keys += 1,
        }
    }
    let get = |key: &str| -> Option<&str> {
        let i = KNOWN_KEYS
            .iter()
            .position(|k| *k == key)
            .expect("known key");
        values[i].as_deref()
    };
    let required = |key: &'static str| get(key).ok_or_else(|| FieldError::new(key, "is required"));

    let server_id = parse_server_id(required("id")?)?;
    let (version, build) = parse_build(required("b")?)?;
    let enterprise = match required("be")? {
        "true" => true,
        "false" => false,
        other => {
            return Err(FieldError::new(
                "be",
                format!("must be true or false, got {:?}", clip(other)),
            ));
        }
    };
    let os = parse_token("os", required("os")?)?;
    let db = parse_token("db", required("db")?)?;
    let db_version = get("dbv").map(parse_db_version).transpose()?;
    let teams = get("tc").map(|v| parse_count("tc", v)).transpose()?;
    let users = get("uc").map(|v| parse_count("uc", v)).transpose()?;
    let activated_users = get("auc").map(|v| parse_count("auc", v)).transpose()?;
    let unit_tests = match get("ut") {
        None | Some("0") => false,
        Some("1") => true,
        Some(other) => {
            return Err(FieldError::new(
                "ut",
                format!("must be 0 or 1, got {:?}", clip(other)),
            ));
        }
    };
    let last_check_ms = get("lc").map(|v| parse_count("lc", v)).transpose()?;
    Ok(ParsedCheck {
        check: SecurityCheck {
            server_id,
            version,
            build,
            enterprise,
            os,
            db,
            db_version,
            teams,
            users,
            activated_users,
            unit_tests,
            last_check_ms,
        },
        unknown_keys,
    })
}

/// Builds the query exactly as a Mattermost server does (`url.Values.Encode`: keys sorted, form
/// encoding), with `dbv` and `lc` added when known.
pub fn build_query(check: &SecurityCheck) -> String {
    let b = match &check.build {
        Some(build) => format!("{}.{build}", check.version),
        None => check.version.to_string(),
    };
    let count = |v: Option<i64>| v.unwrap_or(0).to_string();
    let mut pairs: Vec<(&str, String)> = vec![
        ("auc", count(check.activated_users)),
        ("b", b),
        ("be", check.enterprise.to_string()),
        ("db", check.db.clone()),
        ("id", check.server_id.clone()),
        ("os", check.os.clone()),
        ("tc", count(check.teams)),
        ("uc", count(check.users)),
        ("ut", if check.unit_tests { "1" } else { "0" }.to_string()),
    ];
    if let Some(dbv) = &check.db_version {
        pairs.push(("dbv", dbv.clone()));
    }
    if let Some(lc) = check.last_check_ms {
        pairs.push(("lc", lc.to_string()));
    }
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A diagnostic id: 26 characters `[a-z0-9]` (the field is named `id`, as in the query).
pub fn parse_server_id(v: &str) -> Result<String, FieldError> {
    let ok_chars = v
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if v.len() != 26 || !ok_chars {
        return Err(FieldError::new(
            "id",
            format!(
                "must be 26 characters [a-z0-9], got {} characters{}",
                v.chars().count(),
                if ok_chars {
                    ""
                } else {
                    " with others than [a-z0-9]"
                }
            ),
        ));
    }
    Ok(v.to_string())
}

fn parse_build(v: &str) -> Result<(semver::Version, Option<String>), FieldError> {
    let bad = || {
        FieldError::new(
            "b",
            format!("must be X.Y.Z or X.Y.Z.BUILD, got {:?}", clip(v)),
        )
    };
    let mut parts = v.splitn(4, '.');
    let mut num = || -> Result<u64, FieldError> {
        let p = parts.next().ok_or_else(bad)?;
        if p.is_empty()
            || !p.bytes().all(|c| c.is_ascii_digit())
            || (p.len() > 1 && p.starts_with('0'))
        {
            return Err(bad());
        }
        p.parse().map_err(|_| bad())
    };
    let (x, y, z) = (num()?, num()?, num()?);
    let build = match parts.next() {
        None => None,
        Some(b)
            if !b.is_empty()
                && b.len() <= MAX_BUILD_LEN
                && b.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-') =>
        {
            Some(b.to_string())
        }
        Some(_) => {
            return Err(FieldError::new(
                "b",
                format!(
                    "build part must be 1 to {MAX_BUILD_LEN} characters [A-Za-z0-9_-], got {:?}",
                    clip(v)
                ),
            ));
        }
    };
    Ok((semver::Version::new(x, y, z), build))
}

fn parse_token(field: &str, v: &str) -> Result<String, FieldError> {
    if v.is_empty()
        || v.len() > 32
        || !v
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
    {
        return Err(FieldError::new(
            field,
            format!("must be 1 to 32 characters [a-z0-9_], got {:?}", clip(v)),
        ));
    }
    Ok(v.to_string())
}

fn parse_db_version(v: &str) -> Result<String, FieldError> {
    if v.len() > 64 || !v.bytes().all(|c| (0x20..=0x7e).contains(&c)) {
        return Err(FieldError::new(
            "dbv",
            "must be at most 64 printable ASCII characters",
        ));
    }
    Ok(v.to_string())
}

fn parse_count(field: &str, v: &str) -> Result<i64, FieldError> {
    if v.is_empty() || !v.bytes().all(|c| c.is_ascii_digit()) {
        return Err(FieldError::new(
            field,
            format!("must be an integer >= 0, got {:?}", clip(v)),
        ));
    }
    v.parse::<i64>().map_err(|_| {
        FieldError::new(
            field,
            format!(
                "must be at most {}, got a {}-digit number",
                i64::MAX,
                v.len()
            ),
        )
    })
}

/// Strict `application/x-www-form-urlencoded` decoding of one component: `+` is a space, `%` must be
/// followed by two hex digits, and the result must be UTF-8. Borrows when there is nothing to decode.
fn decode_component(s: &str) -> Result<std::borrow::Cow<'_, str>, String> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Ok(std::borrow::Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| {
                    let h = std::str::from_utf8(h).ok()?;
                    u8::from_str_radix(h, 16)
                        .ok()
                        .filter(|_| h.bytes().all(|c| c.is_ascii_hexdigit()))
                });
                match hex {
                    Some(b) => out.push(b),
                    None => return Err(format!("invalid percent-encoding at byte {i}")),
                }
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out)
        .map(std::borrow::Cow::Owned)
        .map_err(|_| "percent-encoding does not decode to utf-8".to_string())
}

/// Shortens a value quoted in an error message.
fn clip(v: &str) -> String {
    v.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "abcdefghijklmnopqrstuvwxyz";

    fn mattermost_query() -> String {
        format!("auc=37&b=5.37.0.1234&be=true&db=postgres&id={ID}&os=linux&tc=3&uc=42&ut=0")
    }

    #[test]
    fn parses_mattermost_query() {
        let p = parse_query(&mattermost_query()).unwrap();
        assert_eq!(p.unknown_keys, 0);
        let c = p.check;
        assert_eq!(c.server_id, ID);
        assert_eq!(c.version, semver::Version::new(5, 37, 0));
        assert_eq!(c.build.as_deref(), Some("1234"));
        assert!(c.enterprise);
        assert_eq!(
            (c.teams, c.users, c.activated_users),
            (Some(3), Some(42), Some(37))
        );
        assert!(!c.unit_tests);
        assert_eq!(c.db_version, None);
    }

    #[test]
    fn build_query_round_trips_in_mattermost_order() {
        let mut c = parse_query(&mattermost_query()).unwrap().check;
        assert_eq!(build_query(&c), mattermost_query());
        c.db_version = Some("15.2 (Debian)".into());
        c.last_check_ms = Some(1_764_400_000_000);
        let q = build_query(&c);
        assert_eq!(
            q,
            format!(
                "auc=37&b=5.37.0.1234&be=true&db=postgres&dbv=15.2+%28Debian%29&id={ID}&lc=1764400000000&os=linux&tc=3&uc=42&ut=0"
            )
        );
        assert_eq!(parse_query(&q).unwrap().check, c);
    }

    #[test]
    fn unknown_keys_are_counted() {
        let q = format!("{}&foo=1&bar&baz=%zz", mattermost_query());
        assert_eq!(parse_query(&q).unwrap().unknown_keys, 3);
    }

    #[test]
    fn bad_inputs_name_their_field() {
        let base = mattermost_query();
        let cases: Vec<(String, &str)> = vec![
            (base.replace(&format!("id={ID}&"), ""), "id"),
            (base.replace(ID, &ID[..25]), "id"),
            (base.replace(ID, &ID.to_uppercase()), "id"),
            (base.replace("b=5.37.0.1234", "b=5.x"), "b"),
            (base.replace("b=5.37.0.1234", "b=5.37"), "b"),
            (base.replace("b=5.37.0.1234", "b=5.37.0.a.b"), "b"),
            (base.replace("b=5.37.0.1234", "b=05.37.0"), "b"),
            (base.replace("uc=42", "uc=-1"), "uc"),
            (base.replace("uc=42", "uc=18446744073709551616"), "uc"),
            (base.replace("ut=0", "ut=2"), "ut"),
            (base.replace("be=true", "be=maybe"), "be"),
            (base.replace("os=linux", "os=Linux"), "os"),
            (base.replace("db=postgres", "db="), "db"),
            (format!("{base}&dbv=%01"), "dbv"),
            (format!("{base}&lc=yesterday"), "lc"),
            (format!("{base}&uc=1"), "uc"),
            (format!("{base}&x={}", "a".repeat(MAX_QUERY_BYTES)), "query"),
            (base.replace("os=linux", "os=%zz"), "os"),
            (base.replace("os=linux", "os=%4"), "os"),
            (format!("{base}&%ff=1"), "query"),
        ];
        for (q, field) in cases {
            let err = parse_query(&q).expect_err(&q);
            assert_eq!(err.field, field, "{q}: {err}");
            assert!(!err.problem.is_empty());
        }
    }

    #[test]
    fn dead_letter_view_keeps_only_known_keys() {
        let v = dead_letter_view(
            "id=abc&b=5.37.0&email=alice%40example.com&host=db01.corp&dbv=%00x&tc=notanumber",
        );
        assert_eq!(
            v,
            "id=abc&b=5.37.0&dbv=%EF%BF%BDx&tc=notanumber&unknown_keys=2"
        );
        let long = format!("b={}", "9".repeat(500));
        assert_eq!(dead_letter_view(&long).len(), 2 + MAX_BUILD_LEN);
    }
}
