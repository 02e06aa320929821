//! Prometheus metrics, served at `GET /metrics` in the text exposition format.
//!
//! Counters are bumped where things happen (connections, the poller); the values that are a
//! reading rather than a count (open connections, relay topics held, age of each source's last
//! good poll) are taken at scrape time, so they are never stale and cost nothing between scrapes.
//!
//! Below every other module: callers name their sources and frames; nothing here knows the
//! engine or the packet.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

mod labels;

pub use self::labels::Frame;
use self::labels::{
    AlertLabels, CommandLabels, DisconnectLabels, KindLabel, PollErrorLabels, ReasonLabel,
    RegimeLabel, RoleLabel, SourceLabel, StatusLabel,
};

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Declares [`Metrics`] from one table: each row is a field, its type, and the name, help text
/// and instance it is registered with, in the order `/metrics` lists them. Adding a metric is
/// one row (and the method that updates it).
macro_rules! metrics_table {
    ($(
        $(#[$doc:meta])*
        $field:ident: $ty:ty = ($name:literal, $help:literal, $metric:expr),
    )*) => {
        /// Every metric the daemon exports, shared by the routes, the connections and the poller.
        #[derive(Debug)]
        pub struct Metrics {
            registry: Registry,
            $($(#[$doc])* $field: $ty,)*
            /// One counter of `frames_sent` per [`Frame`], resolved once so a write costs one
            /// atomic add.
            frames: [Counter; Frame::ALL.len()],
            /// `cluster_rejected`, all reasons together, for `/health`.
            cluster_rejections: AtomicU64,
        }

        impl Metrics {
            /// Registers every metric under the `bff_` prefix.
            pub fn new() -> Self {
                let mut registry = Registry::with_prefix("bff");
                $(let $field: $ty = register(&mut registry, $name, $help, $metric);)*
                let mut metrics = Self {
                    registry,
                    $($field,)*
                    frames: Default::default(),
                    cluster_rejections: AtomicU64::default(),
                };
                metrics.frames = Frame::ALL.map(|kind| {
                    metrics
                        .frames_sent
                        .get_or_create(&KindLabel { kind: kind.as_str() })
                        .clone()
                });
                metrics
            }
        }
    };
}

metrics_table! {
    connections: Gauge = ("connections", "WebSocket connections open now", Gauge::default()),
    relay_topics: Gauge = (
        "relay_topics",
        "Relay channels and patterns held now, each for at least one subscriber (capped by redis.max_topics)",
        Gauge::default()
    ),
    connects: Counter = ("connects", "WebSocket connections accepted", Counter::default()),
    disconnects: Family<DisconnectLabels, Counter> = (
        "disconnects",
        "WebSocket connections ended, by reason and the close code sent or received (none: no close frame)",
        Family::default()
    ),
    refused: Family<StatusLabel, Counter> = (
        "handshakes_refused",
        "WebSocket handshakes refused before the upgrade, by HTTP status",
        Family::default()
    ),
    frames_sent: Family<KindLabel, Counter> = (
        "frames_sent",
        "Frames written to clients, by kind (welcome, telemetry, ping, reply, update)",
        Family::default()
    ),
    bytes: Counter = (
        "bytes_sent",
        "Bytes written to clients, frame headers included",
        Counter::default()
    ),
    send_failures: Counter = (
        "send_failures",
        "Writes to a client that failed or did not complete within clients.send_timeout_ms",
        Counter::default()
    ),
    slow_disconnects: Counter = (
        "slow_client_disconnects",
        "Clients cut off for not keeping up (queue full or send timeout)",
        Counter::default()
    ),
    poll_seconds: Family<SourceLabel, Histogram> = (
        "poll_duration_seconds",
        "Time to fetch and read one engine endpoint, answered or not",
        Family::new_with_constructor(duration_histogram as fn() -> _)
    ),
    poll_errors: Family<PollErrorLabels, Counter> = (
        "poll_errors",
        "Failed polls, by source and kind (timeout, request, status, too_large, body, json, shape)",
        Family::default()
    ),
    ticks: Counter = ("ticks_published", "Packets published", Counter::default()),
    fanout_seconds: Histogram = (
        "fanout_duration_seconds",
        "Time for one pass of the fan-out to write a packet to every stream connection: the spread between the first dashboard's copy and the last one's",
        duration_histogram()
    ),
    last_good_age: Family<SourceLabel, Gauge<f64, AtomicU64>> = (
        "last_good_poll_age_seconds",
        "Seconds since each source last answered well (absent until it first does)",
        Family::default()
    ),
    commands: Family<CommandLabels, Counter> = (
        "commands",
        "Commands from dashboards, by action (unknown for a name the engine has not) and outcome",
        Family::default()
    ),
    redis_connected: Gauge = (
        "redis_connected",
        "1 while the Redis subscription is up and hearing, 0 otherwise (absent without redis.url)",
        Gauge::default()
    ),
    redis_messages: Counter = (
        "redis_messages",
        "Messages heard on Redis channels (the daemon's own heartbeat not counted)",
        Counter::default()
    ),
    redis_merged: Counter = (
        "redis_merged",
        "Engine events merged into the packet",
        Counter::default()
    ),
    redis_pushes: Counter = (
        "redis_pushes",
        "Packets published between the regular ticks, for engine events or a change in the Redis subscription",
        Counter::default()
    ),
    redis_dropped: Family<ReasonLabel, Counter> = (
        "redis_dropped",
        "Redis messages not merged, by reason (not_json, shape, too_large)",
        Family::default()
    ),
    redis_reconnects: Counter = (
        "redis_reconnects",
        "Times the Redis subscription was lost (or could not be made) and made again",
        Counter::default()
    ),
    cluster_role: Family<RoleLabel, Gauge> = (
        "cluster_role",
        "1 for this daemon's role in its cluster now (joining, leader, follower, fallback, apart), 0 for the others; absent without [cluster]",
        Family::default()
    ),
    mood_changes: Family<RegimeLabel, Counter> = (
        "mood_changes",
        "Moods announced (PROTOCOL.md §12.2), by the new regime (crash, bull, neutral)",
        Family::default()
    ),
    alerts: Family<AlertLabels, Counter> = (
        "alerts",
        "Alerts raised (active true) and cleared (active false), by code and level",
        Family::default()
    ),
    cluster_rejected: Family<ReasonLabel, Counter> = (
        "cluster_rejected",
        "Messages on the cluster's channels or in its history dropped for their tag, by reason (unsigned, bad_tag)",
        Family::default()
    ),
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The announced mood turned to `regime`.
    pub fn mood_changed(&self, regime: &'static str) {
        self.mood_changes
            .get_or_create(&RegimeLabel { regime })
            .inc();
    }

    /// Alert `code` of `level` was raised (`active`) or cleared.
    pub fn alert(&self, code: &str, level: &'static str, active: bool) {
        let labels = AlertLabels {
            code: code.to_owned(),
            level,
            active: if active { "true" } else { "false" },
        };
        self.alerts.get_or_create(&labels).inc();
    }

    /// A WebSocket connection was accepted.
    pub fn connected(&self) {
        self.connects.inc();
    }

    /// Connections accepted since start.
    pub fn connects(&self) -> u64 {
        self.connects.get()
    }

    /// A connection ended for `reason` with close `code` (if any); `slow` when it was cut off
    /// for not keeping up.
    pub fn disconnected(&self, reason: &'static str, code: Option<u16>, slow: bool) {
        let code = code.map_or_else(|| "none".to_owned(), |c| c.to_string());
        self.disconnects
            .get_or_create(&DisconnectLabels { reason, code })
            .inc();
        if slow {
            self.slow_disconnects.inc();
        }
    }

    /// A handshake was answered with `status` instead of an upgrade.
    pub fn refused(&self, status: u16) {
        self.refused.get_or_create(&StatusLabel { status }).inc();
    }

    /// `bytes` of whole frames of `kind` were written to a client.
    pub fn sent(&self, kind: Frame, bytes: usize) {
        self.sent_frames(kind, 1, bytes);
    }

    /// `frames` frames of `kind`, `bytes` in all, were written.
    fn sent_frames(&self, kind: Frame, frames: usize, bytes: usize) {
        self.frames[kind as usize].inc_by(frames as u64);
        self.bytes.inc_by(bytes as u64);
    }

    /// A write to a client failed or timed out.
    pub fn send_failed(&self) {
        self.send_failures.inc();
    }

    /// One poll of `source` took `took`; `error` names the kind of failure, if it failed.
    pub fn polled(&self, source: &'static str, took: Duration, error: Option<&'static str>) {
        self.poll_seconds
            .get_or_create(&SourceLabel { source })
            .observe(took.as_secs_f64());
        if let Some(kind) = error {
            self.poll_errors
                .get_or_create(&PollErrorLabels { source, kind })
                .inc();
        }
    }

    /// A command for `action` ended with `outcome` (the edge names them, one closed set).
    pub fn command(&self, action: &'static str, outcome: &'static str) {
        self.commands
            .get_or_create(&CommandLabels { action, outcome })
            .inc();
    }

    /// The Redis subscription came up (`true`) or went down.
    pub fn redis_connected(&self, up: bool) {
        self.redis_connected.set(i64::from(up));
    }

    /// A message was heard on a Redis channel.
    pub fn redis_message(&self) {
        self.redis_messages.inc();
    }

    /// An engine event was merged into the packet.
    pub fn redis_merged(&self) {
        self.redis_merged.inc();
    }

    /// A packet was pushed because of engine events.
    pub fn redis_pushed(&self) {
        self.redis_pushes.inc();
    }

    /// A Redis message was dropped for `reason`.
    pub fn redis_dropped(&self, reason: &'static str) {
        self.redis_dropped
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// The Redis subscription was lost or could not be made.
    pub fn redis_reconnect(&self) {
        self.redis_reconnects.inc();
    }

    /// This daemon's role in its cluster is now the one marked `true` among `roles` (every
    /// role there is, so the others read 0).
    pub fn cluster_role(&self, roles: impl IntoIterator<Item = (&'static str, bool)>) {
        for (role, now) in roles {
            self.cluster_role
                .get_or_create(&RoleLabel { role })
                .set(i64::from(now));
        }
    }

    /// A message from the cluster's Redis was dropped for its tag (`reason`).
    pub fn cluster_rejected(&self, reason: &'static str) {
        self.cluster_rejected
            .get_or_create(&ReasonLabel { reason })
            .inc();
        self.cluster_rejections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Messages from the cluster's Redis dropped for their tag so far.
    pub fn cluster_rejections(&self) -> u64 {
        self.cluster_rejections
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A packet was published.
    pub fn published(&self) {
        self.ticks.inc();
    }

    /// One pass of the fan-out wrote a packet of `bytes` to every stream connection in `took`,
    /// and `taken` of them took it.
    pub fn fanned_out(&self, took: Duration, taken: usize, bytes: usize) {
        self.fanout_seconds.observe(took.as_secs_f64());
        self.sent_frames(Frame::Telemetry, taken, taken * bytes);
    }

    /// The relay topics held now, read at scrape time like the connections.
    pub fn relay_topics(&self, held: usize) {
        self.relay_topics.set(held as i64);
    }

    /// The exposition text, with the readings taken now: `connections`, and the age at `now`
    /// of each source's last good poll (`last_good`: source name → when, if ever).
    pub fn render(
        &self,
        connections: usize,
        last_good: impl IntoIterator<Item = (&'static str, Option<DateTime<Utc>>)>,
        now: DateTime<Utc>,
    ) -> String {
        self.connections.set(connections as i64);
        for (source, updated) in last_good {
            if let Some(updated) = updated {
                let age = (now - updated).num_milliseconds().max(0) as f64 / 1000.0;
                self.last_good_age
                    .get_or_create(&SourceLabel { source })
                    .set(age);
            }
        }
        let mut out = String::with_capacity(8 * 1024);
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Registers `metric` (metrics are shared handles) and returns it for the daemon to update.
fn register<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// 1 ms to about 4 s, doubling: an engine answers in milliseconds, a timeout is in seconds; a
/// fan-out pass to ten thousand dashboards takes tens of milliseconds.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 13))
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
