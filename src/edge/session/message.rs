//! What a dashboard may send (`docs/PROTOCOL.md` §3, §9, §10): `PING`, `SUBSCRIBE` and
//! `UNSUBSCRIBE` for relay channels, and the commands `HALT`, `RESUME` and `COMMAND`. Types are
//! read in any case; a reply's type follows the request's (`ping` → `pong`). Parsing is
//! separate from the connection so it can be tested and fuzzed alone.

use serde::Deserialize;
use serde_json::Value;

/// A client message the daemon understands the type of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// `{"type": "PING"}` in any case; answered with PONG (`pong` to `ping`).
    Ping {
        /// The request was lowercase, so is the reply.
        lowercase: bool,
    },
    /// `{"type": "SUBSCRIBE", "channels": [...]}`, or the older `{"type": "SUBSCRIBE",
    /// "symbol": "AAPL"}` for `market.tick.AAPL`; with `"since"` when resuming.
    Subscribe(Subscribe),
    /// `{"type": "UNSUBSCRIBE", "channels": [...]}`.
    Unsubscribe {
        /// The channels (or patterns) to leave.
        channels: Vec<String>,
        /// The request was lowercase, so is the reply.
        lowercase: bool,
    },
    /// An engine action: `{"type": "HALT"}`, `{"type": "RESUME"}`, or
    /// `{"type": "COMMAND", "action": "…"}`, each with an optional `id`. Answered with one
    /// COMMAND_RESULT, whatever happens; the action is not checked here.
    Command {
        /// The action as named (`""` when a COMMAND names none).
        action: String,
        /// The client's id for it (a string, or a number written as one).
        id: Option<String>,
    },
    /// A well-formed message of a type nobody defined; ignored.
    Unknown(String),
}

/// A `SUBSCRIBE`, as asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscribe {
    /// The channels (or patterns) asked for, as sent; entries that are not strings are `""`.
    pub channels: Vec<String>,
    /// `"since": {"trade.results": 16}`: the last offset the client got of each channel, for
    /// the kept messages after it; entries that are not whole numbers are left out.
    pub since: Vec<(String, u64)>,
    /// `"epoch"`: the epoch those offsets belong to (as in the packets the client got).
    pub epoch: Option<String>,
    /// The request was lowercase, so is the reply.
    pub lowercase: bool,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    action: Value,
    #[serde(default)]
    id: Value,
    #[serde(default)]
    channels: Value,
    #[serde(default)]
    channel: Value,
    #[serde(default)]
    symbol: Value,
    #[serde(default)]
    since: Value,
    #[serde(default)]
    epoch: Value,
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
    let lowercase = envelope.kind == envelope.kind.to_ascii_lowercase();
    let channels = match (&envelope.channels, &envelope.channel, &envelope.symbol) {
        (Value::Array(list), _, _) => list
            .iter()
            .map(|c| c.as_str().unwrap_or_default().to_owned())
            .collect(),
        (_, Value::String(one), _) => vec![one.clone()],
        (_, _, Value::String(symbol)) => vec![format!("market.tick.{symbol}")],
        _ => Vec::new(),
    };
    Ok(match kind.as_str() {
        "PING" => ClientMessage::Ping { lowercase },
        "SUBSCRIBE" => ClientMessage::Subscribe(Subscribe {
            channels,
            since: match envelope.since {
                Value::Object(since) => since
                    .into_iter()
                    .filter_map(|(channel, offset)| Some((channel, offset.as_u64()?)))
                    .collect(),
                _ => Vec::new(),
            },
            epoch: envelope.epoch.as_str().map(str::to_owned),
            lowercase,
        }),
        "UNSUBSCRIBE" => ClientMessage::Unsubscribe {
            channels,
            lowercase,
        },
        "HALT" => command("halt"),
        "RESUME" => command("resume"),
        "COMMAND" => command(envelope.action.as_str().unwrap_or_default()),
        _ => ClientMessage::Unknown(envelope.kind),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_in_any_case_and_the_reply_follows_lowercase() {
        assert_eq!(
            parse(r#"{"type":"ping"}"#),
            Ok(ClientMessage::Ping { lowercase: true })
        );
        assert_eq!(
            parse(r#"{"type":"PiNg","extra":1}"#),
            Ok(ClientMessage::Ping { lowercase: false })
        );
    }

    #[test]
    fn subscriptions_in_their_forms() {
        let subscribe = |channels: &[&str], lowercase| {
            ClientMessage::Subscribe(Subscribe {
                channels: channels.iter().map(|c| c.to_string()).collect(),
                lowercase,
                ..Subscribe::default()
            })
        };
        assert_eq!(
            parse(r#"{"type":"SUBSCRIBE","channels":["trade.results","market.tick.*"]}"#),
            Ok(subscribe(&["trade.results", "market.tick.*"], false))
        );
        assert_eq!(
            parse(r#"{"type":"subscribe","channels":["risk.state", 7]}"#),
            Ok(subscribe(&["risk.state", ""], true))
        );
        assert_eq!(
            parse(r#"{"type":"SUBSCRIBE","symbol":"AAPL"}"#),
            Ok(subscribe(&["market.tick.AAPL"], false))
        );
        assert_eq!(
            parse(r#"{"type":"unsubscribe","channel":"risk.state"}"#),
            Ok(ClientMessage::Unsubscribe {
                channels: vec!["risk.state".into()],
                lowercase: true
            })
        );
        assert_eq!(parse(r#"{"type":"SUBSCRIBE"}"#), Ok(subscribe(&[], false)));
    }

    #[test]
    fn a_resuming_subscribe_names_its_offsets_and_epoch() {
        let resuming = r#"{"type":"SUBSCRIBE","channels":["trade.results","market.tick.*"],
            "since":{"trade.results":16,"market.tick.SPY":3,"risk.state":-1,"x":"7"},
            "epoch":"00ab"}"#;
        assert_eq!(
            parse(resuming),
            Ok(ClientMessage::Subscribe(Subscribe {
                channels: vec!["trade.results".into(), "market.tick.*".into()],
                since: vec![("market.tick.SPY".into(), 3), ("trade.results".into(), 16)],
                epoch: Some("00ab".into()),
                lowercase: false,
            }))
        );
        // A `since` that is not an object asks for nothing back.
        let Ok(ClientMessage::Subscribe(asked)) =
            parse(r#"{"type":"SUBSCRIBE","channels":["a"],"since":5,"epoch":5}"#)
        else {
            panic!("a SUBSCRIBE");
        };
        assert_eq!((asked.since, asked.epoch), (vec![], None));
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
    fn unknown_and_malformed() {
        assert_eq!(
            parse(r#"{"type":"dance"}"#),
            Ok(ClientMessage::Unknown("dance".into()))
        );
        assert!(parse("PING").is_err());
        assert!(parse(r#"{"type":5}"#).is_err());
        assert!(parse(r#"{"kind":"PING"}"#).is_err());
    }
}
