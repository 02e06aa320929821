//! `--demo`: an embedded engine simulator on a loopback port. It answers the three endpoints over
//! real HTTP in the real engine's loose shapes (naive timestamps, enum-style status words, log
//! strings, raw agent call records, raw model records) with values that move every second, so
//! the daemon polls it exactly as it would poll an engine. It takes the engine's actions too:
//! `halt` really stops its trading until `resume`.
//!
//! Given a Redis URL, it also publishes what the engine and its trading agents publish there
//! ([`events`] makes the messages, [`publish`] sends them): a trade on `market.tick.SPY`
//! [`TICKS_PER_STEP`] times a second, the step's physics, signals and agent updates once a second,
//! and a system event on `halt` and `resume`. The market then moves between steps, and every
//! message says what the HTTP answers say at that moment: a tick's price is the state's price.
//! Without a URL nothing is published and the market moves once a second.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span};

use publish::{Message, Outbox};

mod events;
mod publish;

/// The one symbol the simulated market trades.
const SYMBOL: &str = "SPY";
/// How often the simulation takes a step: the engine's own rhythm, which the daemon polls.
const STEP: Duration = Duration::from_secs(1);
/// Trades (and `market.tick.SPY` messages) per step when publishing to Redis: the step's own and
/// the ones between steps.
pub const TICKS_PER_STEP: u32 = 5;

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
/// With `redis` (a `redis://` URL), it publishes its events there too, connecting in the
/// background and again whenever the connection is lost; a URL that cannot be read is an
/// `InvalidInput` error.
pub async fn start(
    addr: SocketAddr,
    redis: Option<&str>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let outbox = match redis {
        None => None,
        Some(url) => Some(publish::start(url, shutdown.clone()).map_err(|err| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("cannot publish the demo's events to Redis: {err}"),
            )
        })?),
    };
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let demo = Arc::new(Demo {
        sim: Mutex::new(Simulation::new(fastrand::u64(..))),
        outbox,
    });
    tokio::spawn(run_market(demo.clone(), shutdown.clone()).instrument(info_span!("demo")));
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
                let demo = demo.clone();
                let service = service_fn(move |req| answer(req, demo.clone()));
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

/// The simulation, shared by the market's clock and the HTTP answers, and where its events go
/// when it publishes them.
struct Demo {
    sim: Mutex<Simulation>,
    outbox: Option<Outbox>,
}

impl Demo {
    fn sim(&self) -> std::sync::MutexGuard<'_, Simulation> {
        self.sim.lock().expect("demo lock poisoned")
    }

    /// Hands `messages` to the publisher, if there is one; never waits.
    fn publish(&self, messages: impl IntoIterator<Item = Message>) {
        if let Some(outbox) = &self.outbox {
            messages
                .into_iter()
                .for_each(|message| outbox.send(message));
        }
    }
}

/// The market's clock: a step a second; when publishing, [`TICKS_PER_STEP`] trades a second,
/// the step being one of them, each published with what changed.
async fn run_market(demo: Arc<Demo>, shutdown: CancellationToken) {
    let ticks_per_step = if demo.outbox.is_some() {
        TICKS_PER_STEP
    } else {
        1
    };
    let mut ticks = tokio::time::interval(STEP / ticks_per_step);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for tick in (0..ticks_per_step).cycle() {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        // Made under the lock, each with the time it was made: a message is never older than an
        // HTTP answer that already shows what it says.
        let messages = {
            let mut sim = demo.sim();
            if tick == 0 {
                sim.step();
                match demo.outbox {
                    Some(_) => sim.step_events(Utc::now()),
                    None => Vec::new(),
                }
            } else {
                sim.trade();
                vec![sim.tick_event(Utc::now())]
            }
        };
        demo.publish(messages);
    }
}

async fn answer(
    req: Request<Incoming>,
    demo: Arc<Demo>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut sim = demo.sim();
    let body = match (req.method(), req.uri().path()) {
        (&Method::GET, "/api/system/state/current") => sim.state(),
        (&Method::GET, "/api/system/metrics/agents") => sim.agents(),
        (&Method::GET, "/api/system/metrics/models") => sim.models(),
        (&Method::POST, path) if path.starts_with("/api/actions/") => {
            let (reply, event) = sim.act(&path["/api/actions/".len()..]);
            demo.publish(event);
            reply
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
    /// The forecast of the last step, in the state's `forecast` section and on
    /// `forecast.signals`.
    forecast: Forecast,
    /// Shares in the last trade, for its tick.
    lot: u32,
    /// The position the paper executor holds, following the signal.
    open: Option<Open>,
    /// The executor's trades, newest last, at most [`RECENT_TRADES`].
    trades: VecDeque<Value>,
    trade_count: u64,
    wins: u64,
    losses: u64,
    /// Profit and loss of the closed positions.
    realized_pnl: f64,
}

/// The trades `trade.results` lists.
const RECENT_TRADES: usize = 10;

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
    fn new(seed: u64) -> Self {
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
        self.lot = self.rng.u32(1..=20) * 100;
        // Kept to the two decimals it is reported with, so the regime read from the reported
        // alpha (as the daemon does for `physics.forces`) is the one the state gives.
        self.alpha = round2((self.alpha + self.normal() * 0.05).clamp(1.2, 2.8));
        self.confidence = (self.confidence + self.normal() * 0.05).clamp(0.0, 1.0);
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
    fn trade(&mut self) {
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

    /// The paper executor: closes its position when the signal leaves its side, and opens one
    /// on a BUY or SELL, sized by the approved size.
    fn follow_signal(&mut self) {
        let wanted = match self.side() {
            "HOLD" => None,
            side => Some(side),
        };
        if self.open.map(|open| open.side) == wanted {
            return;
        }
        if let Some(open) = self.open.take() {
            let sign = if open.side == "BUY" { 1.0 } else { -1.0 };
            let pnl = (self.price - open.price) * sign * f64::from(open.shares);
            self.realized_pnl += pnl;
            if pnl >= 0.0 {
                self.wins += 1;
            } else {
                self.losses += 1;
            }
            let closing = if open.side == "BUY" { "SELL" } else { "BUY" };
            self.record_trade(closing, open.shares);
        }
        if let Some(side) = wanted {
            let shares = (self.approved_size() * self.nav / self.price)
                .round()
                .max(1.0) as u32;
            self.record_trade(side, shares);
            self.open = Some(Open {
                side,
                price: self.price,
                shares,
            });
        }
    }

    fn record_trade(&mut self, side: &str, shares: u32) {
        self.trade_count += 1;
        if self.trades.len() == RECENT_TRADES {
            self.trades.pop_front();
        }
        self.trades.push_back(json!({
            "id": format!("t-{}", self.trade_count),
            "market": SYMBOL,
            "side": side,
            "price": format!("{:.2}", self.price),
            "size": shares.to_string(),
        }));
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
    fn act(&mut self, action: &str) -> (Value, Option<Message>) {
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

    fn state(&self) -> Value {
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

    /// Why the signal is what it is, in the state and in `strategy.signals`.
    fn reasoning(&self) -> String {
        format!("{} regime, velocity {:+.5}", self.regime(), self.velocity)
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
mod tests {
    use super::*;
    use crate::hub::packet::{Status, Telemetry};
    use crate::input::aggregate::{Inputs, build};
    use crate::input::normalize;
    use crate::input::redis::event::{self, Event};
    use crate::input::redis::merge::{Overlay, answer_time};

    /// The packet the daemon builds from the simulator's state answer as of now.
    fn polled(sim: &Simulation) -> (Inputs, Telemetry) {
        let mut inputs = Inputs::default();
        inputs
            .state
            .record(normalize::state(&sim.state()), Utc::now());
        let packet = build(&inputs, Utc::now(), 50);
        (inputs, packet)
    }

    /// `messages` read as the daemon reads them: the merged events, none dropped.
    fn read(messages: &[Message]) -> Vec<Event> {
        messages
            .iter()
            .filter_map(|m| event::parse(&m.channel, m.payload.to_string().as_bytes()).unwrap())
            .collect()
    }

    /// The packet the daemon pushes after `messages`, merged over the poll in `inputs`.
    fn pushed(inputs: &Inputs, messages: &[Message]) -> Telemetry {
        let mut overlay = Overlay::default();
        for event in read(messages) {
            overlay.apply(event, Utc::now());
        }
        let mut packet = build(inputs, Utc::now(), 50);
        overlay.merge_into(&mut packet, answer_time(inputs), 50);
        packet
    }

    /// Sleeps past the microsecond, so a message made next is newer than the answer before it.
    fn later() {
        std::thread::sleep(Duration::from_micros(20));
    }

    /// What the events can say of the market.
    fn quote(
        market: &crate::hub::packet::Market,
    ) -> (Option<&str>, Option<f64>, Option<f64>, Option<&str>) {
        (
            market.symbol.as_deref(),
            market.price,
            market.alpha,
            market.regime.as_deref(),
        )
    }

    #[test]
    fn what_is_pushed_between_polls_is_what_the_next_poll_says() {
        let mut sim = Simulation::new(11);
        let mut regimes = std::collections::BTreeSet::new();
        for step in 0..500 {
            let (inputs, before) = polled(&sim);
            later();
            let messages = if step % TICKS_PER_STEP == 0 {
                sim.step();
                sim.step_events(Utc::now())
            } else {
                sim.trade();
                vec![sim.tick_event(Utc::now())]
            };
            let merged = pushed(&inputs, &messages);
            let (_, next) = polled(&sim);
            let (merged, next) = (&merged.state, &next.state);
            assert_eq!(quote(&merged.market), quote(&next.market), "step {step}");
            if step % TICKS_PER_STEP == 0 {
                assert_eq!(merged.signal, next.signal, "step {step}");
                assert_eq!(merged.extra["forecast"], next.extra["forecast"]);
            } else {
                assert_ne!(
                    merged.market.price, before.state.market.price,
                    "every tick between steps moves the price shown"
                );
            }
            regimes.insert(next.market.regime.clone().unwrap());
        }
        assert!(
            regimes.len() >= 2,
            "the alpha moved across regimes: {regimes:?}"
        );
    }

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

    /// The keys of an object, sorted.
    fn keys(value: &Value) -> Vec<&str> {
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {value}"))
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        keys
    }

    fn fixture(name: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/redis")
            .join(name);
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    #[test]
    fn every_message_has_the_shape_of_its_channel_s_fixture() {
        let mut sim = Simulation::new(3);
        let mut messages = sim.step_events(Utc::now());
        assert!(sim.act("halt").1.is_some() && sim.act("halt").1.is_none());
        messages.extend(sim.act("resume").1);
        messages.push(events::system_event(true));
        let channels: Vec<&str> = messages.iter().map(|m| m.channel.as_str()).collect();
        assert_eq!(
            channels,
            [
                "market.tick.SPY",
                "physics.forces",
                "strategy.signals",
                "forecast.signals",
                "agent.updates",
                "risk.state",
                "trade.results",
                "system_events",
                "system_events",
            ]
        );
        for message in &messages {
            let file = match message.channel.as_str() {
                "system_events" if message.payload["event"] == "SYSTEM_HALT" => {
                    "system_events-halt.json".to_owned()
                }
                "system_events" => "system_events-resume.json".to_owned(),
                channel => format!("{channel}.json"),
            };
            let (ours, theirs) = (&message.payload, fixture(&file));
            assert_eq!(keys(ours), keys(&theirs), "{file}");
            for nested in ["vectors", "data", "meta"] {
                if theirs.get(nested).is_some() {
                    assert_eq!(
                        keys(&ours[nested]),
                        keys(&theirs[nested]),
                        "{file}: {nested}"
                    );
                }
            }
        }
        let allocator = &messages[4].payload["data"]["strategies"]["physics-momentum"];
        let fixture_strategy =
            &fixture("agent.updates.json")["data"]["strategies"]["oracle-sniper"];
        assert_eq!(keys(allocator), keys(fixture_strategy));
        let trades = messages[6].payload["data"]["recent_trades"]
            .as_array()
            .unwrap();
        assert!(
            !trades.is_empty(),
            "the executor traded while the engine warmed up"
        );
        let fixture_trade = &fixture("trade.results.json")["data"]["recent_trades"][0];
        assert!(trades.iter().all(|t| keys(t) == keys(fixture_trade)));
        assert_eq!(
            messages[5].payload["data"]["current_value"],
            json!(format!("{:.2}", sim.nav))
        );
        // The engine's events are read as the daemon reads them, none dropped.
        let read = read(&messages);
        assert_eq!(
            read.len(),
            6,
            "tick, physics, signal, forecast, resume, halt: {read:?}"
        );
        assert!(matches!(
            &read[4],
            Event::System { status: Status::Active, reason: Some(r), .. } if r == "Manual Resume"
        ));
        assert!(matches!(
            read[5],
            Event::System {
                status: Status::Halt,
                ..
            }
        ));
    }

    #[test]
    fn halt_stops_trading_until_resume() {
        let mut sim = Simulation::new(7);
        let (reply, event) = sim.act("halt");
        assert_eq!(reply, json!({"success": true, "message": "Trading halted"}));
        assert_eq!(event, Some(events::system_event(true)));
        assert_eq!(
            sim.act("halt"),
            (json!({"success": false, "message": "Already halted"}), None)
        );
        for _ in 0..5 {
            sim.step();
        }
        let state = normalize::state(&sim.state()).unwrap().sections;
        assert_eq!(state.status, crate::hub::packet::Status::Halt);
        assert_eq!(state.governance.approved_size, Some(0.0));
        let (reply, event) = sim.act("resume");
        assert_eq!(reply["success"], true);
        assert_eq!(event, Some(events::system_event(false)));
        assert!(!sim.operator_halt);
        assert_eq!(
            sim.act("rebalance").1,
            None,
            "only a halt or resume is an event"
        );
    }
}
