//! permessage-deflate (RFC 7692) on the way out: a shared frame compressed once, for every
//! connection that negotiated it. The daemon answers `server_no_context_takeover`, so each
//! message is compressed on its own, and one compressed frame is valid on every such
//! connection, as one plain frame is on every other; the edge negotiates it
//! (`crate::edge::admission::extensions`) and inflates what clients send.

use std::io::Write;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::DeflateEncoder;

/// The end of every message compressed with a sync flush, which RFC 7692 §7.2.1 has the
/// sender strip and the receiver put back.
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// How a connection that negotiated permessage-deflate is written: frames of at least
/// `min_bytes` compressed, smaller ones as they are (RSV1 clear), as the extension allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deflate {
    /// `clients.compression_min_bytes`: below it, compressing saves too little to be worth it.
    pub min_bytes: u32,
}

impl Deflate {
    /// `plain`, an unmasked single-frame message as the hub frames them, compressed with RSV1
    /// set; `plain` itself (shared, not copied) when its payload is under `min_bytes` or
    /// compressing would not make it smaller.
    pub fn frame(self, plain: &Bytes) -> Bytes {
        let (first, payload) = split(plain);
        if payload.len() < self.min_bytes as usize {
            return plain.clone();
        }
        let compressed = compress(payload);
        let mut out = Vec::with_capacity(compressed.len() + 10);
        out.push(first | 0x40);
        push_length(&mut out, compressed.len());
        out.extend_from_slice(&compressed);
        if out.len() >= plain.len() {
            return plain.clone();
        }
        out.into()
    }
}

/// `payload` compressed as one RFC 7692 message: raw deflate, sync-flushed, the tail stripped.
pub fn compress(payload: &[u8]) -> Vec<u8> {
    let mut encoder = DeflateEncoder::new(
        Vec::with_capacity(payload.len() / 3 + 64),
        Compression::default(),
    );
    encoder
        .write_all(payload)
        .and_then(|()| encoder.flush())
        .expect("compressing into a Vec cannot fail");
    let mut out = std::mem::take(encoder.get_mut());
    debug_assert!(out.ends_with(&TAIL), "a sync flush ends with 00 00 ff ff");
    out.truncate(out.len() - TAIL.len());
    out
}

/// A server frame's first byte (FIN, RSV, opcode) and its payload.
fn split(frame: &[u8]) -> (u8, &[u8]) {
    let header = match frame[1] & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    (frame[0], &frame[header..])
}

/// An unmasked frame's length, in RFC 6455's three forms.
fn push_length(out: &mut Vec<u8>, len: usize) {
    match len {
        0..=125 => out.push(len as u8),
        126..=0xffff => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::frame::text_frame;
    use flate2::{Decompress, FlushDecompress};

    fn inflate(data: &[u8]) -> Vec<u8> {
        let mut input = data.to_vec();
        input.extend_from_slice(&TAIL);
        let mut out = Vec::with_capacity(1 << 20);
        Decompress::new(false)
            .decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .unwrap();
        out
    }

    /// A large frame is compressed with RSV1 set and its length in the right form, and inflates
    /// back to the payload; a small one, or one compression would not shrink, is the same bytes.
    #[test]
    fn frames_over_the_minimum_are_compressed_and_inflate_back() {
        let deflate = Deflate { min_bytes: 64 };
        for len in [200, 5_000, 200_000] {
            let text = format!(r#"{{"log":"{}"}}"#, "tick ".repeat(len / 5));
            let plain = text_frame(&text);
            let frame = deflate.frame(&plain);
            assert_eq!(frame[0], 0x81 | 0x40, "{len}: FIN, RSV1, text");
            let (_, payload) = split(&frame);
            assert!(payload.len() < text.len() / 4, "{len}: {}", payload.len());
            assert_eq!(inflate(payload), text.as_bytes(), "{len}");
        }
        let small = text_frame(&"x".repeat(63));
        assert_eq!(deflate.frame(&small).as_ptr(), small.as_ptr());
        let incompressible = text_frame("abcdefghij");
        assert_eq!(
            Deflate { min_bytes: 0 }.frame(&incompressible).as_ptr(),
            incompressible.as_ptr()
        );
    }
}
