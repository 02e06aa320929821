//! The hub: the one place packets come from. It numbers each snapshot (or takes the number its
//! producer gives), serializes it once, keeps the latest for newcomers, and fans the same shared
//! bytes out to every connection.
//!
//! Producers (`crate::input`: today the poller) call [`Hub::publish`] or
//! [`Hub::publish_numbered`]; connections (`crate::edge`) only ever call [`Hub::subscribe`], so
//! either side can change without touching the other. What a client may ask for beyond the
//! live stream (a resume history, other encodings) belongs here too.

pub mod frame;
pub mod packet;
pub mod relay;

use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use tokio::sync::{Notify, broadcast};

use self::packet::Telemetry;

/// One published snapshot: its number, its data, and its two WebSocket frames ready to write.
#[derive(Debug)]
pub struct Snapshot {
    /// Grows by one per snapshot; 0 is the INITIALIZING snapshot before the first poll.
    pub seq: u64,
    /// The typed data, for `/health` and logs.
    pub data: Telemetry,
    /// The framed `{"type":"TELEMETRY",…}`, written as is by every connection.
    pub telemetry: Bytes,
    /// The framed `{"type":"WELCOME",…}`, for clients that connect while this is the latest.
    pub welcome: Bytes,
    /// The serialized `data`, kept for the frames made on demand.
    body: Bytes,
    /// `{"type":"update","channel":"telemetry","data":…}` framed, for bridge clients that
    /// subscribed to the packet; made by the first that needs it.
    bridge: OnceLock<Bytes>,
}

impl Snapshot {
    /// The packet as a bridge-dialect update on the `telemetry` channel, framed once.
    pub fn bridge_frame(&self) -> &Bytes {
        self.bridge.get_or_init(|| {
            let body = std::str::from_utf8(&self.body).expect("a serialized body is UTF-8");
            frame::text_frame(&format!(
                r#"{{"type":"update","channel":"telemetry","data":{body}}}"#
            ))
        })
    }
}

/// A cheap, cloneable handle to the hub.
#[derive(Debug, Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// The latest snapshot. A mutex rather than a lock-free cell because publish and subscribe
    /// must each be atomic with the broadcast: a subscriber gets exactly the snapshots after the
    /// one it is welcomed with, no gap and no repeat. The data is serialized before it is taken,
    /// so it is held only to copy that body into the two envelopes and swap a pointer.
    latest: Mutex<Arc<Snapshot>>,
    /// A bounded ring shared by all connections: each reads at its own pace, and one that falls
    /// more than its capacity behind is told it lagged (and is disconnected) instead of holding
    /// memory or slowing the producer.
    tx: broadcast::Sender<Arc<Snapshot>>,
    /// Messages relayed from Redis channels to the dashboards that subscribed.
    relay: relay::Relay,
    /// Raised when a consumer needs a fresh snapshot sooner than the next tick (a command
    /// changed the engine's state); the producer takes it as a cue to poll at once.
    refresh: Notify,
}

/// A connection's feed: the snapshot to welcome it with and the receiver for what follows.
pub struct Subscription {
    /// The latest snapshot when the connection subscribed.
    pub welcome: Arc<Snapshot>,
    /// Every snapshot published after `welcome`, in order.
    pub rx: broadcast::Receiver<Arc<Snapshot>>,
}

/// A producer's numbered snapshot that would have made `seq` go backwards or repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("seq {given} is not after the latest published seq {latest}")]
pub struct OutOfOrder {
    /// The number the producer gave.
    pub given: u64,
    /// The latest number published.
    pub latest: u64,
}

impl Hub {
    /// A hub whose latest snapshot is `initial` (seq 0); `queue_size` is how many snapshots a
    /// connection may fall behind.
    pub fn new(initial: Telemetry, queue_size: usize) -> Self {
        let (tx, _) = broadcast::channel(queue_size);
        let body = packet::body(&initial);
        Self {
            shared: Arc::new(Shared {
                latest: Mutex::new(Arc::new(snapshot(0, initial, body))),
                tx,
                relay: relay::Relay::default(),
                refresh: Notify::new(),
            }),
        }
    }

    /// Numbers (one after the latest), serializes and sends one snapshot to every connection;
    /// returns it.
    pub fn publish(&self, data: Telemetry) -> Arc<Snapshot> {
        let body = packet::body(&data);
        self.release(None, data, body)
            .expect("the hub's own numbering is always in order")
    }

    /// Sends one snapshot numbered by its producer (a sequence several daemons share), with
    /// `body` its data already serialized when the producer has it (else it is serialized here).
    /// A `seq` not above the latest is refused, so no client sees one go backwards or repeat.
    pub fn publish_numbered(
        &self,
        seq: u64,
        data: Telemetry,
        body: Option<String>,
    ) -> Result<Arc<Snapshot>, OutOfOrder> {
        let body = body.unwrap_or_else(|| packet::body(&data));
        self.release(Some(seq), data, body)
    }

    fn release(
        &self,
        seq: Option<u64>,
        data: Telemetry,
        body: String,
    ) -> Result<Arc<Snapshot>, OutOfOrder> {
        let mut latest = self.shared.latest.lock().expect("hub lock poisoned");
        let seq = match seq {
            None => latest.seq + 1,
            Some(given) if given > latest.seq => given,
            Some(given) => {
                return Err(OutOfOrder {
                    given,
                    latest: latest.seq,
                });
            }
        };
        let next = Arc::new(snapshot(seq, data, body));
        *latest = next.clone();
        // An error only means nobody is connected right now.
        let _ = self.shared.tx.send(next.clone());
        Ok(next)
    }

    /// Joins the feed: the latest snapshot now, then every later one.
    pub fn subscribe(&self) -> Subscription {
        let latest = self.shared.latest.lock().expect("hub lock poisoned");
        Subscription {
            rx: self.shared.tx.subscribe(),
            welcome: latest.clone(),
        }
    }

    /// The latest snapshot.
    pub fn latest(&self) -> Arc<Snapshot> {
        self.shared
            .latest
            .lock()
            .expect("hub lock poisoned")
            .clone()
    }

    /// Asks the producer for a fresh snapshot now rather than at its next tick. Requests made
    /// before the producer gets to them count once.
    pub fn request_refresh(&self) {
        self.shared.refresh.notify_one();
    }

    /// Resolves when a fresh snapshot was asked for (see [`Hub::request_refresh`]).
    pub async fn refresh_requested(&self) {
        self.shared.refresh.notified().await;
    }

    /// The relay channels: the Redis input publishes to them, sessions subscribe.
    pub fn relay(&self) -> &relay::Relay {
        &self.shared.relay
    }

    /// Connections currently subscribed.
    pub fn subscribers(&self) -> usize {
        self.shared.tx.receiver_count()
    }
}

fn snapshot(seq: u64, data: Telemetry, body: String) -> Snapshot {
    let (telemetry, welcome) = packet::frames(seq, &body);
    Snapshot {
        seq,
        data,
        telemetry: frame::text_frame(&telemetry),
        welcome: frame::text_frame(&welcome),
        body: body.into(),
        bridge: OnceLock::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn data() -> Telemetry {
        Telemetry::initializing(Utc::now())
    }

    /// The JSON inside a frame written by `frame::text_frame` (payloads here are 126..65535 bytes).
    fn json(frame: &[u8]) -> serde_json::Value {
        assert_eq!(
            (frame[0], frame[1]),
            (0x81, 126),
            "a final text frame with a 16-bit length"
        );
        let len = u16::from_be_bytes([frame[2], frame[3]]) as usize;
        assert_eq!(frame.len(), 4 + len);
        serde_json::from_slice(&frame[4..]).unwrap()
    }

    #[test]
    fn a_subscriber_gets_exactly_the_snapshots_after_its_welcome() {
        let hub = Hub::new(data(), 4);
        hub.publish(data());
        let Subscription { welcome, mut rx } = hub.subscribe();
        assert_eq!(welcome.seq, 1);
        hub.publish(data());
        hub.publish(data());
        assert_eq!(rx.try_recv().unwrap().seq, 2);
        assert_eq!(rx.try_recv().unwrap().seq, 3);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn both_frames_carry_the_same_seq_and_data() {
        let hub = Hub::new(data(), 4);
        let snapshot = hub.publish(data());
        let (telemetry, welcome) = (json(&snapshot.telemetry), json(&snapshot.welcome));
        assert_eq!(
            (telemetry["type"].as_str(), welcome["type"].as_str()),
            (Some("TELEMETRY"), Some("WELCOME"))
        );
        assert_eq!(
            (telemetry["seq"].as_u64(), welcome["seq"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(telemetry["data"], welcome["data"]);
        assert_eq!(
            telemetry["data"],
            serde_json::to_value(&snapshot.data).unwrap()
        );
    }

    #[test]
    fn a_producers_numbers_are_kept_and_never_go_back() {
        let hub = Hub::new(data(), 4);
        let Subscription { mut rx, .. } = hub.subscribe();
        let body = packet::body(&data());
        let given = hub
            .publish_numbered(41, data(), Some(body.clone()))
            .unwrap();
        assert_eq!(given.seq, 41);
        // The producer's serialized body is what goes out.
        assert!(
            json(&given.telemetry)["data"]
                == serde_json::from_str::<serde_json::Value>(&body).unwrap()
        );
        assert_eq!(
            hub.publish_numbered(41, data(), None).unwrap_err(),
            OutOfOrder {
                given: 41,
                latest: 41
            }
        );
        assert_eq!(
            hub.publish_numbered(7, data(), None).unwrap_err().latest,
            41
        );
        // The hub's own numbering carries on from the producer's.
        assert_eq!(hub.publish(data()).seq, 42);
        let seqs: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok().map(|s| s.seq)).collect();
        assert_eq!(seqs, [41, 42]);
    }
}
