//! The one pass that checks a whole config: every problem at once, each with its key path, so
//! one edit fixes the whole file.
//!
//! One function per section; the longest, `[server]` and `[auth]`, each in its own file
//! (`validate/server.rs`, `validate/auth.rs`).

mod auth;
mod server;

use super::values::{http_url, redis_url};
use super::{Config, ConfigError};

/// No packet or relayed message comes near this (a packet is a few kilobytes; Redis messages are
/// capped at `redis.max_message_bytes`, a megabyte by default).
const MAX_COMPRESSION_MIN_BYTES: u32 = 16 << 20;

impl Config {
    /// Checks every value, returning all problems at once, each prefixed with its key path.
    /// One function per section, in the order of the file.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, msg: String| problems.push(format!("{key}: {msg}"));
        self.validate_engine(&mut bad);
        self.validate_server(&mut bad);
        self.validate_clients(&mut bad);
        self.validate_auth(&mut bad);
        self.validate_redis(&mut bad);
        self.validate_cluster(&mut bad);
        self.validate_commands(&mut bad);
        self.regime.validate(&mut bad);
        self.alerts.validate(&mut bad);
        ConfigError::unless_empty(origin, problems)
    }

    /// The `[engine]` checks: the URLs, and a timeout that fits in the poll interval.
    fn validate_engine(&self, bad: &mut impl FnMut(&str, String)) {
        let e = &self.engine;
        // An empty action path turns that action off.
        let endpoints = [
            ("engine.state", &e.state),
            ("engine.agents", &e.agents),
            ("engine.models", &e.models),
            ("engine.halt", &e.halt),
            ("engine.resume", &e.resume),
            ("engine.rebalance", &e.rebalance),
            ("engine.export_logs", &e.export_logs),
        ];
        // A path is joined to engine.url: a bad base is one problem, not one per path.
        if endpoints.iter().any(|(_, value)| value.starts_with('/'))
            && let Err(msg) = http_url(&e.url)
        {
            bad("engine.url", msg);
        }
        for (key, value) in endpoints {
            if !value.is_empty()
                && !value.starts_with('/')
                && let Err(msg) = http_url(value)
            {
                bad(key, msg);
            }
        }
        if e.poll_interval_ms < 10 {
            bad(
                "engine.poll_interval_ms",
                format!("{} is too short; use at least 10", e.poll_interval_ms),
            );
        }
        if e.timeout_ms == 0 || e.timeout_ms >= e.poll_interval_ms {
            bad(
                "engine.timeout_ms",
                format!(
                    "{} must be above 0 and shorter than engine.poll_interval_ms ({}), or slow answers would delay ticks",
                    e.timeout_ms, e.poll_interval_ms
                ),
            );
        }
        if e.publish_deadline_ms == 0 {
            bad("engine.publish_deadline_ms", "must be above 0".into());
        }
        if e.max_body_bytes < 1024 {
            bad(
                "engine.max_body_bytes",
                format!("{} is too small; use at least 1024", e.max_body_bytes),
            );
        }
    }

    /// The `[clients]` checks: queues, timers, rates and sizes.
    fn validate_clients(&self, bad: &mut impl FnMut(&str, String)) {
        let c = &self.clients;
        if c.queue_size == 0 {
            bad("clients.queue_size", "must be at least 1".into());
        }
        for (key, value) in [
            ("clients.send_timeout_ms", c.send_timeout_ms),
            ("clients.ping_interval_ms", c.ping_interval_ms),
            ("clients.messages_per_second", c.messages_per_second.into()),
            ("clients.message_burst", c.message_burst.into()),
            (
                "clients.subscriptions_per_second",
                c.subscriptions_per_second.into(),
            ),
            ("clients.subscription_burst", c.subscription_burst.into()),
        ] {
            if value == 0 {
                bad(key, "must be above 0".into());
            }
        }
        if c.idle_timeout_ms <= c.ping_interval_ms {
            bad(
                "clients.idle_timeout_ms",
                format!(
                    "{} must be longer than clients.ping_interval_ms ({}), or live clients would be dropped between pings",
                    c.idle_timeout_ms, c.ping_interval_ms
                ),
            );
        }
        if c.max_message_bytes < 64 {
            bad(
                "clients.max_message_bytes",
                format!("{} is too small; use at least 64", c.max_message_bytes),
            );
        }
        if c.max_channels == 0 {
            bad("clients.max_channels", "must be at least 1".into());
        }
        if c.compression && c.compression_min_bytes > MAX_COMPRESSION_MIN_BYTES {
            bad(
                "clients.compression_min_bytes",
                format!(
                    "{} is above any frame the daemon sends ({MAX_COMPRESSION_MIN_BYTES} bytes), so nothing would be compressed; set clients.compression = false instead",
                    c.compression_min_bytes
                ),
            );
        }
    }

    /// The `[redis]` checks: the URL, the topic and push limits, the relayed channels.
    fn validate_redis(&self, bad: &mut impl FnMut(&str, String)) {
        let r = &self.redis;
        if r.max_topics == 0 {
            bad(
                "redis.max_topics",
                "must be at least 1, or no dashboard could subscribe".into(),
            );
        }
        if let Err(msg) = redis_url(&r.url) {
            bad("redis.url", msg);
        }
        if !(1..=100).contains(&r.max_push_hz) {
            bad(
                "redis.max_push_hz",
                format!("{} must be between 1 and 100", r.max_push_hz),
            );
        }
        if r.silence_ms < 1_500 {
            bad(
                "redis.silence_ms",
                format!(
                    "{} is too short: the heartbeat goes once a second; use at least 1500",
                    r.silence_ms
                ),
            );
        }
        if r.max_message_bytes < 1024 {
            bad(
                "redis.max_message_bytes",
                format!("{} is too small; use at least 1024", r.max_message_bytes),
            );
        }
        for channel in &r.relay {
            if channel.is_empty() || channel.contains(char::is_whitespace) {
                bad(
                    "redis.relay",
                    format!("{channel:?} is not a channel name or pattern"),
                );
            }
        }
    }

    /// The `[cluster]` checks: the URL, the name, the secret and a lease longer than a poll.
    fn validate_cluster(&self, bad: &mut impl FnMut(&str, String)) {
        let k = &self.cluster;
        if let Err(msg) = redis_url(&k.url) {
            bad("cluster.url", msg);
        }
        if k.name.is_empty() || k.name.contains(char::is_whitespace) {
            bad(
                "cluster.name",
                format!("{:?} must be a word, e.g. \"bff\"", k.name),
            );
        }
        let secret = k.secret.expose();
        if k.secret_file.is_some() && secret.len() < 32 {
            bad(
                "cluster.secret_file",
                format!(
                    "the secret is {} bytes; use at least 32 (e.g. `head -c 32 /dev/urandom | base64`)",
                    secret.len()
                ),
            );
        }
        if k.engine_id.len() > 200 || k.engine_id.chars().any(char::is_control) {
            bad(
                "cluster.engine_id",
                "must be at most 200 characters, none of them control characters, e.g. \"prod-engine\"".into(),
            );
        }
        if k.enabled() && (k.lease_ms < 500 || k.lease_ms <= self.engine.timeout_ms) {
            bad(
                "cluster.lease_ms",
                format!(
                    "{} must be at least 500 and longer than engine.timeout_ms ({})",
                    k.lease_ms, self.engine.timeout_ms
                ),
            );
        }
    }

    /// The `[commands]` checks: every limit above 0.
    fn validate_commands(&self, bad: &mut impl FnMut(&str, String)) {
        let m = &self.commands;
        for (key, value) in [
            ("commands.timeout_ms", m.timeout_ms),
            ("commands.per_minute", m.per_minute.into()),
            ("commands.burst", m.burst.into()),
            ("commands.max_in_flight", m.max_in_flight as u64),
        ] {
            if value == 0 {
                bad(key, "must be above 0".into());
            }
        }
    }
}

impl Config {
    /// Sets values that cannot apply as written to the values that do, so `check-config` prints
    /// what runs: a note for each, with its key, to log.
    pub fn normalise(&mut self) -> Vec<String> {
        let mut notes = Vec::new();
        let applies = self.publish_deadline().as_millis() as u64;
        let e = &mut self.engine;
        if applies != e.publish_deadline_ms {
            notes.push(format!(
                "engine.publish_deadline_ms: {} is more than a quarter of engine.poll_interval_ms \
                 ({}); {applies} applies",
                e.publish_deadline_ms, e.poll_interval_ms
            ));
            e.publish_deadline_ms = applies;
        }
        notes
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
