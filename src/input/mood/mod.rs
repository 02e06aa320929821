//! The market's mood and the alerts: what a wall screen should say about the packet the
//! assembler just built, without anyone reading numbers.
//!
//! Pure, like [`super::aggregate`]: [`classify`] reads one packet as crash, bull or neutral;
//! [`hysteresis`] announces a new mood only once it has held for `regime.min_dwell_ms`; [`alerts`]
//! raises an alert once when its condition starts and clears it once when it ends. Time comes in
//! as an argument (the poll's), never from a clock, and each runs once per snapshot, not per
//! client. The wire form is `docs/PROTOCOL.md` §12.

pub(crate) mod alerts;
pub(crate) mod classify;
pub(crate) mod hysteresis;

pub use alerts::Alerts;
pub use classify::classify;
pub use hysteresis::Mood;
// The wire's types, which the hub carries.
pub use crate::hub::announce::MoodChange;
pub use crate::hub::mood::{Alert, MoodNow, Persona, Regime};

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
