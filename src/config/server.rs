//! `[server]` and `[clients]`: the listening socket and who may connect, and what each
//! WebSocket client is allowed; their defaults.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::values::listen_addr;

const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
const DEFAULT_WS_PATHS: &[&str] = &["/", "/ws/stream"];
const DEFAULT_BRIDGE_PATHS: &[&str] = &["/ws"];
const DEFAULT_MARKET_STREAM_PATHS: &[&str] = &["/ws/market-stream"];
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
    /// Paths that speak the market-stream dialect (`docs/PROTOCOL.md` §12.6): the mood and the
    /// alerts when they change, nothing else unless the client subscribes to a channel.
    #[serde(default = "default_market_stream_paths")]
    pub market_stream_paths: Vec<String>,
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
    /// Whether a client that offers permessage-deflate (every browser does) gets its packets
    /// compressed, once per tick for all of them; off, the offer is declined.
    #[serde(default = "default_compression")]
    pub compression: bool,
    /// Frames smaller than this go uncompressed (RSV1 clear): compressing them saves too little.
    #[serde(default = "default_compression_min_bytes")]
    pub compression_min_bytes: u32,
}

/// A tenth of the bytes or so for a few microseconds a tick, shared by every client.
fn default_compression() -> bool {
    true
}

/// Pongs and command answers stay as they are; packets and relayed messages are larger.
fn default_compression_min_bytes() -> u32 {
    256
}

/// `server.listen` through [`listen_addr`], so its message says what to write.
fn deserialize_listen<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    listen_addr(&text).map_err(serde::de::Error::custom)
}

/// Room for a connect storm's handshakes in flight and the scrapes, far below the open-file
/// limit.
fn default_market_stream_paths() -> Vec<String> {
    DEFAULT_MARKET_STREAM_PATHS
        .iter()
        .map(|p| p.to_string())
        .collect()
}

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

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN
                .parse()
                .expect("the default listen address parses"),
            ws_paths: DEFAULT_WS_PATHS.iter().map(|p| p.to_string()).collect(),
            bridge_paths: DEFAULT_BRIDGE_PATHS.iter().map(|p| p.to_string()).collect(),
            market_stream_paths: default_market_stream_paths(),
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
            compression: default_compression(),
            compression_min_bytes: default_compression_min_bytes(),
        }
    }
}
