//! The poller: on a fixed-rate clock, fetches the three endpoints at once, folds the answers into
//! the [`Inputs`], builds the packet and hands it to the hub; one log line per tick. With Redis
//! on, it also folds the engine's events in as they come ([`crate::input::redis`]) and pushes a
//! packet at once, at most `redis.max_push_hz` a second: events in between fold into the next.
//!
//! A fetch runs apart from the loop, so events keep being merged and pushed while the engine
//! takes its time; the poll stays the authority over what it answers.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};
use tokio::time::{Interval, MissedTickBehavior, interval, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::aggregate::{self, Change, Inputs};
use super::cluster::{Cluster, Role};
use super::normalize::{self, EngineState};
use super::redis::merge::{Overlay, answer_time};
use super::redis::subscriber::{Heard, SharedHealth};
use crate::config::Config;
use crate::engine::{Engine, SourceKind};
use crate::hub::Hub;
use crate::hub::packet::{Agents, Models, Telemetry};
use crate::metrics::Metrics;

/// The poller's side of the Redis input: the events it hears and how it is doing.
pub struct Events {
    /// The engine's events, in the order heard.
    pub rx: mpsc::Receiver<Heard>,
    /// The subscriber's health, for `sources.redis`.
    pub health: SharedHealth,
}

/// What one poll of the three endpoints gave.
struct Polled {
    state: Result<EngineState, String>,
    agents: Result<Agents, String>,
    models: Result<Models, String>,
    /// The slowest of the three fetches.
    took: Duration,
}

type Polling = Pin<Box<dyn Future<Output = Polled> + Send>>;

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
    /// When the pushes of the last second went out, oldest first: at most `redis.max_push_hz`
    /// of them, so a push goes out at once while the second has room, and waits for the
    /// oldest to age out when it has not.
    recent_pushes: VecDeque<tokio::time::Instant>,
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
        recent_pushes: VecDeque::new(),
        pushed: 0,
        cluster,
        cluster_failing: false,
    };
    let mut polling: Option<Polling> = None;
    // A refresh asked for while a poll was already on its way: poll again once it is back.
    let mut again = false;
    loop {
        let push_at = poller.push_at();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            Ok(()) = settings.changed() => {
                let next = settings.borrow_and_update().clone();
                if poller.reconfigure(next) {
                    ticks = clock(&poller.config);
                }
            }
            _ = ticks.tick() => start(&mut polling, &poller),
            // A command changed the engine's state: show it now, not at the next tick. The
            // fixed-rate clock keeps its phase.
            _ = poller.hub.refresh_requested() => {
                again = polling.is_some();
                start(&mut polling, &poller);
            }
            polled = finished(&mut polling) => {
                polling = None;
                poller.tick(polled).await;
                if std::mem::take(&mut again) {
                    start(&mut polling, &poller);
                }
            }
            Some(heard) = next_event(&mut rx) => poller.merge(heard),
            _ = sleep_until(push_at), if poller.dirty => poller.push().await,
        }
    }
}

/// Starts a poll unless one is on its way (a late one is not doubled: the clock skips), or
/// another daemon of the cluster polls.
fn start(polling: &mut Option<Polling>, poller: &Poller) {
    if !poller.polls() {
        return;
    }
    if polling.is_none() {
        *polling = Some(Box::pin(fetch_all(
            poller.engine.clone(),
            poller.metrics.clone(),
        )));
    } else {
        debug!("A poll is still on its way; this tick is skipped");
    }
}

/// The running poll's result; never, while none runs.
async fn finished(polling: &mut Option<Polling>) -> Polled {
    match polling {
        Some(poll) => poll.await,
        None => std::future::pending().await,
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
                state = %self.engine.url(SourceKind::State),
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

    /// When the next push may go out: now, while fewer than `redis.max_push_hz` went out in
    /// the last second; else when the oldest of them is a second old.
    fn push_at(&self) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        match self.recent_pushes.front() {
            Some(oldest) if self.recent_pushes.len() >= self.max_pushes() => {
                *oldest + Duration::from_secs(1)
            }
            _ => now,
        }
    }

    fn max_pushes(&self) -> usize {
        self.config.redis.max_push_hz.max(1) as usize
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
        let now = tokio::time::Instant::now();
        while self
            .recent_pushes
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            self.recent_pushes.pop_front();
        }
        self.recent_pushes.push_back(now);
        while self.recent_pushes.len() > self.max_pushes() {
            self.recent_pushes.pop_front();
        }
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

    /// One poll's answers: folded in, published, logged.
    async fn tick(&mut self, polled: Polled) {
        let now = Utc::now();
        let changes = [
            self.inputs.state.record(polled.state, now),
            self.inputs.agents.record(polled.agents, now),
            self.inputs.models.record(polled.models, now),
        ];
        self.overlay.polled(answer_time(&self.inputs));
        let sources = self.inputs.sources(now);
        let mut stale = Vec::new();
        for ((kind, change), (_, health)) in SourceKind::ALL
            .into_iter()
            .zip(changes)
            .zip(sources.named())
        {
            let url = self.engine.url(kind).as_str();
            match change {
                Change::Failed => warn!(
                    source = kind.name(),
                    url,
                    error = health.error.as_deref().unwrap_or_default(),
                    "Source stale: keeping its last good value until it answers again"
                ),
                Change::Recovered => info!(source = kind.name(), url, "Source recovered"),
                Change::None => {}
            }
            if !health.ok {
                stale.push(kind.name());
            }
        }
        let packet = self.packet(now);
        if packet.sources.redis.as_ref().is_some_and(|r| !r.ok) {
            stale.push("redis");
        }
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
            poll_ms = polled.took.as_millis() as u64,
            status,
            stale = %stale.join(","),
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

/// Fetches all three endpoints at once.
async fn fetch_all(engine: Engine, metrics: Arc<Metrics>) -> Polled {
    let started = Instant::now();
    let (state, agents, models) = tokio::join!(
        poll(&engine, &metrics, SourceKind::State, normalize::state),
        poll(&engine, &metrics, SourceKind::Agents, normalize::agents),
        poll(&engine, &metrics, SourceKind::Models, normalize::models),
    );
    Polled {
        state,
        agents,
        models,
        took: started.elapsed(),
    }
}

/// Fetches and reads one endpoint, and records the outcome in the metrics. Both kinds of failure
/// become the reason shown in `sources`; an answer the normaliser refuses is a `shape` error.
async fn poll<T, E: ToString>(
    engine: &Engine,
    metrics: &Metrics,
    kind: SourceKind,
    normalize: impl FnOnce(&serde_json::Value) -> Result<T, E>,
) -> Result<T, String> {
    let started = Instant::now();
    let outcome = match engine.fetch(kind).await {
        Ok(answer) => normalize(&answer).map_err(|e| ("shape", e.to_string())),
        Err(err) => Err((err.kind(), err.to_string())),
    };
    metrics.polled(
        kind.name(),
        started.elapsed(),
        outcome.as_ref().err().map(|(k, _)| *k),
    );
    outcome.map_err(|(_, why)| why)
}
