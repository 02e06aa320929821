//! `bff.toml`: the daemon's settings, their defaults, and one pass that checks them all.
//!
//! Unknown keys are errors (a typo must not silently fall back to a default), and [`Config::validate`]
//! reports every problem at once, each with its key path, so one edit fixes the whole file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::engine::SourceKind;

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_PATH: &str = "bff.toml";

const DEFAULT_ENGINE_URL: &str = "http://127.0.0.1:8000";
const DEFAULT_STATE: &str = "/api/system/state/current";
const DEFAULT_AGENTS: &str = "/api/system/metrics/agents";
const DEFAULT_MODELS: &str = "/api/system/metrics/models";
const DEFAULT_POLL_INTERVAL_MS: u64 = 1000;
const DEFAULT_TIMEOUT_MS: u64 = 750;
const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
const DEFAULT_WS_PATHS: &[&str] = &["/", "/ws/stream"];
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

/// Everything the daemon can be told; every field has a default, so an empty file is valid.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub engine: EngineConfig,
    pub server: ServerConfig,
    pub clients: ClientConfig,
    pub packet: PacketConfig,
    pub auth: AuthConfig,
}

/// Who may connect, beyond the origin check.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// HS256 secret that dashboard tokens are signed with; empty turns authentication off.
    pub secret: Secret,
}

/// A secret: read from the config like a string, but shown as `***` in logs, `Debug` and
/// `check-config`, so it cannot leak through them.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret given other than through the config file.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(if self.0.is_empty() { "" } else { "***" })
    }
}

/// Where and how the engine is polled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Base URL that relative endpoint paths are joined to.
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
    /// Largest answer accepted, enforced while the body streams in.
    pub max_body_bytes: usize,
}

/// The listening socket and who may connect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to bind; loopback by default so nothing is exposed by accident.
    pub listen: SocketAddr,
    /// Paths that accept WebSocket upgrades.
    pub ws_paths: Vec<String>,
    /// Browser origins allowed to connect (`https://dash.example.com`); empty allows any.
    pub allowed_origins: Vec<String>,
    /// Open WebSocket connections allowed in total; beyond it the handshake gets 503.
    pub max_connections: usize,
    /// Open WebSocket connections allowed per client IP; beyond it the handshake gets 429.
    pub max_connections_per_ip: usize,
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
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
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
            allowed_origins: Vec::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
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
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "{} has {} problem(s):\n{}\nfix these keys and run `bff check-config` again",
        .origin, .problems.len(), .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
    )]
    Invalid {
        origin: String,
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
        let config = Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.clone(),
            message,
        })?;
        Ok((config, path.display().to_string()))
    }

    /// Parses TOML text; the message names the line and key of the first error.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| {
            // One line, so it reads as well in a log (a reload) as on a terminal.
            let message = e.message().trim_end();
            match e.span() {
                Some(span) => {
                    let line = text[..span.start].matches('\n').count() + 1;
                    let source = text.lines().nth(line - 1).unwrap_or_default().trim();
                    format!("line {line} `{source}`: {message}")
                }
                None => message.to_owned(),
            }
        })
    }

    /// Checks every value, returning all problems at once, each prefixed with its key path.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, msg: String| problems.push(format!("{key}: {msg}"));
        let e = &self.engine;
        for kind in SourceKind::ALL {
            if let Err(msg) = self.endpoint(kind) {
                bad(&format!("engine.{}", kind.name()), msg);
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
        if e.max_body_bytes < 1024 {
            bad(
                "engine.max_body_bytes",
                format!("{} is too small; use at least 1024", e.max_body_bytes),
            );
        }
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
            if !valid_origin(origin) {
                bad(
                    "server.allowed_origins",
                    format!(
                        "{origin:?} is not an origin; write scheme://host[:port], e.g. \"https://dash.example.com\""
                    ),
                );
            }
        }
        for (key, value) in [
            ("server.max_connections", s.max_connections),
            ("server.max_connections_per_ip", s.max_connections_per_ip),
            ("clients.queue_size", self.clients.queue_size),
        ] {
            if value == 0 {
                bad(key, "must be at least 1".into());
            }
        }
        for (key, value) in [
            ("server.header_timeout_ms", s.header_timeout_ms),
            ("clients.send_timeout_ms", self.clients.send_timeout_ms),
            ("clients.ping_interval_ms", self.clients.ping_interval_ms),
            (
                "clients.messages_per_second",
                self.clients.messages_per_second.into(),
            ),
            ("clients.message_burst", self.clients.message_burst.into()),
        ] {
            if value == 0 {
                bad(key, "must be above 0".into());
            }
        }
        let c = &self.clients;
        if c.idle_timeout_ms <= c.ping_interval_ms {
            bad(
                "clients.idle_timeout_ms",
                format!(
                    "{} must be longer than clients.ping_interval_ms ({}), or live clients would be dropped between pings",
                    c.idle_timeout_ms, c.ping_interval_ms
                ),
            );
        }
        let secret = self.auth.secret.expose();
        if !secret.is_empty() && secret.len() < 32 {
            bad(
                "auth.secret",
                format!(
                    "is {} bytes; use at least 32 random bytes for HS256",
                    secret.len()
                ),
            );
        }
        if c.max_message_bytes < 64 {
            bad(
                "clients.max_message_bytes",
                format!("{} is too small; use at least 64", c.max_message_bytes),
            );
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

    /// The full URL of one endpoint: its setting as is when absolute, else joined to `engine.url`.
    pub fn endpoint(&self, kind: SourceKind) -> Result<Url, String> {
        let value = match kind {
            SourceKind::State => &self.engine.state,
            SourceKind::Agents => &self.engine.agents,
            SourceKind::Models => &self.engine.models,
        };
        let url = if value.starts_with('/') {
            let base = http_url(&self.engine.url).map_err(|e| format!("engine.url {e}"))?;
            base.join(value)
                .map_err(|e| format!("{value:?} cannot be joined to engine.url: {e}"))?
        } else {
            http_url(value)?
        };
        Ok(url)
    }

    /// The keys that differ between this running config and `next` but cannot change without
    /// a restart: the listening address, and the queue every connection shares.
    pub fn restart_needed(&self, next: &Config) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.server.listen != next.server.listen {
            keys.push("server.listen");
        }
        if self.clients.queue_size != next.clients.queue_size {
            keys.push("clients.queue_size");
        }
        keys
    }

    /// The poll period.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.engine.poll_interval_ms)
    }

    /// The effective config as TOML, for `bff check-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a Config always serializes")
    }
}

fn http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| {
        format!("{text:?} is not a URL ({e}); write e.g. \"http://127.0.0.1:8000\"")
    })?;
    match url.scheme() {
        "http" | "https" if url.has_host() => Ok(url),
        _ => Err(format!(
            "{text:?} must be an http:// or https:// URL with a host"
        )),
    }
}

/// `scheme://host[:port]` with nothing after it, as browsers send in `Origin`.
fn valid_origin(text: &str) -> bool {
    Url::parse(text).is_ok_and(|u| {
        u.has_host() && u.path() == "/" && !text.ends_with('/') && u.query().is_none()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(toml: &str) -> Vec<String> {
        match Config::parse(toml).unwrap().validate("test") {
            Ok(()) => Vec::new(),
            Err(ConfigError::Invalid { problems, .. }) => problems,
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        assert!(problems("").is_empty());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("[engine]\npoll_intervall_ms = 5\n").unwrap_err();
        assert!(err.contains("unknown field `poll_intervall_ms`"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn a_reload_names_the_keys_that_need_a_restart() {
        let running = Config::default();
        let mut next = Config::default();
        next.engine.poll_interval_ms = 500;
        next.server.max_connections_per_ip = 1;
        assert!(running.restart_needed(&next).is_empty());
        next.server.listen = "0.0.0.0:3000".parse().unwrap();
        next.clients.queue_size = 2;
        assert_eq!(
            running.restart_needed(&next),
            ["server.listen", "clients.queue_size"]
        );
    }

    #[test]
    fn wrong_type_is_named() {
        let err = Config::parse("[server]\nlisten = \"nowhere\"\n").unwrap_err();
        assert!(err.contains("listen"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let got = problems(
            "[engine]\nurl = \"ftp://x\"\ntimeout_ms = 1000\n[server]\nallowed_origins = [\"dash.example.com\"]\nmax_connections_per_ip = 0\n[clients]\nidle_timeout_ms = 100\n",
        );
        let keys: Vec<&str> = got.iter().map(|p| p.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "engine.state",
                "engine.agents",
                "engine.models",
                "engine.timeout_ms",
                "server.allowed_origins",
                "server.max_connections_per_ip",
                "clients.idle_timeout_ms"
            ],
            "{got:#?}"
        );
    }

    #[test]
    fn endpoints_are_paths_or_urls() {
        let cfg = Config::parse(
            "[engine]\nurl = \"http://engine:9000/base/\"\nstate = \"http://other:1/s\"\n",
        )
        .unwrap();
        assert_eq!(
            cfg.endpoint(SourceKind::State).unwrap().as_str(),
            "http://other:1/s"
        );
        assert_eq!(
            cfg.endpoint(SourceKind::Agents).unwrap().as_str(),
            "http://engine:9000/api/system/metrics/agents"
        );
    }

    #[test]
    fn secrets_are_masked_everywhere_but_where_they_are_used() {
        let secret = "s3cret-s3cret-s3cret-s3cret-s3cret";
        let cfg = Config::parse(&format!("[auth]\nsecret = \"{secret}\"\n")).unwrap();
        assert_eq!(cfg.auth.secret.expose(), secret);
        assert!(!cfg.to_toml().contains(secret) && cfg.to_toml().contains("secret = \"***\""));
        assert!(!format!("{cfg:?}").contains(secret));
        assert_eq!(
            problems(&format!("[auth]\nsecret = \"{secret}\"\n")),
            Vec::<String>::new()
        );
        assert_eq!(problems("[auth]\nsecret = \"short\"\n").len(), 1);
    }

    #[test]
    fn checked_in_file_holds_the_defaults() {
        let text = include_str!("../bff.toml");
        assert_eq!(Config::parse(text).unwrap(), Config::default());
    }
}
