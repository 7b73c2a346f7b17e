//! The text rules. Each one is a pattern compiled once, a cheap trigger that rules it out from what a single
//! pass over the bytes found (no `@`: no e-mail; fewer than 13 digits: no card …), and a check that decides
//! which part of a match, if any, is redacted.

use crate::{EMAIL, FILTERED, IP, Rule, ScrubStats, is_secret_key};
use regex::{Captures, Regex};
use std::borrow::Cow;
use std::net::Ipv6Addr;
use std::ops::Range;
use std::sync::{LazyLock, OnceLock};

/// What one pass over a text's bytes found: enough to skip most rules. The rules that pass it run a more
/// precise scan (their `applies`) before their pattern.
#[derive(Default)]
struct Shape {
    digits: u32,
    colons: u32,
    dots: u32,
    at: bool,
    eq: bool,
    slash: bool,
    dash: bool,
    space: bool,
    upper: bool,
}

impl Shape {
    fn of(text: &str) -> Shape {
        let mut s = Shape::default();
        for &b in text.as_bytes() {
            match b {
                b'0'..=b'9' => s.digits += 1,
                b':' => s.colons += 1,
                b'.' => s.dots += 1,
                b'A'..=b'Z' => s.upper = true,
                b'@' => s.at = true,
                b'=' => s.eq = true,
                b'/' => s.slash = true,
                b'-' => s.dash = true,
                b' ' | b'\t' | b'\n' | b'\r' => s.space = true,
                _ => {}
            }
        }
        s
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// A secret-looking key right before some `=` or `:` (what the key=value pattern needs).
fn has_secret_pair(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().any(|(i, &b)| {
        if b != b'=' && b != b':' {
            return false;
        }
        let mut end = i;
        while end > 0 && matches!(bytes[end - 1], b' ' | b'\t') {
            end -= 1;
        }
        if end > 0 && matches!(bytes[end - 1], b'"' | b'\'') {
            end -= 1;
        }
        if end > 0 && bytes[end - 1] == b'\\' {
            end -= 1;
        }
        let mut start = end;
        while start > 0
            && (is_word_byte(bytes[start - 1]) || matches!(bytes[start - 1], b'.' | b'-'))
        {
            start -= 1;
        }
        start < end && is_secret_key(&text[start..end])
    })
}

/// 13 or more digits in a run that starts at a word boundary, with single spaces or dashes between them.
fn has_card_run(text: &str) -> bool {
    let (mut run, mut prev) = (0u32, 0u8);
    // Digits glued to a letter (`a716`) cannot start a card; a separator after them can.
    let mut glued = false;
    for &b in text.as_bytes() {
        if b.is_ascii_digit() {
            if run == 0 && !prev.is_ascii_digit() {
                glued = is_word_byte(prev);
            }
            if !glued {
                run += 1;
                if run >= 13 {
                    return true;
                }
            }
        } else if (b == b' ' || b == b'-') && prev.is_ascii_digit() {
            if glued {
                glued = false;
                run = 0;
            }
        } else {
            run = 0;
            glued = false;
        }
        prev = b;
    }
    false
}

/// A run of hex digits and colons with a digit in it and either `::` or six colons, not glued to a word or
/// a `.` before it: what an IPv6 address needs (MAC addresses have five colons; `Self::add2`, `v0::x`
/// are glued).
fn has_ipv6_run(text: &str) -> bool {
    let in_run = |b: u8| b.is_ascii_hexdigit() || b == b':';
    let (mut colons, mut double, mut digit, mut glued, mut prev) = (0u32, false, false, false, 0u8);
    for &b in text.as_bytes() {
        if !in_run(b) {
            (colons, double, digit) = (0, false, false);
        } else {
            if !in_run(prev) {
                glued = is_word_byte(prev) || prev == b'.';
            }
            if b == b':' {
                colons += 1;
                double |= prev == b':';
            } else {
                digit |= b.is_ascii_digit();
            }
            if !glued && digit && (double || colons >= 6) {
                return true;
            }
        }
        prev = b;
    }
    false
}

/// `d.d.d.d`: four dot-separated groups of one to three digits.
fn has_dotted_quad(text: &str) -> bool {
    // Dots seen after 1–3 digit groups in the current run, and the length of the current group.
    let (mut dots, mut len) = (0u32, 0u32);
    for &b in text.as_bytes() {
        if b.is_ascii_digit() {
            len += 1;
            continue;
        }
        if dots >= 3 && (1..=3).contains(&len) {
            return true;
        }
        dots = match (b, len) {
            (b'.', 1..=3) => dots + 1,
            _ => 0,
        };
        len = 0;
    }
    dots >= 3 && (1..=3).contains(&len)
}

/// Two upper-case letters then two digits: how an IBAN starts.
fn has_iban_start(text: &str) -> bool {
    text.as_bytes().windows(4).any(|w| {
        w[0].is_ascii_uppercase()
            && w[1].is_ascii_uppercase()
            && w[2].is_ascii_digit()
            && w[3].is_ascii_digit()
    })
}

/// Whether `hay` contains `word` (lower-case ASCII) in any ASCII case.
fn contains_word(hay: &str, word: &str) -> bool {
    hay.as_bytes()
        .windows(word.len())
        .any(|w| w.eq_ignore_ascii_case(word.as_bytes()))
}

/// A rule's pattern, compiled the first time a text passes the rule's cheap test: a process that
/// scrubs only a few kinds of text (an agent's error reports) never builds the other rules'
/// automata, which are most of the scrubber's memory.
struct LazyRegex {
    build: fn() -> Regex,
    compiled: OnceLock<Regex>,
}

impl LazyRegex {
    const fn new(build: fn() -> Regex) -> LazyRegex {
        LazyRegex {
            build,
            compiled: OnceLock::new(),
        }
    }

    fn get(&self) -> &Regex {
        self.compiled.get_or_init(self.build)
    }
}

struct TextRule {
    rule: Rule,
    /// What a redacted range becomes.
    with: &'static str,
    re: LazyRegex,
    /// Whether the rule can match at all; `false` skips the regex (and never compiles it).
    applies: fn(&Shape, &str) -> bool,
    /// The range of the haystack to redact for one match, if any.
    redact: fn(&str, &Captures<'_>) -> Option<Range<usize>>,
}

/// ASCII word boundary: keeps the lazy DFA usable on non-ASCII text, unlike Unicode `\b`.
macro_rules! pattern {
    ($($part:expr),+ $(,)?) => {
        LazyRegex::new(|| {
            Regex::new(&[$($part),+].concat().replace(r"\b", r"(?-u:\b)")).expect("scrub pattern")
        })
    };
}

static RULES: LazyLock<Vec<TextRule>> = LazyLock::new(|| {
    vec![
        // PEM blocks, whole (to the end of the text when the END line is missing).
        TextRule {
            rule: Rule::Pem,
            with: FILTERED,
            re: pattern!(r"-----BEGIN [A-Z0-9 ]+-----[\s\S]*?(?:-----END [A-Z0-9 ]+-----|\z)"),
            applies: |s, t| s.dash && t.contains("-----BEGIN "),
            redact: whole,
        },
        // user:password@ in URLs; the password runs to the last `@` of the authority.
        TextRule {
            rule: Rule::UrlCredentials,
            with: FILTERED,
            re: pattern!(r"(?i)\b[a-z][a-z0-9+.-]*://([^\s/?#@:]+:[^\s/?#]*)@"),
            applies: |s, _| s.at && s.colons > 0 && s.slash,
            redact: group1,
        },
        // Secret-looking key=value / key: value / "key": "value" pairs (query strings, headers, logs, JSON,
        // Python reprs). `auth::login` is a path, not a pair: the value cannot start with `:`. An
        // authorization scheme before the value (`Basic dXNl…`) goes with it.
        TextRule {
            rule: Rule::SecretValue,
            with: FILTERED,
            re: pattern!(
                r"(?i)\b([a-z0-9_.-]*(?:password|secret|passwd|api[_-]?key|auth|credentials|token|bearer|private[_-]key|cookie|session)[a-z0-9_.-]*)",
                r#"\\?["']?[ \t]*[=:][ \t]*\\?["']?"#,
                r#"((?:(?:bearer|basic|digest|token)[ \t]+)?[^\s&"',;:\\\[\](){}<>][^\s&"',;\\)\]}>]*)"#,
            ),
            applies: |s, t| (s.eq || s.colons > 0) && has_secret_pair(t),
            redact: |_, c| is_secret_key(&c[1]).then(|| c.get(2).expect("value").range()),
        },
        // Bearer tokens without a key; the token has to look like one (not "bearer of bad news").
        TextRule {
            rule: Rule::Bearer,
            with: FILTERED,
            re: pattern!(r"(?i)\bbearer[ \t]+([A-Za-z0-9._~+/=-]+)"),
            applies: |s, t| s.space && contains_word(t, "bearer"),
            redact: |_, c| {
                let token = c.get(1)?;
                let t = token.as_str();
                (t.len() >= 8 || t.bytes().any(|b| !b.is_ascii_alphabetic())).then(|| token.range())
            },
        },
        TextRule {
            rule: Rule::Email,
            with: EMAIL,
            re: pattern!(r"(?i)\b[a-z0-9._%+-]+@([a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,})\b"),
            applies: |s, _| s.at && s.dots > 0,
            redact: |_, c| {
                // `app@1.2.3-beta.rc` is a release, not an address: no domain has two numeric labels.
                let numeric = c[1]
                    .split('.')
                    .filter(|l| l.bytes().all(|b| b.is_ascii_digit()))
                    .count();
                (numeric < 2).then(|| c.get(0).expect("group 0").range())
            },
        },
        // Home directories: keep the rest of the path, drop the user name. `/home/` must start a path
        // (not `https://host/home/index.html`): checked on the character before it rather than matched,
        // so that a user name ending in a delimiter does not hide the next path (`/home/a|/home/b`).
        TextRule {
            rule: Rule::HomePath,
            with: FILTERED,
            re: pattern!(
                r"(?:/home/|/Users/|(?i:\b[a-z]:(?:\\+|/)users(?:\\+|/)))",
                r#"([^/\\\s"'<>:,;()\[\]{}]+)"#,
            ),
            applies: |s, t| {
                (s.slash && (t.contains("/home/") || t.contains("/Users/")))
                    || (s.colons > 0
                        // `ſ` folds to `s` in the rule's case-insensitive pattern.
                        && (contains_word(t, "users") || t.contains('\u{17f}')))
            },
            redact: |hay, c| {
                let m = c.get(0)?;
                if m.as_str().starts_with('/') && !starts_a_path(hay, m.start()) {
                    return None;
                }
                group1(hay, c)
            },
        },
        TextRule {
            rule: Rule::Iban,
            with: FILTERED,
            re: pattern!(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"),
            applies: |s, t| s.upper && s.digits >= 2 && has_iban_start(t),
            redact: |_, c| {
                let m = c.get(0)?;
                iban_valid(m.as_str()).then(|| m.range())
            },
        },
        // Card numbers: 13 to 19 digits, optionally grouped by single spaces or dashes.
        TextRule {
            rule: Rule::Card,
            with: FILTERED,
            re: pattern!(r"\b(?:[0-9][ -]?){12,18}[0-9]\b"),
            applies: |s, t| s.digits >= 13 && has_card_run(t),
            redact: card,
        },
        // IPv6 before IPv4, so that `::ffff:192.0.2.1` goes whole. Candidates are runs of hex digits and
        // colons (with an optional dotted IPv4 tail) that parse as an address.
        TextRule {
            rule: Rule::Ip,
            with: IP,
            re: pattern!(r"[0-9A-Fa-f:]*:[0-9A-Fa-f:]*(?:\.[0-9]{1,3}){0,3}"),
            applies: |s, t| s.colons >= 2 && s.digits > 0 && has_ipv6_run(t),
            redact: ipv6,
        },
        TextRule {
            rule: Rule::Ip,
            with: IP,
            re: pattern!(
                r"\b(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\b"
            ),
            applies: |s, t| s.digits >= 4 && s.dots >= 3 && has_dotted_quad(t),
            redact: |hay, c| {
                let r = c.get(0)?.range();
                // Not part of a longer dotted run (`1.2.3.4.5`, OIDs).
                let before = hay.as_bytes()[..r.start].last().copied();
                let after = &hay.as_bytes()[r.end..];
                let dotted_before = before == Some(b'.')
                    && hay.as_bytes()[..r.start - 1]
                        .last()
                        .is_some_and(u8::is_ascii_alphanumeric);
                let dotted_after = after.first() == Some(&b'.')
                    && after.get(1).is_some_and(u8::is_ascii_alphanumeric);
                (!dotted_before && !dotted_after).then_some(r)
            },
        },
    ]
});

pub(crate) fn scrub<'a>(input: &'a str, stats: &mut ScrubStats) -> Cow<'a, str> {
    let mut text = Cow::Borrowed(input);
    // A redaction can make a match for a rule that ran before it (`alice@x-10.20.30.40-y.com` reads as a
    // release, two numeric labels, until its IP is `[ip]`; then it is an address): the rules run again
    // until a pass changes nothing, so that scrubbed text scrubs to itself. Clean text takes one pass.
    for _ in 0..MAX_PASSES {
        let shape = Shape::of(&text);
        let mut changed = false;
        for rule in RULES.iter() {
            if !(rule.applies)(&shape, &text) {
                continue;
            }
            if let Some((out, n)) = rewrite(&text, rule) {
                stats.add(rule.rule, n);
                text = Cow::Owned(out);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    text
}

/// Passes of the rules at most (each pass after the first only runs when the one before redacted).
const MAX_PASSES: usize = 8;

/// Applies one rule; `None` when it changed nothing. A range that already reads as its replacement is left
/// alone and not counted, which keeps scrubbing idempotent.
fn rewrite(text: &str, rule: &TextRule) -> Option<(String, u64)> {
    let mut out = String::new();
    let mut last = 0;
    let mut n = 0;
    for caps in rule.re.get().captures_iter(text) {
        let Some(r) = (rule.redact)(text, &caps) else {
            continue;
        };
        if &text[r.clone()] == rule.with {
            continue;
        }
        if n == 0 {
            out.reserve(text.len());
        }
        out.push_str(&text[last..r.start]);
        out.push_str(rule.with);
        last = r.end;
        n += 1;
    }
    if n == 0 {
        return None;
    }
    out.push_str(&text[last..]);
    Some((out, n))
}

fn whole(_: &str, c: &Captures<'_>) -> Option<Range<usize>> {
    c.get(0).map(|m| m.range())
}

fn group1(_: &str, c: &Captures<'_>) -> Option<Range<usize>> {
    c.get(1).map(|m| m.range())
}

/// Whether a `/home/` (or `/Users/`) at byte `at` starts a path: at the start of the text, or after a
/// character that cannot be part of a path segment. A redaction marker before it counts as part of a
/// segment (it stands for the text it replaced): `/home/alice/home/x` keeps `x`, and so must
/// `/home/[Filtered]/home/x`, or scrubbing would not be idempotent.
fn starts_a_path(hay: &str, at: usize) -> bool {
    let before = &hay[..at];
    match before.chars().next_back() {
        None => true,
        Some(c) if c.is_ascii_alphanumeric() || "_.~-".contains(c) => false,
        Some(_) => ![FILTERED, IP, EMAIL].iter().any(|m| before.ends_with(m)),
    }
}

/// The card number within a candidate run of digit groups: the whole run if it passes, else the longest run
/// of whole groups that does (`4111 1111 1111 1111 2` → the first four groups).
fn card(hay: &str, c: &Captures<'_>) -> Option<Range<usize>> {
    let m = c.get(0)?;
    let mut groups: Vec<Range<usize>> = Vec::new();
    let mut start = m.start();
    for (i, b) in m.as_str().bytes().enumerate() {
        if b == b' ' || b == b'-' {
            groups.push(start..m.start() + i);
            start = m.start() + i + 1;
        }
    }
    groups.push(start..m.end());
    for len in (1..=groups.len()).rev() {
        for first in 0..=groups.len() - len {
            let r = groups[first].start..groups[first + len - 1].end;
            if card_valid(hay, r.clone()) {
                return Some(r);
            }
        }
    }
    None
}

fn card_valid(hay: &str, r: Range<usize>) -> bool {
    let bytes = hay.as_bytes();
    // Not a fraction (`0.3000…`), the integer part of a decimal, or a piece of a dashed id.
    let before = bytes[..r.start].last().copied();
    let after = &bytes[r.end..];
    if matches!(before, Some(b'.' | b'-'))
        || (after.first() == Some(&b'-') && after.get(1).is_some_and(u8::is_ascii_alphanumeric))
        || (after.first() == Some(&b'.') && after.get(1).is_some_and(u8::is_ascii_digit))
    {
        return false;
    }
    let candidate = &hay[r];
    matches!(candidate.as_bytes()[0], b'2'..=b'6') && luhn_valid(candidate)
}

fn ipv6(hay: &str, c: &Captures<'_>) -> Option<Range<usize>> {
    let m = c.get(0)?;
    let s = m.as_str();
    let bytes = hay.as_bytes();
    // A standalone token: not the tail of `Self::add`, not `db::connect`'s head.
    let before = bytes[..m.start()].last();
    let after = bytes[m.end()..].first();
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.' || *b == b':';
    if before.is_some_and(word) || after.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_') {
        return None;
    }
    // `a::b` parses, but only addresses with a digit are taken for addresses (`::` alone is not one).
    if !s.bytes().any(|b| b.is_ascii_digit()) || s.parse::<Ipv6Addr>().is_err() {
        return None;
    }
    Some(m.range())
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

    fn scrubbed(s: &str) -> String {
        scrub(s, &mut ScrubStats::default()).into_owned()
    }

    /// Every rule, its trigger ignored.
    fn scrub_untriggered(input: &str) -> String {
        let mut text = input.to_owned();
        for rule in RULES.iter() {
            if let Some((out, _)) = rewrite(&text, rule) {
                text = out;
            }
        }
        text
    }

    #[test]
    fn triggers_never_hide_a_match() {
        let corpus = [
            "2001:db8::",
            "fe80::1%eth0",
            "1:2:3:4:5:6:1.2.3.4",
            "1:2:3:4:5:6:7:8",
            "x=::1",
            "[::1]:80",
            "::ffff:10.0.0.1",
            "10.0.0.1:80",
            "v1.2.3.4 and 1234.1.2.3.4 and 1.2.3.4.5",
            "é10.0.0.1 é4111111111111111",
            "a716-4111111111111111",
            "_4111111111111111 x 4111111111111111",
            "4111-1111-1111-1111 and 4111 1111 1111 1111 and 4111  1111 1111 1111",
            "token = abc; token\t=\tabc",
            r#"{\"token\": \"abc\"}"#,
            "'password' : 'x'",
            "X-Api-Key:abc Cookie:a=b",
            "author: x, authorization=y, oauth_state=z",
            "DE89370400440532013000 xDE89 3704 0044 0532 0130 00",
            "Bearer\tabc123 bearer abc BEARER abcdefghij",
            "C:/Users/alice c:\\users\\bob D:\\\\Users\\\\x /home/jürgen/x",
            "mailto:alice@example.com https://u:p@h/ ssh://git@github.com",
            "-----BEGIN CERTIFICATE-----\nabc",
            "task2::poll Self::add v0::x beef::cafe1 a::1",
            "12:30:45 00:1a:2b:3c:4d:5e",
        ];
        for s in corpus {
            assert_eq!(scrubbed(s), scrub_untriggered(s), "{s}");
        }
    }

    /// Found by the `event_pipeline` fuzz target: the character that starts a home path was consumed by
    /// the previous match, so a second user name right after a first one leaked, and a second scrub
    /// redacted more than the first.
    #[test]
    fn home_path_after_a_home_path() {
        assert_eq!(
            scrubbed("/home/alice&OLD=/home/bob/x"),
            "/home/[Filtered]/home/[Filtered]/x"
        );
        assert_eq!(
            scrubbed("`/home/alice`/home/bob`"),
            "`/home/[Filtered]/home/[Filtered]"
        );
        // A `home` directory inside a home directory is not a user name.
        assert_eq!(
            scrubbed("/home/alice/home/x /Users/bob/home/y"),
            "/home/[Filtered]/home/x /Users/[Filtered]/home/y"
        );
        for s in [
            "```{closure}```/home/````/home/```::alice@example```::run",
            "/home/alice/home/x",
            "10.0.0.1/home/bob",
            "alice@example.com/home/bob 4111111111111111/home/carol",
        ] {
            let once = scrubbed(s);
            let mut stats = ScrubStats::default();
            assert_eq!(scrub(&once, &mut stats), once, "not idempotent: {s}");
            assert!(stats.is_empty(), "second scrub counted {stats:?}: {s}");
        }
    }

    /// Found by the `event_pipeline` fuzz target: the IP rule, running after the e-mail rule, turned a
    /// release-looking domain (two numeric labels) into an address the next scrub redacted.
    #[test]
    fn a_redaction_that_reveals_an_earlier_rule_is_scrubbed_at_once() {
        let s = "x ::alice@examp---le.comha--10.20.30.40--le.comhand y";
        let mut stats = ScrubStats::default();
        let once = scrub(s, &mut stats).into_owned();
        assert_eq!(once, "x ::[email]--[ip]--le.comhand y");
        assert_eq!((stats.get(Rule::Ip), stats.get(Rule::Email)), (1, 1));
        let mut again = ScrubStats::default();
        assert_eq!(scrub(&once, &mut again), once);
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn card_inside_longer_digit_run() {
        assert_eq!(
            scrubbed("card 4111 1111 1111 1111 2 items"),
            "card [Filtered] 2 items"
        );
        assert_eq!(scrubbed("qty 3 4111 1111 1111 1111"), "qty 3 [Filtered]");
    }

    #[test]
    fn numbers_that_are_not_cards() {
        for s in [
            "ratio 0.30000000000000004",
            "ts 1700000000000",
            "id 12345678-1234-5678-1234-567812345678",
            "4111111111111111.50",
        ] {
            assert_eq!(scrubbed(s), s);
        }
    }

    #[test]
    fn rust_paths_are_not_ipv6() {
        for s in [
            "beacon_collector::auth::verify_token",
            "db::connect",
            "<Self::add as core::ops::Add>::add",
            "std::io::Error",
            "00:1a:2b:3c:4d:5e",
            "12:30:45",
        ] {
            assert_eq!(scrubbed(s), s);
        }
    }

    #[test]
    fn dotted_runs_are_not_ipv4() {
        assert_eq!(scrubbed("oid 1.3.6.1.4.1"), "oid 1.3.6.1.4.1");
        assert_eq!(scrubbed("at 10.0.0.1."), "at [ip].");
    }
}
