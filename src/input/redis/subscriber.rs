//! The Redis connection: subscribes to the engine's channels and the relay list, passes each
//! message to the relay and, when it is one of the engine's events, to the poller's merge; and
//! keeps itself alive.
//!
//! Why not the `redis` crate's `ConnectionManager`: it resubscribes after a reconnect only with
//! RESP3 and an opt-in, and its reconnect is best effort (redis-rs issues #1059, #1407, #1408).
//! So each attempt here is a plain pub/sub connection that subscribes from scratch, inside our
//! own loop with backoff; and since a Redis that hangs (paused, a dead network path) closes
//! nothing, the daemon publishes a heartbeat on its own channel every second and takes a
//! connection that has heard nothing for `redis.silence_ms` for dead.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, interval, sleep, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::event::{self, Heard};
use super::sentinel;
use crate::config::{RedisConfig, is_pattern, matches};
use crate::hub::Hub;
use crate::hub::packet::{SourceHealth, Timestamp};
use crate::input::Input;
use crate::input::cluster::{Cluster, Role};
use crate::metrics::Metrics;

/// Time one connect, subscribe or heartbeat may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(2);
/// Waits between failed attempts: doubling from the first, up to the last.
const BACKOFF: [Duration; 2] = [Duration::from_millis(250), Duration::from_secs(5)];

/// The longest wait between attempts for `url`. Behind Sentinel the first: each attempt asks the
/// Sentinels for the master, which is cheap, and a message published on a new master before the
/// subscription is back there is lost to it (pub/sub keeps nothing), so the daemon comes back
/// within a quarter second of the promotion however long the failover took.
fn longest_wait(url: &str) -> Duration {
    match crate::config::sentinel::parse(url) {
        Ok(Some(_)) => BACKOFF[0],
        _ => BACKOFF[1],
    }
}
/// How often the daemon proves the subscription alive.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// How the Redis input is doing, for `sources.redis`, `/health` and `/metrics`.
#[derive(Debug, Default, Clone)]
pub struct Health {
    /// Subscribed and hearing.
    pub up: bool,
    /// When the last message (the heartbeat included) arrived.
    pub last_message: Option<DateTime<Utc>>,
    /// Why it is down, while it is.
    pub error: Option<String>,
}

impl Health {
    /// As a source of the packet, at `now`.
    pub fn source(&self, now: DateTime<Utc>) -> SourceHealth {
        let updated = self.last_message.map(Timestamp);
        SourceHealth {
            ok: self.up && self.error.is_none(),
            updated,
            age_ms: updated.map(|t| t.age_ms(now)),
            error: self.error.clone(),
        }
    }
}

/// The subscriber's health, written by it and read when a packet is built.
pub type SharedHealth = Arc<Mutex<Health>>;

/// Everything the subscriber needs.
pub struct Subscriber {
    /// `[redis]`, fixed for the subscriber's life (a change needs a restart).
    pub config: RedisConfig,
    /// Where relayed messages go.
    pub hub: Hub,
    /// The cluster this daemon is in, if any: while it leads, relayed messages are numbered
    /// there for every daemon; while another leads, that one relays them.
    pub cluster: Option<Cluster>,
    /// Counts messages, drops and reconnects.
    pub metrics: Arc<Metrics>,
    /// Where the engine's events go: the assembler, which merges and pushes them. Bounded: an
    /// assembler that falls behind slows the reading, which Redis buffers.
    pub events: mpsc::Sender<Input>,
    /// Shared with the poller.
    pub health: SharedHealth,
    /// Stops it.
    pub shutdown: CancellationToken,
}

/// Why a connection ended.
type Lost = String;

impl Subscriber {
    /// Connects, subscribes and listens until shutdown, reconnecting with backoff; logs one
    /// warning when Redis goes away and one line when it is back.
    pub async fn run(self) {
        let heartbeat = format!("bff.heartbeat.{:016x}", fastrand::u64(..));
        let topics = topics(&self.config.relay, &heartbeat);
        let mut wait = BACKOFF[0];
        let longest = longest_wait(self.config.url.expose());
        let mut down_since: Option<Instant> = None;
        loop {
            let (lost, subscribed) = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                lost = self.connection(&topics, &heartbeat, &mut down_since) => lost,
            };
            if subscribed {
                // It was up: the next outage starts its backoff afresh.
                wait = BACKOFF[0];
            }
            self.metrics.redis_reconnect();
            if down_since.is_none() {
                warn!(
                    url = %self.config.url.masked(),
                    error = %lost,
                    "Redis stale: the poll goes on; reconnecting with backoff"
                );
                down_since = Some(Instant::now());
            } else {
                debug!(error = %lost, "Redis still down");
            }
            self.set_down(lost);
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = sleep(wait) => {}
            }
            wait = (wait * 2).min(longest);
        }
    }

    /// One connection, from connect to loss; returns why it was lost, and whether it had got
    /// as far as subscribing.
    async fn connection(
        &self,
        topics: &[String],
        heartbeat: &str,
        down_since: &mut Option<Instant>,
    ) -> (Lost, bool) {
        match self.subscribe(topics, heartbeat, down_since).await {
            Ok(lost) => (lost, true),
            Err(lost) => (lost, false),
        }
    }

    /// Connects and subscribes (`Err` when that fails), then listens until the connection is
    /// lost (`Ok` with why).
    async fn subscribe(
        &self,
        topics: &[String],
        heartbeat: &str,
        down_since: &mut Option<Instant>,
    ) -> Result<Lost, Lost> {
        let client = match timeout(STEP_TIMEOUT, sentinel::client(self.config.url.expose())).await {
            Ok(Ok(client)) => client,
            Ok(Err(err)) => return Err(format!("redis.url: {err}")),
            Err(_) => return Err("asking the Sentinels timed out".into()),
        };
        let mut pubsub = match timeout(STEP_TIMEOUT, client.get_async_pubsub()).await {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(err)) => return Err(format!("cannot connect: {err}")),
            Err(_) => return Err("connecting timed out".into()),
        };
        for topic in topics {
            let subscribed = if is_pattern(topic) {
                timeout(STEP_TIMEOUT, pubsub.psubscribe(topic)).await
            } else {
                timeout(STEP_TIMEOUT, pubsub.subscribe(topic)).await
            };
            match subscribed {
                Ok(Ok(())) => {}
                Ok(Err(err)) => return Err(format!("cannot subscribe to {topic}: {err}")),
                Err(_) => return Err(format!("subscribing to {topic} timed out")),
            }
        }
        let publisher = match timeout(STEP_TIMEOUT, client.get_multiplexed_async_connection()).await
        {
            Ok(Ok(connection)) => connection,
            Ok(Err(err)) => return Err(format!("cannot connect: {err}")),
            Err(_) => return Err("connecting timed out".into()),
        };
        if let Some(since) = down_since.take() {
            info!(
                url = %self.config.url.masked(),
                down_s = since.elapsed().as_secs(),
                "Redis recovered: subscribed again"
            );
        } else {
            info!(url = %self.config.url.masked(), channels = topics.len(), "Redis subscribed");
        }
        self.set_up();
        let beating = CancellationToken::new();
        let _stop_beating = beating.clone().drop_guard();
        tokio::spawn(beat(publisher, heartbeat.to_owned(), beating).in_current_span());

        let silence = Duration::from_millis(self.config.silence_ms);
        let mut stream = pubsub.on_message();
        loop {
            let message = match timeout(silence, stream.next()).await {
                Err(_) => {
                    return Ok(format!(
                        "nothing heard for {} ms, not even the heartbeat: Redis is not answering",
                        self.config.silence_ms
                    ));
                }
                Ok(None) => return Ok("connection closed".into()),
                Ok(Some(message)) => message,
            };
            let received = Utc::now();
            self.heard(received);
            let channel = message.get_channel_name();
            if channel == heartbeat {
                continue;
            }
            self.take(channel, message.get_payload_bytes(), received)
                .await;
        }
    }

    /// One message: relayed if the relay list has its channel, merged if it is an event.
    async fn take(&self, channel: &str, payload: &[u8], received: DateTime<Utc>) {
        self.metrics.redis_message();
        if payload.len() > self.config.max_message_bytes {
            self.metrics.redis_dropped("too_large");
            debug!(
                channel,
                bytes = payload.len(),
                "Redis message over redis.max_message_bytes dropped"
            );
            return;
        }
        if self
            .config
            .relay
            .iter()
            .any(|entry| matches(entry, channel))
        {
            match &self.cluster {
                None => {
                    self.hub.relay_here(channel, payload);
                }
                Some(cluster) => match cluster.role() {
                    // Every daemon of the cluster offers it: whichever leads numbers it once.
                    Role::Leader | Role::Follower | Role::Joining => {
                        cluster.relay(channel, payload)
                    }
                    Role::Fallback | Role::Apart => {
                        self.hub.relay_here(channel, payload);
                    }
                },
            }
        }
        match event::parse(channel, payload) {
            Ok(Some(event)) => {
                // The poller gone means the daemon is stopping.
                let _ = self
                    .events
                    .send(Input::Heard(Heard::Event(event, received)))
                    .await;
            }
            Ok(None) => {}
            Err(dropped) => {
                self.metrics.redis_dropped(dropped.label());
                debug!(channel, why = %dropped, "Redis message not merged");
            }
        }
    }

    fn heard(&self, at: DateTime<Utc>) {
        self.health
            .lock()
            .expect("redis health lock poisoned")
            .last_message = Some(at);
    }

    fn set_up(&self) {
        let mut health = self.health.lock().expect("redis health lock poisoned");
        health.up = true;
        health.error = None;
        self.metrics.redis_connected(true);
        drop(health);
        let _ = self.events.try_send(Input::Heard(Heard::Health));
    }

    fn set_down(&self, why: Lost) {
        let mut health = self.health.lock().expect("redis health lock poisoned");
        let changed = health.up || health.error.as_deref() != Some(why.as_str());
        health.up = false;
        health.error = Some(why);
        self.metrics.redis_connected(false);
        drop(health);
        if changed {
            let _ = self.events.try_send(Input::Heard(Heard::Health));
        }
    }
}

/// Publishes the heartbeat every second on `channel` until `stop`; a publish that fails or
/// hangs is left to the listener's silence check.
async fn beat(
    mut publisher: redis::aio::MultiplexedConnection,
    channel: String,
    stop: CancellationToken,
) {
    let mut ticks = interval(HEARTBEAT_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {
                let mut publish = redis::cmd("PUBLISH");
                publish.arg(&channel).arg("1");
                let publish = publish.query_async::<i64>(&mut publisher);
                if let Ok(Err(err)) = timeout(STEP_TIMEOUT, publish).await {
                    debug!(%err, "Heartbeat not published");
                }
            }
        }
    }
}

/// What to subscribe to: the engine's channels, the relay list and the heartbeat, without an
/// entry a pattern of the set already covers (Redis would deliver such a message twice).
fn topics(relay: &[String], heartbeat: &str) -> Vec<String> {
    let mut all: Vec<String> = event::MERGED
        .iter()
        .map(|c| c.to_string())
        .chain(relay.iter().cloned())
        .collect();
    all.sort();
    all.dedup();
    let covered = |topic: &String| {
        all.iter()
            .any(|other| other != topic && is_pattern(other) && matches(other, topic))
    };
    let mut kept: Vec<String> = all.iter().filter(|t| !covered(t)).cloned().collect();
    kept.push(heartbeat.to_owned());
    kept
}

/// Starts the subscriber in a task of its own, with its span.
pub fn spawn(subscriber: Subscriber, tracker: &tokio_util::task::TaskTracker) {
    tracker.spawn(subscriber.run().instrument(info_span!("redis")));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Behind Sentinel the subscriber never waits longer than its first wait between attempts,
    /// so it is back on a new master within a quarter second of the promotion; a plain server is
    /// waited for longer and longer, up to 5 s.
    #[test]
    fn behind_sentinel_the_waits_stay_short() {
        assert_eq!(
            longest_wait("redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/m"),
            Duration::from_millis(250)
        );
        assert_eq!(
            longest_wait("redis://127.0.0.1:6379"),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn a_topic_a_pattern_covers_is_left_out() {
        let relay = ["market.*", "market.tick.*", "trade.results", "risk.state"].map(String::from);
        let topics = topics(&relay, "bff.heartbeat.1");
        assert_eq!(
            topics,
            [
                "forecast.signals",
                "market.*",
                "physics.forces",
                "risk.state",
                "strategy.signals",
                "system_events",
                "trade.results",
                "bff.heartbeat.1"
            ]
        );
    }
}
