//! Relayed messages in a cluster: the leader's Redis input hands each message heard on a relay
//! channel to [`Cluster::relay`]; they are numbered in batches by a script (the next offset of
//! their channel in the cluster's epoch) and published on the cluster's relay channel, and every
//! daemon, the leader included, relays them from there under those offsets.

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::Cluster;
use super::{message, scripts};
use crate::hub::new_epoch;

/// Relayed messages waiting to be numbered; past this (Redis slower than the channels), the
/// newest are dropped and counted.
pub(super) const QUEUE: usize = 8192;

/// Relayed messages numbered in one round trip, at most.
const BATCH: usize = 256;

impl Cluster {
    /// Hands a message heard on a relayed channel to be numbered for the whole cluster (the
    /// leader's job; the message comes back to every daemon through the feed).
    pub fn relay(&self, channel: &str, payload: &[u8]) {
        let message = (channel.to_owned(), Bytes::copy_from_slice(payload));
        if self.shared.relay.try_send(message).is_err() {
            self.shared.metrics.redis_dropped("cluster_backlog");
        }
    }

    /// Numbers the relayed messages in batches, in the order they were heard, while this
    /// daemon leads; a batch that fails is dropped (and counted), as Redis is then away.
    pub(super) async fn number_relayed(
        self,
        mut relayed: mpsc::Receiver<(String, Bytes)>,
        shutdown: CancellationToken,
    ) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let got = tokio::select! {
                _ = shutdown.cancelled() => return,
                got = relayed.recv_many(&mut batch, BATCH) => got,
            };
            if got == 0 {
                return;
            }
            let numbered = async {
                let mut redis = self.connection().await?;
                let (keys, token) = (&self.shared.keys, &self.shared.token);
                let (engine, seal) = (&self.shared.engine, &self.shared.seal);
                scripts::relay(&mut redis, keys, token, engine, seal, &new_epoch(), &batch).await
            };
            if let Err(err) = numbered.await {
                self.forget_connection();
                debug!(%err, dropped = batch.len(), "Relayed messages not numbered");
                for _ in 0..batch.len() {
                    self.shared.metrics.redis_dropped("cluster_unreachable");
                }
            }
            batch.clear();
        }
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
