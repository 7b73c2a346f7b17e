//! Request bodies: `Content-Encoding` (gzip, deflate, br, zstd; empty or `UTF-8` mean none), decoded
//! as a stream and cut off at a limit, so a compression bomb costs at most the limit.

use std::io::Read;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("unsupported content-encoding {0:?}; use gzip, deflate, br or zstd")]
    Unsupported(String),
    #[error("body expands past {0} bytes")]
    TooLarge(usize),
    #[error("body is not valid {encoding}: {reason}")]
    Corrupt {
        encoding: &'static str,
        reason: String,
    },
}

/// A streaming decoder and the encoding's name (for errors).
type Decoder<'a> = (&'static str, Box<dyn Read + 'a>);

/// A streaming decoder of `body` per `encoding`. `None` for no encoding (the body is its own
/// decoding).
fn reader<'a>(body: &'a [u8], encoding: Option<&str>) -> Result<Option<Decoder<'a>>, DecodeError> {
    let encoding = encoding
        .map(|e| e.trim().to_ascii_lowercase())
        .unwrap_or_default();
    Ok(Some(match encoding.as_str() {
        "" | "identity" | "utf-8" | "utf8" => return Ok(None),
        // Several gzip members in a row are one stream (RFC 1952): decode them all.
        // (The `bufread` decoders read the slice directly: no 32 KiB buffer per request.)
        "gzip" | "x-gzip" => ("gzip", Box::new(flate2::bufread::MultiGzDecoder::new(body))),
        // HTTP "deflate" is zlib-wrapped; some clients send raw deflate: the zlib header tells.
        "deflate" => {
            let zlib = body.len() >= 2
                && (u16::from(body[0]) << 8 | u16::from(body[1])) % 31 == 0
                && body[0] & 0x0f == 8;
            if zlib {
                ("deflate", Box::new(flate2::bufread::ZlibDecoder::new(body)))
            } else {
                (
                    "deflate",
                    Box::new(flate2::bufread::DeflateDecoder::new(body)),
                )
            }
        }
        "br" => ("br", Box::new(brotli::Decompressor::new(body, 64 * 1024))),
        "zstd" => (
            "zstd",
            Box::new(zstd::stream::read::Decoder::with_buffer(body).map_err(|e| {
                DecodeError::Corrupt {
                    encoding: "zstd",
                    reason: e.to_string().to_lowercase(),
                }
            })?),
        ),
        other => return Err(DecodeError::Unsupported(other.to_string())),
    }))
}

/// A decoding of a body as a stream, cut off at a limit: reading past the limit fails, and
/// [`Stream::error`] then says why the stream broke off.
pub struct Stream<'a> {
    name: &'static str,
    inner: Box<dyn Read + 'a>,
    left: usize,
    limit: usize,
    failed: Option<DecodeError>,
}

impl Stream<'_> {
    /// Why reading failed: the limit was passed, or the encoding is corrupt.
    pub fn error(&self) -> Option<DecodeError> {
        self.failed.clone()
    }
}

impl Read for Stream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(std::io::Error::other(e.to_string()));
        }
        // One byte more than allowed tells "exactly at the limit" from "past it".
        let want = buf.len().min(self.left.saturating_add(1));
        let n = match self.inner.read(&mut buf[..want]) {
            Ok(n) => n,
            Err(e) => {
                let e = DecodeError::Corrupt {
                    encoding: self.name,
                    reason: e.to_string().to_lowercase(),
                };
                self.failed = Some(e.clone());
                return Err(std::io::Error::other(e.to_string()));
            }
        };
        if n > self.left {
            let e = DecodeError::TooLarge(self.limit);
            self.failed = Some(e.clone());
            return Err(std::io::Error::other(e.to_string()));
        }
        self.left -= n;
        Ok(n)
    }
}

/// `body` decoded per `encoding` as a buffered stream of at most `limit` bytes, for a reader that
/// keeps only what it needs of it (memory: the decoder's window and an 8 KiB buffer).
pub fn stream<'a>(
    body: &'a [u8],
    encoding: Option<&str>,
    limit: usize,
) -> Result<std::io::BufReader<Stream<'a>>, DecodeError> {
    let (name, inner): Decoder<'a> = match reader(body, encoding)? {
        Some(d) => d,
        None => ("identity", Box::new(body)),
    };
    Ok(std::io::BufReader::new(Stream {
        name,
        inner,
        left: limit,
        limit,
        failed: None,
    }))
}

/// Decodes `body` per `encoding`, reading at most `limit` decoded bytes.
pub fn decode(body: &[u8], encoding: Option<&str>, limit: usize) -> Result<Vec<u8>, DecodeError> {
    let Some((name, reader)) = reader(body, encoding)? else {
        if body.len() > limit {
            return Err(DecodeError::TooLarge(limit));
        }
        return Ok(body.to_vec());
    };
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Corrupt {
            encoding: name,
            reason: e.to_string().to_lowercase(),
        })?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge(limit));
    }
    Ok(out)
}

/// Decodes the start of `body`: up to its first newline (included) or `limit` bytes, whichever comes
/// first — the work is bounded by `limit`, whatever the rest of the body holds. A stream that ends or
/// breaks earlier gives what was decoded until then (the full decode later says what is wrong).
pub fn decode_prefix(
    body: &[u8],
    encoding: Option<&str>,
    limit: usize,
) -> Result<Vec<u8>, DecodeError> {
    let Some((_, mut reader)) = reader(body, encoding)? else {
        let end = body
            .iter()
            .take(limit)
            .position(|b| *b == b'\n')
            .map_or(body.len().min(limit), |i| i + 1);
        return Ok(body[..end].to_vec());
    };
    let mut out = Vec::with_capacity(limit.min(4096));
    let mut chunk = [0u8; 1024];
    while out.len() < limit {
        let want = chunk.len().min(limit - out.len());
        let n = match reader.read(&mut chunk[..want]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(i) = chunk[..n].iter().position(|b| *b == b'\n') {
            out.extend_from_slice(&chunk[..=i]);
            break;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const TEXT: &[u8] = b"{\"message\":\"hello\"}";

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn every_encoding() {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(TEXT).unwrap();
        let zlib = z.finish().unwrap();
        let mut d = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        d.write_all(TEXT).unwrap();
        let raw = d.finish().unwrap();
        let mut br = Vec::new();
        brotli::CompressorWriter::new(&mut br, 4096, 5, 22)
            .write_all(TEXT)
            .unwrap();
        let zs = zstd::encode_all(TEXT, 3).unwrap();
        for (enc, body) in [
            (None, TEXT.to_vec()),
            (Some(""), TEXT.to_vec()),
            (Some("UTF-8"), TEXT.to_vec()),
            (Some("gzip"), gzip(TEXT)),
            (Some("deflate"), zlib),
            (Some("deflate"), raw),
            (Some("br"), br),
            (Some("zstd"), zs),
        ] {
            assert_eq!(decode(&body, enc, 1 << 20).unwrap(), TEXT, "{enc:?}");
        }
        assert!(matches!(
            decode(TEXT, Some("lzma"), 100),
            Err(DecodeError::Unsupported(_))
        ));
        assert!(matches!(
            decode(b"not gzip", Some("gzip"), 100),
            Err(DecodeError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_stream_stops_at_its_limit_and_says_why() {
        let read_all = |body: &[u8], enc, limit| {
            let mut s = stream(body, enc, limit).unwrap();
            let mut out = Vec::new();
            let r = std::io::Read::read_to_end(&mut s, &mut out);
            (r.is_ok(), out.len(), s.get_ref().error())
        };
        // Exactly at the limit is fine, one byte past is not: plain and compressed alike.
        let n = TEXT.len();
        assert_eq!(read_all(TEXT, None, n), (true, n, None));
        assert_eq!(read_all(&gzip(TEXT), Some("gzip"), n), (true, n, None));
        let (ok, _, e) = read_all(TEXT, None, n - 1);
        assert!(!ok);
        assert_eq!(e, Some(DecodeError::TooLarge(n - 1)));
        let bomb = gzip(&vec![0u8; 64 << 20]);
        let (ok, got, e) = read_all(&bomb, Some("gzip"), 1 << 20);
        assert!(!ok && got <= 1 << 20);
        assert_eq!(e, Some(DecodeError::TooLarge(1 << 20)));
        let (ok, _, e) = read_all(b"not gzip", Some("gzip"), 100);
        assert!(!ok);
        assert!(matches!(e, Some(DecodeError::Corrupt { .. })));
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        // 64 MiB of zeros compress to ~64 KiB; decoding stops just past the 1 MiB limit.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 200 << 10);
        assert_eq!(
            decode(&bomb, Some("gzip"), 1 << 20),
            Err(DecodeError::TooLarge(1 << 20))
        );
    }

    #[test]
    fn a_prefix_is_decoded_up_to_the_first_newline_only() {
        let body = b"{\"dsn\":\"x\"}\n{\"type\":\"event\"}\n{}";
        let first = b"{\"dsn\":\"x\"}\n";
        assert_eq!(decode_prefix(body, None, 1000).unwrap(), first);
        assert_eq!(
            decode_prefix(&gzip(body), Some("gzip"), 1000).unwrap(),
            first
        );
        assert_eq!(decode_prefix(body, None, 4).unwrap(), b"{\"ds");
        // A bomb: 64 MiB without a newline costs at most the limit.
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        for _ in 0..64 {
            e.write_all(&[b'a'; 1 << 20]).unwrap();
        }
        let bomb = e.finish().unwrap();
        assert_eq!(
            decode_prefix(&bomb, Some("gzip"), 16 << 10).unwrap().len(),
            16 << 10
        );
        assert!(matches!(
            decode_prefix(body, Some("lzma"), 10),
            Err(DecodeError::Unsupported(_))
        ));
    }
}
