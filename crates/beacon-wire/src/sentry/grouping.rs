//! Grouping events into issues. In order: the event's `fingerprint` (`{{ default }}` expands to the
//! default), the in-app frames of the exception chain, all its frames, the exception type (with its
//! normalised value when there is no stack), the normalised message.

use super::event::{StoredEvent, StoredFrame};
use sha2::{Digest, Sha256};

/// How an event groups: a stable hash of its components, and what the issue shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouping {
    /// 32 hex characters.
    pub hash: String,
    /// Which rule decided: `fingerprint`, `in_app_frames`, `frames`, `exception`, `message`.
    pub rule: &'static str,
    pub title: String,
    /// The top in-app frame (or top frame): `module in function`.
    pub culprit: Option<String>,
}

/// Longest issue title.
pub const MAX_TITLE_CHARS: usize = 200;

/// Replaces what varies between occurrences of one message: UUIDs, hex numbers, numbers.
pub fn normalize_message(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut words = s.split_inclusive(|c: char| !(c.is_ascii_alphanumeric() || c == '-'));
    for w in &mut words {
        let (token, sep) = match w.char_indices().last() {
            Some((i, c)) if !(c.is_ascii_alphanumeric() || c == '-') => (&w[..i], &w[i..]),
            _ => (w, ""),
        };
        let is_uuid = token.len() == 36
            && token.chars().enumerate().all(|(i, c)| {
                if [8, 13, 18, 23].contains(&i) {
                    c == '-'
                } else {
                    c.is_ascii_hexdigit()
                }
            });
        let is_hex = (token.len() >= 8
            && token.chars().all(|c| c.is_ascii_hexdigit())
            && token.chars().any(|c| c.is_ascii_digit()))
            || (token.starts_with("0x")
                && token.len() > 2
                && token[2..].chars().all(|c| c.is_ascii_hexdigit()));
        if is_uuid {
            out.push_str("<uuid>");
        } else if is_hex {
            out.push_str("<hex>");
        } else {
            // Digits inside a word: collapse each run to one placeholder.
            let mut in_digits = false;
            for c in token.chars() {
                if c.is_ascii_digit() {
                    if !in_digits {
                        out.push_str("<n>");
                    }
                    in_digits = true;
                } else {
                    in_digits = false;
                    out.push(c);
                }
            }
        }
        out.push_str(sep);
    }
    out
}

/// A function name without what changes between builds: Rust symbol hashes, addresses, closure numbers.
pub fn normalize_function(f: &str) -> String {
    let mut f = f.trim();
    if let Some(i) = f.rfind("::h")
        && f.len() - i == 19
        && f[i + 3..].chars().all(|c| c.is_ascii_hexdigit())
    {
        f = &f[..i];
    }
    normalize_message(f).replace("{{closure}}", "{closure}")
}

fn base_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// Feeds a frame's component (`place:function`) to `feed`; `false` when the frame has no place.
fn frame_component(f: &StoredFrame, feed: &mut dyn FnMut(&str)) -> bool {
    let Some(place) = f
        .module
        .as_deref()
        .or_else(|| f.filename.as_deref().map(base_name))
    else {
        return false;
    };
    let function = f
        .function
        .as_deref()
        .map(normalize_function)
        .unwrap_or_else(|| "?".into());
    feed(&format!("{place}:{function}"));
    true
}

fn culprit_of(f: &StoredFrame) -> Option<String> {
    let place = f.module.clone().or_else(|| f.filename.clone())?;
    Some(match &f.function {
        Some(func) => format!("{place} in {func}"),
        None => place,
    })
}

fn truncate(s: &str) -> String {
    let s = s.lines().next().unwrap_or_default();
    if s.chars().count() > MAX_TITLE_CHARS {
        let mut t: String = s.chars().take(MAX_TITLE_CHARS - 1).collect();
        t.push('…');
        t
    } else {
        s.to_string()
    }
}

/// Feeds the default grouping components of an event to `feed`, one at a time (nothing is collected:
/// work and memory are linear in the event), and says which rule chose them.
fn default_components(e: &StoredEvent, feed: &mut dyn FnMut(&str)) -> &'static str {
    let frames = || e.exceptions.iter().flat_map(|x| x.frames.iter());
    let has_place = |f: &&StoredFrame| f.module.is_some() || f.filename.is_some();
    let in_app = |f: &&StoredFrame| f.in_app == Some(true);
    if frames().filter(in_app).any(|f| has_place(&f)) {
        for f in frames().filter(in_app) {
            frame_component(f, feed);
        }
        return "in_app_frames";
    }
    if frames().any(|f| has_place(&f)) {
        for f in frames() {
            frame_component(f, feed);
        }
        return "frames";
    }
    let mut any = false;
    for x in &e.exceptions {
        if let Some(ty) = &x.ty {
            any = true;
            match &x.value {
                Some(v) => feed(&format!("{ty}: {}", normalize_message(v))),
                None => feed(ty),
            }
        }
    }
    if any {
        return "exception";
    }
    feed(&normalize_message(e.message.as_deref().unwrap_or("")));
    "message"
}

/// Groups an (already scrubbed) event. Each component is hashed as it is made; a `{{ default }}`
/// fingerprint part is expanded once — a repeat adds the digest of that first expansion — so the
/// work is linear in the event whatever its fingerprint says.
pub fn group(e: &StoredEvent) -> Grouping {
    let mut h = Sha256::new();
    let rule = match &e.fingerprint {
        Some(fp) if !fp.is_empty() => {
            let mut default_digest: Option<Vec<u8>> = None;
            for part in fp {
                let p = part.trim();
                if p == "{{ default }}" || p == "{{default}}" {
                    match &default_digest {
                        Some(d) => {
                            h.update(d);
                            h.update([0u8]);
                        }
                        None => {
                            let mut sub = Sha256::new();
                            default_components(e, &mut |c| {
                                h.update(c.as_bytes());
                                h.update([0u8]);
                                sub.update(c.as_bytes());
                                sub.update([0u8]);
                            });
                            default_digest = Some(sub.finalize().to_vec());
                        }
                    }
                } else {
                    h.update(b"fp:");
                    h.update(p.as_bytes());
                    h.update([0u8]);
                }
            }
            "fingerprint"
        }
        _ => default_components(e, &mut |c| {
            h.update(c.as_bytes());
            h.update([0u8]);
        }),
    };
    let hash = hex::encode(&h.finalize()[..16]);
    let raised = e.exceptions.last();
    let title = match raised {
        Some(x) => match (&x.ty, &x.value) {
            (Some(t), Some(v)) => format!("{t}: {v}"),
            (Some(t), None) => t.clone(),
            (None, Some(v)) => v.clone(),
            (None, None) => e
                .message
                .clone()
                .unwrap_or_else(|| "<unknown error>".into()),
        },
        None => e.message.clone().unwrap_or_else(|| "<no message>".into()),
    };
    let culprit = raised.and_then(|x| {
        x.frames
            .iter()
            .rev()
            .find(|f| f.in_app == Some(true))
            .or_else(|| x.frames.last())
            .and_then(culprit_of)
    });
    Grouping {
        hash,
        rule,
        title: truncate(&title),
        culprit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sentry::event::StoredException;

    fn frame(module: &str, function: &str, in_app: bool) -> StoredFrame {
        StoredFrame {
            module: Some(module.into()),
            function: Some(function.into()),
            in_app: Some(in_app),
            ..Default::default()
        }
    }

    fn exc(ty: &str, value: &str, frames: Vec<StoredFrame>) -> StoredEvent {
        StoredEvent {
            exceptions: vec![StoredException {
                ty: Some(ty.into()),
                value: Some(value.into()),
                frames,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn same_place_same_group_other_place_other_group() {
        let a = exc(
            "ValueError",
            "bad id 17",
            vec![frame("lib", "x", false), frame("app.views", "get", true)],
        );
        let b = exc(
            "ValueError",
            "bad id 99",
            vec![frame("lib", "y", false), frame("app.views", "get", true)],
        );
        let c = exc(
            "ValueError",
            "bad id 17",
            vec![frame("app.views", "post", true)],
        );
        assert_eq!(
            group(&a).hash,
            group(&b).hash,
            "library frames and values do not split a group"
        );
        assert_ne!(group(&a).hash, group(&c).hash);
        assert_eq!(group(&a).rule, "in_app_frames");
        assert_eq!(group(&a).title, "ValueError: bad id 17");
        assert_eq!(group(&a).culprit.as_deref(), Some("app.views in get"));
    }

    #[test]
    fn rule_order() {
        let no_app = exc("E", "v", vec![frame("lib", "f", false)]);
        assert_eq!(group(&no_app).rule, "frames");
        let no_stack_1 = exc("Timeout", "after 30 s", vec![]);
        let no_stack_2 = exc("Timeout", "after 45 s", vec![]);
        assert_eq!(group(&no_stack_1).rule, "exception");
        assert_eq!(group(&no_stack_1).hash, group(&no_stack_2).hash);
        let m1 = StoredEvent {
            message: Some(
                "user 42 failed at 0xdeadbeef id 123e4567-e89b-12d3-a456-426614174000".into(),
            ),
            ..Default::default()
        };
        let m2 = StoredEvent {
            message: Some("user 7 failed at 0x1f id 00000000-0000-0000-0000-000000000000".into()),
            ..Default::default()
        };
        assert_eq!(group(&m1).rule, "message");
        assert_eq!(group(&m1).hash, group(&m2).hash);
        let mut fp = m1.clone();
        fp.fingerprint = Some(vec!["db-down".into()]);
        let mut fp2 = m2.clone();
        fp2.fingerprint = Some(vec!["{{ default }}".into(), "db-down".into()]);
        assert_eq!(group(&fp).rule, "fingerprint");
        assert_ne!(group(&fp).hash, group(&m1).hash);
        assert_ne!(
            group(&fp).hash,
            group(&fp2).hash,
            "{{ default }} adds the default components"
        );
    }

    #[test]
    fn normalization() {
        assert_eq!(
            normalize_message("took 35 ms, id a1b2c3d4e5"),
            "took <n> ms, id <hex>"
        );
        assert_eq!(
            normalize_function("app::run::h0123456789abcdef"),
            "app::run"
        );
        assert_eq!(
            normalize_function("app::main::{{closure}}"),
            "app::main::{closure}"
        );
    }

    fn sha(components: &[&str]) -> String {
        let mut h = Sha256::new();
        for c in components {
            h.update(c.as_bytes());
            h.update([0u8]);
        }
        hex::encode(&h.finalize()[..16])
    }

    #[test]
    fn hashes_are_those_of_the_components() {
        // The same hashes as before grouping streamed its components: stored issues keep their events.
        let mut e = exc(
            "E",
            "v",
            vec![frame("lib", "x", false), frame("app.views", "get", true)],
        );
        assert_eq!(group(&e).hash, sha(&["app.views:get"]));
        e.fingerprint = Some(vec!["{{ default }}".into(), "db".into()]);
        assert_eq!(group(&e).hash, sha(&["app.views:get", "fp:db"]));
        e.fingerprint = Some(vec!["db".into()]);
        assert_eq!(group(&e).hash, sha(&["fp:db"]));
    }

    #[test]
    fn repeated_default_parts_are_expanded_once() {
        let frames: Vec<StoredFrame> = (0..250)
            .map(|i| frame("app", &format!("f{i}"), true))
            .collect();
        let mut e = exc("E", "v", frames);
        e.exceptions = vec![e.exceptions[0].clone(); 64];
        e.fingerprint = Some(vec!["{{default}}".into(); 64]);
        let many = group(&e);
        e.fingerprint = Some(vec!["{{default}}".into(); 63]);
        let fewer = group(&e);
        assert_eq!(many.rule, "fingerprint");
        assert_ne!(many.hash, fewer.hash, "each repeat still counts");
    }
}
