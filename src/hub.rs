//! The hub: the one place packets come from. It numbers each snapshot, serializes it once, keeps
//! the latest for newcomers, and fans the same shared bytes out to every connection.
//!
//! Any producer (today the poller; later a Redis feed) calls [`Hub::publish`]; connections only
//! ever call [`Hub::subscribe`], so producers can change without touching them.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::broadcast;

use crate::packet::{self, Telemetry};
use crate::wire;

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
}

/// A connection's feed: the snapshot to welcome it with and the receiver for what follows.
pub struct Subscription {
    pub welcome: Arc<Snapshot>,
    pub rx: broadcast::Receiver<Arc<Snapshot>>,
}

impl Hub {
    /// A hub whose latest snapshot is `initial` (seq 0); `queue_size` is how many snapshots a
    /// connection may fall behind.
    pub fn new(initial: Telemetry, queue_size: usize) -> Self {
        let (tx, _) = broadcast::channel(queue_size);
        let body = packet::body(&initial);
        Self {
            shared: Arc::new(Shared {
                latest: Mutex::new(Arc::new(snapshot(0, initial, &body))),
                tx,
            }),
        }
    }

    /// Numbers, serializes and sends one snapshot to every connection; returns it.
    pub fn publish(&self, data: Telemetry) -> Arc<Snapshot> {
        let body = packet::body(&data);
        let mut latest = self.shared.latest.lock().expect("hub lock poisoned");
        let next = Arc::new(snapshot(latest.seq + 1, data, &body));
        *latest = next.clone();
        // An error only means nobody is connected right now.
        let _ = self.shared.tx.send(next.clone());
        next
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

    /// Connections currently subscribed.
    pub fn subscribers(&self) -> usize {
        self.shared.tx.receiver_count()
    }
}

fn snapshot(seq: u64, data: Telemetry, body: &str) -> Snapshot {
    let (telemetry, welcome) = packet::frames(seq, body);
    Snapshot {
        seq,
        data,
        telemetry: wire::text_frame(&telemetry),
        welcome: wire::text_frame(&welcome),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{self, Inputs};
    use chrono::Utc;

    fn data() -> Telemetry {
        aggregate::build(&Inputs::default(), Utc::now(), 50)
    }

    /// The JSON inside a frame written by `wire::text_frame` (payloads here are 126..65535 bytes).
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
}
