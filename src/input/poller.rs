//! The poller: the engine's input. On a fixed-rate clock it fetches the three endpoints at once
//! ([`Round`]) and hands each answer to the assembler as it comes ([`Input::Answer`]), then
//! says when the poll's packet is due ([`Input::Polled`]): all answered, or the publish deadline
//! passed with one still out. A command that changed the engine's state gets a fresh poll at
//! once. It builds no packet: [`super::assembler`] does.
//!
//! A fetch runs apart from the loop, so the assembler keeps merging and pushing events while the
//! engine takes its time; the poll stays the authority over what it answers.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::time::{Interval, MissedTickBehavior, interval, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Input;
use super::cluster::{Cluster, Role};
use super::round::{Answer, Round};
use crate::config::{Config, mask_credentials};
use crate::engine::{Engine, SourceKind};
use crate::hub::Hub;
use crate::metrics::Metrics;

/// The poller's state between ticks.
struct Poller {
    engine: Engine,
    hub: Hub,
    metrics: Arc<Metrics>,
    config: Arc<Config>,
    /// This daemon's cluster, when it is one of several: only its leader polls.
    cluster: Option<Cluster>,
    /// Where the answers go. Bounded (shared with the Redis subscriber): an assembler that
    /// falls behind holds the poller back, as a slow publish used to.
    out: mpsc::Sender<Input>,
}

/// Polls until `shutdown` is cancelled (or the assembler is gone), sending what it hears to
/// `out`. A new config from `settings` (a reload) applies from the next tick: a changed
/// `[engine]` gets a new client, a changed period a new clock; the assembler is handed the
/// config the poller applied.
pub async fn run(
    engine: Engine,
    hub: Hub,
    metrics: Arc<Metrics>,
    mut settings: watch::Receiver<Arc<Config>>,
    cluster: Option<Cluster>,
    out: mpsc::Sender<Input>,
    shutdown: CancellationToken,
) {
    let config = settings.borrow_and_update().clone();
    let mut ticks = clock(&config);
    let mut poller = Poller {
        engine,
        hub,
        metrics,
        config,
        cluster,
        out,
    };
    let mut round: Option<Round> = None;
    let mut roles = poller.cluster.as_ref().map(Cluster::roles);
    let mut polling = poller.polls();
    // A refresh asked for while a poll was already on its way: poll again once it is back.
    let mut again = false;
    loop {
        let deadline = round.as_ref().map_or_else(tokio::time::Instant::now, |r| {
            r.started + poller.config.publish_deadline()
        });
        let sent = tokio::select! {
            _ = shutdown.cancelled() => return,
            Ok(()) = settings.changed() => {
                let next = settings.borrow_and_update().clone();
                match poller.reconfigure(next) {
                    Some(new_clock) => {
                        if new_clock {
                            ticks = clock(&poller.config);
                        }
                        poller.send(Input::Config(poller.config.clone())).await
                    }
                    None => true,
                }
            }
            _ = ticks.tick() => {
                start(&mut round, &poller);
                true
            }
            // Took the cluster's lease (or fell back): the first poll goes now, not at the next
            // tick, and the clock counts from it; the cluster waited long enough.
            Some(polls) = role_changed(&mut roles) => {
                if polls && !polling {
                    start(&mut round, &poller);
                    ticks.reset();
                }
                polling = polls;
                true
            }
            // A command changed the engine's state: show it now, not at the next tick. The
            // fixed-rate clock keeps its phase.
            _ = poller.hub.refresh_requested() => {
                again = round.as_ref().is_some_and(|r| !r.complete());
                start(&mut round, &poller);
                true
            }
            Some(answer) = next_answer(&mut round) => {
                let mut sent = poller.send(Input::Answer(answer)).await;
                let r = round.as_mut().expect("an answer comes from a round");
                if r.complete() && !r.published {
                    r.published = true;
                    let (late, took) = (r.late(), r.took());
                    sent &= poller.send(Input::Polled { late, took }).await;
                }
                if r.complete() && std::mem::take(&mut again) {
                    start(&mut round, &poller);
                }
                sent
            }
            // The deadline passed with an endpoint still out: the packet goes with what is in.
            _ = sleep_until(deadline), if round.as_ref().is_some_and(|r| !r.published) => {
                let r = round.as_mut().expect("checked just above");
                r.published = true;
                let (late, took) = (r.late(), r.took());
                poller.send(Input::Polled { late, took }).await
            }
        };
        if !sent {
            // The assembler is gone: the daemon is stopping.
            return;
        }
    }
}

/// Starts a poll unless one is on its way (a late one is not doubled: the clock skips), or
/// another daemon of the cluster polls.
fn start(round: &mut Option<Round>, poller: &Poller) {
    if !poller.polls() {
        return;
    }
    if round.as_ref().is_none_or(Round::complete) {
        *round = Some(Round::start(&poller.engine, &poller.metrics));
    } else {
        debug!("A poll is still on its way; this tick is skipped");
    }
}

/// Whether this daemon polls, once its cluster role changed; never without a cluster.
async fn role_changed(roles: &mut Option<watch::Receiver<Role>>) -> Option<bool> {
    match roles {
        Some(roles) => {
            roles.changed().await.ok()?;
            Some(roles.borrow_and_update().polls())
        }
        None => std::future::pending().await,
    }
}

/// The running poll's next answer; never, while none is out.
async fn next_answer(round: &mut Option<Round>) -> Option<Answer> {
    match round {
        Some(round) if !round.complete() => round.next().await,
        _ => std::future::pending().await,
    }
}

impl Poller {
    /// Applies a reloaded config: whether the clock must change, or `None` when it was not
    /// applied.
    fn reconfigure(&mut self, next: Arc<Config>) -> Option<bool> {
        let mut new_clock = false;
        if next.engine != self.config.engine {
            match Engine::new(&next.engine) {
                Ok(rebuilt) => self.engine = rebuilt,
                Err(err) => {
                    warn!(%err, "Engine settings not applied: keeping the running ones");
                    return None;
                }
            }
            new_clock = next.engine.poll_interval_ms != self.config.engine.poll_interval_ms;
            info!(
                state = %mask_credentials(self.engine.url(SourceKind::State).as_str()),
                poll_interval_ms = next.engine.poll_interval_ms,
                "Poller reconfigured"
            );
        }
        self.config = next;
        Some(new_clock)
    }

    /// Whether this daemon polls now: alone, or as its cluster's leader (or cut off from it).
    fn polls(&self) -> bool {
        self.cluster.as_ref().is_none_or(|c| c.role().polls())
    }

    /// Hands `input` to the assembler; `false` when it is gone.
    async fn send(&self, input: Input) -> bool {
        self.out.send(input).await.is_ok()
    }
}

/// The fixed-rate clock for `config`'s period: a late tick is skipped rather than bunched, so
/// the phase never drifts.
fn clock(config: &Config) -> Interval {
    let mut ticks = interval(config.poll_interval());
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    ticks
}
