//! A replayed engine: what a real one answers, tick by tick, made from the shapes of the
//! daemon's engine fixtures with a seeded generator, for the byte measurements of
//! [`super::wire_bytes`].

use serde_json::Value;

/// What a real engine answers, tick by tick, made from the shapes the daemon's tests use
/// (`fixtures/engine/state-current.json`, `agents-raw-records.json`, `models-raw-records.json`)
/// with a seeded generator, so every run replays the same sequence. Tick 0 is the fixtures as
/// they are; each tick after moves them on by one second.
pub(super) struct Replay {
    rng: fastrand::Rng,
    state: Value,
    agents: Value,
    models: Value,
    /// The engine's clock, from the state fixture's `timestamp`.
    now: chrono::NaiveDateTime,
    /// Units of the symbol held: the part of `nav` that is not `cash`.
    units: f64,
    /// The highest `nav` so far, whose distance is the drawdown.
    peak: f64,
    /// `nav` at the day's open, whose distance is the daily P&L.
    open: f64,
    started: bool,
}

/// Rounded to `places` decimals, as the fixtures write each figure.
fn round(x: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (x * scale).round() / scale
}

impl Replay {
    pub(super) fn from_fixtures() -> Self {
        let read =
            |name| serde_json::from_str::<Value>(&crate::common::fixture_text(name)).unwrap();
        let state = read("state-current.json");
        let now = chrono::NaiveDateTime::parse_from_str(
            state["timestamp"].as_str().unwrap(),
            "%Y-%m-%dT%H:%M:%S%.f",
        )
        .unwrap();
        let figure = |section: &str, key: &str| state[section][key].as_f64().unwrap();
        let (nav, cash) = (figure("portfolio", "nav"), figure("portfolio", "cash"));
        Self {
            rng: fastrand::Rng::with_seed(23),
            units: (nav - cash) / figure("market", "price"),
            peak: nav / (1.0 + figure("portfolio", "max_drawdown")),
            open: nav - figure("portfolio", "daily_pnl"),
            now,
            state,
            agents: read("agents-raw-records.json"),
            models: read("models-raw-records.json"),
            started: false,
        }
    }

    /// The next tick's answers: state, agents, models, as the engine's JSON text.
    pub(super) fn tick(&mut self) -> [String; 3] {
        if std::mem::replace(&mut self.started, true) {
            self.now += chrono::TimeDelta::seconds(1);
            self.move_market();
            self.move_logs();
            self.call_agents();
            self.call_models();
        }
        [&self.state, &self.agents, &self.models].map(Value::to_string)
    }

    /// A step of `scale` either way, at random.
    fn step(&mut self, scale: f64) -> f64 {
        (self.rng.f64() * 2.0 - 1.0) * scale
    }

    /// Price, velocity, acceleration, alpha, the portfolio and the signal's confidence move;
    /// one tick in ten the engine trades, moving cash.
    fn move_market(&mut self) {
        let timestamp = self.now.format("%Y-%m-%dT%H:%M:%S%.6f").to_string();
        self.state["timestamp"] = timestamp.into();
        let market = &self.state["market"];
        let (price, velocity, alpha) = (
            market["price"].as_f64().unwrap(),
            market["velocity"].as_f64().unwrap(),
            market["alpha"].as_f64().unwrap(),
        );
        let acceleration = round(self.step(0.00008), 5);
        let velocity = round((velocity + acceleration).clamp(-0.004, 0.004), 4);
        let price = round(price * (1.0 + velocity + self.step(0.0004)), 2);
        let alpha = round((alpha + self.step(0.05)).clamp(1.2, 2.9), 2);
        let market = &mut self.state["market"];
        market["price"] = price.into();
        market["velocity"] = velocity.into();
        market["acceleration"] = acceleration.into();
        market["alpha"] = alpha.into();
        let mut cash = self.state["portfolio"]["cash"].as_f64().unwrap();
        if self.rng.f64() < 0.1 {
            let traded = round(self.step(20.0), 0);
            self.units += traded;
            cash = round(cash - traded * price, 2);
        }
        let nav = cash + self.units * price;
        self.peak = self.peak.max(nav);
        let portfolio = &mut self.state["portfolio"];
        portfolio["nav"] = round(nav, 2).into();
        portfolio["cash"] = cash.into();
        portfolio["daily_pnl"] = round(nav - self.open, 2).into();
        portfolio["max_drawdown"] = round(nav / self.peak - 1.0, 4).into();
        let confidence = self.state["signal"]["confidence"].as_f64().unwrap();
        let confidence = round((confidence + self.step(0.03)).clamp(0.5, 0.99), 2);
        let signal = &mut self.state["signal"];
        signal["confidence"] = confidence.into();
        signal["side"] = if velocity >= 0.0 { "BUY" } else { "SELL" }.into();
    }

    /// One or two new lines, of the fixture's four kinds with this tick's figures, push out as
    /// many of the oldest.
    fn move_logs(&mut self) {
        let market = &self.state["market"];
        let (regime, alpha) = (market["regime"].as_str().unwrap(), market["alpha"].clone());
        let size = self.state["governance"]["approved_size"].clone();
        let latency = 80 + self.rng.u32(0..80);
        let kinds = [
            format!("Physics: {regime} regime confirmed (alpha {alpha})"),
            format!("WARNING: Chronos forecast latency {latency} ms above 100 ms"),
            "[ERROR] FinBERT request failed: timeout".to_owned(),
            format!("Risk: approved size {size} after Physics Veto"),
        ];
        let logs = self.state["logs"].as_array_mut().unwrap();
        for _ in 0..self.rng.usize(1..=2) {
            logs.remove(0);
            logs.push(kinds[self.rng.usize(..kinds.len())].clone().into());
        }
    }

    /// Each agent that has records gets one more call (a random latency around its fixture's,
    /// one in ten failing with the fixture's error), its oldest dropped.
    fn call_agents(&mut self) {
        let agents = self.agents.as_object_mut().unwrap();
        for records in agents.values_mut() {
            let records = records.as_array_mut().unwrap();
            let Some(last) = records.last().cloned() else {
                continue;
            };
            let typical = records[0]["latency_ms"].as_f64().unwrap();
            let at = self.now - chrono::TimeDelta::milliseconds(self.rng.i64(0..1000));
            let success = self.rng.f64() >= 0.1;
            let output = match &last["output"] {
                Value::Object(output) if success => {
                    let mut output = output.clone();
                    for (key, value) in output.iter_mut() {
                        let now = match key.as_str() {
                            "alpha" | "regime" => &self.state["market"][key],
                            "approved_size" => &self.state["governance"][key],
                            "status" => &self.state[key],
                            _ => continue,
                        };
                        *value = now.clone();
                    }
                    Value::Object(output)
                }
                _ => Value::Null,
            };
            let latency = round(typical * (0.5 + self.rng.f64()), 1);
            records.remove(0);
            records.push(serde_json::json!({
                "timestamp": at.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
                "latency_ms": latency,
                "success": success,
                "output": output,
                "error": if success { Value::Null } else { "upstream timeout".into() },
            }));
        }
    }

    /// Each model that has invocations gets one more (a forecast band around the price, a
    /// random latency and confidence), its oldest dropped, its mean latency and thought anew.
    fn call_models(&mut self) {
        let price = self.state["market"]["price"].as_f64().unwrap();
        let rising = self.state["market"]["velocity"].as_f64().unwrap() >= 0.0;
        let models = self.models.as_object_mut().unwrap();
        for model in models.values_mut() {
            let calls = model["invocations"].as_array_mut().unwrap();
            if calls.is_empty() {
                continue;
            }
            let typical = calls[0]["latency_ms"].as_f64().unwrap();
            let drift = (self.rng.f64() * 2.0 - 1.0) * 0.5;
            let band = 1.0 + self.rng.f64();
            calls.remove(0);
            calls.push(serde_json::json!({
                "timestamp": self.now.format("%Y-%m-%dT%H:%M:%S").to_string(),
                "latency_ms": round(typical * (0.7 + 0.6 * self.rng.f64()), 1),
                "prediction": {
                    "p10": round(price + drift - band, 1),
                    "p50": round(price + drift, 1),
                    "p90": round(price + drift + band, 1),
                },
                "confidence": round(0.6 + 0.3 * self.rng.f64(), 2),
            }));
            let mean = calls
                .iter()
                .map(|c| c["latency_ms"].as_f64().unwrap())
                .sum::<f64>()
                / calls.len() as f64;
            model["avg_latency_ms"] = round(mean, 1).into();
            model["last_thought"] = format!(
                "{} drift within band",
                if rising { "Upward" } else { "Downward" }
            )
            .into();
        }
    }
}
