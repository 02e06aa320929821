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
    /// `plain`, unmasked single-frame messages as the hub frames them (a packet, or the
    /// `REGIME`/`ALERT` it announces followed by the packet), each compressed on its own with
    /// RSV1 set; `plain` itself (shared, not copied) when no frame is compressed: each is under
    /// `min_bytes` or compressing would not make it smaller, or there is none.
    pub fn frame(self, plain: &Bytes) -> Bytes {
        let mut out = Vec::new();
        let mut rest = &plain[..];
        let mut shrunk = false;
        while !rest.is_empty() {
            let (first, payload, len) = split(rest);
            let frame = &rest[..len];
            rest = &rest[len..];
            match self.compressed(first, payload) {
                Some(compressed) if compressed.len() < frame.len() => {
                    out.extend_from_slice(&compressed);
                    shrunk = true;
                }
                _ => out.extend_from_slice(frame),
            }
        }
        if shrunk { out.into() } else { plain.clone() }
    }

    /// One frame's payload compressed, framed with RSV1; `None` under `min_bytes`.
    fn compressed(self, first: u8, payload: &[u8]) -> Option<Vec<u8>> {
        if payload.len() < self.min_bytes as usize {
            return None;
        }
        let compressed = compress(payload);
        let mut out = Vec::with_capacity(compressed.len() + 10);
        out.push(first | 0x40);
        push_length(&mut out, compressed.len());
        out.extend_from_slice(&compressed);
        Some(out)
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

/// The first of the server frames in `frames`: its first byte (FIN, RSV, opcode), its payload,
/// and its whole length.
fn split(frames: &[u8]) -> (u8, &[u8], usize) {
    let (header, len) = match frames[1] & 0x7f {
        126 => (4, u16::from_be_bytes([frames[2], frames[3]]) as usize),
        127 => (
            10,
            u64::from_be_bytes(frames[2..10].try_into().expect("8 bytes")) as usize,
        ),
        n => (2, n as usize),
    };
    (frames[0], &frames[header..header + len], header + len)
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
            let (_, payload, _) = split(&frame);
            assert!(payload.len() < text.len() / 4, "{len}: {}", payload.len());
            assert_eq!(inflate(payload), text.as_bytes(), "{len}");
        }
        let small = text_frame(&"x".repeat(63));
        assert_eq!(deflate.frame(&small).as_ptr(), small.as_ptr());
        assert!(deflate.frame(&Bytes::new()).is_empty(), "nothing to write");
        let incompressible = text_frame("abcdefghij");
        assert_eq!(
            Deflate { min_bytes: 0 }.frame(&incompressible).as_ptr(),
            incompressible.as_ptr()
        );
    }

    /// Several frames in one buffer (what a packet announces, then the packet) are each
    /// compressed on their own: each inflates back to its own message.
    #[test]
    fn each_frame_of_a_buffer_is_compressed_on_its_own() {
        let deflate = Deflate { min_bytes: 64 };
        let regime = format!(
            r#"{{"type":"REGIME","data":{{"pad":"{}"}}}}"#,
            "a".repeat(300)
        );
        let small = r#"{"type":"ALERT"}"#;
        let packet = format!(
            r#"{{"type":"TELEMETRY","data":"{}"}}"#,
            "tick ".repeat(1000)
        );
        let plain: Bytes = [text_frame(&regime), text_frame(small), text_frame(&packet)]
            .concat()
            .into();
        let out = deflate.frame(&plain);
        let mut rest = &out[..];
        let mut got = Vec::new();
        while !rest.is_empty() {
            let (first, payload, len) = split(rest);
            got.push(match first & 0x40 {
                0 => payload.to_vec(),
                _ => inflate(payload),
            });
            rest = &rest[len..];
        }
        assert_eq!(
            got,
            [regime.as_bytes(), small.as_bytes(), packet.as_bytes()]
        );
        assert!(
            out.len() < plain.len() / 3,
            "{} of {}",
            out.len(),
            plain.len()
        );
    }
}
