//! The packet a dashboard receives: the typed `data` of WELCOME and TELEMETRY, and its envelope.
//!
//! These types are the contract of `docs/PROTOCOL.md` §2. Every key is always present (a missing value is
//! `null`), so a frontend never has to guess a shape; `extra` carries the sections the engine adds.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use super::mood::{Alert, MoodNow};
pub use super::sources::{SourceHealth, Sources};
pub use super::timestamp::Timestamp;

/// The trading status; the engine's many words are mapped onto these three only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema, ts_rs::TS))]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// The engine is trading.
    Active,
    /// The engine stopped trading (halted, paused, killed).
    Halt,
    /// No state yet, the engine is starting, offline, or said something unknown.
    Initializing,
}

impl Status {
    /// The word as it appears in the packet.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "ACTIVE",
            Status::Halt => "HALT",
            Status::Initializing => "INITIALIZING",
        }
    }
}

/// The direction of the current signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema, ts_rs::TS))]
#[serde(rename_all = "UPPERCASE")]
pub enum Side {
    /// Go long.
    Buy,
    /// Go short.
    Sell,
    /// Stay out (the engine's HOLD, NEUTRAL, …).
    Flat,
}

/// A log line's severity; other levels are folded into these three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema, ts_rs::TS))]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    /// Information, and DEBUG/TRACE/NOTICE.
    Info,
    /// WARN and WARNING.
    Warning,
    /// ERROR, CRITICAL and FATAL.
    Error,
}

/// `data.market`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema, ts_rs::TS))]
pub struct Market {
    /// The traded symbol (`SPY`).
    pub symbol: Option<String>,
    /// The last price.
    pub price: Option<f64>,
    /// The tail index of returns: above 2 Gaussian, lower is heavier-tailed.
    pub alpha: Option<f64>,
    /// The engine's name for the regime alpha puts it in (`Gaussian`, `Lévy Stable`, `Critical`).
    pub regime: Option<String>,
    /// The price's rate of change.
    pub velocity: Option<f64>,
    /// The change of `velocity`.
    pub acceleration: Option<f64>,
}

/// `data.portfolio`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema, ts_rs::TS))]
pub struct Portfolio {
    /// Net asset value.
    pub nav: Option<f64>,
    /// Cash not in positions.
    pub cash: Option<f64>,
    /// Profit or loss since the day opened.
    pub daily_pnl: Option<f64>,
    /// The deepest fall from a peak, as a fraction (negative).
    pub max_drawdown: Option<f64>,
}

/// `data.signal`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema, ts_rs::TS))]
pub struct Signal {
    /// Which way the engine would trade.
    pub side: Option<Side>,
    /// How sure it is, 0 to 1 as the engine says it.
    pub confidence: Option<f64>,
    /// Why, in the engine's words.
    pub reasoning: Option<String>,
}

/// `data.governance`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema, ts_rs::TS))]
pub struct Governance {
    /// The position size risk governance approved, 0 to 0.20.
    pub approved_size: Option<f64>,
}

/// One entry of `data.logs`; `timestamp` is `null` when the engine sent a bare string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema, ts_rs::TS))]
pub struct LogEntry {
    /// The severity, folded onto three.
    pub level: Level,
    /// The text, without a leading level word.
    pub message: String,
    /// When the engine logged it, if it said.
    pub timestamp: Option<Timestamp>,
}

/// One agent's performance, whatever shape the engine reported it in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema, ts_rs::TS))]
pub struct AgentStats {
    /// Mean latency of a call.
    pub latency_ms: Option<f64>,
    /// Share of calls that succeeded, 0 to 1.
    pub success_rate: Option<f64>,
    /// Calls counted.
    pub invocations: Option<u64>,
}

/// One model's performance, whatever shape the engine reported it in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema, ts_rs::TS))]
pub struct ModelStats {
    /// Mean latency of an inference.
    pub latency_ms: Option<f64>,
    /// Inferences counted.
    pub invocations: Option<u64>,
    /// Share of inferences answered from cache, when the engine reports it.
    pub cache_hit_rate: Option<f64>,
}

/// Agents by name; a `BTreeMap` so the packet's key order is stable from tick to tick.
pub type Agents = BTreeMap<String, AgentStats>;
/// Models by name.
pub type Models = BTreeMap<String, ModelStats>;

/// What the engine's state endpoint contributes to a packet: everything but the timestamp.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema, ts_rs::TS))]
pub struct StateSections {
    /// The trading status.
    pub status: Status,
    /// The market the engine trades.
    pub market: Market,
    /// The engine's book.
    pub portfolio: Portfolio,
    /// The current trading signal.
    pub signal: Signal,
    /// What risk governance allows.
    pub governance: Governance,
    /// Oldest first; the packet keeps the newest `packet.max_logs`.
    pub logs: Vec<LogEntry>,
    /// Sections the engine added beyond the contract (`sentiment`, `forecast`, …), unchanged.
    #[serde(flatten)]
    #[cfg_attr(test, ts(skip))]
    pub extra: Map<String, Value>,
}

impl Default for StateSections {
    /// What the packet shows before the engine has given any state.
    fn default() -> Self {
        Self {
            status: Status::Initializing,
            market: Market::default(),
            portfolio: Portfolio::default(),
            signal: Signal::default(),
            governance: Governance::default(),
            logs: Vec::new(),
            extra: Map::new(),
        }
    }
}

/// The `data` of a WELCOME or TELEMETRY packet. `timestamp` is written first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema, ts_rs::TS))]
pub struct Telemetry {
    /// The engine's state timestamp when it gave one, else the poll time.
    pub timestamp: Timestamp,
    /// What the state endpoint gave, flattened into `data`.
    #[serde(flatten)]
    pub state: StateSections,
    /// Per-agent performance.
    pub agents: Agents,
    /// Per-model performance.
    pub models: Models,
    /// How fresh each input is.
    pub sources: Sources,
    /// The market's mood as announced (`docs/PROTOCOL.md` §12.4).
    pub mood: MoodNow,
    /// The active alerts, oldest first.
    pub alerts: Vec<Alert>,
}

impl Telemetry {
    /// What a dashboard sees before the first poll: status INITIALIZING at `now`, every value
    /// `null`, no source fresh.
    pub fn initializing(now: DateTime<Utc>) -> Self {
        Self {
            timestamp: Timestamp(now),
            state: StateSections::default(),
            agents: Agents::new(),
            models: Models::new(),
            sources: Sources::default(),
            mood: MoodNow::neutral(Timestamp(now)),
            alerts: Vec::new(),
        }
    }
}

/// The keys of `data` the daemon owns; an engine section with one of these names is not passed through.
pub const RESERVED_KEYS: &[&str] = &[
    "timestamp",
    "status",
    "market",
    "portfolio",
    "signal",
    "governance",
    "logs",
    "agents",
    "models",
    "sources",
    "mood",
    "alerts",
];

/// Which packet a frame is.
#[cfg(test)]
#[derive(Debug, Clone, Copy, Serialize, schemars::JsonSchema, ts_rs::TS)]
#[serde(rename_all = "UPPERCASE")]
pub enum PacketType {
    /// The first packet on a connection: the latest snapshot.
    Welcome,
    /// Every later packet, one per tick.
    Telemetry,
}

/// A WELCOME or TELEMETRY packet: every frame the daemon sends but PONG.
///
/// The daemon writes the envelope around `data` serialized once (see `frames`); this type
/// describes the same JSON for the schema and the TypeScript types.
#[cfg(test)]
#[derive(Debug, Clone, Serialize, schemars::JsonSchema, ts_rs::TS)]
pub struct Packet {
    /// WELCOME first, then TELEMETRY.
    #[serde(rename = "type")]
    #[ts(rename = "type")]
    pub kind: PacketType,
    /// Grows by one per snapshot; a gap is the number of packets missed.
    pub seq: u64,
    /// The snapshot.
    pub data: Telemetry,
    /// Changes only when the sequence starts again (a restarted daemon, a new cluster
    /// sequence): a lower `seq` under another epoch is a new count, not time going back.
    pub epoch: String,
    /// On a WELCOME to a client that asked to resume (`?since=…&epoch=…`): whether the packets
    /// it missed follow (`true`), or it starts afresh (`false`). Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub resumed: Option<bool>,
}

/// The JSON of `data`, written once per snapshot and then copied into each frame made of it.
pub fn body(data: &Telemetry) -> String {
    serde_json::to_string(data).expect("a Telemetry always serializes")
}

/// The envelope around one serialized `data`: `{"type":…,"seq":…,"data":…,"epoch":…}`, with
/// `"resumed"` last when given. `data` comes before `epoch` so the head of every packet reads
/// as it always has.
pub fn envelope(kind: &str, seq: u64, epoch: &str, data: &str, resumed: Option<bool>) -> String {
    let mut out = String::with_capacity(data.len() + 96);
    envelope_head(&mut out, kind, seq);
    out.push_str(data);
    out.push_str(r#","epoch":"#);
    out.push_str(&serde_json::to_string(epoch).expect("a string serializes"));
    if let Some(resumed) = resumed {
        out.push_str(if resumed {
            r#","resumed":true"#
        } else {
            r#","resumed":false"#
        });
    }
    out.push('}');
    out
}

/// What comes before `data` in an envelope.
fn envelope_head(out: &mut String, kind: &str, seq: u64) {
    out.push_str(r#"{"type":""#);
    out.push_str(kind);
    out.push_str(r#"","seq":"#);
    out.push_str(&seq.to_string());
    out.push_str(r#","data":"#);
}

/// The answer to a client's PING.
pub const PONG: &str = r#"{"type":"PONG"}"#;

#[cfg(test)]
#[path = "packet_tests.rs"]
mod tests;
