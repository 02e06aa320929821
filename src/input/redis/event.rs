//! Reads one Redis message into the [`Event`] it means for the packet, or says why it was dropped.
//!
//! Only the merged channels ([`MERGED`]) are read; every other channel is relayed elsewhere and
//! is `Ok(None)` here. Values are read the way the poll reads the engine's answers (the readers of
//! [`crate::input::normalize::fields`]): numbers may be strings, timestamps may lack a zone,
//! unknown words are `None`. A message that is not JSON, or not the shape its channel needs, is a
//! [`Dropped`] with a short reason, never a panic. Pure: no I/O, no clock.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::hub::packet::{Side, Status, Timestamp};
use crate::input::normalize::fields::{number, side, string, timestamp};

/// What the subscriber tells the assembler.
#[derive(Debug)]
pub enum Heard {
    /// One engine event, and when it arrived (for events that carry no time of their own).
    Event(Event, DateTime<Utc>),
    /// The subscription came up or went down: `sources.redis` changed, worth a packet now.
    Health,
}

/// The channel patterns whose messages are merged into the packet, as given to `PSUBSCRIBE`.
pub const MERGED: &[&str] = &[
    "market.tick.*",
    "physics.forces",
    "strategy.signals",
    "forecast.signals",
    "system_events",
];

/// The prefix of the per-symbol tick channels (`market.tick.SPY`).
const TICK_PREFIX: &str = "market.tick.";

/// What one merged message says, read and normalised; `at` is the message's own time when it
/// gave a readable one (the overlay uses the time it was received otherwise).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `market.tick.<SYMBOL>`: the last trade price of a symbol.
    Tick {
        /// The symbol the channel names (the message's `symbol` when the channel has none).
        symbol: String,
        /// The trade price.
        price: f64,
        /// The message's `timestamp`.
        at: Option<Timestamp>,
    },
    /// `physics.forces`: the engine's physics vector for a symbol.
    Physics {
        /// The symbol the vector is about, when it names one.
        symbol: Option<String>,
        /// `alpha_coefficient`: the tail index that also gives the regime.
        alpha: Option<f64>,
        /// The price the vector was computed at.
        price: Option<f64>,
        /// The message's `timestamp` (the vector's when the envelope has none).
        at: Option<Timestamp>,
    },
    /// `physics.forces` after a failed calculation: the all-zero placeholder, shown only as a
    /// warning.
    PhysicsError {
        /// The symbol the failed vector is about, when it names one.
        symbol: Option<String>,
        /// The engine's error message.
        error: String,
        /// The message's `timestamp` (the vector's when the envelope has none).
        at: Option<Timestamp>,
    },
    /// `strategy.signals`: the strategy's current signal, which replaces the packet's as a whole.
    Signal {
        /// `side`, mapped like the state's (`HOLD` is FLAT).
        side: Option<Side>,
        /// `strength`.
        confidence: Option<f64>,
        /// `meta.reasoning`, or the compact JSON of `meta` when it has none.
        reasoning: Option<String>,
        /// The message's `timestamp`.
        at: Option<Timestamp>,
    },
    /// `forecast.signals`: the `forecast` section of the packet,
    /// `{p10, p50, p90, horizon, confidence, is_synthetic, timestamp}`.
    Forecast {
        /// Exactly those seven keys, each a number, a boolean, a timestamp string or `null`.
        section: Map<String, Value>,
        /// The message's `timestamp`.
        at: Option<Timestamp>,
    },
    /// `system_events`: the engine halted or resumed.
    System {
        /// HALT or ACTIVE.
        status: Status,
        /// Why, as the engine said it (`Manual Kill Switch`).
        reason: Option<String>,
        /// The message's `timestamp`, when it has one (the engine's usually do not).
        at: Option<Timestamp>,
    },
}

/// Why a message of a merged channel was dropped: a short, fixed reason (`not JSON`, `no price`),
/// fit for a metric label and a debug line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Dropped(pub &'static str);

impl Dropped {
    /// The reason as a metrics label: `not_json`, or `shape` for JSON that does not fit.
    pub fn label(self) -> &'static str {
        if self.0 == "not JSON" {
            "not_json"
        } else {
            "shape"
        }
    }
}

/// Whether messages of `channel` are merged into the packet (and so read by [`parse`]).
#[cfg(test)]
pub fn is_merged(channel: &str) -> bool {
    Channel::of(channel).is_some()
}

/// Reads one message of `channel`. `Ok(None)`: a channel that is not merged, or a message that
/// merges nothing (a system event other than halt or resume). `Err`: a message to count and drop.
pub fn parse(channel: &str, payload: &[u8]) -> Result<Option<Event>, Dropped> {
    let Some(channel) = Channel::of(channel) else {
        return Ok(None);
    };
    let value: Value = serde_json::from_slice(payload).map_err(|_| Dropped("not JSON"))?;
    let Value::Object(message) = &value else {
        return Err(Dropped("expected an object"));
    };
    match channel {
        Channel::Tick(symbol) => tick(symbol, message),
        Channel::Physics => physics(message),
        Channel::Signal => signal(message),
        Channel::Forecast => forecast(message),
        Channel::System => system(message),
    }
}

/// The merged channels, recognised by name.
#[derive(Debug, Clone, Copy)]
enum Channel<'a> {
    /// A tick, with what the channel name says after `market.tick.`.
    Tick(&'a str),
    Physics,
    Signal,
    Forecast,
    System,
}

impl<'a> Channel<'a> {
    fn of(name: &'a str) -> Option<Self> {
        if let Some(symbol) = name.strip_prefix(TICK_PREFIX) {
            return Some(Channel::Tick(symbol));
        }
        match name {
            "physics.forces" => Some(Channel::Physics),
            "strategy.signals" => Some(Channel::Signal),
            "forecast.signals" => Some(Channel::Forecast),
            "system_events" => Some(Channel::System),
            _ => None,
        }
    }
}

/// A symbol: a string with something in it, trimmed.
fn symbol(value: Option<&Value>) -> Option<String> {
    named(value?.as_str()?)
}

fn named(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn own_time(message: &Map<String, Value>) -> Option<Timestamp> {
    message.get("timestamp").and_then(timestamp)
}

fn tick(channel_symbol: &str, message: &Map<String, Value>) -> Result<Option<Event>, Dropped> {
    let symbol = named(channel_symbol)
        .or_else(|| symbol(message.get("symbol")))
        .ok_or(Dropped("no symbol"))?;
    let price = number(message.get("price")).ok_or(Dropped("no price"))?;
    Ok(Some(Event::Tick {
        symbol,
        price,
        at: own_time(message),
    }))
}

fn physics(message: &Map<String, Value>) -> Result<Option<Event>, Dropped> {
    // Current publishers nest the figures under `vectors`; an older one sends them flat.
    let vectors = match message.get("vectors") {
        None | Some(Value::Null) => message,
        Some(Value::Object(vectors)) => vectors,
        Some(_) => return Err(Dropped("vectors is not an object")),
    };
    let symbol = symbol(message.get("symbol")).or_else(|| symbol(vectors.get("symbol")));
    let at = own_time(message).or_else(|| own_time(vectors));
    // After a failed calculation the engine sends a neutral all-zero vector with an `error`.
    match message.get("error") {
        None | Some(Value::Null) => {}
        Some(error) => {
            let error = match error {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            return Ok(Some(Event::PhysicsError { symbol, error, at }));
        }
    }
    let alpha = number(vectors.get("alpha_coefficient"));
    let price = number(vectors.get("price"));
    if alpha.is_none() && price.is_none() {
        return Err(Dropped("no alpha or price"));
    }
    Ok(Some(Event::Physics {
        symbol,
        alpha,
        price,
        at,
    }))
}

fn signal(message: &Map<String, Value>) -> Result<Option<Event>, Dropped> {
    let reasoning = match message.get("meta") {
        None | Some(Value::Null) => None,
        Some(Value::Object(meta)) => {
            Some(string(meta.get("reasoning")).unwrap_or_else(|| compact(meta)))
        }
        Some(Value::String(text)) => Some(text.clone()),
        Some(other) => Some(other.to_string()),
    };
    let side = message.get("side").and_then(Value::as_str).and_then(side);
    let confidence = number(message.get("strength"));
    if side.is_none() && confidence.is_none() && reasoning.is_none() {
        return Err(Dropped("no side, strength or meta"));
    }
    Ok(Some(Event::Signal {
        side,
        confidence,
        reasoning,
        at: own_time(message),
    }))
}

/// `meta` as one line of JSON, for a signal whose meta has no words of its own.
fn compact(meta: &Map<String, Value>) -> String {
    Value::Object(meta.clone()).to_string()
}

/// The figures of a forecast; at least one of the three quantiles must be readable.
const QUANTILES: [&str; 3] = ["p10", "p50", "p90"];

fn forecast(message: &Map<String, Value>) -> Result<Option<Event>, Dropped> {
    let mut section = Map::new();
    for key in QUANTILES.into_iter().chain(["horizon", "confidence"]) {
        section.insert(key.to_owned(), figure(message.get(key)));
    }
    if QUANTILES.iter().all(|key| section[*key].is_null()) {
        return Err(Dropped("no p10, p50 or p90"));
    }
    section.insert("is_synthetic".to_owned(), flag(message.get("is_synthetic")));
    let at = own_time(message);
    section.insert(
        "timestamp".to_owned(),
        at.map_or(Value::Null, |t| serde_json::to_value(t).unwrap_or_default()),
    );
    Ok(Some(Event::Forecast { section, at }))
}

/// A number as JSON: a JSON number as written (`10` stays whole), a string holding one as that
/// number, anything else `null`.
fn figure(value: Option<&Value>) -> Value {
    match value {
        Some(Value::Number(n)) => Value::Number(n.clone()),
        other => number(other).map_or(Value::Null, Value::from),
    }
}

/// A boolean, or the string `true` / `false` in any case; anything else `null`.
fn flag(value: Option<&Value>) -> Value {
    match value {
        Some(Value::Bool(b)) => Value::Bool(*b),
        Some(Value::String(text)) => match text.trim().to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::Null,
        },
        _ => Value::Null,
    }
}

fn system(message: &Map<String, Value>) -> Result<Option<Event>, Dropped> {
    let name = message
        .get("event")
        .and_then(Value::as_str)
        .ok_or(Dropped("no event"))?;
    let status = match name.trim().to_ascii_uppercase().as_str() {
        "SYSTEM_HALT" => Status::Halt,
        "SYSTEM_RESUME" => Status::Active,
        _ => return Ok(None),
    };
    let reason = message
        .get("data")
        .and_then(Value::as_object)
        .and_then(|data| string(data.get("reason")))
        .or_else(|| string(message.get("reason")));
    Ok(Some(Event::System {
        status,
        reason,
        at: own_time(message),
    }))
}

#[cfg(test)]
#[path = "event_tests.rs"]
mod tests;
