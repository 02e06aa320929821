//! The lease, held in a task of its own: taken when free (or from a silent poller), renewed
//! while held, given up at shutdown; the role that follows from each try, the epoch trusted,
//! and when to try again.

use std::time::Duration;

use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::scripts::{self, Failed, Taken};
use super::{Cluster, Role};

impl Cluster {
    /// When to try the lease again: after `every`, or sooner for a follower once the poller
    /// has been silent for `silence`, so a dead poller is replaced a period after its last
    /// packet rather than once its lease lapses.
    pub(super) fn next_try(&self, every: Duration) -> Instant {
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
    pub(super) fn took(&self, taken: Taken) {
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
    pub(super) fn trust(&self, epoch: Option<&str>) -> bool {
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
    pub(super) fn apart(&self, theirs: &str) {
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
    pub(super) fn heard(&self) {
        *self.shared.heard.lock().expect("cluster lock poisoned") = Instant::now();
    }

    /// Takes the lease when it is free, renews it while held, and gives it up at shutdown.
    /// A leader that cannot renew it before its own deadline stops publishing for the cluster,
    /// whatever Redis may still say.
    pub(super) async fn hold_lease(self, shutdown: CancellationToken) {
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
