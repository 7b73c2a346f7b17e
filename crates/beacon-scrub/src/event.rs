//! Scrubbing a whole [`StoredEvent`] in place.

use crate::{FILTERED, Rule, ScrubStats, is_personal_tag_key, is_secret_key, scrub_text_counted};
use beacon_wire::sentry::StoredEvent;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Scrubs every string of an event in place and counts what it redacted.
///
/// * message, release, environment, platform, exception type/value/module, mechanism type, frame
///   module/function/filename and fingerprint entries go through the text rules;
/// * tag keys and values likewise, and a tag whose key looks secret gets the value `[Filtered]`;
/// * context values are scrubbed as JSON ([`scrub_value`]);
/// * an `extra` entry is removed whole when its key looks secret or when anything in its value (a string, a
///   nested key, a value under a nested secret-looking key, a number that is a card) needed a redaction;
///   entries that pass unchanged are kept.
///
/// Allocation-free for strings with nothing to redact; idempotent.
pub fn scrub_event(event: &mut StoredEvent) -> ScrubStats {
    let mut stats = ScrubStats::default();
    let st = &mut stats;
    scrub_opt(&mut event.platform, st);
    scrub_opt(&mut event.release, st);
    scrub_opt(&mut event.environment, st);
    scrub_opt(&mut event.message, st);
    for exception in &mut event.exceptions {
        scrub_opt(&mut exception.ty, st);
        scrub_opt(&mut exception.value, st);
        scrub_opt(&mut exception.module, st);
        if let Some(mechanism) = &mut exception.mechanism {
            scrub_string(&mut mechanism.ty, st);
        }
        for frame in &mut exception.frames {
            scrub_opt(&mut frame.module, st);
            scrub_opt(&mut frame.function, st);
            scrub_opt(&mut frame.filename, st);
        }
    }
    scrub_tags(&mut event.tags, st);
    for values in event.contexts.values_mut() {
        scrub_keyed(values, st);
    }
    rekey(&mut event.contexts, st);
    scrub_extra(&mut event.extra, st);
    for part in event.fingerprint.iter_mut().flatten() {
        scrub_string(part, st);
    }
    stats
}

/// Scrubs a JSON value in place: every string through the text rules, object keys too, every value under a
/// secret-looking key becomes `"[Filtered]"` (`null`, `""` and `"[Filtered]"` stay as they are, having
/// nothing to hide), and an integer that is a card number becomes `"[Filtered]"`.
pub fn scrub_value(value: &mut Value, stats: &mut ScrubStats) {
    match value {
        Value::String(s) => scrub_string(s, stats),
        Value::Array(items) => {
            for item in items {
                scrub_value(item, stats);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                if is_secret_key(key) {
                    filter_secret(item, stats);
                } else {
                    scrub_value(item, stats);
                }
            }
            if map.keys().any(|k| needs_scrub(k)) {
                let old = std::mem::take(map);
                for (key, item) in old {
                    let key = match scrub_text_counted(&key, stats) {
                        Cow::Borrowed(_) => key,
                        Cow::Owned(k) => k,
                    };
                    map.insert(key, item);
                }
            }
        }
        Value::Number(n) => {
            // Only integers long enough to be a card number are worth a look.
            let digits = n
                .as_u64()
                .or_else(|| n.as_i64().map(i64::unsigned_abs))
                .filter(|&v| v >= 1_000_000_000_000)
                .map(|v| v.to_string());
            if let Some(digits) = digits
                && let Cow::Owned(_) = scrub_text_counted(&digits, stats)
            {
                *value = Value::String(FILTERED.to_owned());
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
}

fn scrub_string(s: &mut String, stats: &mut ScrubStats) {
    if let Cow::Owned(scrubbed) = scrub_text_counted(s, stats) {
        *s = scrubbed;
    }
}

fn scrub_opt(s: &mut Option<String>, stats: &mut ScrubStats) {
    if let Some(s) = s {
        scrub_string(s, stats);
    }
}

/// Whether a text would change, without counting it.
fn needs_scrub(text: &str) -> bool {
    matches!(
        scrub_text_counted(text, &mut ScrubStats::default()),
        Cow::Owned(_)
    )
}

/// Replaces a value kept under a secret-looking key, unless it hides nothing already.
fn filter_secret(value: &mut Value, stats: &mut ScrubStats) {
    match value {
        Value::Null => {}
        Value::String(s) if s.is_empty() || s == FILTERED => {}
        _ => {
            *value = Value::String(FILTERED.to_owned());
            stats.add(Rule::SecretValue, 1);
        }
    }
}

fn scrub_tags(tags: &mut BTreeMap<String, String>, stats: &mut ScrubStats) {
    let before = tags.len();
    tags.retain(|key, _| !is_personal_tag_key(key));
    stats.tags_dropped += (before - tags.len()) as u64;
    for (key, value) in tags.iter_mut() {
        if is_secret_key(key) {
            if !value.is_empty() && value != FILTERED {
                FILTERED.clone_into(value);
                stats.add(Rule::SecretValue, 1);
            }
        } else {
            scrub_string(value, stats);
        }
    }
    rekey(tags, stats);
}

/// Scrubs the keys of a map (rarely needed, so checked first without allocating).
fn rekey<V>(map: &mut BTreeMap<String, V>, stats: &mut ScrubStats) {
    if !map.keys().any(|k| needs_scrub(k)) {
        return;
    }
    let old = std::mem::take(map);
    for (key, value) in old {
        let key = match scrub_text_counted(&key, stats) {
            Cow::Borrowed(_) => key,
            Cow::Owned(k) => k,
        };
        map.insert(key, value);
    }
}

fn scrub_keyed(values: &mut BTreeMap<String, Value>, stats: &mut ScrubStats) {
    for (key, value) in values.iter_mut() {
        if is_secret_key(key) {
            filter_secret(value, stats);
        } else {
            scrub_value(value, stats);
        }
    }
    rekey(values, stats);
}

fn scrub_extra(extra: &mut BTreeMap<String, Value>, stats: &mut ScrubStats) {
    extra.retain(|key, value| {
        let before = stats.total();
        if is_secret_key(key) {
            stats.add(Rule::SecretValue, 1);
        } else {
            let _ = scrub_text_counted(key, stats);
            scrub_value(value, stats);
        }
        let keep = stats.total() == before;
        if !keep {
            stats.extra_dropped += 1;
        }
        keep
    });
}
