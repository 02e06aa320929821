//! Where a reconnecting client left off ([`Resume`]), what it is given to start from
//! ([`Subscription`], [`Joined`]), and the store behind the hub's memory ([`History`], the
//! cluster's history in Redis). `join` decides from these where a connection starts.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::snapshot::Snapshot;

/// A connection's feed: what to welcome it with, what it missed, and the receiver for what
/// follows.
pub struct Subscription {
    /// The snapshot to send first, as WELCOME.
    pub welcome: Arc<Snapshot>,
    /// For a client that resumed: the snapshots after `welcome` it missed, in order.
    pub missed: Vec<Arc<Snapshot>>,
    /// For a client that asked to resume: whether it could (`Some(true)`), else `Some(false)`;
    /// `None` when it did not ask.
    pub resumed: Option<bool>,
    /// Every snapshot published after those, in order.
    pub rx: broadcast::Receiver<Arc<Snapshot>>,
}

/// Where a connection starts: the frames to send it first, in order (the first is its WELCOME,
/// the rest TELEMETRY), the last packet among them, and the feed of every packet after it.
pub struct Joined {
    /// The frames, already in the connection's encoding.
    pub frames: Vec<bytes::Bytes>,
    /// The `seq` of the last packet in `frames`.
    pub seq: u64,
    /// Its epoch.
    pub epoch: Arc<str>,
    /// Every snapshot published after those, in order (it may repeat some of `frames`: the
    /// connection skips what is not after `seq` of `epoch`).
    pub rx: broadcast::Receiver<Arc<Snapshot>>,
}

/// Where a reconnecting client left off: the last `seq` it got, and that `seq`'s epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// The last `seq` received.
    pub since: u64,
    /// Its epoch.
    pub epoch: String,
}

/// What a [`History`] answers, some time later: `(seq, serialized data)` pairs, oldest first.
pub type Older<'a> = std::pin::Pin<Box<dyn Future<Output = Vec<(u64, String)>> + Send + 'a>>;

/// Packets older than the hub's memory, where another store keeps them (the cluster's history
/// in Redis), for clients that resume from further back. Implemented by an input; the hub only
/// passes the question on.
pub trait History: Send + Sync + std::fmt::Debug {
    /// The packets of `epoch` from `from` on, oldest first, as `(seq, serialized data)`; empty
    /// when it has no such epoch.
    fn from(&self, epoch: &str, since: u64) -> Older<'_>;
}
