//! What the simulated engine and its trading agents publish on Redis, in the shapes of
//! `fixtures/redis/`: the engine's events (`market.tick.SPY`, `physics.forces`,
//! `strategy.signals`, `forecast.signals`, `system_events`), which the daemon merges into the
//! packet, and the agents' state updates (`agent.updates`, `risk.state`, `trade.results`), which
//! it relays. Each message is made from the simulation as it is at that moment, so it says what
//! the HTTP answers say: the same price, alpha, signal and forecast, in the engine's own forms
//! (timestamps with and without a zone, the agents' numbers as strings).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{FORECAST_HORIZON, SYMBOL, Simulation, round2};
use crate::demo::publish::Message;

impl Simulation {
    /// `market.tick.SPY`: the last trade, at the simulation's price.
    pub fn tick_event(&self, now: DateTime<Utc>) -> Message {
        Message::new(
            format!("market.tick.{SYMBOL}"),
            json!({
                "symbol": SYMBOL,
                "price": round2(self.price),
                "size": f64::from(self.lot),
                "timestamp": zoned(now),
                "updates": 1,
                "exchange": "V",
            }),
        )
    }

    /// Everything a step publishes: its trade, the engine's physics, signal and forecast, and
    /// the agents' updates.
    pub fn step_events(&self, now: DateTime<Utc>) -> Vec<Message> {
        vec![
            self.tick_event(now),
            self.physics_event(now),
            self.signal_event(now),
            self.forecast_event(),
            self.allocator_event(),
            self.risk_event(),
            self.executor_event(),
        ]
    }

    /// `physics.forces`: the figures nested under `vectors`, with the reported alpha and price.
    fn physics_event(&self, now: DateTime<Utc>) -> Message {
        let at = naive(now);
        Message::new(
            "physics.forces",
            json!({
                "symbol": SYMBOL,
                "timestamp": at,
                "vectors": {
                    "timestamp": at,
                    "symbol": SYMBOL,
                    "mass": round2(10.0 + f64::from(self.lot) / 400.0),
                    "momentum": round6(self.velocity),
                    "friction": round6(0.02 + self.acceleration.abs()),
                    "entropy": round2(1.5 + (2.8 - self.alpha).abs()),
                    "nash_dist": round2(1.0 - self.confidence),
                    "price": round2(self.price),
                    "alpha_coefficient": self.alpha,
                },
            }),
        )
    }

    /// `strategy.signals`: the state's signal, `HOLD` for no position, the reasoning in `meta`.
    fn signal_event(&self, now: DateTime<Utc>) -> Message {
        let side = self.side();
        let quantity = self
            .open
            .filter(|open| open.side == side)
            .map_or(Value::Null, |open| json!(open.shares));
        Message::new(
            "strategy.signals",
            json!({
                "timestamp": zulu(now),
                "symbol": SYMBOL,
                "side": side,
                "strength": round2(self.confidence),
                "price": round2(self.price),
                "quantity": quantity,
                "meta": {"reasoning": self.reasoning(), "physics_veto": self.halted()},
            }),
        )
    }

    /// `forecast.signals`: the step's forecast, the one the state's `forecast` section holds.
    fn forecast_event(&self) -> Message {
        let forecast = &self.forecast;
        Message::new(
            "forecast.signals",
            json!({
                "timestamp": zulu(forecast.at),
                "symbol": SYMBOL,
                "p10": forecast.p10,
                "p50": forecast.p50,
                "p90": forecast.p90,
                "horizon": FORECAST_HORIZON,
                "confidence": forecast.confidence,
                "is_synthetic": true,
            }),
        )
    }

    /// `agent.updates`: the capital allocator's state, its one strategy's record.
    fn allocator_event(&self) -> Message {
        Message::new(
            "agent.updates",
            json!({
                "agent": "capital-allocator",
                "type": "state_update",
                "data": {
                    "total_capital": money(self.nav),
                    "strategies": {
                        "physics-momentum": {
                            "total_pnl": money(self.realized_pnl),
                            "trades": self.trade_count,
                            "wins": self.wins,
                            "losses": self.losses,
                            "allocation_pct": format!("{}", self.approved_size()),
                        },
                    },
                },
            }),
        )
    }

    /// `risk.state`: the risk guardian's view of the portfolio.
    fn risk_event(&self) -> Message {
        Message::new(
            "risk.state",
            json!({
                "agent": "risk-guardian",
                "type": "state_update",
                "data": {
                    "current_value": money(self.nav),
                    "high_water_mark": money(self.peak_nav),
                    "daily_pnl": money(self.nav - self.day_open_nav),
                    "halted": self.halted(),
                },
            }),
        )
    }

    /// `trade.results`: the paper executor's count and recent trades.
    fn executor_event(&self) -> Message {
        Message::new(
            "trade.results",
            json!({
                "agent": "paper-executor",
                "type": "state_update",
                "data": {"trade_count": self.trade_count, "recent_trades": self.trades},
            }),
        )
    }
}

/// `system_events`: an operator halted or resumed the engine.
pub(super) fn system_event(halt: bool) -> Message {
    let (event, status, reason) = if halt {
        ("SYSTEM_HALT", "HALTED", "Manual Kill Switch")
    } else {
        ("SYSTEM_RESUME", "ACTIVE", "Manual Resume")
    };
    Message::new(
        "system_events",
        json!({"event": event, "data": {"status": status, "reason": reason}}),
    )
}

/// `2025-12-21T12:00:00.123456+00:00`, as the market feed writes it.
fn zoned(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// `2025-12-21T12:00:00.123456Z`, as the strategies write it.
fn zulu(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// `2025-12-21T12:00:00.123456`, without a zone, as the physics engine writes it.
fn naive(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

/// An amount as the agents send it: a string with two decimals.
fn money(x: f64) -> String {
    format!("{x:.2}")
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}
