//! The hub: the one place packets come from. It numbers each snapshot (or takes the number its
//! producer gives), serializes it once, keeps the latest for newcomers, and fans the same shared
//! bytes out to every connection.
//!
//! Producers (`crate::input`: the poller) call [`Hub::publish`] or [`Hub::publish_numbered`];
//! connections (`crate::edge`) only ever call [`Hub::join`] (or [`Hub::subscribe`]), so
//! either side can change without touching the other. Each snapshot belongs to an epoch, and
//! the last `clients.resume_history` are kept, so a client that reconnects with where it left
//! off gets what it missed.

pub(crate) mod announce;
pub(crate) mod deflate;
pub(crate) mod delta;
pub(crate) mod encoding;
mod fanout;
pub(crate) mod form;
pub(crate) mod fossil;
pub(crate) mod frame;
mod join;
pub(crate) mod mode;
pub(crate) mod mood;
pub mod msgpack;
pub mod packet;
pub(crate) mod relay;
mod resume;
pub(crate) mod snapshot;
mod sources;
mod timestamp;
mod update;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

use tokio::sync::{Notify, broadcast};

pub use self::deflate::Deflate;
pub use self::encoding::Encoding;
pub use self::fanout::Outlet;
use self::fanout::Outlets;
pub use self::form::Form;
pub use self::mode::{Mode, Role};
use self::packet::Telemetry;
pub use self::resume::{History, Older, Resume};
#[cfg(test)]
pub use self::resume::{Joined, Subscription};
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
        // What it announces, read from the latest and this one: once per snapshot, whoever
        // produced it.
        let announced = latest
            .data()
            .map(|before| announce::announcements(before, &data))
            .unwrap_or_default();
        let next = Arc::new(Snapshot::announcing(seq, epoch, data, body, &announced).after(latest));
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
