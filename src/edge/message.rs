//! What a dashboard may send (`docs/PROTOCOL.md` §3): today only `PING`; `SUBSCRIBE` and `HALT` are
//! reserved. Parsing is separate from the connection so it can be tested and fuzzed alone.

use serde::Deserialize;

/// A client message the daemon understands the type of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// `{"type": "PING"}` in any case; answered with PONG.
    Ping,
    /// A command reserved for later (`SUBSCRIBE`, `HALT`); ignored for now.
    Reserved(String),
    /// A well-formed message of a type nobody defined; ignored.
    Unknown(String),
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
}

/// Reads one text frame; `Err` says why it is not a message, for the debug log.
pub fn parse(text: &str) -> Result<ClientMessage, String> {
    let envelope: Envelope = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let kind = envelope.kind.to_ascii_uppercase();
    Ok(match kind.as_str() {
        "PING" => ClientMessage::Ping,
        "SUBSCRIBE" | "HALT" => ClientMessage::Reserved(kind),
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
    fn reserved_unknown_and_malformed() {
        assert_eq!(
            parse(r#"{"type":"halt"}"#),
            Ok(ClientMessage::Reserved("HALT".into()))
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
