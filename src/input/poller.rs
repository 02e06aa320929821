//! The poller: on a fixed-rate clock, fetches the three endpoints at once, folds the answers into
//! the [`Inputs`], builds the packet and hands it to the hub; one log line per tick. With Redis
//! on, it also folds the engine's events in as they come ([`crate::input::redis`]) and pushes a
//! packet at once, at most `redis.max_push_hz` a second: events in between fold into the next.
//!
//! A fetch runs apart from the loop, so events keep being merged and pushed while the engine
//! takes its time; the poll stays the authority over what it answers.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};
use tokio::time::{Interval, MissedTickBehavior, interval, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::aggregate::{self, Change, Inputs};
use super::cluster::{Cluster, Role};

use super::redis::merge::{Overlay, answer_time};
use super::redis::subscriber::{Heard, SharedHealth};
use super::round::{Answer, Round};
use crate::config::{Config, mask_credentials};
use crate::engine::{Engine, SourceKind};
use crate::hub::Hub;
use crate::hub::packet::Telemetry;
use crate::metrics::Metrics;

/// The poller's side of the Redis input: the events it hears and how it is doing.
pub struct Events {
    /// The engine's events, in the order heard.
    pub rx: mpsc::Receiver<Heard>,
    /// The subscriber's health, for `sources.redis`.
    pub health: SharedHealth,
}

/// The poller's state between ticks.
struct Poller {
    engine: Engine,
    hub: Hub,
    metrics: Arc<Metrics>,
    config: Arc<Config>,
    inputs: Inputs,
    overlay: Overlay,
    health: Option<SharedHealth>,
    /// An event arrived since the last packet.
    dirty: bool,
    /// The push rate as a token bucket (GCRA): `redis.max_push_hz` a second, with as many at
    /// once. This is when the bucket would be full again; a push may go while it is less than
    /// a full bucket ahead of now. Events at the rate or below never wait; a burst gets the
    /// bucket at once, then one push per 1 / `max_push_hz`.
    push_due: tokio::time::Instant,
    /// Pushes since the last tick, for its log line.
    pushed: u32,
    /// This daemon's cluster, when it is one of several.
    cluster: Option<Cluster>,
    /// Publishing for the cluster failed: the packets go out here alone until it works again.
    cluster_failing: bool,
}

/// What went out for one packet, for the tick's log line.
struct Published {
    seq: u64,
    bytes: usize,
}

/// Polls until `shutdown` is cancelled, folding in `events` when Redis is on. A new config from
/// `settings` (a reload) applies from the next tick: a changed `[engine]` gets a new client, a
/// changed period a new clock. The sources' last good values are kept across a reload.
pub async fn run(
    engine: Engine,
    hub: Hub,
    metrics: Arc<Metrics>,
    mut settings: watch::Receiver<Arc<Config>>,
    events: Option<Events>,
    cluster: Option<Cluster>,
    shutdown: CancellationToken,
) {
    let config = settings.borrow_and_update().clone();
    let mut ticks = clock(&config);
    let (mut rx, health) = match events {
        Some(Events { rx, health }) => (Some(rx), Some(health)),
        None => (None, None),
    };
    let mut poller = Poller {
        engine,
        hub,
        metrics,
        config,
        inputs: Inputs::default(),
        overlay: Overlay::default(),
        health,
        dirty: false,
        push_due: tokio::time::Instant::now(),
        pushed: 0,
        cluster,
        cluster_failing: false,
    };
    let mut round: Option<Round> = None;
    // A refresh asked for while a poll was already on its way: poll again once it is back.
    let mut again = false;
    loop {
        let push_at = poller.push_at();
        let deadline = round.as_ref().map_or_else(tokio::time::Instant::now, |r| {
            r.started + poller.config.publish_deadline()
        });
        tokio::select! {
            _ = shutdown.cancelled() => return,
            Ok(()) = settings.changed() => {
                let next = settings.borrow_and_update().clone();
                if poller.reconfigure(next) {
                    ticks = clock(&poller.config);
                }
            }
            _ = ticks.tick() => start(&mut round, &poller),
            // A command changed the engine's state: show it now, not at the next tick. The
            // fixed-rate clock keeps its phase.
            _ = poller.hub.refresh_requested() => {
                again = round.as_ref().is_some_and(|r| !r.complete());
                start(&mut round, &poller);
            }
            Some(answer) = next_answer(&mut round) => {
                poller.record(answer);
                let r = round.as_mut().expect("an answer comes from a round");
                if r.complete() && !r.published {
                    r.published = true;
                    let (late, took) = (r.late(), r.took());
                    poller.tick(late, took).await;
                }
                if r.complete() && std::mem::take(&mut again) {
                    start(&mut round, &poller);
                }
            }
            // The deadline passed with an endpoint still out: the packet goes with what is in.
            _ = sleep_until(deadline), if round.as_ref().is_some_and(|r| !r.published) => {
                let r = round.as_mut().expect("checked just above");
                r.published = true;
                let (late, took) = (r.late(), r.took());
                poller.tick(late, took).await;
            }
            Some(heard) = next_event(&mut rx) => poller.merge(heard),
            _ = sleep_until(push_at), if poller.dirty => poller.push().await,
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

/// The running poll's next answer; never, while none is out.
async fn next_answer(round: &mut Option<Round>) -> Option<Answer> {
    match round {
        Some(round) if !round.complete() => round.next().await,
        _ => std::future::pending().await,
    }
}

/// The next engine event; never, without Redis.
async fn next_event(rx: &mut Option<mpsc::Receiver<Heard>>) -> Option<Heard> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Poller {
    /// Applies a reloaded config; whether the clock must change.
    fn reconfigure(&mut self, next: Arc<Config>) -> bool {
        let mut new_clock = false;
        if next.engine != self.config.engine {
            match Engine::new(&next.engine) {
                Ok(rebuilt) => self.engine = rebuilt,
                Err(err) => {
                    warn!(%err, "Engine settings not applied: keeping the running ones");
                    return false;
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
        new_clock
    }

    /// Whether this daemon polls now: alone, or as its cluster's leader (or cut off from it).
    fn polls(&self) -> bool {
        self.cluster.as_ref().is_none_or(|c| c.role().polls())
    }

    /// Sends one packet out: through the cluster when this daemon leads it (every daemon, this
    /// one too, takes it back from there), else to this daemon's own clients. When publishing
    /// for the cluster fails, it goes out here under this daemon's own epoch: Redis trouble
    /// never blanks a dashboard.
    async fn publish(&mut self, packet: Telemetry) -> Option<Published> {
        if let Some(cluster) = &self.cluster {
            match cluster.role() {
                Role::Leader => {
                    let body = crate::hub::packet::body(&packet);
                    match cluster.publish(&body).await {
                        Ok(Some((_, seq))) => {
                            if std::mem::take(&mut self.cluster_failing) {
                                info!("Publishing through the cluster again");
                            }
                            return Some(Published {
                                seq,
                                bytes: body.len(),
                            });
                        }
                        // The lease lapsed: another daemon publishes now.
                        Ok(None) => return None,
                        Err(err) => {
                            if !self.cluster_failing {
                                warn!(%err, "Cannot publish through the cluster: publishing here alone");
                                self.cluster_failing = true;
                            }
                        }
                    }
                }
                Role::Alone => {}
                Role::Joining | Role::Follower => return None,
            }
        }
        let snapshot = self.hub.publish(packet);
        Some(Published {
            seq: snapshot.seq,
            bytes: snapshot.telemetry.len(),
        })
    }

    /// When the next push may go out: now, while the bucket holds a token; else when it will.
    fn push_at(&self) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        let slack = self.push_every() * (self.config.redis.max_push_hz.max(1) - 1);
        self.push_due
            .checked_sub(slack)
            .map_or(now, |allowed| allowed.max(now))
    }

    /// The time one push takes out of the bucket.
    fn push_every(&self) -> Duration {
        Duration::from_secs(1) / self.config.redis.max_push_hz.max(1)
    }

    /// The packet as of `now`: the polls, the events newer than them, and each source's health.
    fn packet(&self, now: DateTime<Utc>) -> Telemetry {
        let max_logs = self.config.packet.max_logs;
        let mut packet = aggregate::build(&self.inputs, now, max_logs);
        if let Some(health) = &self.health {
            self.overlay
                .merge_into(&mut packet, answer_time(&self.inputs), max_logs);
            let health = health.lock().expect("redis health lock poisoned").clone();
            packet.sources.redis = Some(health.source(now));
        }
        packet
    }

    /// One event folded in, or Redis's health changed: the packet goes out at once, or at the
    /// next free slot.
    fn merge(&mut self, heard: Heard) {
        if let Heard::Event(event, received) = heard {
            self.overlay.apply(event, received);
            self.metrics.redis_merged();
        }
        self.dirty = true;
    }

    /// A packet for the events heard since the last one.
    async fn push(&mut self) {
        self.dirty = false;
        self.push_due = self.push_due.max(tokio::time::Instant::now()) + self.push_every();
        if !self.polls() {
            return;
        }
        let packet = self.packet(Utc::now());
        if let Some(published) = self.publish(packet).await {
            self.metrics.published();
            self.metrics.redis_pushed();
            self.pushed += 1;
            debug!(seq = published.seq, "Telemetry pushed for engine events");
        }
    }

    /// One endpoint's answer, folded in (a failure keeps the last good value); a change in
    /// its health is logged once.
    fn record(&mut self, answer: Answer) {
        let now = Utc::now();
        let kind = answer.kind();
        let change = match answer {
            Answer::State(state) => {
                let change = self.inputs.state.record(*state, now);
                self.overlay.polled(answer_time(&self.inputs));
                change
            }
            Answer::Agents(agents) => self.inputs.agents.record(agents, now),
            Answer::Models(models) => self.inputs.models.record(models, now),
        };
        // Masked only when logged: a change is rare, a record is every tick.
        let url = || mask_credentials(self.engine.url(kind).as_str());
        match change {
            Change::Failed => {
                let mut sources = self.inputs.sources(now);
                let health = sources
                    .endpoint_mut(kind.name())
                    .expect("every endpoint has its row in sources");
                let error = health.error.as_deref().unwrap_or_default();
                // At start there is no good value to keep: say so rather than promise one.
                match health.updated {
                    Some(_) => warn!(
                        source = kind.name(),
                        url = %url(),
                        error,
                        "Source stale: keeping its last good value until it answers again"
                    ),
                    None => warn!(
                        source = kind.name(),
                        url = %url(),
                        error,
                        "Source not answering: no answer from it yet, so its part of the packet \
                         stays empty until it answers"
                    ),
                }
            }
            Change::Recovered => info!(source = kind.name(), url = %url(), "Source recovered"),
            Change::None => {}
        }
    }

    /// One poll's packet: what answered, the last good values of what did not (shown stale,
    /// an endpoint still out marked late), published and logged.
    async fn tick(&mut self, late: Vec<SourceKind>, took: Duration) {
        let now = Utc::now();
        let mut packet = self.packet(now);
        let deadline = self.config.publish_deadline().as_millis();
        for kind in late {
            let Some(health) = packet.sources.endpoint_mut(kind.name()) else {
                continue;
            };
            health.ok = false;
            // A source that already failed keeps showing why (a timeout, say); one that was
            // fine is only late this time.
            health.error.get_or_insert_with(|| {
                format!(
                    "no answer within {deadline} ms (engine.publish_deadline_ms); the last good value is shown"
                )
            });
        }
        let stale: Vec<&str> = packet
            .sources
            .named()
            .into_iter()
            .filter(|(_, health)| !health.ok)
            .map(|(name, _)| name)
            .collect();
        let stale = stale.join(",");
        let status = packet.state.status.as_str();
        // The tick carries every event so far.
        self.dirty = false;
        let Some(published) = self.publish(packet).await else {
            return;
        };
        self.metrics.published();
        info!(
            seq = published.seq,
            clients = self.hub.subscribers(),
            bytes = published.bytes,
            poll_ms = took.as_millis() as u64,
            status,
            stale = %stale,
            pushed = std::mem::take(&mut self.pushed),
            "Telemetry published"
        );
    }
}

/// The fixed-rate clock for `config`'s period: a late tick is skipped rather than bunched, so
/// the phase never drifts.
fn clock(config: &Config) -> Interval {
    let mut ticks = interval(config.poll_interval());
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    ticks
}
