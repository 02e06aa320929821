//! Field-level readers: the engine's loose values (numbers as strings, timestamps without a zone,
//! stringified enum words, log lines with a level prefix) read the one way every input reads
//! them. Pure, and forgiving: a value that cannot be read is `None`, never a guess.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;

use crate::hub::packet::{Level, LogEntry, Side, Status, Timestamp};

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
pub fn log_entry(entry: &Value) -> Option<LogEntry> {
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
pub fn number(value: Option<&Value>) -> Option<f64> {
    let n = match value? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    n.is_finite().then_some(n)
}

/// A non-negative whole number (`1200` or `1200.0`).
pub fn count(value: Option<&Value>) -> Option<u64> {
    let n = number(value)?;
    (n >= 0.0 && n.fract() == 0.0 && n <= u64::MAX as f64).then_some(n as u64)
}

/// A string value, as is.
pub fn string(value: Option<&Value>) -> Option<String> {
    value?.as_str().map(str::to_owned)
}

/// "an array", "a string", … for error messages.
pub fn kind(value: &Value) -> &'static str {
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
}
