//! How a connection's frames are written: one [`Encoding`] per connection, chosen when it is
//! admitted, and one builder per encoding that turns what is sent (a packet, the WELCOME, a
//! relayed message) into its frame. Snapshots and relayed messages hand each connection the
//! frame of its encoding, built once and shared by every connection that uses it
//! ([`super::Snapshot::packet`], [`super::relay::Update::frame`]), so the edge never picks a
//! frame itself.
//!
//! A new way of writing packets (compressed, delta, binary) is one variant here, its builder,
//! and its answers to the questions below; nothing in the edge changes.

use bytes::Bytes;

use super::frame;
use super::packet;

/// How a connection's frames are written, and the dialect it talks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The `server.ws_paths` dialect: WELCOME at once, then every TELEMETRY, each with its
    /// `seq` and `epoch`; relayed messages as `UPDATE` with their `offset`.
    Stream,
    /// The `server.bridge_paths` dialect, a Redis-to-WebSocket bridge's: nothing until the
    /// client subscribes; the packet as an `update` on the `telemetry` channel, relayed messages
    /// as `update` without an offset, every answer lowercase.
    Bridge,
}

/// What a frame carries, whatever an encoding writes it as.
#[derive(Debug, Clone, Copy)]
pub enum Message<'a> {
    /// One packet of the feed.
    Packet(Packet<'a>),
    /// The packet a connection starts with; `resumed` says, to a client that asked to resume,
    /// whether what it missed follows.
    Welcome(Packet<'a>, Option<bool>),
    /// A message relayed from a Redis channel.
    Update {
        /// The channel it was heard on.
        channel: &'a str,
        /// Its number on that channel.
        offset: u64,
        /// The message, as JSON.
        data: &'a str,
    },
}

/// One snapshot's parts that its frames carry.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// Its number within `epoch`.
    pub seq: u64,
    /// The sequence `seq` belongs to.
    pub epoch: &'a str,
    /// The serialized data.
    pub body: &'a str,
}

impl Encoding {
    /// Every encoding, in [`Encoding::index`] order.
    pub const ALL: [Self; 2] = [Self::Stream, Self::Bridge];

    /// How many there are: the size of the per-encoding frame tables.
    pub const COUNT: usize = Self::ALL.len();

    /// Where this encoding's frame sits in a per-encoding table.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// `message` written as this encoding's frame: each encoding's one builder.
    pub fn frame(self, message: Message<'_>) -> Bytes {
        match self {
            Self::Stream => stream(message),
            Self::Bridge => bridge(message),
        }
    }

    /// Whether a client may resume where it left off (`?since=…&epoch=…`): only where packets
    /// carry a `seq` to resume from.
    pub fn resumes(self) -> bool {
        match self {
            Self::Stream => true,
            Self::Bridge => false,
        }
    }

    /// Whether packets come only while the client subscribes to the `telemetry` channel, rather
    /// than from the start.
    pub fn telemetry_is_a_channel(self) -> bool {
        match self {
            Self::Stream => false,
            Self::Bridge => true,
        }
    }

    /// Whether every answer (`pong`, `subscribed`, `unsubscribed`) is lowercase, whatever the
    /// case of the request.
    pub fn lowercase(self) -> bool {
        match self {
            Self::Stream => false,
            Self::Bridge => true,
        }
    }
}

/// The stream dialect: the packet's own envelopes, and `UPDATE` with its offset.
fn stream(message: Message<'_>) -> Bytes {
    let text = match message {
        Message::Packet(p) => packet::envelope("TELEMETRY", p.seq, p.epoch, p.body, None),
        Message::Welcome(p, resumed) => {
            packet::envelope("WELCOME", p.seq, p.epoch, p.body, resumed)
        }
        Message::Update {
            channel,
            offset,
            data,
        } => {
            let name = serde_json::to_string(channel).expect("a string serializes");
            format!(r#"{{"type":"UPDATE","channel":{name},"offset":{offset},"data":{data}}}"#)
        }
    };
    frame::text_frame(&text)
}

/// The bridge dialect: everything an `update` of its channel, the packet on `telemetry`.
fn bridge(message: Message<'_>) -> Bytes {
    let text = match message {
        Message::Packet(p) | Message::Welcome(p, _) => {
            format!(
                r#"{{"type":"update","channel":"telemetry","data":{}}}"#,
                p.body
            )
        }
        Message::Update { channel, data, .. } => {
            let name = serde_json::to_string(channel).expect("a string serializes");
            format!(r#"{{"type":"update","channel":{name},"data":{data}}}"#)
        }
    };
    frame::text_frame(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each builder writes exactly the frames its dialect always has (`docs/PROTOCOL.md`).
    #[test]
    fn each_encoding_writes_its_dialect_byte_for_byte() {
        let packet = Packet {
            seq: 7,
            epoch: "e1",
            body: r#"{"a":1}"#,
        };
        let update = Message::Update {
            channel: "trade.results",
            offset: 3,
            data: r#"{"b":2}"#,
        };
        let cases: [(Encoding, Message<'_>, &str); 7] = [
            (
                Encoding::Stream,
                Message::Packet(packet),
                r#"{"type":"TELEMETRY","seq":7,"data":{"a":1},"epoch":"e1"}"#,
            ),
            (
                Encoding::Stream,
                Message::Welcome(packet, None),
                r#"{"type":"WELCOME","seq":7,"data":{"a":1},"epoch":"e1"}"#,
            ),
            (
                Encoding::Stream,
                Message::Welcome(packet, Some(false)),
                r#"{"type":"WELCOME","seq":7,"data":{"a":1},"epoch":"e1","resumed":false}"#,
            ),
            (
                Encoding::Stream,
                update,
                r#"{"type":"UPDATE","channel":"trade.results","offset":3,"data":{"b":2}}"#,
            ),
            (
                Encoding::Bridge,
                Message::Packet(packet),
                r#"{"type":"update","channel":"telemetry","data":{"a":1}}"#,
            ),
            (
                Encoding::Bridge,
                Message::Welcome(packet, None),
                r#"{"type":"update","channel":"telemetry","data":{"a":1}}"#,
            ),
            (
                Encoding::Bridge,
                update,
                r#"{"type":"update","channel":"trade.results","data":{"b":2}}"#,
            ),
        ];
        for (encoding, message, text) in cases {
            assert_eq!(
                encoding.frame(message),
                frame::text_frame(text),
                "{encoding:?} {message:?}"
            );
        }
    }

    #[test]
    fn every_encoding_has_its_own_slot() {
        for (i, encoding) in Encoding::ALL.into_iter().enumerate() {
            assert_eq!(encoding.index(), i, "{encoding:?}");
        }
    }
}
