//! What this daemon takes from its cluster: the packets the leader publishes (subscribed with
//! backoff), the history the hub reads for resuming clients, and the tag check every message
//! passes before anything here sees it. Relayed messages are taken in `relay`.

use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::scripts::{self, RELEASED};
use super::seal::Rejected;
use super::{CONNECT_TIMEOUT, Cluster, Role, Shared, message};
use crate::hub::packet::Telemetry;
use crate::hub::{History, Older};
use crate::input::redis::sentinel;

/// At most one log line per this long about messages refused for their tag; the rest are
/// counted (in the next line, and in `bff_cluster_rejected_total`).
const REJECTED_LOG_EVERY: Duration = Duration::from_secs(10);

/// The cluster's history, as the hub asks it for packets older than its memory.
pub(super) struct HistoryReader(pub(super) Weak<Shared>);

impl std::fmt::Debug for HistoryReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the cluster's history")
    }
}

impl History for HistoryReader {
    fn from(&self, epoch: &str, from: u64) -> Older<'_> {
        let epoch = epoch.to_owned();
        Box::pin(async move {
            let Some(shared) = self.0.upgrade() else {
                return Vec::new();
            };
            let cluster = Cluster { shared };
            let Ok(mut redis) = cluster.connection().await else {
                return Vec::new();
            };
            let (keys, limit) = (&cluster.shared.keys, cluster.shared.history);
            let packets = scripts::history(&mut redis, keys, &epoch, from, limit)
                .await
                .unwrap_or_default();
            // A forged entry in the stream is refused like one on the channel, and nothing
            // around it is trusted: the client starts afresh rather than across a hole.
            let mut admitted = Vec::with_capacity(packets.len());
            for p in packets.iter().filter_map(|packet| message::parse(packet)) {
                if !cluster.admit(p.epoch, p.seq, None, p.tag, p.body.as_bytes()) {
                    return Vec::new();
                }
                admitted.push((p.seq, p.body.to_owned()));
            }
            admitted
        })
    }
}

impl Cluster {
    /// Takes every packet the leader publishes and fans it out here; reconnects with backoff.
    pub(super) async fn follow(self, shutdown: CancellationToken) {
        let mut wait = Duration::from_millis(250);
        loop {
            let lost = tokio::select! {
                _ = shutdown.cancelled() => return,
                lost = self.follow_once() => lost,
            };
            debug!(error = %lost, "Cluster feed lost; subscribing again");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    async fn follow_once(&self) -> String {
        let url = self.shared.config.url.expose();
        let client = match timeout(CONNECT_TIMEOUT, sentinel::client(url)).await {
            Ok(Ok(client)) => client,
            Ok(Err(err)) => return format!("cluster.url: {err}"),
            Err(_) => return "asking the Sentinels timed out".into(),
        };
        let mut pubsub = match timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(err)) => return format!("cannot connect: {err}"),
            Err(_) => return "connecting timed out".into(),
        };
        let keys = &self.shared.keys;
        if let Err(err) = pubsub.subscribe(&[&keys.packets, &keys.relay]).await {
            return format!("cannot subscribe: {err}");
        }
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            if message.get_channel_name() == keys.relay {
                self.take_relayed(message.get_payload_bytes());
                continue;
            }
            let Ok(text) = std::str::from_utf8(message.get_payload_bytes()) else {
                continue;
            };
            if text == RELEASED {
                self.shared.released.notify_one();
                continue;
            }
            self.take(text);
        }
        "connection closed".into()
    }

    /// One packet from the channel, published here under the cluster's numbers once its tag
    /// passes. While alone, this daemon's own count is the one its clients follow.
    fn take(&self, packet: &str) {
        if self.role().alone() {
            return;
        }
        let Some(message::Packet {
            epoch,
            seq,
            tag,
            body,
        }) = message::parse(packet)
        else {
            debug!("A message on the cluster channel that is not a packet; ignored");
            return;
        };
        // Before the order check: a forged seq must not move what comes next.
        if !self.admit(epoch, seq, None, tag, body.as_bytes()) {
            return;
        }
        // Another engine's packet (a daemon of another engine took the lease) reaches nobody.
        if !self.trusts(epoch) {
            debug!(
                epoch,
                seq, "A cluster packet of an epoch not known here; held back"
            );
            return;
        }
        self.heard();
        let data: Telemetry = match serde_json::from_str(body) {
            Ok(data) => data,
            Err(err) => {
                warn!(%err, seq, "A cluster packet that does not read as a packet; ignored");
                return;
            }
        };
        match self
            .shared
            .hub
            .publish_numbered(epoch, seq, data, Some(body.to_owned()))
        {
            // The poller logs its own line; a follower says what it sent on, for `grep Telemetry`.
            Ok(_) if self.role() == Role::Follower => info!(
                seq,
                clients = self.shared.hub.subscribers(),
                bytes = body.len(),
                role = %Role::Follower.name(),
                "Telemetry published"
            ),
            Ok(_) => {}
            Err(err) => debug!(%err, "Cluster packet not published here"),
        }
    }

    /// Whether a packet (`channel` `None`), or a message relayed on `channel`, passes its tag;
    /// one that does not is counted, and logged once per [`REJECTED_LOG_EVERY`].
    pub(super) fn admit(
        &self,
        epoch: &str,
        number: u64,
        channel: Option<&str>,
        tag: Option<&str>,
        body: &[u8],
    ) -> bool {
        let seal = &self.shared.seal;
        let checked = match (channel, std::str::from_utf8(body)) {
            (Some(channel), _) => seal.check_relayed(epoch, number, channel, body, tag),
            (None, Ok(body)) => seal.check_packet(epoch, number, tag, body),
            (None, Err(_)) => Err(Rejected::BadTag),
        };
        let Err(rejected) = checked else {
            return true;
        };
        self.shared.metrics.cluster_rejected(rejected.reason());
        let mut log = self.shared.rejected.lock().expect("cluster lock poisoned");
        log.1 += 1;
        if log.0.is_none_or(|at| at.elapsed() >= REJECTED_LOG_EVERY) {
            warn!(
                reason = rejected.reason(),
                number,
                channel = channel.unwrap_or(&self.shared.keys.packets),
                refused = log.1,
                "A cluster message not signed with this daemon's cluster.secret_file was dropped: \
                 give every daemon the same secret; anything else publishing there is forged"
            );
            *log = (Some(Instant::now()), 0);
        }
        false
    }
}
