//! permessage-deflate (RFC 7692) on the way out: shared frames compressed once, for every
//! connection that negotiated it, in two variants (`docs/PROTOCOL.md` §13.1).
//!
//! - **On its own**: each message compressed from an empty window, valid on every connection,
//!   as one plain frame is on every other.
//! - **After the previous packet**: compressed as the continuation of a stream that held the
//!   previous packet's message, which is what the window of a client that kept its context
//!   (no `server_no_context_takeover`) ends with when the previous packet was the last thing it
//!   was sent. Most of a packet repeats the one before, so this is a fraction of the size, and
//!   it is still one frame shared by every such connection: the daemon keeps no compressor per
//!   client, only the fact of what it last sent each one (`crate::edge::connection::outlet`).
//!
//! A message is compressed when it is at least `min_bytes`, whatever it compresses to, so what
//! enters a client's window follows from the message alone. The edge negotiates the extension
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
    /// The client keeps its window between messages (it did not ask for
    /// `server_no_context_takeover`), so a packet may come compressed after the previous one.
    pub takeover: bool,
}

impl Deflate {
    /// `plain`, unmasked single-frame messages as the hub frames them (a packet, or the
    /// `REGIME`/`ALERT` it announces followed by the packet), each compressed on its own with
    /// RSV1 set; `plain` itself (shared, not copied) when every frame is under `min_bytes`.
    pub fn frame(self, plain: &Bytes) -> Bytes {
        self.frame_with(plain, false, |payload| Encoder::new().message(payload))
    }

    /// `plain`'s packet, its last frame, compressed as the continuation of `window`, the last
    /// compressed message the connections it is for were sent (the previous packet), as a
    /// client that kept its context inflates it. What the packet announces before it goes as
    /// it is: uncompressed, it stays out of the client's window, which then still ends with
    /// the previous packet when the packet comes. `plain` itself when the packet is under
    /// `min_bytes`.
    pub fn frame_after(self, plain: &Bytes, window: &[u8]) -> Bytes {
        let mut encoder = Encoder::new();
        encoder.message(window);
        self.frame_with(plain, true, |payload| encoder.message(payload))
    }

    /// Whether a message of `len` bytes goes compressed, and so into the client's window.
    pub fn compresses(self, len: usize) -> bool {
        len >= self.min_bytes as usize
    }

    /// `plain` with each frame of at least `min_bytes` compressed by `compress`, or only the
    /// last one of them when `only_last`.
    fn frame_with(
        self,
        plain: &Bytes,
        only_last: bool,
        mut compress: impl FnMut(&[u8]) -> Vec<u8>,
    ) -> Bytes {
        let mut out = Vec::new();
        let mut rest = &plain[..];
        let mut compressed = false;
        while !rest.is_empty() {
            let (first, payload, len) = split(rest);
            let last = len == rest.len();
            if self.compresses(payload.len()) && (last || !only_last) {
                let message = compress(payload);
                out.push(first | 0x40);
                push_length(&mut out, message.len());
                out.extend_from_slice(&message);
                compressed = true;
            } else {
                out.extend_from_slice(&rest[..len]);
            }
            rest = &rest[len..];
        }
        if compressed {
            out.into()
        } else {
            plain.clone()
        }
    }
}

/// One deflate stream, a message at a time: each sync-flushed, its tail stripped, and what
/// came before it kept as the window the next one may refer to.
struct Encoder(DeflateEncoder<Vec<u8>>);

impl Encoder {
    fn new() -> Self {
        Self(DeflateEncoder::new(Vec::new(), Compression::default()))
    }

    /// `payload` compressed as the stream's next message.
    fn message(&mut self, payload: &[u8]) -> Vec<u8> {
        self.0
            .write_all(payload)
            .and_then(|()| self.0.flush())
            .expect("compressing into a Vec cannot fail");
        let mut out = std::mem::take(self.0.get_mut());
        debug_assert!(out.ends_with(&TAIL), "a sync flush ends with 00 00 ff ff");
        out.truncate(out.len() - TAIL.len());
        out
    }
}

/// Whether the last of the unmasked frames in `frames` is compressed (RSV1): then its message
/// ends the window of a client that kept its context.
pub fn ends_compressed(frames: &[u8]) -> bool {
    let mut rest = frames;
    let mut compressed = false;
    while !rest.is_empty() {
        let (first, _, len) = split(rest);
        compressed = first & 0x40 != 0;
        rest = &rest[len..];
    }
    compressed
}

/// The payload of the last of the unmasked frames in `frames`.
pub fn last_payload(frames: &[u8]) -> &[u8] {
    let mut rest = frames;
    let mut last: &[u8] = &[];
    while !rest.is_empty() {
        let (_, payload, len) = split(rest);
        last = payload;
        rest = &rest[len..];
    }
    last
}

/// `payload` compressed as one RFC 7692 message on its own.
#[cfg(test)]
pub fn compress(payload: &[u8]) -> Vec<u8> {
    Encoder::new().message(payload)
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
        let deflate = DEFLATE;
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
        // What goes into a client's window follows from the size alone: a message that does
        // not shrink is compressed all the same.
        let incompressible = text_frame("abcdefghij");
        let framed = Deflate {
            min_bytes: 0,
            takeover: false,
        }
        .frame(&incompressible);
        assert_eq!(framed[0], 0x81 | 0x40);
        assert_eq!(inflate(split(&framed).1), b"abcdefghij");
    }

    /// A packet compressed after the previous one inflates, in a window that holds the
    /// previous one, to the same bytes as the one compressed on its own, in a fraction of its
    /// size; what the buffer announces before the packet goes uncompressed, out of the window.
    #[test]
    fn a_packet_after_the_previous_inflates_in_a_window_that_holds_it() {
        let deflate = DEFLATE;
        let packet = |n: u32| {
            let rows: Vec<String> = (0..60)
                .map(|i| {
                    format!(
                        r#"{{"agent":"a{i}","latency_ms":{}.{}}}"#,
                        i * 7,
                        n * 13 + i
                    )
                })
                .collect();
            format!(
                r#"{{"type":"TELEMETRY","seq":{n},"data":[{}]}}"#,
                rows.join(",")
            )
        };
        let (before, after) = (packet(1), packet(2));
        let regime = format!(r#"{{"type":"REGIME","pad":"{}"}}"#, "r".repeat(300));
        let plain: Bytes = [text_frame(&regime), text_frame(&after)].concat().into();
        let alone = deflate.frame(&plain);
        let chained = deflate.frame_after(&plain, before.as_bytes());
        let (packet_alone, packet_after) = (last_payload(&alone), last_payload(&chained));
        assert!(
            packet_after.len() * 3 < packet_alone.len() * 2,
            "{} against {}",
            packet_after.len(),
            packet_alone.len()
        );
        // A client that kept its context: one inflater for the whole connection.
        let mut window = Decompress::new(false);
        let mut messages = vec![inflate_in(
            &mut window,
            &deflate.frame(&text_frame(&before)),
        )];
        // What the packet announces goes as it is, out of the window; the packet follows the
        // previous one.
        let (first, payload, len) = split(&chained);
        assert_eq!((first, payload), (0x81, regime.as_bytes()));
        let (first, _, _) = split(&chained[len..]);
        assert_eq!(first, 0x81 | 0x40);
        messages.push(inflate_in(&mut window, &chained[len..]));
        assert_eq!(messages, [before.clone(), after.clone()]);
        assert_eq!(last_payload(&plain), after.as_bytes());
        assert!(ends_compressed(&chained) && ends_compressed(&alone));
        assert!(!ends_compressed(&plain));
        let under = Deflate {
            min_bytes: 1 << 20,
            ..DEFLATE
        };
        assert!(!ends_compressed(&under.frame(&plain)), "under the minimum");
    }

    const DEFLATE: Deflate = Deflate {
        min_bytes: 64,
        takeover: true,
    };

    /// The message of one compressed frame, inflated in a connection's window.
    fn inflate_in(window: &mut Decompress, frame: &[u8]) -> String {
        let (_, payload, _) = split(frame);
        let mut input = payload.to_vec();
        input.extend_from_slice(&TAIL);
        let mut out = Vec::with_capacity(1 << 16);
        window
            .decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Several frames in one buffer (what a packet announces, then the packet) are each
    /// compressed on their own: each inflates back to its own message.
    #[test]
    fn each_frame_of_a_buffer_is_compressed_on_its_own() {
        let deflate = DEFLATE;
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
