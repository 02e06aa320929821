//! What a MessagePack packet says (`?format=msgpack`, `docs/PROTOCOL.md` §13.3), read without
//! decoding it: [`classify`] walks the envelope map for its type and seq, and `data`'s map for
//! its `timestamp`, skipping every other value without allocating.
//!
//! The daemon writes the envelope's keys in the JSON's order (`type`, `seq`, `data`, …) but
//! `data`'s keys sorted, so the timestamp is found by walking, not at a fixed place as
//! [`crate::frames::classify`] finds it in a text frame. Pure functions on bytes; the full
//! decode, for the clients that verify, is [`crate::verify`]'s.

use crate::frames::{Frame, parse_rfc3339_ms};

/// How deep [`skip`] follows nested maps and arrays; packets are a few levels deep.
const MAX_DEPTH: u8 = 32;

/// The type, seq and `data.timestamp` of a MessagePack WELCOME or TELEMETRY; [`Frame::Other`]
/// for anything else or anything that does not parse.
pub fn classify(frame: &[u8]) -> Frame {
    let mut r = Reader { b: frame, at: 0 };
    envelope(&mut r).unwrap_or(Frame::Other)
}

fn envelope(r: &mut Reader) -> Option<Frame> {
    let (mut telemetry, mut seq, mut ts_ms) = (None, None, None);
    for _ in 0..r.map_len()? {
        match r.str()? {
            b"type" => match r.str()? {
                b"TELEMETRY" => telemetry = Some(true),
                b"WELCOME" => telemetry = Some(false),
                _ => return None,
            },
            b"seq" => seq = Some(r.uint()?),
            b"data" => ts_ms = timestamp(r)?,
            _ => r.skip(0)?,
        }
    }
    let seq = seq?;
    Some(match telemetry? {
        true => Frame::Telemetry { seq, ts_ms },
        false => Frame::Welcome { seq, ts_ms },
    })
}

/// `data`'s `timestamp`, reading past the whole map; `Some(None)` when it is not a map or has
/// no timestamp that parses.
fn timestamp(r: &mut Reader) -> Option<Option<i64>> {
    if !r.peek_map() {
        r.skip(0)?;
        return Some(None);
    }
    let mut ts = None;
    for _ in 0..r.map_len()? {
        if r.str()? == b"timestamp" && r.peek_str() {
            ts = parse_rfc3339_ms(r.str()?);
        } else {
            r.skip(0)?;
        }
    }
    Some(ts)
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.b.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let bytes = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(bytes)
    }

    /// A big-endian unsigned integer of `n` bytes.
    fn be(&mut self, n: usize) -> Option<u64> {
        Some(
            self.take(n)?
                .iter()
                .fold(0u64, |v, &b| v << 8 | u64::from(b)),
        )
    }

    fn peek_map(&self) -> bool {
        matches!(self.b.get(self.at), Some(0x80..=0x8f | 0xde | 0xdf))
    }

    fn peek_str(&self) -> bool {
        matches!(self.b.get(self.at), Some(0xa0..=0xbf | 0xd9..=0xdb))
    }

    fn map_len(&mut self) -> Option<u64> {
        match self.byte()? {
            b @ 0x80..=0x8f => Some(u64::from(b & 0x0f)),
            0xde => self.be(2),
            0xdf => self.be(4),
            _ => None,
        }
    }

    fn str(&mut self) -> Option<&'a [u8]> {
        let len = match self.byte()? {
            b @ 0xa0..=0xbf => u64::from(b & 0x1f),
            0xd9 => self.be(1)?,
            0xda => self.be(2)?,
            0xdb => self.be(4)?,
            _ => return None,
        };
        self.take(usize::try_from(len).ok()?)
    }

    fn uint(&mut self) -> Option<u64> {
        match self.byte()? {
            b @ 0x00..=0x7f => Some(u64::from(b)),
            0xcc => self.be(1),
            0xcd => self.be(2),
            0xce => self.be(4),
            0xcf => self.be(8),
            _ => None,
        }
    }

    /// Reads past one value of any type.
    fn skip(&mut self, depth: u8) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        let (bytes, items) = match self.byte()? {
            0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => (0, 0),
            b @ 0x80..=0x8f => (0, 2 * u64::from(b & 0x0f)),
            b @ 0x90..=0x9f => (0, u64::from(b & 0x0f)),
            b @ 0xa0..=0xbf => (u64::from(b & 0x1f), 0),
            0xc4 | 0xd9 => (self.be(1)?, 0),
            0xc5 | 0xda => (self.be(2)?, 0),
            0xc6 | 0xdb => (self.be(4)?, 0),
            0xc7 => (self.be(1)? + 1, 0),
            0xc8 => (self.be(2)? + 1, 0),
            0xc9 => (self.be(4)? + 1, 0),
            0xca | 0xce | 0xd2 => (4, 0),
            0xcb | 0xcf | 0xd3 => (8, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => (0, self.be(2)?),
            0xdd => (0, self.be(4)?),
            0xde => (0, 2 * self.be(2)?),
            0xdf => (0, 2 * self.be(4)?),
            0xc1 => return None,
        };
        self.take(usize::try_from(bytes).ok()?)?;
        for _ in 0..items {
            self.skip(depth + 1)?;
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bff::aggregate::{self, Inputs};
    use bff::packet;
    use chrono::Utc;

    /// The daemon's packet in MessagePack: the payload of the binary frame it sends.
    pub fn encode(kind: &str, seq: u64, body: &str) -> Vec<u8> {
        let frame = bff::msgpack::packet(kind, seq, "0123456789abcdef", body, None);
        let (_, payload, _) = crate::frames::raw_frame(&frame).unwrap().unwrap();
        frame[payload].to_vec()
    }

    #[test]
    fn the_daemons_packets_classify_in_messagepack_too() {
        let now = Utc::now();
        let mut data = aggregate::build(&Inputs::default(), now, 50);
        data.state.market.symbol = Some("SPY".into());
        data.state.market.price = Some(451.25);
        let body = packet::body(&data);
        let ms = now.timestamp_millis();
        for seq in [0, 127, 128, 70_000, 5_000_000_000] {
            let telemetry = encode("TELEMETRY", seq, &body);
            assert_eq!(
                classify(&telemetry),
                Frame::Telemetry {
                    seq,
                    ts_ms: Some(ms)
                },
                "{seq}"
            );
            assert_eq!(
                classify(&encode("WELCOME", seq, &body)),
                Frame::Welcome {
                    seq,
                    ts_ms: Some(ms)
                }
            );
            // Cut anywhere, it is not a packet, and nothing panics.
            for cut in [1, 10, telemetry.len() / 2, telemetry.len() - 1] {
                assert_eq!(classify(&telemetry[..cut]), Frame::Other, "{seq} {cut}");
            }
        }
        assert_eq!(classify(&encode("UPDATE", 3, r#"{"a":1}"#)), Frame::Other);
        assert_eq!(
            classify(&encode("TELEMETRY", 3, r#"{"a":[1,-2,3.5,null,true,"x"]}"#)),
            Frame::Telemetry {
                seq: 3,
                ts_ms: None
            }
        );
    }
}
