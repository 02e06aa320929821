//! Turns the engine's loose JSON answers into the packet's typed sections (`docs/PROTOCOL.md` §1–2).
//!
//! Pure functions of the JSON they are given: no I/O, no clock. Field-level oddities (a number
//! sent as a string, an unknown status word) are absorbed here; an answer of the wrong overall
//! shape is an [`ShapeError`], which makes that source stale instead of corrupting the packet.

use serde_json::{Map, Value};

pub(crate) mod fields;

use self::fields::{count, kind, log_entry, number, side, status, string, timestamp};
use crate::hub::packet::{
    AgentStats, Agents, Governance, Market, ModelStats, Models, Portfolio, RESERVED_KEYS, Signal,
    StateSections, Status, Timestamp,
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
