//! Request bodies: `beacon_collector::decode::decode` with a small limit over every encoding (and
//! unknown ones) never panics, never returns more than the limit, and keeps the heap within a
//! budget of the limit plus the decoders' fixed buffers.
//!
//! Input: one byte choosing the encoding, two bytes of limit (little-endian), then the body; for
//! the "other" encoding, a length byte and that many bytes of name come before the body. (Plain
//! bytes rather than `arbitrary`, so the seeds are real compressed bodies behind a 3-byte header.)
#![no_main]

use beacon_collector::decode::{DecodeError, decode};
use beacon_fuzz::{Counting, within_budget};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: Counting = Counting;

const WHAT: &str = "decode";

const NAMES: [Option<&str>; 11] = [
    None,
    Some(""),
    Some("identity"),
    Some("gzip"),
    Some("x-gzip"),
    Some("deflate"),
    Some("br"),
    Some("zstd"),
    Some("UTF-8"),
    Some(" GZIP "),
    Some("Zstd"),
];

/// Heap a decoder may hold whatever its input: its window and buffers.
const DECODER_BYTES: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let [sel, l0, l1, rest @ ..] = data else {
        return;
    };
    let limit = usize::from(u16::from_le_bytes([*l0, *l1]));
    let other: String;
    let (name, body) = match NAMES.get(usize::from(*sel)) {
        Some(name) => (*name, rest),
        None => {
            let Some((&n, rest)) = rest.split_first() else {
                return;
            };
            let n = usize::from(n).min(rest.len());
            other = String::from_utf8_lossy(&rest[..n]).into_owned();
            (Some(other.as_str()), &rest[n..])
        }
    };
    let budget = 2 * limit + body.len() + DECODER_BYTES;
    let (out, _) = within_budget(&WHAT, budget, || decode(body, name, limit));
    match out {
        Ok(decoded) => assert!(
            decoded.len() <= limit,
            "{} bytes over the limit {limit}",
            decoded.len()
        ),
        Err(DecodeError::TooLarge(l)) => assert_eq!(l, limit),
        Err(_) => {}
    }
});
