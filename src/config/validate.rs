//! The one pass that checks a whole config: every problem at once, each with its key path, so
//! one edit fixes the whole file.

use super::values::{http_url, proxy_net, redis_url, valid_origin};
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

    /// The `[server]` checks: paths, origins, proxies and limits.
    fn validate_server(&self, bad: &mut impl FnMut(&str, String)) {
        let s = &self.server;
        if s.ws_paths.is_empty() {
            bad(
                "server.ws_paths",
                "must list at least one path, e.g. [\"/\"]".into(),
            );
        }
        for path in &s.ws_paths {
            if !path.starts_with('/') || path == "/health" {
                bad(
                    "server.ws_paths",
                    format!("{path:?} must start with '/' and not be /health"),
                );
            }
        }
        for origin in &s.allowed_origins {
            if origin != "*" && !valid_origin(origin) {
                bad(
                    "server.allowed_origins",
                    format!(
                        "{origin:?} is not an origin; write scheme://host[:port], e.g. \"https://dash.example.com\", or [\"*\"] to let every page in"
                    ),
                );
            }
        }
        for (i, entry) in s.trusted_proxies.iter().enumerate() {
            if let Err(msg) = proxy_net(entry) {
                bad(&format!("server.trusted_proxies[{i}]"), msg);
            }
        }
        for (key, value) in [
            ("server.max_connections", s.max_connections),
            ("server.max_connections_per_ip", s.max_connections_per_ip),
            ("server.max_http_connections", s.max_http_connections),
            (
                "server.max_http_connections_per_ip",
                s.max_http_connections_per_ip,
            ),
        ] {
            if value == 0 {
                bad(key, "must be at least 1".into());
            }
        }
        for (key, value) in [
            ("server.header_timeout_ms", s.header_timeout_ms),
            (
                "server.handshakes_per_second_per_ip",
                s.handshakes_per_second_per_ip.into(),
            ),
            (
                "server.handshake_burst_per_ip",
                s.handshake_burst_per_ip.into(),
            ),
        ] {
            if value == 0 {
                bad(key, "must be above 0".into());
            }
        }
        for path in &s.bridge_paths {
            if !path.starts_with('/') || RESERVED_PATHS.contains(&path.as_str()) {
                bad(
                    "server.bridge_paths",
                    format!("{path:?} must start with '/' and not be one of {RESERVED_PATHS:?}"),
                );
            } else if s.ws_paths.contains(path) {
                bad(
                    "server.bridge_paths",
                    format!("{path:?} is in server.ws_paths too; a path speaks one dialect"),
                );
            }
        }
        for path in &s.market_stream_paths {
            let key = "server.market_stream_paths";
            if !path.starts_with('/') || RESERVED_PATHS.contains(&path.as_str()) {
                bad(
                    key,
                    format!("{path:?} must start with '/' and not be one of {RESERVED_PATHS:?}"),
                );
            } else if let Some(other) =
                [("ws_paths", &s.ws_paths), ("bridge_paths", &s.bridge_paths)]
                    .into_iter()
                    .find_map(|(name, paths)| paths.contains(path).then_some(name))
            {
                bad(
                    key,
                    format!("{path:?} is in server.{other} too; a path speaks one dialect"),
                );
            }
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

/// Paths the daemon answers itself, so no WebSocket path may take them.
const RESERVED_PATHS: &[&str] = &[
    "/health",
    "/metrics",
    "/schema.json",
    "/api/actions",
    "/trade/force",
];

impl Config {
    /// The `[auth]` checks: a secret long enough for HS256; a rollover needs a current secret
    /// and an end; a claim to match must not be empty.
    fn validate_auth(&self, bad: &mut impl FnMut(&str, String)) {
        let secret = self.auth.secret.expose();
        if secret == "***" {
            bad(
                "auth.secret",
                "\"***\" is how check-config shows a secret, not one; write the secret itself, \
                 or keep it in auth.secret_file"
                    .into(),
            );
        } else if !secret.is_empty() && secret.len() < 32 {
            bad(
                "auth.secret",
                format!(
                    "is {} bytes; use at least 32 random bytes for HS256",
                    secret.len()
                ),
            );
        }
        let a = &self.auth;
        let previous = a.previous_secret.expose();
        if a.previous_secret_file.is_some() {
            if a.secret.expose().is_empty() {
                bad(
                    "auth.previous_secret_file",
                    "needs the new secret in auth.secret or auth.secret_file".into(),
                );
            }
            if previous.len() < 32 {
                bad(
                    "auth.previous_secret_file",
                    format!("holds {} bytes; a secret has at least 32", previous.len()),
                );
            }
            match &a.previous_secret_until {
                None => bad(
                    "auth.previous_secret_until",
                    "is required with auth.previous_secret_file: when the old secret stops \
                     verifying, e.g. \"2026-12-08T12:00:00Z\""
                        .into(),
                ),
                Some(until) if a.previous_until().is_none() => bad(
                    "auth.previous_secret_until",
                    format!("{until:?} is not an RFC 3339 time such as \"2026-12-08T12:00:00Z\""),
                ),
                Some(_) => {}
            }
        } else if a.previous_secret_until.is_some() {
            bad(
                "auth.previous_secret_until",
                "has no auth.previous_secret_file to end; set both or neither".into(),
            );
        }
        for (key, value) in [("auth.issuer", &a.issuer), ("auth.audience", &a.audience)] {
            if value.as_deref().is_some_and(str::is_empty) {
                bad(key, "is empty; leave it out to accept any".into());
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
