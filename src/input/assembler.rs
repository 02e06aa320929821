//! The assembler: the one receiver of the inputs' events ([`Input`](super::Input)). It folds each endpoint's
//! answer into the [`Inputs`] and the engine's Redis events into the [`Overlay`], builds the
//! packet when a poll's is due (one log line per tick), and pushes one at once for events heard
//! in between, at most `redis.max_push_hz` a second: events in between fold into the next. It
//! sends each packet out, through the cluster when this daemon leads one.
//!
//! It owns no clock and fetches nothing: the poller ([`super::poller`]) and the Redis subscriber
//! ([`super::redis::subscriber`]) run on their own and send here, so a new input is one more
//! variant of [`Input`] and a task that sends it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

mod judge;

use super::Input;
use super::aggregate::{self, Change, Inputs};
use super::cluster::{Cluster, Role};
use super::mood::{Alerts, Mood};
use super::redis::event::Heard;
use super::redis::merge::{Overlay, answer_time};
use super::redis::subscriber::SharedHealth;
use super::round::Answer;
use crate::config::{Config, mask_credentials};
use crate::engine::{SourceKind, endpoint};
use crate::hub::Hub;
use crate::hub::packet::Telemetry;
use crate::metrics::Metrics;

/// The assembler's state between inputs.
struct Assembler {
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
    /// The market's mood and the alerts, read once from each packet built here.
    mood: Mood,
    alerts: Alerts,
    /// The last few packets published here (epoch, seq), to tell another daemon's packet in
    /// the hub (after it polled for the cluster) from one of this daemon's own on its way back.
    mine: VecDeque<(Arc<str>, u64)>,
}

/// Why the alert rules of a loaded config always resolve.
const RULES_VALIDATED: &str = "the config's validation refuses a rule on a field no packet has";

/// What went out for one packet, for the tick's log line.
struct Published {
    seq: u64,
    bytes: usize,
}

/// Assembles what `inputs` hands it until `shutdown` is cancelled, starting from `config`;
/// `health` is the Redis subscriber's, when Redis is on.
pub async fn run(
    hub: Hub,
    metrics: Arc<Metrics>,
    config: Arc<Config>,
    mut inputs: mpsc::Receiver<Input>,
    health: Option<SharedHealth>,
    cluster: Option<Cluster>,
    shutdown: CancellationToken,
) {
    let mut assembler = Assembler {
        hub,
        metrics,
        inputs: Inputs::default(),
        overlay: Overlay::default(),
        health,
        dirty: false,
        push_due: tokio::time::Instant::now(),
        pushed: 0,
        mood: Mood::new(&config.regime),
        alerts: Alerts::new(&config.alerts).expect(RULES_VALIDATED),
        config,
        cluster,
        cluster_failing: false,
        mine: VecDeque::new(),
    };
    loop {
        let push_at = assembler.push_at();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            input = inputs.recv() => match input {
                Some(Input::Answer(answer)) => assembler.record(answer),
                Some(Input::Polled { late, took }) => assembler.tick(late, took).await,
                Some(Input::Config(config)) => assembler.reconfigure(config),
                Some(Input::Heard(heard)) => assembler.merge(heard),
                // Every input stopped: the daemon is stopping.
                None => return,
            },
            _ = sleep_until(push_at), if assembler.dirty => assembler.push().await,
        }
    }
}

impl Assembler {
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
                        Ok(Some((epoch, seq))) => {
                            self.mine(epoch.into(), seq);
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
                Role::Fallback | Role::Apart => {}
                Role::Joining | Role::Follower => return None,
            }
        }
        let snapshot = self.hub.publish(packet);
        self.mine(snapshot.epoch.clone(), snapshot.seq);
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
        let now = Utc::now();
        let mut packet = self.packet(now);
        self.judge(&mut packet, now);
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
        // Masked only when logged: a change is rare, a record is every tick. The URL is the
        // one the poller fetches (the config it forwards is the one its engine was built from).
        let url = || {
            endpoint(&self.config.engine, kind)
                .map(|url| mask_credentials(url.as_str()))
                .unwrap_or_default()
        };
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
        if self.polls() {
            self.judge(&mut packet, now);
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

#[cfg(test)]
#[path = "assembler_tests.rs"]
mod tests;
