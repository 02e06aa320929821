//! `bff.toml`: the daemon's settings, their defaults, and one pass that checks them all.
//!
//! Unknown keys are errors (a typo must not silently fall back to a default): `keys` names every
//! unknown key and every value of the wrong kind at once, and [`Config::validate`] (in
//! `validate`) every value out of bounds, each with its key path.
//! Below every other module: it knows the settings, not what uses them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod cluster;
mod keys;
mod redis;
mod secret;
mod validate;
mod values;

pub use cluster::ClusterConfig;
pub use redis::{RedisConfig, RedisUrl, is_pattern, matches};
pub use secret::{Secret, mask_config_message, mask_credentials};
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
const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
const DEFAULT_WS_PATHS: &[&str] = &["/", "/ws/stream"];
const DEFAULT_BRIDGE_PATHS: &[&str] = &["/ws"];
const DEFAULT_MAX_CHANNELS: usize = 32;
const DEFAULT_RESUME_HISTORY: usize = 300;
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 10;
const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;
const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 3_000;
const DEFAULT_QUEUE_SIZE: usize = 8;
const DEFAULT_SEND_TIMEOUT_MS: u64 = 5_000;
const DEFAULT_PING_INTERVAL_MS: u64 = 20_000;
const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;
const DEFAULT_MAX_MESSAGE_BYTES: usize = 4096;
const DEFAULT_MESSAGES_PER_SECOND: u32 = 10;
const DEFAULT_MESSAGE_BURST: u32 = 20;
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

/// The listening socket and who may connect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to bind; loopback by default so nothing is exposed by accident. `localhost`
    /// stands for 127.0.0.1; other host names are not resolved (see [`listen_addr`]).
    #[serde(deserialize_with = "deserialize_listen")]
    pub listen: SocketAddr,
    /// Paths that accept WebSocket upgrades.
    pub ws_paths: Vec<String>,
    /// Paths that speak the dialect of a Redis-to-WebSocket bridge: nothing until the client
    /// subscribes, lowercase messages.
    pub bridge_paths: Vec<String>,
    /// Browser origins allowed to connect and send commands besides the daemon's own
    /// (`https://dash.example.com`); `["*"]` lets every page watch (never command on the loopback
    /// exemption). Requests without `Origin` (not from a browser page) always pass.
    pub allowed_origins: Vec<String>,
    /// Reverse proxies (addresses or CIDRs) believed about the client they forward for, in
    /// `X-Forwarded-For` or `Forwarded`; empty: every peer is the client itself.
    pub trusted_proxies: Vec<String>,
    /// Open WebSocket connections allowed in total; beyond it the handshake gets 503.
    pub max_connections: usize,
    /// Open WebSocket connections allowed per client IP; beyond it the handshake gets 429.
    pub max_connections_per_ip: usize,
    /// TCP connections allowed in total while they speak plain HTTP (a WebSocket counts until
    /// its upgrade); beyond it a new one is answered 503 and closed at once.
    #[serde(default = "default_max_http_connections")]
    pub max_http_connections: usize,
    /// The same per client IP; beyond it a new one is answered 429 and closed at once.
    #[serde(default = "default_max_http_connections_per_ip")]
    pub max_http_connections_per_ip: usize,
    /// WebSocket handshakes one client IP may make a second, sustained; beyond it (after the
    /// burst) the handshake gets 429 with `Retry-After`, before its token is even checked.
    #[serde(default = "default_handshakes_per_second_per_ip")]
    pub handshakes_per_second_per_ip: u32,
    /// Handshakes one client IP may make at once before that rate applies.
    #[serde(default = "default_handshake_burst_per_ip")]
    pub handshake_burst_per_ip: u32,
    /// Time a client has to send its request headers before the socket is closed.
    pub header_timeout_ms: u64,
    /// Time clients get to receive their close frame at shutdown before the process exits.
    pub shutdown_grace_ms: u64,
}

/// What each WebSocket client is allowed and how it is watched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    /// Packets a client may fall behind before it is disconnected as too slow.
    pub queue_size: usize,
    /// Time one frame may take to go out before the client is disconnected as stalled.
    pub send_timeout_ms: u64,
    /// Period of the server's WebSocket pings.
    pub ping_interval_ms: u64,
    /// A client silent (no frame, no pong) this long is dropped as dead.
    pub idle_timeout_ms: u64,
    /// Largest message a client may send; larger gets close 1009.
    pub max_message_bytes: usize,
    /// Sustained rate of client messages; above it (after the burst) the client gets close 1008.
    pub messages_per_second: u32,
    /// Messages a client may send at once before the rate applies.
    pub message_burst: u32,
    /// Relay channels (and patterns) one client may be subscribed to at once.
    pub max_channels: usize,
    /// Sustained rate of channels a client may subscribe to (each name of a SUBSCRIBE counts);
    /// above it (after the burst) the client gets close 1008, so one cannot churn through names.
    #[serde(default = "default_subscriptions_per_second")]
    pub subscriptions_per_second: u32,
    /// Channels a client may subscribe to at once before that rate applies.
    #[serde(default = "default_subscription_burst")]
    pub subscription_burst: u32,
    /// Packets kept for clients that reconnect with `?since=<seq>&epoch=<epoch>`.
    pub resume_history: usize,
}

/// `server.listen` through [`listen_addr`], so its message says what to write.
fn deserialize_listen<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    listen_addr(&text).map_err(serde::de::Error::custom)
}

/// Room for a connect storm's handshakes in flight and the scrapes, far below the open-file
/// limit.
fn default_max_http_connections() -> usize {
    1024
}

/// A browser keeps about six connections to a host; an office behind one address, more.
fn default_max_http_connections_per_ip() -> usize {
    64
}

/// Far above what one browser, or an office behind one address, reconnects at.
fn default_handshakes_per_second_per_ip() -> u32 {
    50
}

/// Two seconds' worth: a page of dashboards reloading at once.
fn default_handshake_burst_per_ip() -> u32 {
    100
}

/// A dashboard subscribes to its channels once, and again after a reconnect.
fn default_subscriptions_per_second() -> u32 {
    10
}

/// Twice `clients.max_channels`' default: a full set, left and taken again at once.
fn default_subscription_burst() -> u32 {
    64
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

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN
                .parse()
                .expect("the default listen address parses"),
            ws_paths: DEFAULT_WS_PATHS.iter().map(|p| p.to_string()).collect(),
            bridge_paths: DEFAULT_BRIDGE_PATHS.iter().map(|p| p.to_string()).collect(),
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            max_http_connections: default_max_http_connections(),
            max_http_connections_per_ip: default_max_http_connections_per_ip(),
            handshakes_per_second_per_ip: default_handshakes_per_second_per_ip(),
            handshake_burst_per_ip: default_handshake_burst_per_ip(),
            header_timeout_ms: DEFAULT_HEADER_TIMEOUT_MS,
            shutdown_grace_ms: DEFAULT_SHUTDOWN_GRACE_MS,
        }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            queue_size: DEFAULT_QUEUE_SIZE,
            send_timeout_ms: DEFAULT_SEND_TIMEOUT_MS,
            ping_interval_ms: DEFAULT_PING_INTERVAL_MS,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            messages_per_second: DEFAULT_MESSAGES_PER_SECOND,
            message_burst: DEFAULT_MESSAGE_BURST,
            max_channels: DEFAULT_MAX_CHANNELS,
            subscriptions_per_second: default_subscriptions_per_second(),
            subscription_burst: default_subscription_burst(),
            resume_history: DEFAULT_RESUME_HISTORY,
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

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    #[error(
        "{} has {} problem(s):\n{}\nfix these keys and run `bff check-config` again",
        .origin, .problems.len(), .problems.iter().map(|p| format!("  - {}", mask_credentials(p))).collect::<Vec<_>>().join("\n")
    )]
    /// The file is not TOML of the config's shape (every unknown key, every value of the
    /// wrong kind), or values are wrong.
    Invalid {
        /// Where the config came from (a path, or the built-in defaults), and the flags over it.
        origin: String,
        /// Every problem, each starting with its key path (or, for a TOML syntax error, its
        /// line).
        problems: Vec<String>,
    },
}

impl Config {
    /// Reads `path`, or `./bff.toml` when none is given and it exists, or else the defaults.
    /// Returns the config and where it came from, for the start-up log.
    pub fn load(path: Option<&Path>) -> Result<(Self, String), ConfigError> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None if Path::new(DEFAULT_PATH).exists() => PathBuf::from(DEFAULT_PATH),
            None => return Ok((Self::default(), "built-in defaults".into())),
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let config = Self::parse(&text).map_err(|problems| ConfigError::Invalid {
            origin: path.display().to_string(),
            problems,
        })?;
        Ok((config, path.display().to_string()))
    }

    /// Reads `auth.secret_file`, when one is named, into `auth.secret`, and
    /// `auth.previous_secret_file` into `auth.previous_secret`, and `cluster.secret_file` into the
    /// cluster's secret. `origin` is where the config came from, for the message when one cannot
    /// be used: every such problem at once, each naming its key.
    pub fn read_secret_file(&mut self, origin: &str) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if let Err(problem) = self.cluster.read_secret_file() {
            problems.push(problem);
        }
        let read = |key: &str, path: &PathBuf, what: &str| {
            std::fs::read_to_string(path)
                .map(|text| Secret::new(text.trim()))
                .map_err(|err| {
                    format!(
                        "{key}: cannot read {}: {err}; name a readable file holding {what}",
                        path.display()
                    )
                })
        };
        if let Some(path) = &self.auth.previous_secret_file {
            match read("auth.previous_secret_file", path, "the old secret") {
                Ok(secret) => self.auth.previous_secret = secret,
                Err(problem) => problems.push(problem),
            }
        }
        if let Some(path) = &self.auth.secret_file {
            if !self.auth.secret.expose().is_empty() {
                problems.push(
                    "auth.secret_file: auth.secret is set too; keep one of the two".to_owned(),
                );
            } else {
                let what = format!(
                    "the secret (`bff token --secret-file {} --sub NAME` creates one)",
                    path.display()
                );
                match read("auth.secret_file", path, &what) {
                    Ok(secret) => self.auth.secret = secret,
                    Err(problem) => problems.push(problem),
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                origin: origin.to_owned(),
                problems,
            })
        }
    }

    /// Parses TOML text. The problems: a syntax error with its line, or else every unknown key
    /// (with the nearest known one) and every value of the wrong kind (with what to write),
    /// each with its key path and line; the values of secret-bearing keys and URL passwords
    /// masked (they go to logs on a reload).
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        let masked =
            |e: toml::de::Error| vec![mask_config_message(text, &Self::parse_error(text, &e))];
        let doc: toml::Table = toml::from_str(text).map_err(masked)?;
        let problems = keys::problems(text, &doc);
        if !problems.is_empty() {
            return Err(problems);
        }
        // The backstop: `deny_unknown_fields` and every type, read from the text for its lines.
        toml::from_str(text).map_err(masked)
    }

    /// The parse error on one line, so it reads as well in a log (a reload) as on a terminal.
    fn parse_error(text: &str, e: &toml::de::Error) -> String {
        let message = e.message().trim_end();
        match e.span() {
            Some(span) => {
                let line = text[..span.start].matches('\n').count() + 1;
                let source = text.lines().nth(line - 1).unwrap_or_default().trim();
                format!("line {line} `{source}`: {message}")
            }
            None => message.to_owned(),
        }
    }

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
