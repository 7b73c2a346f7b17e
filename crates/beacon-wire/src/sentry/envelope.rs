//! Sentry envelopes: a JSON header line, then items, each a JSON header line and a payload that is
//! either `length` bytes or runs to the next newline.
//!
//! Written here rather than taken from `sentry-types`: its parser types every item and rejects the
//! whole envelope when one item is bad, while Beacon must judge each item alone (one invalid event
//! among several is rejected, the others kept) and keep unknown item types as raw bytes to count.

use serde::Deserialize;

/// The envelope header fields Beacon reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct EnvelopeHeader {
    #[serde(default)]
    pub event_id: Option<String>,
    #[serde(default)]
    pub dsn: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct ItemHeader {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    length: Option<u64>,
}

/// One item: its type and its raw payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item<'a> {
    pub ty: String,
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub header: EnvelopeHeader,
    pub items: Vec<Item<'a>>,
}

/// Why an envelope cannot be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("envelope header is not a json object: {0}")]
    Header(String),
    #[error("item {index}: header is not a json object with a type: {reason}")]
    ItemHeader { index: usize, reason: String },
    #[error("item {index}: length {length} runs past the end of the body ({available} bytes left)")]
    Truncated {
        index: usize,
        length: u64,
        available: usize,
    },
    #[error("item {index}: payload not followed by a newline")]
    MissingNewline { index: usize },
    #[error("envelope has more than {MAX_ITEMS} items")]
    TooManyItems,
    #[error("envelope header line is longer than {MAX_HEADER_BYTES} bytes")]
    HeaderTooLong,
}

impl EnvelopeError {
    /// The rejection reason for outcomes: `too_many_items`, or `invalid_envelope`.
    pub fn reason(&self) -> &'static str {
        match self {
            EnvelopeError::TooManyItems => "too_many_items",
            _ => "invalid_envelope",
        }
    }
}

/// Most items in one envelope (SDKs send a handful: an event, its attachments, a client report).
pub const MAX_ITEMS: usize = 100;
/// Longest envelope header line. It holds an event id, a DSN, an SDK name and a send time.
pub const MAX_HEADER_BYTES: usize = 16 << 10;

/// Reads the envelope header from the first line of a body (or a prefix of one: everything from the
/// first newline on is ignored). This is all the collector reads of a body before it knows who sent it.
pub fn parse_header(first_line: &[u8]) -> Result<EnvelopeHeader, EnvelopeError> {
    let (head, _) = line(first_line);
    if head.len() > MAX_HEADER_BYTES {
        return Err(EnvelopeError::HeaderTooLong);
    }
    serde_json::from_slice(head).map_err(|e| EnvelopeError::Header(e.to_string()))
}

fn line(buf: &[u8]) -> (&[u8], &[u8]) {
    match buf.iter().position(|b| *b == b'\n') {
        Some(i) => (&buf[..i], &buf[i + 1..]),
        None => (buf, &[]),
    }
}

/// Parses an envelope. Item payloads borrow from `body`.
pub fn parse(body: &[u8]) -> Result<Envelope<'_>, EnvelopeError> {
    let header = parse_header(body)?;
    let (_, mut rest) = line(body);
    let mut items = Vec::new();
    loop {
        // Blank lines between items are tolerated.
        while let Some(r) = rest.strip_prefix(b"\n") {
            rest = r;
        }
        if rest.is_empty() {
            break;
        }
        let index = items.len();
        if index == MAX_ITEMS {
            return Err(EnvelopeError::TooManyItems);
        }
        let (item_head, after) = line(rest);
        let h: ItemHeader =
            serde_json::from_slice(item_head).map_err(|e| EnvelopeError::ItemHeader {
                index,
                reason: e.to_string(),
            })?;
        let payload;
        match h.length {
            Some(length) => {
                if length > after.len() as u64 {
                    return Err(EnvelopeError::Truncated {
                        index,
                        length,
                        available: after.len(),
                    });
                }
                let (p, r) = after.split_at(length as usize);
                payload = p;
                rest = match r.first() {
                    None => r,
                    Some(b'\n') => &r[1..],
                    Some(_) => return Err(EnvelopeError::MissingNewline { index }),
                };
            }
            None => {
                let (p, r) = line(after);
                payload = p;
                rest = r;
            }
        }
        items.push(Item { ty: h.ty, payload });
    }
    Ok(Envelope { header, items })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_with_and_without_length() {
        let body =
            b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\",\"dsn\":\"https://k@h/1\"}\n\
{\"type\":\"event\",\"length\":13}\n{\"message\":1}\n\
{\"type\":\"attachment\"}\nraw bytes\n\
{\"type\":\"client_report\",\"length\":2}\n{}";
        let e = parse(body).unwrap();
        assert_eq!(e.header.dsn.as_deref(), Some("https://k@h/1"));
        let items: Vec<_> = e.items.iter().map(|i| (i.ty.as_str(), i.payload)).collect();
        assert_eq!(
            items,
            vec![
                ("event", &b"{\"message\":1}"[..]),
                ("attachment", b"raw bytes"),
                ("client_report", b"{}")
            ]
        );
        // A length-prefixed payload may contain newlines.
        let e = parse(b"{}\n{\"type\":\"event\",\"length\":5}\na\nb\nc\n").unwrap();
        assert_eq!(e.items[0].payload, b"a\nb\nc");
    }

    #[test]
    fn malformed_envelopes() {
        assert!(matches!(
            parse(b"not json\n"),
            Err(EnvelopeError::Header(_))
        ));
        assert!(matches!(
            parse(b"{}\n{\"length\":3}\nabc"),
            Err(EnvelopeError::ItemHeader { .. })
        ));
        assert!(matches!(
            parse(b"{}\n{\"type\":\"event\",\"length\":99}\n{}"),
            Err(EnvelopeError::Truncated { length: 99, .. })
        ));
        assert!(matches!(
            parse(b"{}\n{\"type\":\"event\",\"length\":2}\n{}xx\n"),
            Err(EnvelopeError::MissingNewline { .. })
        ));
        assert_eq!(parse(b"{}").unwrap().items.len(), 0);
        let many = format!(
            "{{}}\n{}",
            "{\"type\":\"session\"}\n{}\n".repeat(MAX_ITEMS + 1)
        );
        assert_eq!(parse(many.as_bytes()), Err(EnvelopeError::TooManyItems));
        let enough = format!("{{}}\n{}", "{\"type\":\"session\"}\n{}\n".repeat(MAX_ITEMS));
        assert_eq!(parse(enough.as_bytes()).unwrap().items.len(), MAX_ITEMS);
    }

    #[test]
    fn the_header_alone() {
        let h = parse_header(b"{\"dsn\":\"https://k@h/1\"}\n{not even json").unwrap();
        assert_eq!(h.dsn.as_deref(), Some("https://k@h/1"));
        let long = format!("{{\"x\":\"{}\"}}", "a".repeat(MAX_HEADER_BYTES));
        assert_eq!(
            parse_header(long.as_bytes()),
            Err(EnvelopeError::HeaderTooLong)
        );
        assert!(matches!(
            parse_header(b"[1]\n"),
            Err(EnvelopeError::Header(_))
        ));
    }
}
