//! Relayed messages in a cluster: every daemon's Redis input hands each message heard on a relay
//! channel to [`Cluster::relay`]. Each daemon keeps what it heard for a while; the poller offers
//! each message, in batches, to a script that numbers it (the next offset of its channel in the
//! cluster's epoch) unless it was published already, and publishes it on the cluster's relay
//! channel; every daemon, the poller included, relays them from there under those offsets. A
//! daemon that takes the lease first offers what it kept: what was heard while no poller was
//! there (or what the dead one numbered and never published) is numbered then, once.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::scripts::{self, Offer};
use super::{Cluster, Role, message};
use crate::hub::new_epoch;

/// Relayed messages waiting to be numbered, and those each daemon keeps; past this (Redis
/// slower than the channels), the newest are dropped and counted.
pub(super) const QUEUE: usize = 8192;

/// Bytes of the cluster's relayed history a daemon reads when it joins, all channels together.
const HISTORY_BYTES: usize = 4 << 20;

/// How much longer Redis remembers a relayed message was published than a new poller reaches
/// back for what it heard.
const SEEN_MARGIN: Duration = Duration::from_secs(1);

/// Relayed messages numbered in one round trip, at most.
const BATCH: usize = 256;

/// A message heard on a relayed channel, and when.
pub(super) type Heard = (String, Bytes, Instant);

/// What a daemon heard lately, oldest first, with how many of each id's channel and payload it
/// holds (so the next one of the same gets the next id).
#[derive(Default)]
struct Kept {
    offers: VecDeque<(Instant, Offer)>,
    same: HashMap<String, usize>,
}

impl Kept {
    /// `heard` as an offer with its id, kept.
    fn keep(&mut self, (channel, payload, at): Heard, keep_for: Duration) -> Offer {
        self.forget(at, keep_for);
        let id = scripts::message_id(&channel, &payload, 0);
        let base = id.rsplit_once(':').map_or(id.as_str(), |(base, _)| base);
        let earlier = self.same.entry(base.to_owned()).or_default();
        let offer = Offer {
            id: format!("{base}:{earlier}"),
            channel,
            payload,
        };
        *earlier += 1;
        self.offers.push_back((at, offer.clone()));
        offer
    }

    /// Forgets what was heard longer than `keep_for` before `now`, and past [`QUEUE`] (twice
    /// over: a new poller offers the newest).
    fn forget(&mut self, now: Instant, keep_for: Duration) {
        while let Some((at, offer)) = self.offers.front() {
            if now.duration_since(*at) < keep_for && self.offers.len() < 2 * QUEUE {
                break;
            }
            let base = offer.id.rsplit_once(':').map_or("", |(base, _)| base);
            if let Some(n) = self.same.get_mut(base) {
                *n -= 1;
                if *n == 0 {
                    self.same.remove(base);
                }
            }
            self.offers.pop_front();
        }
    }
}

impl Cluster {
    /// Hands a message heard on a relayed channel to be numbered for the whole cluster (the
    /// poller's job, or the next poller's; the message comes back to every daemon through the
    /// feed).
    pub fn relay(&self, channel: &str, payload: &[u8]) {
        let message = (
            channel.to_owned(),
            Bytes::copy_from_slice(payload),
            Instant::now(),
        );
        if self.shared.relay.try_send(message).is_err() {
            self.shared.metrics.redis_dropped("cluster_backlog");
        }
    }

    /// How far back a new poller offers what it heard: past the silence after which a poller
    /// is replaced, and a lease more (its last renewal); what is older, a poller numbered.
    fn keep_for(&self) -> Duration {
        self.shared.silence + Duration::from_millis(self.shared.config.lease_ms)
    }

    /// How long Redis remembers a message was published: longer than a new poller reaches back.
    fn seen_for(&self) -> Duration {
        self.keep_for() + SEEN_MARGIN
    }

    /// How long a message counts for the id of the next with the same channel and payload:
    /// longer than it is remembered as published, so a repeat either gets another id or finds
    /// the first forgotten.
    fn count_for(&self) -> Duration {
        self.seen_for() + self.keep_for()
    }

    /// Keeps what is heard, in order, and numbers it while this daemon leads; on taking the
    /// lease, first offers everything kept. A batch that fails is dropped (and counted), as
    /// Redis is then away.
    pub(super) async fn number_relayed(
        self,
        mut relayed: mpsc::Receiver<Heard>,
        shutdown: CancellationToken,
    ) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut kept = Kept::default();
        let mut roles = self.roles();
        let mut leading = self.role() == Role::Leader;
        let (keep_for, count_for) = (self.keep_for(), self.count_for());
        loop {
            let offers: Vec<Offer> = tokio::select! {
                _ = shutdown.cancelled() => return,
                got = relayed.recv_many(&mut batch, BATCH) => {
                    if got == 0 {
                        return;
                    }
                    let offers = batch.drain(..).map(|heard| kept.keep(heard, count_for)).collect();
                    if !leading {
                        continue;
                    }
                    offers
                }
                Ok(()) = roles.changed() => {
                    let now = *roles.borrow_and_update() == Role::Leader;
                    let took = now && !leading;
                    leading = now;
                    if !took {
                        continue;
                    }
                    let now = Instant::now();
                    kept.forget(now, count_for);
                    kept.offers
                        .iter()
                        .filter(|(at, _)| now.duration_since(*at) < keep_for)
                        .map(|(_, offer)| offer.clone())
                        .collect()
                }
            };
            for chunk in offers.chunks(BATCH) {
                self.number(chunk).await;
            }
        }
    }

    /// Offers `offers` to be numbered and published.
    async fn number(&self, offers: &[Offer]) {
        let numbered = async {
            let mut redis = self.connection().await?;
            let (keys, token) = (&self.shared.keys, &self.shared.token);
            let (engine, seal) = (&self.shared.engine, &self.shared.seal);
            let (seen, history) = (self.seen_for(), self.shared.history);
            let epoch = new_epoch();
            scripts::relay(
                &mut redis, keys, token, engine, seal, &epoch, offers, seen, history,
            )
            .await
        };
        if let Err(err) = numbered.await {
            self.forget_connection();
            debug!(%err, dropped = offers.len(), "Relayed messages not numbered");
            for _ in 0..offers.len() {
                self.shared.metrics.redis_dropped("cluster_unreachable");
            }
        }
    }

    /// Relays here what the cluster's streams keep of `epoch`, as if heard (a daemon that joined
    /// later can resume its clients from it): the newest `clients.resume_history` of each
    /// channel, [`HISTORY_BYTES`] in all. Best effort: what cannot be read is not resumed.
    pub(super) async fn seed_relayed(&self, redis: &mut MultiplexedConnection, epoch: &str) {
        let keys = &self.shared.keys;
        let limit = self.shared.history;
        let messages =
            match scripts::relayed_history(redis, keys, epoch, limit, HISTORY_BYTES).await {
                Ok(messages) => messages,
                Err(err) => {
                    debug!(%err, "The cluster's relayed history not read");
                    return;
                }
            };
        for message in &messages {
            if let Some(m) = message::parse_relayed(message)
                && m.epoch == epoch
                && self.admit(m.epoch, m.offset, Some(m.channel), m.tag, m.payload)
            {
                self.shared
                    .hub
                    .relay()
                    .publish_numbered(m.epoch, m.channel, m.offset, m.payload);
            }
        }
        debug!(
            messages = messages.len(),
            "Relayed history read from the cluster"
        );
    }

    /// One relayed message, relayed here under the cluster's offset (while alone, this
    /// daemon numbers what it hears itself).
    pub(super) fn take_relayed(&self, message: &[u8]) {
        if self.role().alone() {
            return;
        }
        match message::parse_relayed(message) {
            Some(m) => {
                // Before the relay's order check: a forged offset must not move what comes next;
                // and only what was numbered from this daemon's engine.
                if self.admit(m.epoch, m.offset, Some(m.channel), m.tag, m.payload)
                    && self.trusts(m.epoch)
                {
                    self.shared
                        .hub
                        .relay()
                        .publish_numbered(m.epoch, m.channel, m.offset, m.payload);
                }
            }
            None => debug!("A message on the cluster's relay channel that is not one; ignored"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_message_heard_twice_is_two_and_forgotten_in_time() {
        let mut kept = Kept::default();
        let keep_for = Duration::from_secs(3);
        let now = Instant::now();
        let heard = |n: u64| {
            (
                "risk.state".to_owned(),
                Bytes::from_static(b"{}"),
                now + Duration::from_secs(n),
            )
        };
        let first = kept.keep(heard(0), keep_for);
        let second = kept.keep(heard(1), keep_for);
        assert_ne!(first.id, second.id, "published twice: two messages");
        assert_eq!(first.id, scripts::message_id("risk.state", b"{}", 0));
        assert_eq!(second.id, scripts::message_id("risk.state", b"{}", 1));
        // Once the first is forgotten, the count is of those still kept.
        let third = kept.keep(heard(3), keep_for);
        assert_eq!(third.id, scripts::message_id("risk.state", b"{}", 1));
        assert_eq!(kept.offers.len(), 2);
        let other = kept.keep(
            (
                "trade.results".to_owned(),
                Bytes::from_static(b"{}"),
                now + Duration::from_secs(3),
            ),
            keep_for,
        );
        assert_eq!(other.id, scripts::message_id("trade.results", b"{}", 0));
    }
}
