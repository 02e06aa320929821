//! The market's mood and the alerts: what a wall screen should say about the packet the
//! assembler just built, without anyone reading numbers.
//!
//! Pure, like [`super::aggregate`]: [`classify`] reads one packet as crash, bull or neutral;
//! [`hysteresis`] announces a new mood only once it has held for `regime.min_dwell_ms`; [`alerts`]
//! raises an alert once when its condition starts and clears it once when it ends. Time comes in
//! as an argument (the poll's), never from a clock, and each runs once per snapshot, not per
//! client. The wire form is `docs/PROTOCOL.md` §12.

// Not read by the assembler yet (PROTOCOL §12.4 is still the contract only): until it is, only
// the tests use these.
#![allow(dead_code, unused_imports)]

pub(crate) mod alerts;
pub(crate) mod classify;
pub(crate) mod hysteresis;

use serde::{Deserialize, Serialize};

pub use alerts::{Alert, Alerts};
pub use classify::classify;
pub use hysteresis::{Mood, MoodChange, MoodNow, Persona};

/// The market's mood as the wire names it: exactly these three words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
