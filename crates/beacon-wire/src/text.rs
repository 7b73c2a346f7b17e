//! Text every store can keep. PostgreSQL refuses the NUL character in `text` and `jsonb`, SQLite keeps
//! it; so that one client's bytes can never fail a batch on one backend and pass on the other, every
//! string a parser of this crate hands on has its NULs replaced by U+FFFD (the replacement character)
//! here, before it reaches a store. (JSON cannot carry lone surrogates past `serde_json`, and every
//! input is UTF-8 by then, so NUL is the only such value.)

use serde_json::Value;

/// What replaces a NUL.
pub const REPLACEMENT: char = '\u{FFFD}';

/// Whether a string can be stored as it is.
pub fn is_storable(s: &str) -> bool {
    !s.contains('\0')
}

/// Replaces every NUL in `s`; allocates only when there is one.
pub fn make_storable(s: &mut String) {
    if !is_storable(s) {
        *s = s.replace('\0', "\u{FFFD}");
    }
}

/// A storable copy of `s`.
pub fn storable(s: &str) -> String {
    if is_storable(s) {
        s.to_owned()
    } else {
        s.replace('\0', "\u{FFFD}")
    }
}

/// Makes every string of a JSON value storable, object keys included.
pub fn make_value_storable(v: &mut Value) {
    match v {
        Value::String(s) => make_storable(s),
        Value::Array(items) => items.iter_mut().for_each(make_value_storable),
        Value::Object(map) => {
            if map.keys().any(|k| !is_storable(k)) {
                let old = std::mem::take(map);
                for (k, mut item) in old {
                    make_value_storable(&mut item);
                    map.insert(storable(&k), item);
                }
            } else {
                map.values_mut().for_each(make_value_storable);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_replaced_everywhere() {
        let mut s = String::from("r\0x");
        make_storable(&mut s);
        assert_eq!(s, "r\u{FFFD}x");
        assert_eq!(storable("plain"), "plain");
        let mut v: Value =
            serde_json::from_str(r#"{"k\u0000":["a\u0000",{"b":"\u0000"}],"n":1}"#).unwrap();
        make_value_storable(&mut v);
        let text = v.to_string();
        assert!(!text.contains("\\u0000"), "{text}");
        assert_eq!(v["k\u{FFFD}"][1]["b"], "\u{FFFD}");
    }
}
