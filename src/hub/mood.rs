//! The mood and the alerts as the packet carries them (`docs/PROTOCOL.md` §12.4): the types of
//! `data.mood` and `data.alerts`. Deciding them is the input's work (`crate::input::mood`); here
//! is only what goes on the wire, so the hub needs no input.

use serde::{Deserialize, Serialize};

use super::timestamp::Timestamp;
use crate::config::AlertLevel;

/// The market's mood as the wire names it: exactly these three words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema, ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum Regime {
    /// Falling fast, or the book deep under water.
    Crash,
    /// Rising fast with the engine buying.
    Bull,
    /// Anything else: the standard view.
    Neutral,
}

impl Regime {
    /// The word as it appears on the wire and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Regime::Crash => "crash",
            Regime::Bull => "bull",
            Regime::Neutral => "neutral",
        }
    }
}

/// Who speaks for a mood on the vibe card, and what they say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema, ts_rs::TS))]
pub struct Persona {
    /// `Big Pickle`, `MiniMax`, …
    pub name: String,
    /// `SELL EVERYTHING`, `TO THE MOON`, …
    pub headline: String,
}

/// The announced mood: `data.mood` of every packet, and the `market_regime` a market-stream
/// client gets on connect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema, ts_rs::TS))]
pub struct MoodNow {
    /// `crash`, `bull` or `neutral`.
    pub regime: Regime,
    /// The configured label (`Crash/Panic`).
    pub label: String,
    /// The configured persona and headline.
    pub persona: Persona,
    /// When the readings first showed this mood (its announcement follows `min_dwell_ms`
    /// later); for the first mood, the first packet's time.
    pub since: Timestamp,
}

impl MoodNow {
    /// The mood before any reading, in the default words: what the INITIALIZING packet shows.
    pub fn neutral(since: Timestamp) -> Self {
        Self {
            regime: Regime::Neutral,
            label: "Neutral".into(),
            persona: Persona {
                name: "Steady Hand".into(),
                headline: "STAY THE COURSE".into(),
            },
            since,
        }
    }
}

/// One alert raised or cleared: an `ALERT` message's `data`, and an entry of `data.alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema, ts_rs::TS))]
pub struct Alert {
    /// How loud.
    pub level: AlertLevel,
    /// Its name for programs (`ENGINE_HALTED`, a rule's code).
    pub code: String,
    /// What a person reads.
    pub message: String,
    /// When it was raised (`active` true) or cleared (`active` false).
    pub timestamp: Timestamp,
    /// Whether the condition holds from `timestamp` on.
    pub active: bool,
}
