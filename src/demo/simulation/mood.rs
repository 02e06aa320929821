//! The demo's mood switch (`POST /demo/mood`): a market told to crash, rally or calm down, so a
//! dashboard's reaction to each mood can be checked by eye without waiting for the random walk.
//!
//! A mood steers the market a fraction of the way to its figures every step (a few seconds, not a
//! jump) and holds it there, beyond the default `[regime]` thresholds (`docs/PROTOCOL.md` §12.1)
//! by a margin no step's noise crosses. `auto` is the market left to itself: the velocity's random
//! walk, pulled gently back toward zero so it spends most of its time neutral.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Simulation;

/// What the market is told to do; `auto` until someone switches it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DemoMood {
    /// Left to itself: the random walk with its pull toward zero.
    #[default]
    Auto,
    /// Falling fast: velocity held at [`CRASH_VELOCITY`].
    Crash,
    /// Rising fast with the engine buying: velocity held at [`BULL_VELOCITY`], the alpha out of
    /// the critical regime and the confidence high, so the signal says `BUY`.
    Bull,
    /// Calm: velocity held near zero.
    Neutral,
}

/// The words `POST /demo/mood` accepts, for the refusal of any other.
pub const ACCEPTED: &str = r#""crash", "bull", "neutral" or "auto""#;

impl fmt::Display for DemoMood {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DemoMood::Auto => "auto",
            DemoMood::Crash => "crash",
            DemoMood::Bull => "bull",
            DemoMood::Neutral => "neutral",
        })
    }
}

/// Velocity a crash is held at: twice the default `regime.crash_velocity` (-0.005).
const CRASH_VELOCITY: f64 = -0.010;
/// Velocity a rally is held at: twice the default `regime.bull_velocity` (0.005).
const BULL_VELOCITY: f64 = 0.010;
/// The share of the way to a mood's figures covered each step: half, so the velocity is past
/// the threshold in two or three steps and settled in about five.
const STEER: f64 = 0.5;
/// Under a mood the velocity's noise is this share of the random walk's calm shock (no rare
/// jumps): about ±0.0003 around the target, far inside the margin of 0.005 to the threshold and
/// of 0.0025 to the heavy-tailed crash bound while neutral.
const HELD_NOISE: f64 = 0.3;
/// `auto`: the share of the velocity taken back toward zero each step. The random walk alone
/// drifts past ±0.005 within minutes and stays there; with this pull the velocity wanders with
/// a standard deviation of about 0.0027, past a mood's threshold now and then for a few seconds
/// (measured in `mood_tests.rs`).
const AUTO_PULL: f64 = 0.08;
/// A rally's alpha: in the Gaussian regime, clear of the critical one where the engine halts.
const BULL_ALPHA: f64 = 2.3;
/// A rally's confidence, clear of the 0.3 below which the signal holds.
const BULL_CONFIDENCE: f64 = 0.8;

impl Simulation {
    /// Switches the market to `mood` from the next step on. The book starts afresh: the
    /// drawdown is measured from the NAV at the switch, so a drawdown from before (or the halt
    /// that a drawdown past 3 % holds the engine in) does not outlast the switch. An operator's
    /// `halt` stays.
    pub fn set_mood(&mut self, mood: DemoMood) {
        self.mood = mood;
        self.peak_nav = self.nav;
        self.log(format!("Demo: market mood set to {mood}"));
    }

    /// The velocity after this step: the random walk's `shock` under `auto`, else a step
    /// toward the mood's velocity with a fraction of the `calm` shock as noise.
    pub(super) fn next_velocity(&self, shock: f64, calm: f64) -> f64 {
        let v = self.velocity;
        let toward = |target: f64| v + STEER * (target - v) + HELD_NOISE * calm;
        match self.mood {
            DemoMood::Auto => v - AUTO_PULL * v + shock,
            DemoMood::Crash => toward(CRASH_VELOCITY),
            DemoMood::Bull => toward(BULL_VELOCITY),
            DemoMood::Neutral => toward(0.0),
        }
    }

    /// After the step's own drift of the alpha and confidence: a rally pulls them to where the
    /// engine trades and its signal is `BUY`.
    pub(super) fn steer_engine(&mut self) {
        if self.mood == DemoMood::Bull {
            self.alpha = super::round2(self.alpha + STEER * (BULL_ALPHA - self.alpha));
            self.confidence += STEER * (BULL_CONFIDENCE - self.confidence);
        }
    }
}

#[cfg(test)]
#[path = "mood_tests.rs"]
mod tests;
