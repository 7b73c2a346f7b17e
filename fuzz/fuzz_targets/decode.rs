//! Request bodies: `beacon_collector::decode::decode` with a small limit over every encoding (and
//! unknown ones) never panics, never returns more than the limit, and keeps the heap within a
//! budget of the limit plus the decoders' fixed buffers. `decode_prefix` (the envelope's first line,
//! read before authentication) likewise, and gives a prefix of what `decode` gives.
//!
//! Input: one byte choosing the encoding, two bytes of limit (little-endian), then the body; for
//! the "other" encoding, a length byte and that many bytes of name come before the body. (Plain
//! bytes rather than `arbitrary`, so the seeds are real compressed bodies behind a 3-byte header.)
#![no_main]

use beacon_collector::decode::{DecodeError, decode, decode_prefix};
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

/// Brotli's ring buffer is as large as the window the stream declares, up to 16 MiB, whatever the size of
/// the body (a 30-byte body can take it): allowed here, and noted as a known cost (see ARCHITECTURE.md,
/// "Fuzzing").
const BROTLI_WINDOW_BYTES: usize = 16 << 20;

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
    let is_br = name.is_some_and(|n| n.trim().eq_ignore_ascii_case("br"));
    let window = if is_br { BROTLI_WINDOW_BYTES } else { 0 };
    let budget = 2 * limit + body.len() + DECODER_BYTES + window;
    let (out, peak) = within_budget(&WHAT, budget, || decode(body, name, limit));
    let (prefix, peak_prefix) = within_budget(&WHAT, budget, || decode_prefix(body, name, limit));
    if std::env::var_os("FUZZ_PRINT_PEAK").is_some() {
        eprintln!(
            "{name:?} limit {limit}: peak heap {peak} bytes (decode), {peak_prefix} (decode_prefix)"
        );
    }
    match &prefix {
        Ok(p) => {
            assert!(
                p.len() <= limit,
                "prefix of {} bytes over the limit {limit}",
                p.len()
            );
            if let Some(i) = p.iter().position(|b| *b == b'\n') {
                assert_eq!(i + 1, p.len(), "the prefix runs past the first newline");
            }
        }
        Err(e) => assert!(
            matches!(e, DecodeError::Unsupported(_)) || matches!(e, DecodeError::Corrupt { .. }),
            "{e:?}"
        ),
    }
    match out {
        Ok(decoded) => {
            assert!(
                decoded.len() <= limit,
                "{} bytes over the limit {limit}",
                decoded.len()
            );
            let p = prefix.expect("decode succeeded, so decode_prefix does");
            assert!(
                decoded.starts_with(&p),
                "decode_prefix is not a prefix of decode"
            );
        }
        Err(DecodeError::TooLarge(l)) => assert_eq!(l, limit),
        Err(_) => {}
    }
});
