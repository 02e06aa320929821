//! Several daemons, one poll (`docs/PROTOCOL.md` §11). Every daemon of a cluster shares one
//! Redis. Exactly one holds the lease there and polls the engine; it publishes each packet
//! through a fenced script ([`scripts`]) that numbers it from the cluster's `seq`, and every
//! daemon, that one included, takes the packets from the channel and fans them out to its own
//! clients. So the engine sees one poll whatever the number of daemons, and every client sees
//! the same `seq` for the same packet.
//!
//! [`Role`] says what this daemon does now. A daemon that cannot reach Redis polls alone under
//! a local epoch (its clients see the change), and joins again when Redis is back: Redis makes
//! the engine's load constant, it never blanks a dashboard. The poll loop asks
//! [`Cluster::role`] before polling and publishes through [`Cluster::publish`].
//!
//! Relayed messages go the same way: every daemon's Redis input hands them to
//! [`Cluster::relay`], the leader has a script number each once per channel (a new leader first
//! offers what it kept from the seconds without one), and every daemon relays them under those
//! offsets, so a client resuming its channels on another daemon finds the same numbers there.
//!
//! With `cluster.secret_file`, what the leader publishes is signed ([`seal`]) and every daemon
//! checks it before the order check and before any client sees it: a message that fails is
//! dropped and counted, never fanned out, and never moves the expected `seq` or offset.

mod follow;
mod lease;
pub mod message;
mod relay;
pub mod scripts;
pub(crate) mod seal;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, info_span, warn};

use self::scripts::{Failed, Keys};
use self::seal::Seal;
use crate::config::{ClusterConfig, Config};
pub use crate::hub::Role;
use crate::hub::{Hub, Mode, new_epoch};
use crate::input::redis::sentinel;
use crate::metrics::Metrics;

/// How long the poller may publish nothing before a follower takes its lease: a period, the
/// publish deadline and a tenth of a period (a live poller publishes within that), and at
/// least half of `cluster.lease_ms`, so a longer lease stays the way to tolerate longer stalls.
pub fn silence(config: &Config) -> Duration {
    let period = config.poll_interval();
    let live = period + config.publish_deadline() + period / 10;
    live.max(Duration::from_millis(config.cluster.lease_ms / 2))
}

/// The engine this daemon polls, as its cluster compares it: `cluster.engine_id` when set, else
/// its three endpoints' URLs (credentials masked); hashed to 16 hex digits, so neither a URL nor
/// a credential reaches Redis or the logs.
pub fn fingerprint(config: &Config) -> String {
    use crate::engine::{SourceKind, endpoint};
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    if config.cluster.engine_id.is_empty() {
        for kind in [SourceKind::State, SourceKind::Agents, SourceKind::Models] {
            let url = endpoint(&config.engine, kind).map(|url| url.to_string());
            hash.update(crate::config::mask_credentials(&url.unwrap_or_default()));
            hash.update(b"\n");
        }
    } else {
        hash.update(b"id\n");
        hash.update(config.cluster.engine_id.as_bytes());
    }
    hash.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Time a connection to the cluster's Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A cheap handle to this daemon's place in the cluster.
#[derive(Clone)]
pub struct Cluster {
    shared: Arc<Shared>,
}

struct Shared {
    config: ClusterConfig,
    keys: Keys,
    /// This daemon's lease token: random, so no two daemons (or two runs) share one.
    token: String,
    /// The fingerprint of the engine this daemon polls ([`fingerprint`]).
    engine: String,
    /// The epoch Redis says was polled from this daemon's engine: only its packets and relayed
    /// messages are taken. A mutex taken once per message and per try at the lease.
    trusted: Mutex<Option<String>>,
    /// Raised for a message of an epoch not yet known here: the lease is tried (and the epoch
    /// and engine in force learnt) at once.
    check: Notify,
    role: watch::Sender<Role>,
    /// The command connection, made again after a failure. A mutex held only to clone it out.
    redis: Mutex<Option<MultiplexedConnection>>,
    /// Packets the cluster's history keeps for resuming clients.
    history: usize,
    /// How long the poller may publish nothing before a follower takes its lease ([`silence`]).
    silence: Duration,
    /// When this daemon last took a packet of the cluster (or started): a follower tries the
    /// lease once `silence` has passed since. A mutex taken once per packet and per try.
    heard: Mutex<Instant>,
    hub: Hub,
    metrics: Arc<Metrics>,
    /// Raised when the leader lets go, so a follower takes over at once.
    released: Notify,
    /// Messages heard on relayed channels, on their way to be kept and numbered.
    relay: mpsc::Sender<relay::Heard>,
    /// Signs what this daemon publishes and checks what it takes (`cluster.secret_file`).
    seal: Seal,
    /// When a refused message was last logged, and how many were refused since. A mutex taken
    /// only for a refused message.
    rejected: Mutex<(Option<Instant>, u64)>,
}

impl Cluster {
    /// Joins the cluster of `config.cluster`: starts the lease and the packet feed in tasks of
    /// `tracker`, until `shutdown` (when the lease is released).
    pub fn start(
        config: &Config,
        hub: Hub,
        metrics: Arc<Metrics>,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        let (silence, history) = (silence(config), config.clients.resume_history);
        let engine = fingerprint(config);
        let state_url = crate::engine::endpoint(&config.engine, crate::engine::SourceKind::State)
            .map(|url| crate::config::mask_credentials(url.as_str()))
            .unwrap_or_default();
        info!(engine = %engine, state = %state_url, "Cluster engine fingerprint");
        let config = config.cluster.clone();
        let (relay, relayed) = mpsc::channel(relay::QUEUE);
        let seal = Seal::new(config.secret.expose());
        if !seal.enabled() {
            warn!(
                "cluster.secret_file is not set: anyone who can publish on the cluster's Redis \
                 feeds this daemon's dashboards; give every daemon of the cluster the same secret"
            );
        }
        let cluster = Self {
            shared: Arc::new(Shared {
                keys: Keys::new(&config.name),
                seal,
                rejected: Mutex::new((None, 0)),
                token: format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
                engine,
                trusted: Mutex::new(None),
                check: Notify::new(),
                config,
                role: watch::Sender::new(Role::Joining),
                redis: Mutex::new(None),
                history,
                silence,
                heard: Mutex::new(Instant::now()),
                hub,
                metrics,
                released: Notify::new(),
                relay,
            }),
        };
        cluster.set_role(Role::Joining);
        // Weak: the hub outlives nothing here, and a strong handle would keep both alive.
        let reader = follow::HistoryReader(Arc::downgrade(&cluster.shared));
        cluster.shared.hub.set_history(Arc::new(reader));
        tracker.spawn(
            cluster
                .clone()
                .hold_lease(shutdown.clone())
                .instrument(info_span!("cluster")),
        );
        tracker.spawn(
            cluster
                .clone()
                .number_relayed(relayed, shutdown.clone())
                .instrument(info_span!("cluster")),
        );
        tracker.spawn(
            cluster
                .clone()
                .follow(shutdown)
                .instrument(info_span!("cluster")),
        );
        cluster
    }

    /// What this daemon does now.
    pub fn role(&self) -> Role {
        *self.shared.role.borrow()
    }

    /// This daemon's role as it changes: the poller polls at once when it takes over.
    pub fn roles(&self) -> watch::Receiver<Role> {
        self.shared.role.subscribe()
    }

    /// Publishes one packet's data for the whole cluster, fenced by this daemon's lease: its
    /// epoch and seq; `None` when the lease is no longer this daemon's (it is a follower now).
    pub async fn publish(&self, body: &str) -> Result<Option<(String, u64)>, Failed> {
        let mut redis = self.connection().await?;
        let published = async {
            let (keys, token) = (&self.shared.keys, &self.shared.token);
            let engine = &self.shared.engine;
            let numbered = scripts::number(&mut redis, keys, token, engine, &new_epoch()).await?;
            let Some((epoch, seq)) = numbered else {
                return Ok(None);
            };
            // Before it is sent: it comes back on the channel, maybe before the answer.
            self.trust(Some(&epoch));
            let (seal, history, silence) =
                (&self.shared.seal, self.shared.history, self.shared.silence);
            let sent = scripts::send(
                &mut redis,
                keys,
                token,
                seal,
                (&epoch, seq),
                body,
                history,
                silence,
            )
            .await?;
            Ok(sent.then_some((epoch, seq)))
        }
        .await;
        match &published {
            Ok(None) => {
                warn!("Publish refused: this daemon's lease has lapsed; following");
                self.set_role(Role::Follower);
            }
            Err(_) => self.forget_connection(),
            Ok(Some(_)) => {}
        }
        published
    }

    fn set_role(&self, role: Role) {
        let before = self.shared.role.send_replace(role);
        self.shared.hub.set_mode(Mode::Cluster(role));
        self.shared
            .metrics
            .cluster_role(Role::ALL.map(|known| (known.name(), known == role)));
        if before != role {
            info!(role = role.name(), was = before.name(), "Cluster role");
        }
    }

    /// The command connection, made now if there is none.
    async fn connection(&self) -> Result<MultiplexedConnection, Failed> {
        if let Some(redis) = self
            .shared
            .redis
            .lock()
            .expect("cluster lock poisoned")
            .clone()
        {
            return Ok(redis);
        }
        let url = self.shared.config.url.expose();
        let client = match timeout(CONNECT_TIMEOUT, sentinel::client(url)).await {
            Ok(Ok(client)) => client,
            Ok(Err(err)) => return Err(format!("cluster.url: {err}")),
            Err(_) => return Err("asking the Sentinels timed out".into()),
        };
        let redis = match timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection()).await
        {
            Ok(Ok(redis)) => redis,
            Ok(Err(err)) => return Err(format!("cannot connect: {err}")),
            Err(_) => return Err("connecting timed out".into()),
        };
        *self.shared.redis.lock().expect("cluster lock poisoned") = Some(redis.clone());
        Ok(redis)
    }

    fn forget_connection(&self) {
        *self.shared.redis.lock().expect("cluster lock poisoned") = None;
    }
}
