//! The hub: the one place packets come from. It numbers each snapshot (or takes the number its
//! producer gives), serializes it once, keeps the latest for newcomers, and fans the same shared
//! bytes out to every connection.
//!
//! Producers (`crate::input`: the poller) call [`Hub::publish`] or [`Hub::publish_numbered`];
//! connections (`crate::edge`) only ever call [`Hub::join`] (or [`Hub::subscribe`]), so
//! either side can change without touching the other. Each snapshot belongs to an epoch, and
//! the last `clients.resume_history` are kept, so a client that reconnects with where it left
//! off gets what it missed.

pub mod encoding;
mod fanout;
pub mod frame;
pub mod mode;
pub mod packet;
pub mod relay;
pub mod snapshot;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

use tokio::sync::{Notify, broadcast};

pub use self::encoding::Encoding;
pub use self::fanout::Outlet;
use self::fanout::Outlets;
pub use self::mode::{Mode, Role};
use self::packet::Telemetry;
pub use self::snapshot::Snapshot;
use crate::metrics::Metrics;

/// A cheap, cloneable handle to the hub.
#[derive(Debug, Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// The latest snapshot and the ones before it. A mutex rather than a lock-free cell because
    /// publish and subscribe must each be atomic with the broadcast: a subscriber gets exactly
    /// the snapshots after the one it is welcomed with, no gap and no repeat. The data is
    /// serialized before it is taken, so it is held only to frame that body and swap pointers.
    state: Mutex<State>,
    /// A bounded ring shared by all connections: each reads at its own pace, and one that falls
    /// more than its capacity behind is told it lagged (and is disconnected) instead of holding
    /// memory or slowing the producer.
    tx: broadcast::Sender<Arc<Snapshot>>,
    /// The stream connections the hub writes packets to itself, with no task woken.
    outlets: Outlets,
    /// How many connections the fan-out wrote the last packet to.
    last_pass_reached: AtomicUsize,
    /// Messages relayed from Redis channels to the dashboards that subscribed.
    relay: Arc<relay::Relay>,
    /// Raised when a consumer needs a fresh snapshot sooner than the next tick (a command
    /// changed the engine's state); the producer takes it as a cue to poll at once.
    refresh: Notify,
    /// Where the snapshots come from now, for `/health`. A lock read per health check and
    /// written on a change.
    mode: Mutex<Mode>,
    /// The store behind the hub's memory, when there is one.
    history: Mutex<Option<Arc<dyn History>>>,
    /// Where each fan-out pass is counted (its duration, the packets it wrote), once the daemon
    /// says.
    metrics: OnceLock<Arc<Metrics>>,
}

#[derive(Debug)]
struct State {
    latest: Arc<Snapshot>,
    /// The last snapshots, oldest first (the latest included), for clients that resume.
    history: VecDeque<Arc<Snapshot>>,
    /// How many `history` keeps.
    keep: usize,
    /// The epoch of the snapshots this hub numbers itself: new for every daemon process.
    local_epoch: Arc<str>,
    /// Connections that joined the fan-out since its last pass.
    joined: Vec<Weak<dyn Outlet>>,
    /// When `latest` was sent (or made, for the first), so `/health` can tell a feed that
    /// stopped.
    sent_out: Instant,
}

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

/// A fresh epoch: 16 random hex digits, so two daemons (or two runs of one) never share one.
pub fn new_epoch() -> Arc<str> {
    format!("{:016x}", fastrand::u64(..)).into()
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
    /// connection may fall behind, `history` how many a reconnecting client may get back.
    pub fn new(initial: Telemetry, queue_size: usize, history: usize) -> Self {
        let (tx, _) = broadcast::channel(queue_size);
        let local_epoch = new_epoch();
        let body = packet::body(&initial);
        let latest = Arc::new(Snapshot::new(0, local_epoch.clone(), initial, body));
        let relay = Arc::new(relay::Relay::new(local_epoch.clone(), history));
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    history: VecDeque::from([latest.clone()]),
                    latest,
                    keep: history.max(1),
                    local_epoch,
                    joined: Vec::new(),
                    sent_out: Instant::now(),
                }),
                tx,
                outlets: Outlets::default(),
                last_pass_reached: AtomicUsize::new(0),
                relay,
                refresh: Notify::new(),
                mode: Mutex::new(Mode::Single),
                history: Mutex::new(None),
                metrics: OnceLock::new(),
            }),
        }
    }

    /// Numbers (one after the latest, in this daemon's own epoch), serializes and sends one
    /// snapshot to every connection; returns it.
    pub fn publish(&self, data: Telemetry) -> Arc<Snapshot> {
        let body = packet::body(&data);
        self.send_out(None, data, body)
            .expect("the hub's own numbering is always in order")
    }

    /// Sends one snapshot numbered by its producer: `seq` of `epoch` (a sequence several
    /// daemons share), with `body` its data already serialized when the producer has it. A
    /// `seq` not above the latest of the same epoch is refused, so no client sees one go
    /// backwards or repeat within an epoch; another epoch starts a new count.
    pub fn publish_numbered(
        &self,
        epoch: &str,
        seq: u64,
        data: Telemetry,
        body: Option<String>,
    ) -> Result<Arc<Snapshot>, OutOfOrder> {
        let body = body.unwrap_or_else(|| packet::body(&data));
        self.send_out(Some((epoch, seq)), data, body)
    }

    /// Numbers, keeps and sends out one snapshot to every connection (the one path both
    /// `publish` and `publish_numbered` take).
    fn send_out(
        &self,
        numbered: Option<(&str, u64)>,
        data: Telemetry,
        body: String,
    ) -> Result<Arc<Snapshot>, OutOfOrder> {
        // Before the hub's lock: passes are written one at a time, in order.
        let mut pass = self.shared.outlets.pass();
        let mut state = self.shared.state.lock().expect("hub lock poisoned");
        if numbered.is_none() && state.latest.epoch != state.local_epoch {
            // Back to this daemon's own count after another's: a new epoch, so no (epoch, seq)
            // ever names two packets.
            state.local_epoch = new_epoch();
        }
        let latest = &state.latest;
        let (epoch, seq) = match numbered {
            // This daemon's own count (after another epoch, it carries on from its seq).
            None => (state.local_epoch.clone(), latest.seq + 1),
            Some((epoch, given)) if *latest.epoch != *epoch => (Arc::from(epoch), given),
            Some((_, given)) if given > latest.seq => (latest.epoch.clone(), given),
            Some((_, given)) => {
                return Err(OutOfOrder {
                    given,
                    latest: latest.seq,
                });
            }
        };
        let next = Arc::new(Snapshot::new(seq, epoch, data, body));
        if next.epoch != state.latest.epoch {
            // A new count: the old one's packets cannot be resumed into it.
            state.history.clear();
        }
        if state.history.len() == state.keep {
            state.history.pop_front();
        }
        // The latest until now is kept slim from here on (the feed's ring and anyone sending
        // it still hold the whole one, until they let it go).
        if let Some(kept) = state.history.back_mut() {
            *kept = Arc::new(kept.slim());
        }
        state.history.push_back(next.clone());
        state.latest = next.clone();
        let started = Instant::now();
        state.sent_out = started;
        // An error only means nobody is connected right now.
        let _ = self.shared.tx.send(next.clone());
        pass.join(&mut state.joined);
        // Written outside the hub's lock: joining and subscribing never wait for the pass.
        drop(state);
        let reached = pass.write(&next);
        self.shared
            .last_pass_reached
            .store(reached, Ordering::Relaxed);
        if let Some(metrics) = self.shared.metrics.get() {
            metrics.fanned_out(started.elapsed(), reached, next.telemetry.len());
        }
        Ok(next)
    }

    /// How long ago the latest snapshot was sent to the connections (made, for the first).
    pub fn latest_age(&self) -> std::time::Duration {
        self.shared
            .state
            .lock()
            .expect("hub lock poisoned")
            .sent_out
            .elapsed()
    }

    /// Joins the feed: the latest snapshot now, then every later one.
    pub fn subscribe(&self) -> Subscription {
        self.subscribe_from(None)
    }

    /// Joins the feed where a client left off, when the history reaches back to `resume`
    /// (same epoch, its next snapshot still kept): the first missed snapshot as WELCOME, the
    /// rest after it, then every later one. Otherwise as [`Hub::subscribe`], saying it could
    /// not resume.
    pub fn subscribe_from(&self, resume: Option<&Resume>) -> Subscription {
        let state = self.shared.state.lock().expect("hub lock poisoned");
        let rx = self.shared.tx.subscribe();
        let latest = state.latest.clone();
        let Some(resume) = resume else {
            return Subscription {
                welcome: latest,
                missed: Vec::new(),
                resumed: None,
                rx,
            };
        };
        let reaches = *latest.epoch == *resume.epoch
            && resume.since <= latest.seq
            && state
                .history
                .front()
                .is_some_and(|oldest| oldest.seq <= resume.since + 1);
        if !reaches {
            return Subscription {
                welcome: latest,
                missed: Vec::new(),
                resumed: Some(false),
                rx,
            };
        }
        let mut missed: Vec<_> = state
            .history
            .iter()
            .filter(|s| s.seq > resume.since)
            .cloned()
            .collect();
        let welcome = if missed.is_empty() {
            latest
        } else {
            missed.remove(0)
        };
        Subscription {
            welcome,
            missed,
            resumed: Some(true),
            rx,
        }
    }

    /// Joins the feed for a connection of `encoding`, resuming where it left off when it asks
    /// to: from the hub's memory when it reaches back; else, for a stream connection (the
    /// store keeps stream frames), from the store behind it ([`Hub::set_history`]) and then
    /// what memory holds after that; else the latest, telling it that it could not resume. The
    /// one place resume ordering is decided.
    pub async fn join(&self, resume: Option<&Resume>, encoding: Encoding) -> Joined {
        let Subscription {
            welcome,
            missed,
            resumed,
            rx,
        } = self.subscribe_from(resume);
        if let (Some(false), Some(resume)) = (resumed, resume)
            && encoding == Encoding::Stream
        {
            // Further back than this daemon remembers: the cluster's history may reach.
            let older = self.older(&resume.epoch, resume.since).await;
            if let Some(&(last, _)) = older.last() {
                let mut frames: Vec<_> = older.into_iter().map(|(_, frame)| frame).collect();
                // What came after, still in memory; the live feed follows with no repeat.
                let after = self.subscribe_from(Some(&Resume {
                    since: last,
                    epoch: resume.epoch.clone(),
                }));
                // Its WELCOME is the first packet after `last` when memory reaches back to it
                // (and `last` itself, not sent again, when nothing came after).
                let first = (after.resumed == Some(true) && after.welcome.seq > last)
                    .then_some(after.welcome);
                let mut seq = last;
                for snapshot in first.into_iter().chain(after.missed) {
                    seq = snapshot.seq;
                    frames.push(snapshot.packet(encoding).clone());
                }
                return Joined {
                    frames,
                    seq,
                    epoch: resume.epoch.as_str().into(),
                    rx,
                };
            }
        }
        let last = missed.last().unwrap_or(&welcome);
        let (seq, epoch) = (last.seq, last.epoch.clone());
        let frames = std::iter::once(welcome.welcome(encoding, resumed))
            .chain(
                missed
                    .iter()
                    .map(|snapshot| snapshot.packet(encoding).clone()),
            )
            .collect();
        Joined {
            frames,
            seq,
            epoch,
            rx,
        }
    }

    /// Hands a connection over from its feed to the fan-out: from the next packet published on,
    /// the hub writes each one to `outlet` itself. `catch_up` runs under the hub's lock, where
    /// nothing is published: it drains what the connection's feed still holds, so the last
    /// packet it writes and the fan-out's first follow each other with no gap and no repeat.
    pub fn attach<T>(&self, outlet: Weak<dyn Outlet>, catch_up: impl FnOnce() -> T) -> T {
        let mut state = self.shared.state.lock().expect("hub lock poisoned");
        let caught_up = catch_up();
        state.joined.push(outlet);
        caught_up
    }

    /// The latest snapshot.
    pub fn latest(&self) -> Arc<Snapshot> {
        self.shared
            .state
            .lock()
            .expect("hub lock poisoned")
            .latest
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

    /// Counts each fan-out pass in `metrics` from now on (the first call holds): its duration,
    /// and the packets it wrote as frames sent.
    pub fn report_to(&self, metrics: Arc<Metrics>) {
        let _ = self.shared.metrics.set(metrics);
    }

    /// Lets clients resume from `history` when the hub's memory does not reach back.
    pub fn set_history(&self, history: Arc<dyn History>) {
        *self.shared.history.lock().expect("hub lock poisoned") = Some(history);
    }

    /// The packets of `epoch` after `since` from the store behind the hub's memory, framed as
    /// TELEMETRY (the first as a resumed WELCOME; `since` itself when nothing came after it);
    /// empty when there is no store or it does not reach back.
    async fn older(&self, epoch: &str, since: u64) -> Vec<(u64, bytes::Bytes)> {
        let history = self
            .shared
            .history
            .lock()
            .expect("hub lock poisoned")
            .clone();
        let Some(history) = history else {
            return Vec::new();
        };
        // The store holds the epoch in force only and reads nothing for another (a daemon just
        // started may not have the cluster's latest packet yet, so the store is the judge).
        // From `since` itself, so a client that missed nothing is resumed too (with that packet
        // again as its WELCOME).
        let mut packets = history.from(epoch, since).await;
        if packets.first().map(|(seq, _)| *seq) != Some(since) {
            return Vec::new();
        }
        if packets.len() > 1 {
            packets.remove(0);
        }
        packets
            .into_iter()
            .enumerate()
            .map(|(i, (seq, body))| {
                let (kind, resumed) = if i == 0 {
                    ("WELCOME", Some(true))
                } else {
                    ("TELEMETRY", None)
                };
                (
                    seq,
                    frame::text_frame(&packet::envelope(kind, seq, epoch, &body, resumed)),
                )
            })
            .collect()
    }

    /// Says where the snapshots come from now.
    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().expect("hub lock poisoned") = mode;
    }

    /// Where the snapshots come from now: this daemon alone, or its role in a cluster.
    pub fn mode(&self) -> Mode {
        *self.shared.mode.lock().expect("hub lock poisoned")
    }

    /// The relay channels: the Redis input publishes to them, sessions subscribe.
    pub fn relay(&self) -> &Arc<relay::Relay> {
        &self.shared.relay
    }

    /// Relays one message this daemon heard itself, numbered here in the epoch of the latest
    /// packet (a cluster's poller numbers them for everyone instead).
    pub fn relay_here(&self, channel: &str, payload: &[u8]) -> usize {
        let epoch = self.latest().epoch.clone();
        self.shared.relay.publish(&epoch, channel, payload)
    }

    /// Connections currently served: subscribed, or written to by the fan-out's last pass.
    pub fn subscribers(&self) -> usize {
        self.shared.tx.receiver_count() + self.shared.last_pass_reached.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
