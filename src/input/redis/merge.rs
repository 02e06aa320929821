//! Folds the engine's events into the packet between polls: the [`Overlay`] keeps the latest
//! merged value of each field with its time, and writes those newer than the poll's answer over
//! a packet built by [`crate::input::aggregate::build`].
//!
//! The poll is the authority: a merged value shows only while it is newer than the state answer
//! the packet was built from ([`answer_time`]). Ticks are kept per symbol and only the active
//! symbol's (the packet's `market.symbol`) is shown; physics and ticks both give a price, and the
//! later of the two wins. Events also leave log entries (a physics error, a halt), merged into
//! the packet's logs in time order. Everything is bounded: [`MAX_SYMBOLS`](super::stamped::MAX_SYMBOLS) symbols,
//! [`MAX_EVENT_LOGS`] entries no older than [`LOG_AGE`]. Pure: times are handed in, never read.

use std::collections::VecDeque;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value};

use super::event::Event;
use super::stamped::{PerSymbol, Stamped, forget_older, fresh, keep_latest, later};
use crate::hub::packet::{Level, LogEntry, Signal, Status, Telemetry, Timestamp};
use crate::input::aggregate::Inputs;

/// Log entries the overlay keeps from events; a packet shows at most `packet.max_logs` anyway.
pub const MAX_EVENT_LOGS: usize = 50;

/// How long an event's log entry is kept, counted from when it was received, against the latest
/// time an event was received (so no clock is read).
pub const LOG_AGE: TimeDelta = TimeDelta::minutes(10);

/// The `forecast` section's key in the packet.
const FORECAST: &str = "forecast";

/// The time of the poll answer a packet was built from: the state's own `timestamp` when it gave
/// one, else when that answer arrived. Before any state answer, the earliest time there is, so
/// every merged value is newer.
pub fn answer_time(inputs: &Inputs) -> DateTime<Utc> {
    let state = &inputs.state;
    state
        .value
        .as_ref()
        .and_then(|engine| engine.timestamp)
        .map(|t| t.0)
        .or(state.updated)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The engine's name for the regime an alpha puts the market in, in the state's own words.
fn regime(alpha: f64) -> &'static str {
    if alpha > 2.0 {
        "Gaussian"
    } else if alpha > 1.5 {
        "Lévy Stable"
    } else {
        "Critical"
    }
}

/// A log entry an event left, with the symbol it is about (shown only while that symbol is the
/// active one) and when it arrived (for [`LOG_AGE`]).
#[derive(Debug, Clone)]
struct EventLog {
    entry: LogEntry,
    symbol: Option<String>,
    at: DateTime<Utc>,
    received: DateTime<Utc>,
}

/// The events merged so far: the latest value of each field with its time, the latest tick and
/// physics per symbol, and the log entries events left. Fold events in with [`Overlay::apply`],
/// write them over each packet with [`Overlay::merge_into`].
#[derive(Debug, Clone, Default)]
pub struct Overlay {
    ticks: PerSymbol<f64>,
    alphas: PerSymbol<f64>,
    physics_prices: PerSymbol<f64>,
    signal: Option<Stamped<Signal>>,
    forecast: Option<Stamped<Map<String, Value>>>,
    status: Option<Stamped<Status>>,
    /// Oldest first, by `at`.
    logs: VecDeque<EventLog>,
    latest_received: Option<DateTime<Utc>>,
    arrivals: u64,
}

impl Overlay {
    /// Folds one event in. `received` is when it arrived: the event's time when it has none of
    /// its own, and the clock that ages log entries out. A value older than the one held for the
    /// same field is ignored.
    pub fn apply(&mut self, event: Event, received: DateTime<Utc>) {
        self.arrivals += 1;
        let seq = self.arrivals;
        let latest = self.latest_received.map_or(received, |l| l.max(received));
        self.latest_received = Some(latest);
        let stamp = |at: Option<Timestamp>| at.map_or(received, |t| t.0);
        match event {
            Event::Tick { symbol, price, at } => {
                let at = stamp(at);
                self.ticks.put(
                    Some(symbol),
                    Stamped {
                        value: price,
                        at,
                        seq,
                    },
                );
            }
            Event::Physics {
                symbol,
                alpha,
                price,
                at,
            } => {
                let at = stamp(at);
                if let Some(value) = alpha {
                    self.alphas.put(symbol.clone(), Stamped { value, at, seq });
                }
                if let Some(value) = price {
                    self.physics_prices.put(symbol, Stamped { value, at, seq });
                }
            }
            Event::PhysicsError { symbol, error, at } => self.log(
                Level::Warning,
                format!("physics.forces: {error}"),
                symbol,
                stamp(at),
                received,
            ),
            Event::Signal {
                side,
                confidence,
                reasoning,
                at,
            } => {
                let value = Signal {
                    side,
                    confidence,
                    reasoning,
                };
                keep_latest(
                    &mut self.signal,
                    Stamped {
                        value,
                        at: stamp(at),
                        seq,
                    },
                );
            }
            Event::Forecast { section, at } => {
                let next = Stamped {
                    value: section,
                    at: stamp(at),
                    seq,
                };
                keep_latest(&mut self.forecast, next);
            }
            Event::System { status, reason, at } => {
                let at = stamp(at);
                keep_latest(
                    &mut self.status,
                    Stamped {
                        value: status,
                        at,
                        seq,
                    },
                );
                let what = match status {
                    Status::Halt => "System halt",
                    _ => "System resume",
                };
                let message = match reason {
                    Some(reason) => format!("{what}: {reason}"),
                    None => what.to_owned(),
                };
                self.log(Level::Info, message, None, at, received);
            }
        }
        self.forget_old_logs(latest);
    }

    fn log(
        &mut self,
        level: Level,
        message: String,
        symbol: Option<String>,
        at: DateTime<Utc>,
        received: DateTime<Utc>,
    ) {
        let entry = LogEntry {
            level,
            message,
            timestamp: Some(Timestamp(at)),
        };
        // Kept in time order; an entry of equal time goes after those already held.
        let index = self.logs.partition_point(|held| held.at <= at);
        self.logs.insert(
            index,
            EventLog {
                entry,
                symbol,
                at,
                received,
            },
        );
    }

    fn forget_old_logs(&mut self, latest_received: DateTime<Utc>) {
        self.logs
            .retain(|held| latest_received - held.received <= LOG_AGE);
        while self.logs.len() > MAX_EVENT_LOGS {
            self.logs.pop_front();
        }
    }

    /// A poll answered at `answer_time`: the merged values not newer than it are forgotten, since
    /// the poll is the authority on them. Log entries stay: they are events, not values.
    pub fn polled(&mut self, answer_time: DateTime<Utc>) {
        self.ticks.forget_older(answer_time);
        self.alphas.forget_older(answer_time);
        self.physics_prices.forget_older(answer_time);
        forget_older(&mut self.signal, answer_time);
        forget_older(&mut self.forecast, answer_time);
        forget_older(&mut self.status, answer_time);
    }

    /// Writes the merged values newer than `answer_time` over `packet`, which
    /// [`crate::input::aggregate::build`] made from the poll answered at `answer_time`
    /// ([`answer_time`]). The event log entries are merged into `packet.state.logs` in time order
    /// (an engine entry without a timestamp counts as at `answer_time`; the engine's own order is
    /// kept), keeping the newest `max_logs`, newest last.
    ///
    /// The active symbol is the packet's `market.symbol`; when the poll named none, the most
    /// recent tick's symbol names it. Ticks, physics and physics warnings of other symbols are
    /// not shown; physics that names a symbol is shown only once a symbol is active to match it.
    pub fn merge_into(&self, packet: &mut Telemetry, answer_time: DateTime<Utc>, max_logs: usize) {
        let state = &mut packet.state;
        let market = &mut state.market;
        if market.symbol.is_none()
            && let Some((symbol, _)) = self.ticks.newest(answer_time)
        {
            market.symbol = Some(symbol.to_owned());
        }
        let active = market.symbol.as_deref();
        let tick = active
            .and_then(|symbol| self.ticks.named.get(symbol))
            .filter(|tick| tick.newer_than(answer_time));
        if let Some(price) = later(tick, self.physics_prices.for_symbol(active, answer_time)) {
            market.price = Some(price.value);
        }
        if let Some(alpha) = self.alphas.for_symbol(active, answer_time) {
            market.alpha = Some(alpha.value);
            market.regime = Some(regime(alpha.value).to_owned());
        }
        if let Some(signal) = fresh(&self.signal, answer_time) {
            state.signal = signal.value.clone();
        }
        if let Some(forecast) = fresh(&self.forecast, answer_time) {
            state
                .extra
                .insert(FORECAST.to_owned(), Value::Object(forecast.value.clone()));
        }
        if let Some(status) = fresh(&self.status, answer_time) {
            state.status = status.value;
        }

        let active = state.market.symbol.as_deref();
        let mut events = self
            .logs
            .iter()
            .filter(|held| held.symbol.is_none() || held.symbol.as_deref() == active)
            .peekable();
        let engine = std::mem::take(&mut state.logs);
        let mut logs = Vec::with_capacity(engine.len() + self.logs.len());
        for entry in engine {
            let at = entry.timestamp.map_or(answer_time, |t| t.0);
            while let Some(held) = events.next_if(|held| held.at < at) {
                logs.push(held.entry.clone());
            }
            logs.push(entry);
        }
        logs.extend(events.map(|held| held.entry.clone()));
        let first_kept = logs.len().saturating_sub(max_logs);
        logs.drain(..first_kept);
        state.logs = logs;
    }

    /// Whether nothing has been merged (or everything merged was overtaken by the poll and no
    /// log entry is left).
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.ticks.len() == 0
            && self.alphas.len() == 0
            && self.physics_prices.len() == 0
            && self.signal.is_none()
            && self.forecast.is_none()
            && self.status.is_none()
            && self.logs.is_empty()
    }
}

#[cfg(test)]
#[path = "merge_tests.rs"]
mod tests;
