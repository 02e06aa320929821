//! permessage-deflate (RFC 7692) on the way in, for a connection that negotiated it:
//! tungstenite knows no extension and refuses a frame with RSV1 set, so [`Inflater`] sits
//! between the socket and tungstenite and rewrites each compressed message as the plain frame
//! tungstenite expects. Every other frame passes as it came.
//!
//! The daemon answers `client_no_context_takeover`, so each message inflates on its own: no
//! window is kept between messages, and the inflater of an idle connection is a few dozen bytes
//! (made only once its client sends anything, [`super::inbound`]). A message is bounded twice
//! by `clients.max_message_bytes`, compressed as it arrives and inflated as it grows, so a
//! deflate bomb stops at the cap; whatever is wrong is handed to tungstenite as a frame it
//! refuses for that reason (too long: 1009; RSV1: 1002), so every ending is still sorted out in
//! one place.

use std::io::Cursor;

use flate2::{Decompress, FlushDecompress, Status};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::hub::deflate::TAIL;

/// The longest frame header (RFC 6455 §5.2: 2 + 8 length + 4 mask bytes).
const MAX_HEADER: usize = 14;

/// Rewrites a client's byte stream, frame by frame, inflating compressed messages.
#[derive(Debug)]
pub struct Inflater {
    /// `clients.max_message_bytes`.
    limit: usize,
    /// The start of a frame header, while it is incomplete.
    header: Vec<u8>,
    /// Bytes of the current frame's payload still to come.
    remaining: u64,
    /// How the current frame's payload is taken: `None` passed on as it comes.
    collect: Option<Collect>,
    /// The compressed message being collected: its opcode, and its payload so far, unmasked.
    message: Option<(OpCode, Vec<u8>)>,
    /// Set once something was wrong and handed on: tungstenite ends the connection over it,
    /// and whatever follows passes untouched.
    broken: bool,
}

/// A compressed frame's payload being collected.
#[derive(Debug, Clone, Copy)]
struct Collect {
    mask: [u8; 4],
    /// How far into the payload (where in the mask).
    offset: usize,
    /// Whether it ends its message.
    last: bool,
}

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// It inflates to more than the cap.
    TooBig,
    /// It is not raw deflate.
    Corrupt,
}

impl Inflater {
    /// For a client whose messages may be `limit` bytes, compressed or inflated.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            header: Vec::new(),
            remaining: 0,
            collect: None,
            message: None,
            broken: false,
        }
    }

    /// Takes `input`, as read from the socket, and appends to `out` what tungstenite reads in
    /// its place: every frame as it came, but each compressed message as one plain frame, once
    /// it is complete.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            if self.broken {
                out.extend_from_slice(input);
                return;
            }
            if self.remaining > 0 {
                let n = input
                    .len()
                    .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                let (chunk, rest) = input.split_at(n);
                self.take_payload(chunk, out);
                input = rest;
                self.remaining -= n as u64;
                if self.remaining == 0 {
                    self.frame_done(out);
                }
                continue;
            }
            let took = input.len().min(MAX_HEADER - self.header.len());
            self.header.extend_from_slice(&input[..took]);
            let mut cursor = Cursor::new(&self.header[..]);
            let parsed = FrameHeader::parse(&mut cursor);
            let used = cursor.position() as usize;
            match parsed {
                Ok(None) => input = &input[took..],
                Ok(Some((header, len))) => {
                    let unused = self.header.len() - used;
                    input = &input[took - unused..];
                    let raw = std::mem::take(&mut self.header);
                    self.header_done(header, len, &raw[..used], out);
                }
                Err(_) => {
                    // tungstenite refuses the same bytes for the same reason.
                    out.extend_from_slice(&std::mem::take(&mut self.header));
                    input = &input[took..];
                    self.broken = true;
                }
            }
        }
    }

    fn header_done(&mut self, header: FrameHeader, len: u64, raw: &[u8], out: &mut Vec<u8>) {
        let data = matches!(header.opcode, OpCode::Data(Data::Text | Data::Binary));
        let starts = header.rsv1 && data && self.message.is_none();
        let continues = header.opcode == OpCode::Data(Data::Continue) && self.message.is_some();
        if data && self.message.is_some() {
            // A new message while a compressed one waits for its continuation: RFC 6455 §5.4
            // has the connection closed (1002), never the two read out of order.
            return self.refuse(Refused::Corrupt, out);
        }
        let mask = match header.mask {
            Some(mask) if starts || continues => mask,
            // A frame to pass on (tungstenite refuses an unmasked one, or RSV1 where it has no
            // meaning, as it should).
            _ => {
                out.extend_from_slice(raw);
                self.remaining = len;
                self.collect = None;
                return;
            }
        };
        let so_far = self.message.as_ref().map_or(0, |(_, m)| m.len());
        if so_far as u64 + len > self.limit as u64 {
            return self.refuse(Refused::TooBig, out);
        }
        if starts {
            self.message = Some((header.opcode, Vec::with_capacity(len as usize)));
        }
        self.collect = Some(Collect {
            mask,
            offset: 0,
            last: header.is_final,
        });
        self.remaining = len;
        if len == 0 {
            self.frame_done(out);
        }
    }

    fn take_payload(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        match (&mut self.collect, &mut self.message) {
            (Some(collect), Some((_, message))) => {
                message.extend(
                    chunk
                        .iter()
                        .enumerate()
                        .map(|(i, byte)| byte ^ collect.mask[(collect.offset + i) % 4]),
                );
                collect.offset += chunk.len();
            }
            _ => out.extend_from_slice(chunk),
        }
    }

    fn frame_done(&mut self, out: &mut Vec<u8>) {
        let Some(collect) = self.collect.take() else {
            return;
        };
        if !collect.last {
            return;
        }
        let Some((opcode, compressed)) = self.message.take() else {
            return;
        };
        match inflate(&compressed, self.limit) {
            Ok(message) => {
                let header = FrameHeader {
                    opcode,
                    // A zero mask: tungstenite wants one from a client, and it changes nothing.
                    mask: Some([0; 4]),
                    ..FrameHeader::default()
                };
                header
                    .format(message.len() as u64, out)
                    .expect("writing to a Vec cannot fail");
                out.extend_from_slice(&message);
            }
            Err(refused) => self.refuse(refused, out),
        }
    }

    /// Hands tungstenite a frame header it refuses for the same reason: one over its size cap,
    /// or one with RSV1 set.
    fn refuse(&mut self, refused: Refused, out: &mut Vec<u8>) {
        let header = FrameHeader {
            opcode: OpCode::Data(Data::Binary),
            rsv1: refused == Refused::Corrupt,
            mask: Some([0; 4]),
            ..FrameHeader::default()
        };
        let len = match refused {
            Refused::TooBig => self.limit as u64 + 1,
            Refused::Corrupt => 0,
        };
        header
            .format(len, out)
            .expect("writing to a Vec cannot fail");
        self.message = None;
        self.broken = true;
    }
}

/// One RFC 7692 message inflated on its own (the tail put back), refused once it passes
/// `limit` bytes: the output grows as it is written, never to more than `limit + 1`.
pub fn inflate(compressed: &[u8], limit: usize) -> Result<Vec<u8>, Refused> {
    let mut out = Vec::new();
    inflate_into(compressed, limit, &mut out).map(|()| out)
}

/// [`inflate`] into `out`, which it leaves as far as it got.
fn inflate_into(compressed: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), Refused> {
    let mut inflater = Decompress::new(false);
    // Never `clamp`: near the cap the room left is below 64, and clamp would panic.
    out.reserve_exact(compressed.len().saturating_mul(4).max(64).min(limit + 1));
    for input in [compressed, &TAIL[..]] {
        let mut at = 0;
        loop {
            if out.len() > limit {
                return Err(Refused::TooBig);
            }
            if out.len() == out.capacity() {
                let more = out.capacity().max(64).min(limit + 1 - out.len());
                out.reserve_exact(more);
            }
            let (read, written) = (inflater.total_in(), out.len());
            let status = inflater
                .decompress_vec(&input[at..], out, FlushDecompress::Sync)
                .map_err(|_| Refused::Corrupt)?;
            at += (inflater.total_in() - read) as usize;
            let done = at == input.len() && out.len() < out.capacity();
            let stuck = inflater.total_in() == read && out.len() == written;
            if status == Status::StreamEnd || done || stuck {
                break;
            }
        }
    }
    if out.len() > limit {
        return Err(Refused::TooBig);
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::hub::deflate::compress;

    /// A client frame as a browser sends it: masked, RSV1 when compressed.
    pub(crate) fn client_frame(opcode: u8, rsv1: bool, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let first = opcode | if fin { 0x80 } else { 0 } | if rsv1 { 0x40 } else { 0 };
        let mut out = vec![first];
        match payload.len() {
            0..=125 => out.push(0x80 | payload.len() as u8),
            n => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// The plain frame tungstenite reads in a compressed one's place (unmasked: zero mask).
    pub(crate) fn plain(payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x81, 0x80 | payload.len() as u8, 0, 0, 0, 0];
        out.extend_from_slice(payload);
        out
    }

    /// A compressed message, whole or in fragments, read a byte at a time or at once, becomes
    /// the plain frame; a ping between its fragments and a plain message pass as they came.
    #[test]
    fn compressed_messages_become_plain_frames() {
        let text = br#"{"type":"PING","id":"p1"}"#;
        let compressed = compress(text);
        let ping = client_frame(0x9, false, true, b"hi");
        let uncompressed = client_frame(0x1, false, true, b"plain");
        let mut stream = client_frame(0x1, true, true, &compressed);
        stream.extend_from_slice(&uncompressed);
        let (a, b) = compressed.split_at(5);
        stream.extend_from_slice(&client_frame(0x1, true, false, a));
        stream.extend_from_slice(&ping);
        stream.extend_from_slice(&client_frame(0x0, false, true, b));
        let mut expected = plain(text);
        expected.extend_from_slice(&uncompressed);
        expected.extend_from_slice(&ping);
        expected.extend_from_slice(&plain(text));
        for step in [1, 3, stream.len()] {
            let mut inflater = Inflater::new(1024);
            let mut out = Vec::new();
            for chunk in stream.chunks(step) {
                inflater.feed(chunk, &mut out);
            }
            assert_eq!(out, expected, "read {step} bytes at a time");
        }
    }

    /// A bomb (a few hundred bytes that inflate to megabytes) is refused as too long once it
    /// passes the cap, without inflating the rest; so is a compressed message over the cap.
    #[test]
    fn a_deflate_bomb_stops_at_the_cap() {
        let bomb = compress(&vec![b' '; 8 << 20]);
        assert!(bomb.len() < 16 << 10, "{}", bomb.len());
        let mut out = Vec::new();
        assert_eq!(inflate_into(&bomb, 4096, &mut out), Err(Refused::TooBig));
        assert!(out.capacity() <= 4097, "held {} bytes", out.capacity());
        assert_eq!(inflate(&compress(&[b'x'; 4096]), 4096).unwrap().len(), 4096);
        let mut inflater = Inflater::new(4096);
        let mut out = Vec::new();
        inflater.feed(&client_frame(0x1, true, true, &bomb[..4000]), &mut out);
        let mut refused = Cursor::new(&out[..]);
        let (header, len) = FrameHeader::parse(&mut refused).unwrap().unwrap();
        assert_eq!(len, 4097, "{header:?}");
        assert_eq!(inflate(b"\xff\xff\xff", 4096), Err(Refused::Corrupt));
    }

    /// However a client pads its compressed message (empty stored blocks cost it 5 bytes
    /// each), so that the output buffer fills just short of the cap: a bomb is refused and a
    /// message of exactly the cap inflates, never a panic (growing by `clamp(64, room)` once
    /// panicked there, with the room under 64).
    #[test]
    fn a_padded_message_near_the_cap_is_refused_or_read_never_a_panic() {
        const EMPTY_STORED_BLOCK: [u8; 5] = [0x00, 0x00, 0x00, 0xff, 0xff];
        let exact: Vec<u8> = (0..4096u32).map(|i| b'a' + (i * 7 % 26) as u8).collect();
        for (payload, expected) in [
            (vec![b' '; 8000], Err(Refused::TooBig)),
            (exact.clone(), Ok(exact)),
        ] {
            // The whole stream, each message of it sent without its tail, as RFC 7692 has it.
            let mut stream = compress(&payload);
            stream.extend_from_slice(&TAIL);
            while stream.len() < 1100 {
                let message = &stream[..stream.len() - TAIL.len()];
                assert_eq!(
                    inflate(message, 4096),
                    expected,
                    "{} compressed bytes",
                    message.len()
                );
                stream.extend_from_slice(&EMPTY_STORED_BLOCK);
            }
        }
    }

    /// A plain message sent in the middle of a fragmented compressed one is a protocol error
    /// (RFC 6455 §5.4), refused as tungstenite refuses one: not passed on ahead of it.
    #[test]
    fn a_message_inside_a_fragmented_compressed_one_is_refused() {
        let compressed = compress(b"{\"type\":\"PING\"}");
        let (first, rest) = compressed.split_at(compressed.len() / 2);
        let mut inflater = Inflater::new(4096);
        let mut out = Vec::new();
        inflater.feed(&client_frame(0x1, true, false, first), &mut out);
        assert!(out.is_empty(), "the fragment waits for its continuation");
        inflater.feed(
            &client_frame(0x1, false, true, b"{\"type\":\"PING\"}"),
            &mut out,
        );
        inflater.feed(&client_frame(0x0, false, true, rest), &mut out);
        let (header, len) = FrameHeader::parse(&mut Cursor::new(&out[..]))
            .unwrap()
            .unwrap();
        assert!(header.rsv1 && len == 0, "{header:?} {len}");
    }
}
