//! The names of one cluster's keys and channels in Redis, and the order the fenced scripts take
//! them in.

/// The keys and channel of one cluster.
#[derive(Debug, Clone)]
pub struct Keys {
    pub(super) lease: String,
    pub(super) seq: String,
    pub(super) epoch: String,
    pub(super) history: String,
    pub(super) offsets: String,
    /// The poller's sign of life: set when it takes the lease and with every packet, for
    /// `silence`; once it lapses, a follower may take the lease before the lease itself lapses.
    pub(super) alive: String,
    /// The fingerprint of the engine the epoch in force was polled from.
    pub(super) engine: String,
    /// Per relayed channel, the last offset published in this epoch: a new poller numbers on
    /// from there, not from an offset its predecessor took but never published.
    pub(super) published: String,
    /// The prefix of the keys that say a relayed message was published (`<name>:seen:<id>`).
    pub(super) seen: String,
    /// The prefix of each relayed channel's capped stream (`<name>:relayed:<channel>`).
    pub(super) streams: String,
    /// Where every packet (and the notice that the lease was released) is published.
    pub packets: String,
    /// Where every relayed message is published, numbered.
    pub relay: String,
}

impl Keys {
    /// The keys of the fenced scripts, in their `KEYS` order: lease, seq, epoch, history,
    /// offsets, engine and published.
    pub(super) fn fenced(&self) -> [&str; 7] {
        [
            &self.lease,
            &self.seq,
            &self.epoch,
            &self.history,
            &self.offsets,
            &self.engine,
            &self.published,
        ]
    }

    /// The keys of the cluster called `name`.
    pub fn new(name: &str) -> Self {
        Self {
            lease: format!("{name}:lease"),
            seq: format!("{name}:seq"),
            epoch: format!("{name}:epoch"),
            history: format!("{name}:history"),
            offsets: format!("{name}:offsets"),
            alive: format!("{name}:alive"),
            engine: format!("{name}:engine"),
            published: format!("{name}:published"),
            seen: format!("{name}:seen:"),
            streams: format!("{name}:relayed:"),
            packets: format!("{name}:packets"),
            relay: format!("{name}:relay"),
        }
    }
}

/// What the packets channel carries when the poller lets go: the others take over at once.
pub const RELEASED: &str = "released";
