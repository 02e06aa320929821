//! What a dashboard may send (`docs/PROTOCOL.md` §3): `PING`, and the commands `HALT`, `RESUME`
//! and `COMMAND`; `SUBSCRIBE` and `UNSUBSCRIBE` are reserved. Parsing is separate from the
//! connection so it can be tested and fuzzed alone.

use serde::Deserialize;
use serde_json::Value;

/// A client message the daemon understands the type of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// `{"type": "PING"}` in any case; answered with PONG.
    Ping,
    /// An engine action: `{"type": "HALT"}`, `{"type": "RESUME"}`, or
    /// `{"type": "COMMAND", "action": "…"}`, each with an optional `id`. Answered with one
    /// COMMAND_RESULT, whatever happens; the action is not checked here.
    Command {
        /// The action as named (`""` when a COMMAND names none).
        action: String,
        /// The client's id for it (a string, or a number written as one).
        id: Option<String>,
    },
    /// A message reserved for later (`SUBSCRIBE`, `UNSUBSCRIBE`); ignored for now.
    Reserved(String),
    /// A well-formed message of a type nobody defined; ignored.
    Unknown(String),
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    action: Value,
    #[serde(default)]
    id: Value,
}

/// Reads one text frame; `Err` says why it is not a message, for the debug log.
pub fn parse(text: &str) -> Result<ClientMessage, String> {
    let envelope: Envelope = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let kind = envelope.kind.to_ascii_uppercase();
    let id = match envelope.id {
        Value::String(id) => Some(id),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let command = |action: &str| ClientMessage::Command {
        action: action.to_owned(),
        id: id.clone(),
    };
    Ok(match kind.as_str() {
        "PING" => ClientMessage::Ping,
        "HALT" => command("halt"),
        "RESUME" => command("resume"),
        "COMMAND" => command(envelope.action.as_str().unwrap_or_default()),
        "SUBSCRIBE" | "UNSUBSCRIBE" => ClientMessage::Reserved(kind),
        _ => ClientMessage::Unknown(envelope.kind),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_in_any_case() {
        assert_eq!(parse(r#"{"type":"ping"}"#), Ok(ClientMessage::Ping));
        assert_eq!(
            parse(r#"{"type":"PiNg","extra":1}"#),
            Ok(ClientMessage::Ping)
        );
    }

    #[test]
    fn commands_in_their_three_forms() {
        let command = |action: &str, id: Option<&str>| ClientMessage::Command {
            action: action.into(),
            id: id.map(str::to_owned),
        };
        assert_eq!(parse(r#"{"type":"HALT"}"#), Ok(command("halt", None)));
        assert_eq!(
            parse(r#"{"type":"resume","id":7}"#),
            Ok(command("resume", Some("7")))
        );
        assert_eq!(
            parse(r#"{"type":"COMMAND","action":"rebalance","id":"c-42"}"#),
            Ok(command("rebalance", Some("c-42")))
        );
        // Checked later, and refused with a reason: not a parse error.
        assert_eq!(
            parse(r#"{"type":"COMMAND","action":"liquidate"}"#),
            Ok(command("liquidate", None))
        );
        assert_eq!(parse(r#"{"type":"COMMAND"}"#), Ok(command("", None)));
    }

    #[test]
    fn reserved_unknown_and_malformed() {
        assert_eq!(
            parse(r#"{"type":"subscribe"}"#),
            Ok(ClientMessage::Reserved("SUBSCRIBE".into()))
        );
        assert_eq!(
            parse(r#"{"type":"dance"}"#),
            Ok(ClientMessage::Unknown("dance".into()))
        );
        assert!(parse("PING").is_err());
        assert!(parse(r#"{"type":5}"#).is_err());
        assert!(parse(r#"{"kind":"PING"}"#).is_err());
    }
}
