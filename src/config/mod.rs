//! `bff.toml`: the daemon's settings, their defaults, and one pass that checks them all.
//!
//! Unknown keys are errors (a typo must not silently fall back to a default): `keys` names every
//! unknown key and every value of the wrong kind at once, and [`Config::validate`] (in
//! `validate`) every value out of bounds, each with its key path.
//! Below every other module: it knows the settings, not what uses them.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod cluster;
mod keys;
mod load;
mod mood;
mod redis;
mod secret;
pub(crate) mod sentinel;
mod server;
mod validate;
mod values;

pub use cluster::ClusterConfig;
pub use load::ConfigError;
#[cfg(test)]
pub use mood::ALERT_FIELDS;
pub use mood::{AlertLevel, AlertsConfig, BUILT_IN_ALERTS, RegimeConfig};
pub use redis::{RedisConfig, RedisUrl, is_pattern, matches};
pub use secret::{Secret, mask_config_message, mask_credentials};
pub use server::{ClientConfig, ServerConfig};
pub use values::{listen_addr, proxy_net};

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_PATH: &str = "bff.toml";

const DEFAULT_ENGINE_URL: &str = "http://127.0.0.1:8000";
const DEFAULT_STATE: &str = "/api/system/state/current";
const DEFAULT_AGENTS: &str = "/api/system/metrics/agents";
const DEFAULT_MODELS: &str = "/api/system/metrics/models";
const DEFAULT_POLL_INTERVAL_MS: u64 = 1000;
const DEFAULT_TIMEOUT_MS: u64 = 750;
const DEFAULT_PUBLISH_DEADLINE_MS: u64 = 200;
const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
const DEFAULT_MAX_LOGS: usize = 50;
const DEFAULT_HALT: &str = "/api/actions/halt";
const DEFAULT_RESUME: &str = "/api/actions/resume";
const DEFAULT_REBALANCE: &str = "/api/actions/rebalance";
const DEFAULT_EXPORT_LOGS: &str = "/api/actions/export-logs";
const DEFAULT_COMMAND_TIMEOUT_MS: u64 = 5_000;
const DEFAULT_COMMANDS_PER_MINUTE: u32 = 10;
const DEFAULT_COMMAND_BURST: u32 = 3;
const DEFAULT_REPEAT_WINDOW_MS: u64 = 60_000;
const DEFAULT_COMMANDS_IN_FLIGHT: usize = 4;

/// Everything the daemon can be told; every field has a default, so an empty file is valid.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[engine]`: where and how the engine is polled.
    pub engine: EngineConfig,
    /// `[server]`: the listening socket and who may connect.
    pub server: ServerConfig,
    /// `[clients]`: what each WebSocket client is allowed.
    pub clients: ClientConfig,
    /// `[packet]`: the packet's shape.
    pub packet: PacketConfig,
    /// `[auth]`: dashboard tokens.
    pub auth: AuthConfig,
    /// `[commands]`: actions dashboards may ask of the engine.
    pub commands: CommandConfig,
    /// `[redis]`: the engine's events, merged and pushed, and channels relayed to dashboards.
    pub redis: RedisConfig,
    /// `[cluster]`: several daemons sharing one poll.
    pub cluster: ClusterConfig,
    /// `[regime]`: when the market's mood reads crash, bull or neutral, and what each is called.
    pub regime: RegimeConfig,
    /// `[alerts]`: the built-in alerts' timing and the operator's threshold rules.
    pub alerts: AlertsConfig,
}

/// Who may connect, beyond the origin check.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// HS256 secret that dashboard tokens are signed with; empty turns authentication off.
    pub secret: Secret,
    /// A file holding the secret instead (surrounding whitespace ignored), read at start-up
    /// and on every reload; `bff token --secret-file` signs with the same file.
    pub secret_file: Option<PathBuf>,
    /// A file holding the secret rotated out: tokens it signed still verify (never sign) until
    /// `previous_secret_until`, so dashboards can move to new tokens without a gap.
    pub previous_secret_file: Option<PathBuf>,
    /// When the previous secret stops verifying (RFC 3339, e.g. `2026-12-08T12:00:00Z`);
    /// required with `previous_secret_file`. Connections holding its tokens close then.
    pub previous_secret_until: Option<String>,
    /// The previous secret, read from `previous_secret_file`; never in the file itself.
    #[serde(skip)]
    pub previous_secret: Secret,
    /// When set, a token's `iss` must be this.
    pub issuer: Option<String>,
    /// When set, a token's `aud` must be (or contain) this.
    pub audience: Option<String>,
    /// Whether watching the stream needs a token when a secret is set; commands always do.
    pub watch: Watch,
}

/// Who may watch the stream when `auth.secret` is set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Watch {
    /// Every connection needs a valid token.
    #[default]
    Token,
    /// A connection without a token watches (a wall screen); one presenting a token must
    /// present a valid one, and commands still need it.
    Open,
}

impl AuthConfig {
    /// The end of the previous secret's window, in seconds since the epoch, when it has one.
    pub fn previous_until(&self) -> Option<i64> {
        let until = self.previous_secret_until.as_deref()?;
        chrono::DateTime::parse_from_rfc3339(until)
            .ok()
            .map(|t| t.timestamp())
    }
}

/// How commands from dashboards reach the engine. Every command needs a token allowing it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommandConfig {
    /// Let commands through without a token, from loopback peers only; for a demo or a
    /// single-user machine. Logged as a warning at start-up and on every use.
    pub allow_without_auth: bool,
    /// Deadline for the engine to answer one command.
    pub timeout_ms: u64,
    /// Commands one token subject may send per minute, sustained; `halt` and `resume` are not
    /// held to it, so the kill switch always works.
    pub per_minute: u32,
    /// Commands one subject may send at once before the rate applies.
    pub burst: u32,
    /// A command repeating an `id` seen within this window is answered from the first result
    /// and not sent again (a double-click must not act twice).
    pub repeat_window_ms: u64,
    /// Commands one connection may have queued or waiting for the engine at once: the length of
    /// its command queue, which goes in order.
    pub max_in_flight: usize,
}

/// Where and how the engine is polled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Base URL that relative endpoint paths are joined to; a password in it is never shown.
    #[serde(serialize_with = "secret::serialize_masked_url")]
    pub url: String,
    /// State endpoint: a path under `url`, or a full URL.
    pub state: String,
    /// Agent-metrics endpoint: a path under `url`, or a full URL.
    pub agents: String,
    /// Model-metrics endpoint: a path under `url`, or a full URL.
    pub models: String,
    /// Period of the fixed-rate poll.
    pub poll_interval_ms: u64,
    /// Per-request deadline, covering connect, headers and body; shorter than the period.
    pub timeout_ms: u64,
    /// Time a poll may take before its packet goes out with what answered: an endpoint still
    /// out is shown stale for that tick, and its answer, if it comes, goes into the next. At
    /// most a quarter of the period counts (see [`Config::publish_deadline`]).
    pub publish_deadline_ms: u64,
    /// Largest answer accepted, enforced while the body streams in.
    pub max_body_bytes: usize,
    /// The `halt` action: a path under `url`, or a full URL, POSTed to; empty turns it off.
    pub halt: String,
    /// The `resume` action, likewise.
    pub resume: String,
    /// The `rebalance` action, likewise.
    pub rebalance: String,
    /// The `export-logs` action, likewise.
    pub export_logs: String,
}

/// The shape of the packet itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PacketConfig {
    /// Log entries kept in each packet, newest last.
    pub max_logs: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            url: DEFAULT_ENGINE_URL.into(),
            state: DEFAULT_STATE.into(),
            agents: DEFAULT_AGENTS.into(),
            models: DEFAULT_MODELS.into(),
            poll_interval_ms: DEFAULT_POLL_INTERVAL_MS,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            publish_deadline_ms: DEFAULT_PUBLISH_DEADLINE_MS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            halt: DEFAULT_HALT.into(),
            resume: DEFAULT_RESUME.into(),
            rebalance: DEFAULT_REBALANCE.into(),
            export_logs: DEFAULT_EXPORT_LOGS.into(),
        }
    }
}

impl Default for CommandConfig {
    fn default() -> Self {
        Self {
            allow_without_auth: false,
            timeout_ms: DEFAULT_COMMAND_TIMEOUT_MS,
            per_minute: DEFAULT_COMMANDS_PER_MINUTE,
            burst: DEFAULT_COMMAND_BURST,
            repeat_window_ms: DEFAULT_REPEAT_WINDOW_MS,
            max_in_flight: DEFAULT_COMMANDS_IN_FLIGHT,
        }
    }
}

impl Default for PacketConfig {
    fn default() -> Self {
        Self {
            max_logs: DEFAULT_MAX_LOGS,
        }
    }
}

impl Config {
    /// The keys that differ between this running config and `next` but cannot change without
    /// a restart: the listening address, the queue every connection shares, and the command
    /// rate every subject shares.
    pub fn restart_needed(&self, next: &Config) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.server.listen != next.server.listen {
            keys.push("server.listen");
        }
        if self.clients.queue_size != next.clients.queue_size {
            keys.push("clients.queue_size");
        }
        if self.clients.resume_history != next.clients.resume_history {
            keys.push("clients.resume_history");
        }
        if self.redis.url != next.redis.url {
            keys.push("redis.url");
        }
        if self.redis.relay != next.redis.relay {
            keys.push("redis.relay");
        }
        if self.cluster != next.cluster {
            keys.push("cluster");
        }
        if (self.commands.per_minute, self.commands.burst)
            != (next.commands.per_minute, next.commands.burst)
        {
            keys.push("commands.per_minute");
        }
        keys
    }

    /// The publish deadline in effect: `engine.publish_deadline_ms`, but never more than a
    /// quarter of the period, so a slow endpoint stretches no interval by more than that.
    pub fn publish_deadline(&self) -> Duration {
        Duration::from_millis(
            self.engine
                .publish_deadline_ms
                .min(self.engine.poll_interval_ms / 4)
                .max(1),
        )
    }

    /// The poll period.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.engine.poll_interval_ms)
    }

    /// The effective config as TOML, for `bff check-config`: read back, it is the same config
    /// (but for secrets and URL passwords, shown as `***`). A secret read from
    /// `auth.secret_file` stays there: printed as `auth.secret` too, the two would clash.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        if shown.auth.secret_file.is_some() {
            shown.auth.secret = Secret::default();
        }
        toml::to_string_pretty(&shown).expect("a Config always serializes")
    }
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
