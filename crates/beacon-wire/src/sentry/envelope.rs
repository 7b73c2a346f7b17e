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

/// What became of an item's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Read whole: the caller wanted it and it was at most the size asked for.
    Kept(Vec<u8>),
    /// Not wanted: read past, never buffered.
    Skipped { len: u64 },
    /// Wanted but longer than the size asked for: read past, never buffered.
    TooLarge { len: u64 },
}

/// One item: its type and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub ty: String,
    pub payload: Payload,
}

impl Item {
    /// The payload's length in bytes.
    pub fn len(&self) -> u64 {
        match &self.payload {
            Payload::Kept(p) => p.len() as u64,
            Payload::Skipped { len } | Payload::TooLarge { len } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A whole envelope, every payload kept ([`parse`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub header: EnvelopeHeader,
    pub items: Vec<Item>,
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
        available: u64,
    },
    #[error("item {index}: payload not followed by a newline")]
    MissingNewline { index: usize },
    #[error("envelope has more than {MAX_ITEMS} items")]
    TooManyItems,
    #[error("envelope header line is longer than {MAX_HEADER_BYTES} bytes")]
    HeaderTooLong,
    /// The byte source failed (for a request body: its decoding broke off or went past its limit).
    #[error("body cannot be read: {0}")]
    Read(String),
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

/// The most a payload's buffer is given before its bytes arrive.
const PREALLOCATE_BYTES: u64 = 64 << 10;

/// Most items in one envelope (SDKs send a handful: an event, its attachments, a client report).
pub const MAX_ITEMS: usize = 100;
/// Longest envelope header line, and longest item header line. An envelope header holds an event
/// id, a DSN, an SDK name and a send time; an item header a type, a length and a few names.
pub const MAX_HEADER_BYTES: usize = 16 << 10;

/// Reads the envelope header from the first line of a body (or a prefix of one: everything from the
/// first newline on is ignored). This is all the collector reads of a body before it knows who sent it.
pub fn parse_header(first_line: &[u8]) -> Result<EnvelopeHeader, EnvelopeError> {
    let head = match first_line.iter().position(|b| *b == b'\n') {
        Some(i) => &first_line[..i],
        None => first_line,
    };
    if head.len() > MAX_HEADER_BYTES {
        return Err(EnvelopeError::HeaderTooLong);
    }
    header_of(head)
}

/// The envelope header of a line that holds only it.
fn header_of(line: &[u8]) -> Result<EnvelopeHeader, EnvelopeError> {
    if !is_object(line) {
        return Err(EnvelopeError::Header("must be a JSON object".into()));
    }
    serde_json::from_slice(line).map_err(|e| EnvelopeError::Header(e.to_string()))
}

/// Whether a header line is a JSON object: serde would also read a struct from an array
/// (`["event"]`), which no SDK sends and the envelope format does not allow.
fn is_object(line: &[u8]) -> bool {
    line.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// Parses a whole envelope held in memory, keeping every payload (tests and tools; the collector
/// reads request bodies with a [`Reader`]).
pub fn parse(body: &[u8]) -> Result<Envelope, EnvelopeError> {
    let (header, mut reader) = Reader::new(body)?;
    let mut items = Vec::new();
    while let Some(item) = reader.next_item(|_| true, usize::MAX)? {
        items.push(item);
    }
    Ok(Envelope { header, items })
}

/// Reads an envelope item by item from a byte stream (a request body as it is decoded). A payload
/// is buffered only when the caller wants its type and it fits the size the caller names; every
/// other payload is read past, so memory stays within one wanted payload whatever the envelope's
/// size, and work stays linear in it.
pub struct Reader<R> {
    r: R,
    index: usize,
    done: bool,
}

impl<R: std::io::BufRead> Reader<R> {
    /// Reads the envelope header (the first line).
    pub fn new(mut r: R) -> Result<(EnvelopeHeader, Self), EnvelopeError> {
        let mut head = Vec::new();
        let (n, _) = read_line(&mut r, Some((&mut head, MAX_HEADER_BYTES)))?;
        if n > MAX_HEADER_BYTES as u64 {
            return Err(EnvelopeError::HeaderTooLong);
        }
        let header = header_of(&head)?;
        Ok((
            header,
            Reader {
                r,
                index: 0,
                done: false,
            },
        ))
    }

    /// The byte source (to ask it why it failed).
    pub fn get_ref(&self) -> &R {
        &self.r
    }

    /// The next item, or `None` at the end. Its payload is [`Payload::Kept`] when `keep(type)` and
    /// it is at most `max_payload` bytes long.
    pub fn next_item(
        &mut self,
        keep: impl Fn(&str) -> bool,
        max_payload: usize,
    ) -> Result<Option<Item>, EnvelopeError> {
        if self.done {
            return Ok(None);
        }
        // Blank lines between items are tolerated.
        loop {
            let buf = self.r.fill_buf().map_err(read_error)?;
            match buf.first() {
                None => {
                    self.done = true;
                    return Ok(None);
                }
                Some(b'\n') => self.r.consume(1),
                Some(_) => break,
            }
        }
        let index = self.index;
        if index == MAX_ITEMS {
            return Err(EnvelopeError::TooManyItems);
        }
        self.index += 1;
        let mut head = Vec::new();
        let (n, _) = read_line(&mut self.r, Some((&mut head, MAX_HEADER_BYTES)))?;
        if n > MAX_HEADER_BYTES as u64 {
            return Err(EnvelopeError::ItemHeader {
                index,
                reason: format!("header line is longer than {MAX_HEADER_BYTES} bytes"),
            });
        }
        if !is_object(&head) {
            return Err(EnvelopeError::ItemHeader {
                index,
                reason: "must be a JSON object".into(),
            });
        }
        let h: ItemHeader =
            serde_json::from_slice(&head).map_err(|e| EnvelopeError::ItemHeader {
                index,
                reason: e.to_string(),
            })?;
        let wanted = keep(&h.ty);
        let payload = match h.length {
            Some(length) => {
                let payload = if wanted && length <= max_payload as u64 {
                    // Grown as bytes arrive, never sized by the declared length alone: a header
                    // may claim terabytes over a body of a few bytes.
                    let mut p = Vec::with_capacity(length.min(PREALLOCATE_BYTES) as usize);
                    let got = std::io::Read::read_to_end(
                        &mut std::io::Read::take(&mut self.r, length),
                        &mut p,
                    )
                    .map_err(read_error)? as u64;
                    if got < length {
                        return Err(EnvelopeError::Truncated {
                            index,
                            length,
                            available: got,
                        });
                    }
                    Payload::Kept(p)
                } else {
                    let got = std::io::copy(
                        &mut std::io::Read::take(&mut self.r, length),
                        &mut std::io::sink(),
                    )
                    .map_err(read_error)?;
                    if got < length {
                        return Err(EnvelopeError::Truncated {
                            index,
                            length,
                            available: got,
                        });
                    }
                    if wanted {
                        Payload::TooLarge { len: length }
                    } else {
                        Payload::Skipped { len: length }
                    }
                };
                let buf = self.r.fill_buf().map_err(read_error)?;
                match buf.first() {
                    None => self.done = true,
                    Some(b'\n') => self.r.consume(1),
                    Some(_) => return Err(EnvelopeError::MissingNewline { index }),
                }
                payload
            }
            None if wanted => {
                let mut p = Vec::new();
                let (len, end) = read_line(&mut self.r, Some((&mut p, max_payload)))?;
                self.done = !end;
                if len > max_payload as u64 {
                    Payload::TooLarge { len }
                } else {
                    Payload::Kept(p)
                }
            }
            None => {
                let (len, end) = read_line(&mut self.r, None)?;
                self.done = !end;
                Payload::Skipped { len }
            }
        };
        Ok(Some(Item { ty: h.ty, payload }))
    }
}

fn read_error(e: std::io::Error) -> EnvelopeError {
    EnvelopeError::Read(e.to_string())
}

/// Reads up to and including the next newline (or to the end). Returns the line's length (without
/// the newline) and whether a newline ended it. With `keep = (out, cap)`, the line is copied to
/// `out` while it is at most `cap` bytes; past that, `out` is left as it was filled and the rest of
/// the line is read past (the length says it was longer).
fn read_line(
    r: &mut impl std::io::BufRead,
    mut keep: Option<(&mut Vec<u8>, usize)>,
) -> Result<(u64, bool), EnvelopeError> {
    let mut len = 0u64;
    loop {
        let buf = r.fill_buf().map_err(read_error)?;
        if buf.is_empty() {
            return Ok((len, false));
        }
        let (chunk, newline) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..i], true),
            None => (buf, false),
        };
        if let Some((out, cap)) = keep.as_mut() {
            if len + chunk.len() as u64 <= *cap as u64 {
                out.extend_from_slice(chunk);
            } else {
                out.clear();
                keep = None;
            }
        }
        len += chunk.len() as u64;
        let used = chunk.len() + usize::from(newline);
        r.consume(used);
        if newline {
            return Ok((len, true));
        }
    }
}

#[cfg(test)]
mod tests {

    /// Found by the `envelope` fuzz target: `["event"]` was read as an item header (serde reads a
    /// struct from an array too). Headers are JSON objects.
    #[test]
    fn headers_are_json_objects() {
        assert!(matches!(
            parse(b"{}\n[\"\"]\n\n[\"\"]\n\n[\"\"]"),
            Err(EnvelopeError::ItemHeader { index: 0, .. })
        ));
        assert!(matches!(
            parse(b"[\"id\"]\n{\"type\":\"event\",\"length\":2}\n{}\n"),
            Err(EnvelopeError::Header(_))
        ));
        assert!(parse(b" {}\n{\"type\":\"event\",\"length\":2}\n{}\n").is_ok());
    }

    /// Found by the `envelope` fuzz target: an item header claiming 5.8 TB over a body of a few
    /// bytes made `parse` allocate the claimed length up front and abort. Now it is truncated.
    #[test]
    fn a_declared_length_is_not_allocated_before_its_bytes_arrive() {
        let body =
            b"{\"eoib\":\"\"}\n\n{\"type\":\"\",\"length\":5847615847614}\n\n{\"\"4}\n\n{\"\"\"h";
        assert!(matches!(
            parse(body),
            Err(EnvelopeError::Truncated {
                length: 5_847_615_847_614,
                ..
            })
        ));
    }

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
        let items: Vec<_> = e
            .items
            .iter()
            .map(|i| (i.ty.as_str(), &i.payload))
            .collect();
        let kept = |p: &[u8]| Payload::Kept(p.to_vec());
        assert_eq!(
            items,
            vec![
                ("event", &kept(b"{\"message\":1}")),
                ("attachment", &kept(b"raw bytes")),
                ("client_report", &kept(b"{}"))
            ]
        );
        // A length-prefixed payload may contain newlines.
        let e = parse(b"{}\n{\"type\":\"event\",\"length\":5}\na\nb\nc\n").unwrap();
        assert_eq!(e.items[0].payload, kept(b"a\nb\nc"));
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

    /// The collector's reading: events kept up to a size, everything else read past.
    fn read_events(body: &[u8], max: usize) -> Result<Vec<Item>, EnvelopeError> {
        let (_, mut r) = Reader::new(body)?;
        let mut items = Vec::new();
        while let Some(item) = r.next_item(|ty| ty == "event", max)? {
            items.push(item);
        }
        Ok(items)
    }

    #[test]
    fn unwanted_and_oversized_payloads_are_read_past() {
        let big = "x".repeat(5000);
        let body = format!(
            "{{}}\n{{\"type\":\"attachment\",\"length\":5000}}\n{big}\n\
             {{\"type\":\"event\"}}\n{{\"a\":1}}\n\
             {{\"type\":\"event\",\"length\":5000}}\n{big}\n\
             {{\"type\":\"event\"}}\n{big}\n\
             {{\"type\":\"session\"}}\n{big}"
        );
        let items = read_events(body.as_bytes(), 100).unwrap();
        let got: Vec<_> = items.iter().map(|i| (i.ty.as_str(), &i.payload)).collect();
        assert_eq!(
            got,
            vec![
                ("attachment", &Payload::Skipped { len: 5000 }),
                ("event", &Payload::Kept(b"{\"a\":1}".to_vec())),
                ("event", &Payload::TooLarge { len: 5000 }),
                ("event", &Payload::TooLarge { len: 5000 }),
                ("session", &Payload::Skipped { len: 5000 }),
            ]
        );
        // The same envelope with everything kept: the same items, the same lengths.
        let all = parse(body.as_bytes()).unwrap();
        assert_eq!(
            all.items
                .iter()
                .map(|i| (i.ty.as_str(), i.len()))
                .collect::<Vec<_>>(),
            items
                .iter()
                .map(|i| (i.ty.as_str(), i.len()))
                .collect::<Vec<_>>()
        );
        // A skipped payload that is cut short is still an error.
        assert!(matches!(
            read_events(b"{}\n{\"type\":\"attachment\",\"length\":99}\nabc", 100),
            Err(EnvelopeError::Truncated {
                length: 99,
                available: 3,
                ..
            })
        ));
        // An item header line has the envelope header's limit.
        let long = format!(
            "{{}}\n{{\"type\":\"event\",\"x\":\"{}\"}}\n{{}}\n",
            "a".repeat(MAX_HEADER_BYTES)
        );
        assert!(matches!(
            read_events(long.as_bytes(), 100),
            Err(EnvelopeError::ItemHeader { index: 0, .. })
        ));
    }

    #[test]
    fn a_failing_source_is_a_read_error() {
        struct Failing;
        impl std::io::Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("broken"))
            }
        }
        let source = std::io::Read::chain(&b"{}\n{\"type\":\"event\"}\n{"[..], Failing);
        let (_, mut r) = Reader::new(std::io::BufReader::new(source)).unwrap();
        assert!(matches!(
            r.next_item(|_| true, 100),
            Err(EnvelopeError::Read(_))
        ));
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
