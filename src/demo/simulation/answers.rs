//! What the simulated engine answers over HTTP: its three endpoints (`/api/system/state/current`,
//! `/api/system/metrics/agents`, `/api/system/metrics/models`) made from the simulation as it is
//! at that moment, in the engine's loose shapes (naive timestamps, enum-style status words, log
//! strings, raw call records), which the daemon polls and normalizes.

use serde_json::{Value, json};

use super::{AGENTS, FORECAST_HORIZON, MODELS, SYMBOL, Simulation, naive_now, round2};

impl Simulation {
    /// The engine's `/api/system/state/current` answer: status, market, portfolio, signal,
    /// governance, logs, sentiment and the last forecast.
    pub fn state(&self) -> Value {
        json!({
            "timestamp": naive_now(),
            "status": if self.halted() { "TradingStatus.HALT" } else { "TradingStatus.ACTIVE" },
            "market": {
                "symbol": SYMBOL,
                "price": round2(self.price),
                "alpha": round2(self.alpha),
                "regime": self.regime(),
                "velocity": self.velocity,
                "acceleration": self.acceleration,
            },
            "portfolio": {
                "nav": round2(self.nav),
                "cash": round2(self.nav * (1.0 - self.position.abs())),
                "daily_pnl": round2(self.nav - self.day_open_nav),
                "max_drawdown": self.drawdown(),
            },
            "signal": {
                "side": self.side(),
                "confidence": round2(self.confidence),
                "reasoning": self.reasoning(),
            },
            "governance": {"approved_size": self.approved_size()},
            "logs": self.logs,
            "sentiment": {"label": if self.velocity >= 0.0 { "Bullish" } else { "Bearish" }, "score": round2(self.velocity * 500.0).clamp(-1.0, 1.0)},
            // As the daemon shows a `forecast.signals` message: its time cut to milliseconds.
            "forecast": {
                "p10": self.forecast.p10,
                "p50": self.forecast.p50,
                "p90": self.forecast.p90,
                "horizon": FORECAST_HORIZON,
                "confidence": self.forecast.confidence,
                "is_synthetic": true,
                "timestamp": self.forecast.at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            },
        })
    }

    /// The engine's `/api/system/metrics/agents` answer: each agent's recent call records.
    pub fn agents(&self) -> Value {
        let map: serde_json::Map<String, Value> = AGENTS
            .iter()
            .zip(&self.agent_calls)
            .map(|((name, _), calls)| (name.to_string(), json!(calls)))
            .collect();
        Value::Object(map)
    }

    /// The engine's `/api/system/metrics/models` answer: each model's recent invocations, mean
    /// latency and last thought.
    pub fn models(&self) -> Value {
        let map: serde_json::Map<String, Value> = MODELS
            .iter()
            .zip(&self.model_calls)
            .map(|((name, _), calls)| {
                let mean = calls.iter().filter_map(|c| c["latency_ms"].as_f64()).sum::<f64>() / calls.len().max(1) as f64;
                let model = json!({
                    "avg_latency_ms": round2(mean),
                    "invocations": calls,
                    "last_thought": format!("{} drift within band", if self.velocity >= 0.0 { "Upward" } else { "Downward" }),
                });
                (name.to_string(), model)
            })
            .collect();
        Value::Object(map)
    }
}
