//! The simulated market and trading engine behind `--demo`: one symbol whose price drifts with
//! momentum, the agents and models that run each step (their call records kept in a rolling
//! window), the signal, a paper executor that follows it ([`executor`]), the engine's actions
//! (`halt` stops its trading until `resume`) and the demo's mood switch ([`mood`]). Its answers
//! have the engine's loose shapes (naive timestamps, enum-style status words, log strings, raw call
//! records) and are made in [`answers`]; [`events`] makes the messages the engine publishes on
//! Redis from the same figures, so both say the same at any moment.
//!
//! No I/O, and seeded, so a test can replay it; it reads the clock only to stamp what it makes.
//! The HTTP side and the market's clock (`demo`) decide when it steps and trades, and who hears
//! about it.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::publish::Message;

mod answers;
mod events;
mod executor;
mod mood;

pub use mood::{ACCEPTED, DemoMood};

/// The one symbol the simulated market trades.
const SYMBOL: &str = "SPY";

/// The engine's agents, each with its typical call latency in milliseconds.
const AGENTS: &[(&str, f64)] = &[
    ("analyst", 45.0),
    ("risk", 5.0),
    ("execution", 12.0),
    ("sentiment", 80.0),
    ("physics", 3.0),
    ("macro", 60.0),
    ("governance", 2.0),
    ("forecast", 140.0),
];
/// The engine's models, each with its typical call latency in milliseconds.
const MODELS: &[(&str, f64)] = &[
    ("chronos_t5_small", 120.0),
    ("finbert", 35.0),
    ("gemma2_9b", 900.0),
    ("llama3_8b", 650.0),
    ("xgboost_regime", 4.0),
];
/// Call records kept per agent and model, and log lines kept; the engine keeps a rolling window.
/// With these, a packet is about 4 KB, the size the benchmarks are quoted for.
const WINDOW: usize = 24;

/// A market and a trading engine that drift a little every second: the one state the HTTP
/// answers and the published events are read from, so they never disagree.
pub struct Simulation {
    rng: fastrand::Rng,
    tick: u64,
    price: f64,
    velocity: f64,
    acceleration: f64,
    alpha: f64,
    nav: f64,
    peak_nav: f64,
    day_open_nav: f64,
    position: f64,
    confidence: f64,
    /// Halted by an operator's `halt`, until `resume`.
    operator_halt: bool,
    logs: VecDeque<String>,
    agent_calls: Vec<VecDeque<Value>>,
    model_calls: Vec<VecDeque<Value>>,
    /// The forecast of the last step, in the state's `forecast` section and on
    /// `forecast.signals`.
    forecast: Forecast,
    /// Shares in the last trade, for its tick.
    lot: u32,
    /// The position the paper executor holds, following the signal.
    open: Option<Open>,
    /// The executor's trades, newest last, at most `RECENT_TRADES` (`executor.rs`).
    trades: VecDeque<Value>,
    trade_count: u64,
    wins: u64,
    losses: u64,
    /// Profit and loss of the closed positions.
    realized_pnl: f64,
    /// What the market is told to do (`POST /demo/mood`); `auto` leaves it to itself.
    mood: DemoMood,
}

/// The forecast model's quantiles for the price 10 steps ahead.
#[derive(Debug, Clone, Copy)]
struct Forecast {
    p10: f64,
    p50: f64,
    p90: f64,
    confidence: f64,
    at: DateTime<Utc>,
}

/// A position the paper executor opened.
#[derive(Debug, Clone, Copy)]
struct Open {
    side: &'static str,
    price: f64,
    shares: u32,
}

impl Simulation {
    /// A simulation seeded with `seed` (the same seed, the same market), already a full
    /// [`WINDOW`] of steps in, as an engine that has been running a while.
    pub fn new(seed: u64) -> Self {
        let mut sim = Self {
            rng: fastrand::Rng::with_seed(seed),
            tick: 0,
            price: 450.0,
            velocity: 0.0,
            acceleration: 0.0,
            alpha: 2.2,
            nav: 100_000.0,
            peak_nav: 100_000.0,
            day_open_nav: 100_000.0,
            position: 0.0,
            confidence: 0.5,
            operator_halt: false,
            logs: VecDeque::new(),
            agent_calls: vec![VecDeque::new(); AGENTS.len()],
            model_calls: vec![VecDeque::new(); MODELS.len()],
            forecast: Forecast {
                p10: 448.65,
                p50: 450.0,
                p90: 451.35,
                confidence: 0.5,
                at: Utc::now(),
            },
            lot: 100,
            open: None,
            trades: VecDeque::new(),
            trade_count: 0,
            wins: 0,
            losses: 0,
            realized_pnl: 0.0,
            mood: DemoMood::Auto,
        };
        sim.log("Engine started (demo simulator)".into());
        // Start with a full window, as an engine that has been running a while.
        for _ in 0..WINDOW {
            sim.step();
        }
        sim
    }

    /// One second of the engine: the market moves, the agents and models run, the signal and
    /// the paper executor follow.
    pub fn step(&mut self) {
        self.tick += 1;
        let calm = self.normal() * 0.0008;
        let jump = if self.rng.f64() < 0.03 {
            self.normal() * 0.004
        } else {
            0.0
        };
        // The rare jumps are the market left to itself; a mood holds it steady.
        let shock = match self.mood {
            DemoMood::Auto => calm + jump,
            _ => calm,
        };
        let return_ = shock + self.velocity * 0.1;
        let previous = self.velocity;
        self.velocity = self.next_velocity(shock, calm);
        self.acceleration = self.velocity - previous;
        self.nav *= 1.0 + self.position * return_ * 5.0;
        self.peak_nav = self.peak_nav.max(self.nav);
        self.price *= 1.0 + return_;
        self.lot = self.rng.u32(1..=20) * 100;
        // Kept to the two decimals it is reported with, so the regime read from the reported
        // alpha (as the daemon does for `physics.forces`) is the one the state gives.
        self.alpha = round2((self.alpha + self.normal() * 0.05).clamp(1.2, 2.8));
        self.confidence = (self.confidence + self.normal() * 0.05).clamp(0.0, 1.0);
        self.steer_engine();
        self.position = self.signal_sign() * self.approved_size();
        self.follow_signal();

        for (i, (_, base)) in AGENTS.iter().enumerate() {
            let ok = self.rng.f64() > 0.05;
            let record = json!({
                "timestamp": naive_now(),
                "latency_ms": round2(base * (0.6 + self.rng.f64() * 0.8)),
                "success": ok,
                "output": if ok { json!({"regime": self.regime(), "alpha": round2(self.alpha)}) } else { Value::Null },
                "error": if ok { Value::Null } else { json!("upstream timeout") },
            });
            push_window(&mut self.agent_calls[i], record);
        }
        for (i, (_, base)) in MODELS.iter().enumerate() {
            let p50 = round2(self.price * (1.0 + self.velocity));
            let record = json!({
                "timestamp": naive_now(),
                "latency_ms": round2(base * (0.7 + self.rng.f64() * 0.6)),
                "prediction": {"p10": round2(p50 * 0.997), "p50": p50, "p90": round2(p50 * 1.003)},
                "confidence": round2(self.confidence),
            });
            push_window(&mut self.model_calls[i], record);
        }
        let p50 = round2(self.price * (1.0 + self.velocity));
        self.forecast = Forecast {
            p10: round2(p50 * 0.997),
            p50,
            p90: round2(p50 * 1.003),
            confidence: round2(self.confidence),
            at: Utc::now(),
        };
        let line = match self.rng.u8(0..10) {
            0 => format!(
                "WARNING: Chronos forecast latency above {} ms",
                self.rng.u32(100..300)
            ),
            1 => "[ERROR] FinBERT request failed: timeout".to_string(),
            2..=4 => format!(
                "Risk: approved size {:.2} after Physics Veto",
                self.approved_size()
            ),
            _ => format!(
                "Physics: {} regime confirmed (alpha {:.2})",
                self.regime(),
                self.alpha
            ),
        };
        self.log(line);
    }

    /// One trade between steps (only while publishing): the price moves by a few cents, at
    /// least one so every tick shows a new price, and the position's value with it.
    pub fn trade(&mut self) {
        let before = self.price;
        let shown = round2(before);
        let move_ = self.normal() * 0.00015;
        self.price *= 1.0 + move_;
        if round2(self.price) == shown {
            self.price = shown + if move_ >= 0.0 { 0.01 } else { -0.01 };
        }
        self.nav *= 1.0 + self.position * (self.price / before - 1.0) * 5.0;
        self.peak_nav = self.peak_nav.max(self.nav);
        self.lot = self.rng.u32(1..=20) * 100;
    }

    fn log(&mut self, line: String) {
        push_window(&mut self.logs, line);
    }

    fn normal(&mut self) -> f64 {
        // Irwin–Hall: the sum of 12 uniforms less 6 is close enough to a standard normal here.
        (0..12).map(|_| self.rng.f64()).sum::<f64>() - 6.0
    }

    /// The engine's regime for its alpha: the same thresholds the daemon applies to the alpha of
    /// `physics.forces` (`input::redis::merge`), so a pushed alpha shows the state's regime.
    fn regime(&self) -> &'static str {
        match self.alpha {
            a if a > 2.0 => "Gaussian",
            a if a > 1.5 => "Lévy Stable",
            _ => "Critical",
        }
    }

    fn drawdown(&self) -> f64 {
        self.nav / self.peak_nav - 1.0
    }

    /// The engine halts trading when told to, in the critical regime, or past a 3% drawdown.
    fn halted(&self) -> bool {
        self.operator_halt || self.regime() == "Critical" || self.drawdown() < -0.03
    }

    /// One of the engine's actions, answered as the engine does: `{success, message}`; with the
    /// `system_events` message a halt or resume that happened publishes.
    pub fn act(&mut self, action: &str) -> (Value, Option<Message>) {
        let (success, message) = match action {
            "halt" if self.operator_halt => (false, "Already halted".to_owned()),
            "halt" => {
                self.operator_halt = true;
                self.position = 0.0;
                (true, "Trading halted".to_owned())
            }
            "resume" if !self.operator_halt => (false, "Not halted".to_owned()),
            "resume" => {
                self.operator_halt = false;
                (true, "Trading resumed".to_owned())
            }
            "rebalance" => (true, "Rebalance Started".to_owned()),
            "export-logs" => (true, format!("Exported {} log lines", self.logs.len())),
            other => (false, format!("Unknown action {other}")),
        };
        self.log(format!("Action {action}: {message}"));
        let event = match action {
            "halt" | "resume" if success => Some(events::system_event(action == "halt")),
            _ => None,
        };
        (json!({"success": success, "message": message}), event)
    }

    fn side(&self) -> &'static str {
        match self.velocity {
            _ if self.halted() || self.confidence < 0.3 => "HOLD",
            v if v > 0.0 => "BUY",
            _ => "SELL",
        }
    }

    fn signal_sign(&self) -> f64 {
        match self.side() {
            "BUY" => 1.0,
            "SELL" => -1.0,
            _ => 0.0,
        }
    }

    fn approved_size(&self) -> f64 {
        if self.halted() {
            0.0
        } else {
            round2(0.2 * self.confidence)
        }
    }

    /// Why the signal is what it is, in the state and in `strategy.signals`.
    fn reasoning(&self) -> String {
        format!("{} regime, velocity {:+.5}", self.regime(), self.velocity)
    }
}

fn push_window<T>(window: &mut VecDeque<T>, item: T) {
    if window.len() == WINDOW {
        window.pop_front();
    }
    window.push_back(item);
}

/// Steps ahead the forecast is for.
const FORECAST_HORIZON: u32 = 10;

/// The engine writes timestamps without a zone, in UTC.
fn naive_now() -> String {
    Utc::now()
        .naive_utc()
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string()
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
