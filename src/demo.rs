//! `--demo`: an embedded engine simulator on a loopback port. It answers the three endpoints over
//! real HTTP in the real engine's loose shapes (naive timestamps, enum-style status words, log
//! strings, raw agent call records, raw model records) with values that move every second, so
//! the daemon polls it exactly as it would poll an engine. It takes the engine's actions too:
//! `halt` really stops its trading until `resume`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span};

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

/// Starts the simulator on `addr` (port 0: one the OS picks) and returns the address it bound.
pub async fn start(addr: SocketAddr, shutdown: CancellationToken) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let sim = Arc::new(Mutex::new(Simulation::new(fastrand::u64(..))));
    tokio::spawn(step_every_second(sim.clone(), shutdown.clone()).instrument(info_span!("demo")));
    tokio::spawn(
        async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(err) => { debug!(%err, "demo accept failed"); continue; }
                    },
                };
                let sim = sim.clone();
                let service = service_fn(move |req| answer(req, sim.clone()));
                tokio::spawn(
                    async move {
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                    .in_current_span(),
                );
            }
        }
        .instrument(info_span!("demo")),
    );
    Ok(addr)
}

async fn step_every_second(sim: Arc<Mutex<Simulation>>, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => sim.lock().expect("demo lock poisoned").step(),
        }
    }
}

async fn answer(
    req: Request<Incoming>,
    sim: Arc<Mutex<Simulation>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut sim = sim.lock().expect("demo lock poisoned");
    let body = match (req.method(), req.uri().path()) {
        (&Method::GET, "/api/system/state/current") => sim.state(),
        (&Method::GET, "/api/system/metrics/agents") => sim.agents(),
        (&Method::GET, "/api/system/metrics/models") => sim.models(),
        (&Method::POST, path) if path.starts_with("/api/actions/") => {
            sim.act(&path["/api/actions/".len()..])
        }
        _ => {
            let mut response = Response::new(Full::from("not found"));
            *response.status_mut() = StatusCode::NOT_FOUND;
            return Ok(response);
        }
    };
    let mut response = Response::new(Full::from(body.to_string()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// A market and a trading engine that drift a little every second.
struct Simulation {
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
}

impl Simulation {
    fn new(seed: u64) -> Self {
        let mut sim = Self {
            rng: fastrand::Rng::with_seed(seed),
            tick: 0,
            price: 450.0,
            velocity: 0.0,
            acceleration: 0.0,
            alpha: 2.0,
            nav: 100_000.0,
            peak_nav: 100_000.0,
            day_open_nav: 100_000.0,
            position: 0.0,
            confidence: 0.5,
            operator_halt: false,
            logs: VecDeque::new(),
            agent_calls: vec![VecDeque::new(); AGENTS.len()],
            model_calls: vec![VecDeque::new(); MODELS.len()],
        };
        sim.log("Engine started (demo simulator)".into());
        // Start with a full window, as an engine that has been running a while.
        for _ in 0..WINDOW {
            sim.step();
        }
        sim
    }

    fn step(&mut self) {
        self.tick += 1;
        let shock = self.normal() * 0.0008
            + if self.rng.f64() < 0.03 {
                self.normal() * 0.004
            } else {
                0.0
            };
        let return_ = shock + self.velocity * 0.1;
        let previous = self.velocity;
        self.velocity = 0.9 * self.velocity + return_;
        self.acceleration = self.velocity - previous;
        self.nav *= 1.0 + self.position * return_ * 5.0;
        self.peak_nav = self.peak_nav.max(self.nav);
        self.price *= 1.0 + return_;
        self.alpha = (self.alpha + self.normal() * 0.05).clamp(1.1, 2.0);
        self.confidence = (self.confidence + self.normal() * 0.05).clamp(0.0, 1.0);
        self.position = self.signal_sign() * self.approved_size();

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

    fn log(&mut self, line: String) {
        push_window(&mut self.logs, line);
    }

    fn normal(&mut self) -> f64 {
        // Irwin–Hall: the sum of 12 uniforms less 6 is close enough to a standard normal here.
        (0..12).map(|_| self.rng.f64()).sum::<f64>() - 6.0
    }

    fn regime(&self) -> &'static str {
        match self.alpha {
            a if a > 1.8 => "Gaussian",
            a if a > 1.4 => "Lévy Stable",
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

    /// One of the engine's actions, answered as the engine does: `{success, message}`.
    fn act(&mut self, action: &str) -> Value {
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
        json!({"success": success, "message": message})
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

    fn state(&self) -> Value {
        json!({
            "timestamp": naive_now(),
            "status": if self.halted() { "TradingStatus.HALT" } else { "TradingStatus.ACTIVE" },
            "market": {
                "symbol": "SPY",
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
                "reasoning": format!("{} regime, velocity {:+.5}", self.regime(), self.velocity),
            },
            "governance": {"approved_size": self.approved_size()},
            "logs": self.logs,
            "sentiment": {"label": if self.velocity >= 0.0 { "Bullish" } else { "Bearish" }, "score": round2(self.velocity * 500.0).clamp(-1.0, 1.0)},
        })
    }

    fn agents(&self) -> Value {
        let map: serde_json::Map<String, Value> = AGENTS
            .iter()
            .zip(&self.agent_calls)
            .map(|((name, _), calls)| (name.to_string(), json!(calls)))
            .collect();
        Value::Object(map)
    }

    fn models(&self) -> Value {
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

fn push_window<T>(window: &mut VecDeque<T>, item: T) {
    if window.len() == WINDOW {
        window.pop_front();
    }
    window.push_back(item);
}

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
mod tests {
    use super::*;
    use crate::input::normalize;

    #[test]
    fn simulated_answers_read_as_the_engine_does_and_move() {
        let mut sim = Simulation::new(7);
        let before = normalize::state(&sim.state()).unwrap();
        for _ in 0..5 {
            sim.step();
        }
        let after = normalize::state(&sim.state()).unwrap();
        assert_ne!(before.sections.market.price, after.sections.market.price);
        assert!(after.timestamp.is_some());
        assert!(!after.sections.logs.is_empty());
        let agents = normalize::agents(&sim.agents()).unwrap();
        assert_eq!(agents.len(), AGENTS.len());
        assert_eq!(agents["risk"].invocations, Some(WINDOW as u64));
        let models = normalize::models(&sim.models()).unwrap();
        assert_eq!(models["finbert"].invocations, Some(WINDOW as u64));
    }

    #[test]
    fn halt_stops_trading_until_resume() {
        let mut sim = Simulation::new(7);
        assert_eq!(
            sim.act("halt"),
            json!({"success": true, "message": "Trading halted"})
        );
        assert_eq!(sim.act("halt")["success"], false);
        for _ in 0..5 {
            sim.step();
        }
        let state = normalize::state(&sim.state()).unwrap().sections;
        assert_eq!(state.status, crate::hub::packet::Status::Halt);
        assert_eq!(state.governance.approved_size, Some(0.0));
        assert_eq!(sim.act("resume")["success"], true);
        assert!(!sim.operator_halt);
    }
}
