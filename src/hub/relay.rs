//! Relay channels: messages heard on Redis, passed as they are to the dashboards that subscribed
//! to their channel (`docs/PROTOCOL.md` §9). Each message gets the next `offset` of its channel
//! and is framed once per dialect (`UPDATE` on the stream paths, `update` on the bridge paths);
//! every subscriber writes those same bytes.
//!
//! A subscription is a topic: one exact channel, or a pattern (`market.tick.*`). Topics are made
//! when the first dashboard subscribes and dropped once nobody listens, so a message nobody
//! wants costs a lookup and no framing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::de::IgnoredAny;
use tokio::sync::broadcast;

use super::frame;
use crate::config::{is_pattern, matches};

/// Relayed messages a subscriber may fall behind on one topic before it skips ahead (and
/// sees the gap in `offset`).
const TOPIC_CAPACITY: usize = 256;

/// Channels whose offsets are kept; past this, the least recently heard is forgotten (its
/// offsets start again, which a client sees as a new sequence).
const MAX_CHANNELS: usize = 10_000;

/// One relayed message, framed for both dialects.
#[derive(Debug)]
pub struct Update {
    /// The channel it was published on.
    pub channel: Arc<str>,
    /// One more than the previous message on that channel.
    pub offset: u64,
    /// `{"type":"UPDATE","channel":…,"offset":…,"data":…}`, framed.
    pub stream: Bytes,
    /// `{"type":"update","channel":…,"data":…}`, framed.
    pub bridge: Bytes,
}

/// The relay's topics and offsets, shared by the Redis input and every session.
#[derive(Debug, Default)]
pub struct Relay {
    /// Held to number a message and pick its topics, or to add a topic; the framing and the
    /// sends happen outside it.
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Per channel: its last offset and when it was last heard (a message count).
    offsets: HashMap<Arc<str>, (u64, u64)>,
    topics: HashMap<String, broadcast::Sender<Arc<Update>>>,
    heard: u64,
}

impl Relay {
    /// Relays one message heard on `channel` to every topic it matches. A payload that is not
    /// JSON is carried as `{"raw": "<text>"}`. Returns how many subscriptions it reached.
    pub fn publish(&self, channel: &str, payload: &[u8]) -> usize {
        let (channel, offset, senders) = {
            let mut inner = self.inner.lock().expect("relay lock poisoned");
            inner.heard += 1;
            let heard = inner.heard;
            if inner.offsets.len() >= MAX_CHANNELS && !inner.offsets.contains_key(channel) {
                let oldest = inner
                    .offsets
                    .iter()
                    .min_by_key(|(_, (_, last))| *last)
                    .map(|(c, _)| c.clone());
                if let Some(oldest) = oldest {
                    inner.offsets.remove(&oldest);
                }
            }
            let name: Arc<str> = match inner.offsets.get_key_value(channel) {
                Some((name, _)) => name.clone(),
                None => channel.into(),
            };
            let entry = inner.offsets.entry(name.clone()).or_insert((0, 0));
            entry.0 += 1;
            entry.1 = heard;
            let offset = entry.0;
            inner.topics.retain(|_, tx| tx.receiver_count() > 0);
            let senders: Vec<_> = inner
                .topics
                .iter()
                .filter(|(topic, _)| {
                    topic.as_str() == channel || (is_pattern(topic) && matches(topic, channel))
                })
                .map(|(_, tx)| tx.clone())
                .collect();
            (name, offset, senders)
        };
        if senders.is_empty() {
            return 0;
        }
        let update = Arc::new(frames(channel, offset, payload));
        senders
            .iter()
            .filter(|tx| tx.send(update.clone()).is_ok())
            .count()
    }

    /// Joins `topic` (a channel or a pattern): every later message it matches.
    pub fn subscribe(&self, topic: &str) -> broadcast::Receiver<Arc<Update>> {
        let mut inner = self.inner.lock().expect("relay lock poisoned");
        inner
            .topics
            .entry(topic.to_owned())
            .or_insert_with(|| broadcast::channel(TOPIC_CAPACITY).0)
            .subscribe()
    }

    /// Topics with at least one subscriber now.
    pub fn topics(&self) -> usize {
        let inner = self.inner.lock().expect("relay lock poisoned");
        inner
            .topics
            .values()
            .filter(|tx| tx.receiver_count() > 0)
            .count()
    }
}

/// Both dialects' frames of one message.
fn frames(channel: Arc<str>, offset: u64, payload: &[u8]) -> Update {
    let raw;
    let data = if serde_json::from_slice::<IgnoredAny>(payload).is_ok() {
        std::str::from_utf8(payload).expect("JSON that parsed is UTF-8")
    } else {
        raw = serde_json::json!({ "raw": String::from_utf8_lossy(payload) }).to_string();
        &raw
    };
    let name = serde_json::to_string(&*channel).expect("a string serializes");
    let stream = format!(r#"{{"type":"UPDATE","channel":{name},"offset":{offset},"data":{data}}}"#);
    let bridge = format!(r#"{{"type":"update","channel":{name},"data":{data}}}"#);
    Update {
        channel,
        offset,
        stream: frame::text_frame(&stream),
        bridge: frame::text_frame(&bridge),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON inside a small unmasked text frame.
    fn json(frame: &[u8]) -> serde_json::Value {
        let (len, at) = match frame[1] {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            n => (n as usize, 2),
        };
        serde_json::from_slice(&frame[at..at + len]).unwrap()
    }

    #[test]
    fn subscribers_of_a_channel_or_a_matching_pattern_get_each_message_with_its_offset() {
        let relay = Relay::default();
        let mut exact = relay.subscribe("trade.results");
        let mut pattern = relay.subscribe("market.tick.*");
        assert_eq!(relay.publish("trade.results", br#"{"n":1}"#), 1);
        assert_eq!(relay.publish("market.tick.SPY", br#"{"price":450.1}"#), 1);
        assert_eq!(relay.publish("market.tick.AAPL", br#"{"price":190}"#), 1);
        assert_eq!(relay.publish("risk.state", b"{}"), 0, "nobody listens");
        assert_eq!(relay.publish("trade.results", br#"{"n":2}"#), 1);

        let update = exact.try_recv().unwrap();
        assert_eq!(
            json(&update.stream),
            serde_json::json!({"type": "UPDATE", "channel": "trade.results", "offset": 1, "data": {"n": 1}})
        );
        assert_eq!(
            json(&update.bridge),
            serde_json::json!({"type": "update", "channel": "trade.results", "data": {"n": 1}})
        );
        assert_eq!(exact.try_recv().unwrap().offset, 2);
        let ticks: Vec<_> = std::iter::from_fn(|| pattern.try_recv().ok())
            .map(|u| (u.channel.to_string(), u.offset))
            .collect();
        // Offsets count per channel.
        assert_eq!(
            ticks,
            [
                ("market.tick.SPY".into(), 1),
                ("market.tick.AAPL".into(), 1)
            ]
        );
    }

    #[test]
    fn text_that_is_not_json_is_carried_as_raw() {
        let relay = Relay::default();
        let mut rx = relay.subscribe("agent.updates");
        relay.publish("agent.updates", b"not json at all: {\"price\": 1");
        let update = rx.try_recv().unwrap();
        assert_eq!(
            json(&update.stream)["data"],
            serde_json::json!({"raw": "not json at all: {\"price\": 1"})
        );
    }

    #[test]
    fn topics_nobody_listens_to_go_away() {
        let relay = Relay::default();
        let rx = relay.subscribe("risk.state");
        assert_eq!(relay.topics(), 1);
        drop(rx);
        relay.publish("risk.state", b"{}");
        assert_eq!(relay.topics(), 0);
    }
}
