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
pub mod message;
mod relay;
pub mod scripts;
pub(crate) mod seal;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use self::scripts::{Failed, Keys, Taken};
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

    /// When to try the lease again: after `every`, or sooner for a follower once the poller
    /// has been silent for `silence`, so a dead poller is replaced a period after its last
    /// packet rather than once its lease lapses.
    fn next_try(&self, every: Duration) -> Instant {
        let next = Instant::now() + every;
        if self.role() != Role::Follower {
            return next;
        }
        let silent = *self.shared.heard.lock().expect("cluster lock poisoned")
            + self.shared.silence
            + Duration::from_millis(1);
        if silent > Instant::now() {
            silent.min(next)
        } else {
            next
        }
    }

    /// Logs how this daemon came to hold the lease.
    fn took(&self, taken: Taken) {
        let heard = *self.shared.heard.lock().expect("cluster lock poisoned");
        match taken {
            Taken::Silent => warn!(
                silent_ms = heard.elapsed().as_millis() as u64,
                "Poller lease taken from a silent poller (no packet within the silence): \
                 polling now; its publishing is refused from here on"
            ),
            _ => debug!("Poller lease taken: it was free"),
        }
    }

    /// Takes from now on only the messages of `epoch` (none when `None`); whether that changed.
    fn trust(&self, epoch: Option<&str>) -> bool {
        let mut trusted = self.shared.trusted.lock().expect("cluster lock poisoned");
        let changed = trusted.as_deref() != epoch;
        if changed {
            *trusted = epoch.map(str::to_owned);
        }
        changed
    }

    /// Whether a message of `epoch` was numbered from this daemon's engine; when it is not
    /// known to be, the lease is tried at once to learn it.
    pub(super) fn trusts(&self, epoch: &str) -> bool {
        let trusted = self.shared.trusted.lock().expect("cluster lock poisoned");
        let trusts = trusted.as_deref() == Some(epoch);
        drop(trusted);
        if !trusts {
            self.shared.check.notify_one();
        }
        trusts
    }

    /// Logs, once as it happens, that the cluster's poller polls another engine.
    fn apart(&self, theirs: &str) {
        if self.role() != Role::Apart {
            warn!(
                engine = %self.shared.engine,
                cluster_engine = %theirs,
                "The cluster's poller polls another engine: following none of it, polling this \
                 daemon's own engine alone. Give each engine's daemons their own cluster.name, \
                 or the same cluster.engine_id to daemons that reach one engine by different URLs"
            );
        }
    }

    /// Notes that a packet of the cluster came, so the poller is not silent.
    fn heard(&self) {
        *self.shared.heard.lock().expect("cluster lock poisoned") = Instant::now();
    }

    /// Takes the lease when it is free, renews it while held, and gives it up at shutdown.
    /// A leader that cannot renew it before its own deadline stops publishing for the cluster,
    /// whatever Redis may still say.
    async fn hold_lease(self, shutdown: CancellationToken) {
        let lease = Duration::from_millis(self.shared.config.lease_ms);
        let every = lease / 4;
        let mut deadline = Instant::now();
        let mut unreachable = false;
        loop {
            let step = async {
                let mut redis = self.connection().await?;
                let keys = &self.shared.keys;
                let token = &self.shared.token;
                match self.role() {
                    Role::Leader => match scripts::renew(&mut redis, keys, token, lease).await? {
                        true => Ok::<_, Failed>(Role::Leader),
                        false => {
                            warn!("The poller lease was lost (it lapsed, or was taken); following");
                            Ok(Role::Follower)
                        }
                    },
                    _ => {
                        let (engine, silence) = (&self.shared.engine, self.shared.silence);
                        let tried =
                            scripts::acquire(&mut redis, keys, token, engine, lease, silence)
                                .await?;
                        let ours = tried.engine.as_deref() == Some(engine.as_str());
                        let epoch = tried.epoch.as_deref().filter(|_| ours);
                        if self.trust(epoch)
                            && let Some(epoch) = epoch
                        {
                            // A count new here: what its channels kept, for resuming clients.
                            self.seed_relayed(&mut redis, epoch).await;
                        }
                        match tried.taken {
                            Taken::No => Ok::<_, Failed>(Role::Follower),
                            Taken::Foreign => {
                                self.apart(tried.engine.as_deref().unwrap_or_default());
                                Ok(Role::Apart)
                            }
                            taken => {
                                self.took(taken);
                                Ok(Role::Leader)
                            }
                        }
                    }
                }
            };
            let started = Instant::now();
            match step.await {
                Ok(role) => {
                    if role == Role::Leader {
                        deadline = started + lease;
                    }
                    if unreachable {
                        info!("Cluster Redis recovered: electing one poller again");
                        unreachable = false;
                    }
                    self.set_role(role);
                }
                Err(err) => {
                    self.forget_connection();
                    if !unreachable {
                        warn!(url = %self.shared.config.url.masked(), error = %err, "Cluster Redis unreachable: polling alone until it is back");
                        unreachable = true;
                    }
                    // A leader keeps its role only until its own deadline: past it another may
                    // hold the lease, so it polls for itself alone.
                    if self.role() != Role::Leader || Instant::now() >= deadline {
                        self.set_role(Role::Fallback);
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = sleep_until(self.next_try(every)) => {}
                _ = self.shared.released.notified(), if self.role() == Role::Follower => {}
                _ = self.shared.check.notified(), if self.role() != Role::Leader => {}
            }
        }
        if self.role() == Role::Leader
            && let Ok(mut redis) = self.connection().await
        {
            match scripts::release(&mut redis, &self.shared.keys, &self.shared.token).await {
                Ok(true) => info!("Poller lease released"),
                Ok(false) => debug!("The lease was no longer ours to release"),
                Err(err) => debug!(%err, "Lease not released; it lapses by itself"),
            }
        }
    }
}
