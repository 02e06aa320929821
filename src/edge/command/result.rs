//! What a command comes to: the [`CommandResult`] a caller gets back, made either when the
//! daemon refuses the command itself or from the engine's answer. The service in `mod.rs` makes
//! them, sessions send them as `COMMAND_RESULT` frames and the HTTP routes as bodies; the schema
//! and TypeScript types (`crate::contract`) are generated from this type.

use serde::Serialize;

use super::outcome::Outcome;
use crate::engine::FetchError;
use crate::engine::action::{Action, Answer};

/// The longest command `id` accepted; ids are remembered for the repeat window.
pub const MAX_ID_BYTES: usize = 128;

/// The longest action name read; the longest there is, `export-logs`, has 11 bytes. A longer
/// one is refused before it is looked at, and never copied whole into an answer or a log line.
pub const MAX_ACTION_BYTES: usize = 32;

/// The answer to one command: a `COMMAND_RESULT` frame on WebSocket, the body over HTTP.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema, ts_rs::TS))]
pub struct CommandResult {
    /// Always `COMMAND_RESULT`.
    #[serde(rename = "type")]
    #[cfg_attr(test, ts(rename = "type", type = "\"COMMAND_RESULT\""))]
    #[cfg_attr(test, schemars(with = "ResultType"))]
    pub kind: &'static str,
    /// The command's `id`, as sent; `null` when it had none.
    pub id: Option<String>,
    /// The action, as the daemon names it (or as sent, when it is unknown).
    pub action: String,
    /// Whether the engine did it.
    pub ok: bool,
    /// The engine's HTTP status; `null` when the command was not sent or got no answer.
    pub status: Option<u16>,
    /// The engine's `message`, if it gave one.
    pub message: Option<String>,
    /// Why it did not happen, readable by a person; `null` when `ok`.
    pub error: Option<String>,
    /// The HTTP status an HTTP caller gets.
    #[serde(skip)]
    #[cfg_attr(test, ts(skip))]
    pub http_status: u16,
    /// The `outcome` label in the metrics and the log.
    #[serde(skip)]
    #[cfg_attr(test, ts(skip))]
    pub outcome: Outcome,
}

impl CommandResult {
    /// A command refused before it reached the engine. An action name or `id` longer than
    /// the daemon reads is given back cut to that length, so a refusal is never larger than
    /// what is allowed.
    pub fn refused(
        id: Option<String>,
        action: &str,
        http_status: u16,
        outcome: Outcome,
        why: String,
    ) -> Self {
        Self {
            kind: "COMMAND_RESULT",
            id: id.map(|id| clip(&id, MAX_ID_BYTES).to_owned()),
            action: clip(action, MAX_ACTION_BYTES).to_owned(),
            ok: false,
            status: None,
            message: None,
            error: Some(why),
            http_status,
            outcome,
        }
    }

    /// The engine's answer, or why there was none.
    pub(super) fn answered(
        id: Option<String>,
        action: Action,
        answer: Result<Answer, FetchError>,
    ) -> Self {
        let (ok, status, message, error, http_status, outcome) = match answer {
            Ok(a) if a.success => (true, Some(a.status), a.message, None, 200, Outcome::Ok),
            Ok(a) if (200..300).contains(&a.status) => {
                let why = format!(
                    "the engine refused: {}",
                    a.message.as_deref().unwrap_or("no reason given")
                );
                // Not a 2xx over HTTP: a script checking the status (`curl -f`) must not take a
                // refused halt for a done one.
                (
                    false,
                    Some(a.status),
                    a.message,
                    Some(why),
                    422,
                    Outcome::EngineRefused,
                )
            }
            Ok(a) => {
                let why = format!("the engine answered HTTP {}", a.status);
                (
                    false,
                    Some(a.status),
                    a.message,
                    Some(why),
                    502,
                    Outcome::EngineError,
                )
            }
            Err(err @ FetchError::Timeout(_)) => (
                false,
                None,
                None,
                Some(format!("the engine did not answer: {err}")),
                504,
                Outcome::Timeout,
            ),
            Err(err) => (
                false,
                None,
                None,
                Some(format!("the engine could not be reached: {err}")),
                502,
                Outcome::Unreachable,
            ),
        };
        Self {
            kind: "COMMAND_RESULT",
            id,
            action: action.name().to_owned(),
            ok,
            status,
            message,
            error,
            http_status,
            outcome,
        }
    }
}

/// The longest start of `text` within `max` bytes that ends on a character boundary.
fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let end = (0..=max)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    &text[..end]
}

/// The `type` of a [`CommandResult`], for the schema.
#[cfg(test)]
#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
enum ResultType {
    #[schemars(rename = "COMMAND_RESULT")]
    CommandResult,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_gives_back_no_more_than_the_daemon_reads() {
        let long = "é".repeat(40_000);
        let result =
            CommandResult::refused(Some(long.clone()), &long, 400, Outcome::Invalid, "x".into());
        assert_eq!(result.action, "é".repeat(MAX_ACTION_BYTES / 2));
        assert_eq!(
            result.id.as_deref(),
            Some("é".repeat(MAX_ID_BYTES / 2).as_str())
        );
        let short = CommandResult::refused(
            Some("c-1".into()),
            "halt",
            403,
            Outcome::Forbidden,
            "x".into(),
        );
        assert_eq!(
            (short.action.as_str(), short.id.as_deref()),
            ("halt", Some("c-1"))
        );
    }
}
