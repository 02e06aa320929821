//! Turns the engine's loose JSON answers into the packet's typed sections (`docs/PROTOCOL.md` §1–2).
//!
//! Pure functions of the JSON they are given: no I/O, no clock. Field-level oddities (a number
//! sent as a string, an unknown status word) are absorbed here; an answer of the wrong overall
//! shape is an [`ShapeError`], which makes that source stale instead of corrupting the packet.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use crate::hub::packet::{
    AgentStats, Agents, Governance, Level, LogEntry, Market, ModelStats, Models, Portfolio,
    RESERVED_KEYS, Side, Signal, StateSections, Status, Timestamp,
};

/// An engine answer whose overall shape cannot be read; the message is shown in `sources`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShapeError(pub String);

/// The state endpoint's answer, normalised.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineState {
    /// The engine's own snapshot time, when it gave a readable one.
    pub timestamp: Option<Timestamp>,
    /// Everything else the packet takes from the state.
    pub sections: StateSections,
}

/// The offline notice's message key: read as "no state", not passed through as a section.
const OFFLINE_KEY: &str = "error";

/// Reads the state endpoint's answer. The offline notice `{"error": …, "status": "offline"}` is a
/// valid answer: status INITIALIZING and empty sections.
pub fn state(answer: &Value) -> Result<EngineState, ShapeError> {
    let obj = object(answer)?;
    let section = |key: &str| obj.get(key).and_then(Value::as_object);
    let num = |sec: Option<&Map<String, Value>>, key: &str| sec.and_then(|s| number(s.get(key)));
    let text = |sec: Option<&Map<String, Value>>, key: &str| sec.and_then(|s| string(s.get(key)));

    let market = section("market");
    let portfolio = section("portfolio");
    let signal = section("signal");
    let governance = section("governance");
    let sections = StateSections {
        status: obj
            .get("status")
            .and_then(Value::as_str)
            .map_or(Status::Initializing, status),
        market: Market {
            symbol: text(market, "symbol"),
            price: num(market, "price"),
            alpha: num(market, "alpha"),
            regime: text(market, "regime"),
            velocity: num(market, "velocity"),
            acceleration: num(market, "acceleration"),
        },
        portfolio: Portfolio {
            nav: num(portfolio, "nav"),
            cash: num(portfolio, "cash"),
            daily_pnl: num(portfolio, "daily_pnl"),
            max_drawdown: num(portfolio, "max_drawdown"),
        },
        signal: Signal {
            side: signal
                .and_then(|s| s.get("side"))
                .and_then(Value::as_str)
                .and_then(side),
            confidence: num(signal, "confidence"),
            reasoning: text(signal, "reasoning"),
        },
        governance: Governance {
            approved_size: num(governance, "approved_size"),
        },
        logs: obj
            .get("logs")
            .and_then(Value::as_array)
            .map(|logs| logs.iter().filter_map(log_entry).collect())
            .unwrap_or_default(),
        extra: obj
            .iter()
            .filter(|(k, _)| *k != OFFLINE_KEY && !RESERVED_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    Ok(EngineState {
        timestamp: obj.get("timestamp").and_then(timestamp),
        sections,
    })
}

/// Reads the agents endpoint's answer in any of its three shapes.
pub fn agents(answer: &Value) -> Result<Agents, ShapeError> {
    let obj = object(answer)?;
    if let Some(items) = list_shape(obj, "agents") {
        return named_items(items, |item| AgentStats {
            latency_ms: number(item.get("latency_ms")),
            success_rate: number(item.get("success_rate")),
            invocations: None,
        });
    }
    obj.iter()
        .map(|(name, entry)| {
            let stats = match entry {
                Value::Object(summary) => AgentStats {
                    latency_ms: number(summary.get("latency_ms")),
                    success_rate: number(summary.get("success_rate")),
                    invocations: count(summary.get("invocations")),
                },
                Value::Array(records) => reduce_agent_records(records),
                other => {
                    return Err(ShapeError(format!(
                        "entry {name:?}: expected a summary object or a list of call records, got {}",
                        kind(other)
                    )));
                }
            };
            Ok((name.clone(), stats))
        })
        .collect()
}

/// Reads the models endpoint's answer in any of its three shapes.
pub fn models(answer: &Value) -> Result<Models, ShapeError> {
    let obj = object(answer)?;
    if let Some(items) = list_shape(obj, "models") {
        return named_items(items, |item| ModelStats {
            latency_ms: number(item.get("latency_ms")),
            invocations: count(item.get("predictions")),
            cache_hit_rate: None,
        });
    }
    obj.iter()
        .map(|(name, entry)| {
            let Value::Object(model) = entry else {
                return Err(ShapeError(format!(
                    "entry {name:?}: expected a summary object, got {}",
                    kind(entry)
                )));
            };
            let latency = number(model.get("latency_ms")).or(number(model.get("avg_latency_ms")));
            let stats = match model.get("invocations") {
                Some(Value::Array(records)) => ModelStats {
                    latency_ms: latency.or_else(|| mean_latency(records)),
                    invocations: Some(records.len() as u64),
                    cache_hit_rate: number(model.get("cache_hit_rate")),
                },
                invocations => ModelStats {
                    latency_ms: latency,
                    invocations: count(invocations),
                    cache_hit_rate: number(model.get("cache_hit_rate")),
                },
            };
            Ok((name.clone(), stats))
        })
        .collect()
}

/// Maps an engine status word (`ACTIVE`, `TradingStatus.HALT`, `offline`, …) onto the three statuses.
pub fn status(word: &str) -> Status {
    match enum_word(word).as_str() {
        "active" | "running" | "trading" | "live" | "online" | "ok" | "started" | "enabled" => {
            Status::Active
        }
        "halt" | "halted" | "stopped" | "stop" | "paused" | "suspended" | "killed"
        | "kill_switch" | "emergency_stop" | "disabled" => Status::Halt,
        _ => Status::Initializing,
    }
}

/// Maps an engine side word; an unknown word is `None` rather than a guess.
pub fn side(word: &str) -> Option<Side> {
    match enum_word(word).as_str() {
        "buy" | "long" => Some(Side::Buy),
        "sell" | "short" => Some(Side::Sell),
        "flat" | "hold" | "neutral" | "none" | "wait" => Some(Side::Flat),
        _ => None,
    }
}

/// Maps a log level word; an unknown word is INFO.
pub fn level(word: &str) -> Level {
    level_word(word).unwrap_or(Level::Info)
}

fn level_word(word: &str) -> Option<Level> {
    match word.trim().to_ascii_lowercase().as_str() {
        "info" | "debug" | "trace" | "notice" => Some(Level::Info),
        "warn" | "warning" => Some(Level::Warning),
        "error" | "err" | "critical" | "fatal" => Some(Level::Error),
        _ => None,
    }
}

/// Reads a timestamp: RFC 3339 with any offset, or without a zone (read as UTC).
pub fn timestamp(value: &Value) -> Option<Timestamp> {
    let text = value.as_str()?.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(Timestamp(t.with_timezone(&Utc)));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|fmt| NaiveDateTime::parse_from_str(text, fmt).ok())
        .map(|t| Timestamp(t.and_utc()))
}

/// Reads one log entry: a string with an optional level prefix, or a `{level, message, timestamp}`
/// object. Anything else is dropped.
fn log_entry(entry: &Value) -> Option<LogEntry> {
    match entry {
        Value::String(line) => {
            let (level, message) = split_level_prefix(line);
            Some(LogEntry {
                level,
                message: message.to_owned(),
                timestamp: None,
            })
        }
        Value::Object(obj) => Some(LogEntry {
            level: obj
                .get("level")
                .and_then(Value::as_str)
                .map_or(Level::Info, level),
            message: obj.get("message")?.as_str()?.to_owned(),
            timestamp: obj.get("timestamp").and_then(timestamp),
        }),
        _ => None,
    }
}

/// Splits `WARNING: text` or `[ERROR] text` into its level and the text; other lines are INFO.
fn split_level_prefix(line: &str) -> (Level, &str) {
    let prefixed = if let Some(rest) = line.strip_prefix('[') {
        rest.split_once(']')
    } else {
        line.split_once(':')
    };
    match prefixed.and_then(|(word, rest)| Some((level_word(word)?, rest))) {
        Some((level, rest)) => (level, rest.trim_start()),
        None => (Level::Info, line),
    }
}

/// `TradingStatus.HALT` → `halt`, `Emergency-Stop` → `emergency_stop`.
fn enum_word(word: &str) -> String {
    let last = word.rsplit('.').next().unwrap_or(word);
    last.trim().to_ascii_lowercase().replace(['-', ' '], "_")
}

/// A number, or a string holding one; non-finite values are not numbers.
fn number(value: Option<&Value>) -> Option<f64> {
    let n = match value? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    n.is_finite().then_some(n)
}

/// A non-negative whole number (`1200` or `1200.0`).
fn count(value: Option<&Value>) -> Option<u64> {
    let n = number(value)?;
    (n >= 0.0 && n.fract() == 0.0 && n <= u64::MAX as f64).then_some(n as u64)
}

fn string(value: Option<&Value>) -> Option<String> {
    value?.as_str().map(str::to_owned)
}

fn object(answer: &Value) -> Result<&Map<String, Value>, ShapeError> {
    answer
        .as_object()
        .ok_or_else(|| ShapeError(format!("expected a JSON object, got {}", kind(answer))))
}

/// `{"agents": [...]}`: the list shape, recognised by being the answer's only key.
fn list_shape<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Vec<Value>> {
    match obj.get(key) {
        Some(Value::Array(items)) if obj.len() == 1 => Some(items),
        _ => None,
    }
}

/// Reads a list of `{name, …}` items into a map by name.
fn named_items<T>(
    items: &[Value],
    read: impl Fn(&Map<String, Value>) -> T,
) -> Result<std::collections::BTreeMap<String, T>, ShapeError> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let item = item.as_object().ok_or_else(|| {
                ShapeError(format!("item {i}: expected an object, got {}", kind(item)))
            })?;
            let name = item
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| ShapeError(format!("item {i} has no \"name\"")))?;
            Ok((name.to_owned(), read(item)))
        })
        .collect()
}

/// Raw call records → mean latency, share of successes, count.
fn reduce_agent_records(records: &[Value]) -> AgentStats {
    let successes = records
        .iter()
        .filter(|r| r.get("success").and_then(Value::as_bool) == Some(true))
        .count();
    AgentStats {
        latency_ms: mean_latency(records),
        success_rate: (!records.is_empty()).then(|| successes as f64 / records.len() as f64),
        invocations: Some(records.len() as u64),
    }
}

fn mean_latency(records: &[Value]) -> Option<f64> {
    let latencies: Vec<f64> = records
        .iter()
        .filter_map(|r| number(r.get("latency_ms")))
        .collect();
    (!latencies.is_empty()).then(|| latencies.iter().sum::<f64>() / latencies.len() as f64)
}

/// "an array", "a string", … for error messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_words_map_onto_three() {
        for (word, want) in [
            ("ACTIVE", Status::Active),
            ("TradingStatus.HALT", Status::Halt),
            ("trading_status.halted", Status::Halt),
            ("Emergency-Stop", Status::Halt),
            ("offline", Status::Initializing),
            ("banana", Status::Initializing),
        ] {
            assert_eq!(status(word), want, "{word}");
        }
    }

    #[test]
    fn side_words_map_or_are_null() {
        assert_eq!(side("HOLD"), Some(Side::Flat));
        assert_eq!(side("Side.LONG"), Some(Side::Buy));
        assert_eq!(side(" sell "), Some(Side::Sell));
        assert_eq!(side("sideways"), None);
    }

    #[test]
    fn log_prefixes_are_levels_but_prose_is_not() {
        let cases = [
            ("WARNING: latency high", Level::Warning, "latency high"),
            ("[ERROR] FinBERT failed", Level::Error, "FinBERT failed"),
            ("critical:disk", Level::Error, "disk"),
            ("DEBUG: x", Level::Info, "x"),
            ("Physics: Gaussian", Level::Info, "Physics: Gaussian"),
            ("Risk note: warn: x", Level::Info, "Risk note: warn: x"),
            ("[note] y", Level::Info, "[note] y"),
        ];
        for (line, lvl, msg) in cases {
            assert_eq!(split_level_prefix(line), (lvl, msg), "{line}");
        }
    }

    #[test]
    fn timestamps_become_utc() {
        let ts = |s: &str| timestamp(&json!(s)).map(|t| serde_json::to_value(t).unwrap());
        assert_eq!(
            ts("2025-12-21T11:59:59.812345"),
            Some(json!("2025-12-21T11:59:59.812Z"))
        );
        assert_eq!(
            ts("2025-12-21T14:00:00+02:00"),
            Some(json!("2025-12-21T12:00:00.000Z"))
        );
        assert_eq!(
            ts("2025-12-21 12:00:00"),
            Some(json!("2025-12-21T12:00:00.000Z"))
        );
        assert_eq!(ts("yesterday"), None);
    }

    #[test]
    fn numbers_keep_zeros_and_refuse_junk() {
        assert_eq!(number(Some(&json!(0.0))), Some(0.0));
        assert_eq!(number(Some(&json!(" 450.5 "))), Some(450.5));
        assert_eq!(number(Some(&json!("NaN"))), None);
        assert_eq!(number(Some(&json!("inf"))), None);
        assert_eq!(number(Some(&json!(true))), None);
        assert_eq!(count(Some(&json!(1200.0))), Some(1200));
        assert_eq!(count(Some(&json!(-1))), None);
        assert_eq!(count(Some(&json!(1.5))), None);
    }

    #[test]
    fn wrong_shapes_say_what_they_got() {
        assert_eq!(
            state(&json!([1])).unwrap_err().0,
            "expected a JSON object, got an array"
        );
        assert_eq!(
            agents(&json!({"a": 3})).unwrap_err().0,
            r#"entry "a": expected a summary object or a list of call records, got a number"#
        );
        assert_eq!(
            models(&json!({"models": [{"latency_ms": 1}]}))
                .unwrap_err()
                .0,
            r#"item 0 has no "name""#
        );
    }
}
