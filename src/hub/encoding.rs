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

use super::announce::{Announcements, MoodChange};
use super::frame;
use super::mood::{Alert, MoodNow};
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
    /// The `server.market_stream_paths` dialect (`docs/PROTOCOL.md` §12.6): the mood as
    /// `market_regime` on connect and on every change, each alert raised or cleared as `alert`,
    /// no packets; relayed messages and answers as on a bridge path.
    MarketStream,
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
    /// The mood changed (§12.5): written before the packet that carries it.
    Regime(&'a MoodChange),
    /// An alert raised or cleared (§12.5): written before the packet that carries it.
    Alert(&'a Alert),
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
    pub const ALL: [Self; 3] = [Self::Stream, Self::Bridge, Self::MarketStream];

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
            Self::MarketStream => market_stream(message),
        }
    }

    /// One snapshot's frames as this encoding writes them: what it announces (a `REGIME`, each
    /// `ALERT`), then the packet, in one buffer shared like a packet (empty when there is
    /// nothing for this encoding, which a connection then skips); and how many of its bytes come
    /// before the packet.
    pub fn packet_frames(self, announced: &Announcements, packet: Packet<'_>) -> (Bytes, usize) {
        let regime = announced.regime.iter().map(Message::Regime);
        let mut frames: Vec<Bytes> = regime
            .chain(announced.alerts.iter().map(Message::Alert))
            .map(|message| self.frame(message))
            .filter(|frame| !frame.is_empty())
            .collect();
        let before = frames.iter().map(Bytes::len).sum();
        let packet = self.frame(Message::Packet(packet));
        if !packet.is_empty() {
            frames.push(packet);
        }
        let buffer = match <[Bytes; 1]>::try_from(frames) {
            Ok([one]) => one,
            Err(frames) => frames.concat().into(),
        };
        (buffer, before)
    }

    /// Whether a client may resume where it left off (`?since=…&epoch=…`): only where packets
    /// carry a `seq` to resume from.
    pub fn resumes(self) -> bool {
        match self {
            Self::Stream => true,
            Self::Bridge | Self::MarketStream => false,
        }
    }

    /// Whether the hub's fan-out writes this encoding's packets itself (see `super::Outlet`):
    /// where every snapshot is one frame of the stream packet's size, as the pass counts it. A
    /// market-stream connection, with a frame a few times an hour, reads its feed instead.
    pub fn fanned_out(self) -> bool {
        match self {
            Self::Stream => true,
            Self::Bridge | Self::MarketStream => false,
        }
    }

    /// Whether packets come only while the client subscribes to the `telemetry` channel, rather
    /// than from the start.
    pub fn telemetry_is_a_channel(self) -> bool {
        match self {
            Self::Stream | Self::MarketStream => false,
            Self::Bridge => true,
        }
    }

    /// Whether every answer (`pong`, `subscribed`, `unsubscribed`) is lowercase, whatever the
    /// case of the request.
    pub fn lowercase(self) -> bool {
        match self {
            Self::Stream => false,
            Self::Bridge | Self::MarketStream => true,
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
        Message::Regime(change) => tagged("REGIME", change),
        Message::Alert(alert) => tagged("ALERT", alert),
    };
    frame::text_frame(&text)
}

/// `{"type":<kind>,"data":<data>}`.
fn tagged(kind: &str, data: &impl serde::Serialize) -> String {
    let data = serde_json::to_string(data).expect("an announcement serializes");
    format!(r#"{{"type":"{kind}","data":{data}}}"#)
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
        // The packet carries them (`data.mood`, `data.alerts`) to whoever subscribed to it.
        Message::Regime(_) | Message::Alert(_) => return Bytes::new(),
    };
    frame::text_frame(&text)
}

/// The market-stream dialect: the mood and the alerts with their fields at the top level; the
/// packet itself is not sent, and relayed messages are as on a bridge path.
fn market_stream(message: Message<'_>) -> Bytes {
    match message {
        Message::Packet(_) => Bytes::new(),
        Message::Welcome(p, _) => greeting(p.body),
        Message::Update { .. } => bridge(message),
        Message::Regime(change) => frame::text_frame(&flat("market_regime", change)),
        Message::Alert(alert) => frame::text_frame(&flat("alert", alert)),
    }
}

/// `{"type":<kind>, …the fields of `fields`…}`.
fn flat(kind: &'static str, fields: &impl serde::Serialize) -> String {
    #[derive(serde::Serialize)]
    struct Flat<'a, T> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(flatten)]
        fields: &'a T,
    }
    serde_json::to_string(&Flat { kind, fields }).expect("an announcement serializes")
}

/// What a market-stream client gets on connect, read from the packet's `data`: the mood as
/// `market_regime`, then each active alert as `alert`, in one buffer.
fn greeting(body: &str) -> Bytes {
    #[derive(serde::Deserialize)]
    struct Now {
        mood: MoodNow,
        alerts: Vec<Alert>,
    }
    // Every packet has both (a daemon reads its cluster's packets as the same type).
    let Ok(now) = serde_json::from_str::<Now>(body) else {
        return Bytes::new();
    };
    let mood = std::iter::once(flat("market_regime", &now.mood));
    let alerts = now.alerts.iter().map(|alert| flat("alert", alert));
    let frames: Vec<Bytes> = mood
        .chain(alerts)
        .map(|text| frame::text_frame(&text))
        .collect();
    frames.concat().into()
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

    /// `REGIME` and `ALERT` as each dialect writes them (PROTOCOL.md §12.5, §12.6), and the
    /// market-stream path's greeting read from a packet's data.
    #[test]
    fn each_encoding_writes_the_mood_and_alerts_in_its_dialect() {
        use crate::config::AlertLevel;
        use crate::hub::mood::Regime;
        use crate::hub::packet::{Market, Telemetry, Timestamp};
        let at = Timestamp(chrono::DateTime::from_timestamp_millis(1_766_318_400_000).unwrap());
        let change = MoodChange {
            mood: MoodNow::neutral(at),
            previous: Regime::Bull,
            market: Market::default(),
        };
        let alert = Alert {
            level: AlertLevel::Warning,
            code: "STALE_AGENTS".into(),
            message: "m".into(),
            timestamp: at,
            active: false,
        };
        let mood = r#""regime":"neutral","label":"Neutral","persona":{"name":"Steady Hand","headline":"STAY THE COURSE"},"since":"2025-12-21T12:00:00.000Z""#;
        let market = r#""market":{"symbol":null,"price":null,"alpha":null,"regime":null,"velocity":null,"acceleration":null}"#;
        let fields = r#""level":"warning","code":"STALE_AGENTS","message":"m","timestamp":"2025-12-21T12:00:00.000Z","active":false"#;
        let cases: [(Encoding, Message<'_>, String); 6] = [
            (
                Encoding::Stream,
                Message::Regime(&change),
                format!(r#"{{"type":"REGIME","data":{{{mood},"previous":"bull",{market}}}}}"#),
            ),
            (
                Encoding::Stream,
                Message::Alert(&alert),
                format!(r#"{{"type":"ALERT","data":{{{fields}}}}}"#),
            ),
            (Encoding::Bridge, Message::Regime(&change), String::new()),
            (Encoding::Bridge, Message::Alert(&alert), String::new()),
            (
                Encoding::MarketStream,
                Message::Regime(&change),
                format!(r#"{{"type":"market_regime",{mood},"previous":"bull",{market}}}"#),
            ),
            (
                Encoding::MarketStream,
                Message::Alert(&alert),
                format!(r#"{{"type":"alert",{fields}}}"#),
            ),
        ];
        for (encoding, message, text) in cases {
            let want = match text.is_empty() {
                true => Bytes::new(),
                false => frame::text_frame(&text),
            };
            assert_eq!(encoding.frame(message), want, "{encoding:?} {message:?}");
        }
        let mut data = Telemetry::initializing(at.0);
        data.alerts.push(Alert {
            active: true,
            ..alert
        });
        let body = packet::body(&data);
        let parts = Packet {
            seq: 1,
            epoch: "e",
            body: &body,
        };
        assert!(
            Encoding::MarketStream
                .frame(Message::Packet(parts))
                .is_empty()
        );
        let greeting = [
            frame::text_frame(&format!(r#"{{"type":"market_regime",{mood}}}"#)),
            frame::text_frame(&format!(
                r#"{{"type":"alert",{}}}"#,
                fields.replace("false", "true")
            )),
        ]
        .concat();
        assert_eq!(
            Encoding::MarketStream.frame(Message::Welcome(parts, None)),
            greeting
        );
    }

    #[test]
    fn every_encoding_has_its_own_slot() {
        for (i, encoding) in Encoding::ALL.into_iter().enumerate() {
            assert_eq!(encoding.index(), i, "{encoding:?}");
        }
    }
}
