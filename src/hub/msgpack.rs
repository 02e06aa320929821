//! MessagePack (`?format=msgpack`, `docs/PROTOCOL.md` §13.3): a packet or relayed message as
//! the same envelope and data as its JSON, in one binary frame, encoded once and shared by
//! every MessagePack connection. Only what the hub frames is binary; answers (PONG,
//! SUBSCRIBED, COMMAND_RESULT) stay JSON text frames.

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use super::frame;

/// The envelope of §2.1 with its fields in the JSON's order.
#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    seq: u64,
    data: Value,
    epoch: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    resumed: Option<bool>,
}

/// A relayed message's envelope (§9.3).
#[derive(Serialize)]
struct Update<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    channel: &'a str,
    offset: u64,
    data: Value,
}

/// A packet (`kind` WELCOME or TELEMETRY) as a MessagePack binary frame; `body` is its JSON data.
pub fn packet(kind: &str, seq: u64, epoch: &str, body: &str, resumed: Option<bool>) -> Bytes {
    let envelope = Envelope {
        kind,
        seq,
        data: serde_json::from_str(body).expect("a packet's body is JSON"),
        epoch,
        resumed,
    };
    frame::binary_frame(&rmp_serde::to_vec_named(&envelope).expect("JSON values encode"))
}

/// A relayed message (`data` JSON) as a MessagePack binary `UPDATE` frame.
pub fn update(channel: &str, offset: u64, data: &str) -> Bytes {
    let update = Update {
        kind: "UPDATE",
        channel,
        offset,
        data: serde_json::from_str(data).expect("a relayed message is JSON"),
    };
    frame::binary_frame(&rmp_serde::to_vec_named(&update).expect("JSON values encode"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frame is binary and decodes to the JSON packet's envelope and data.
    #[test]
    fn a_packet_decodes_to_its_json() {
        let body = r#"{"price":450.25,"log":["a"],"ok":true,"none":null,"n":-3}"#;
        let frame = packet("WELCOME", 7, "e1", body, Some(true));
        assert_eq!(frame[0], 0x82, "FIN, binary");
        let decoded: Value = rmp_serde::from_slice(&frame[2..]).unwrap();
        assert_eq!(
            decoded,
            serde_json::json!({"type": "WELCOME", "seq": 7, "epoch": "e1", "resumed": true,
                "data": serde_json::from_str::<Value>(body).unwrap()})
        );
        let frame = update("trade.results", 3, r#"{"b":2}"#);
        let decoded: Value = rmp_serde::from_slice(&frame[2..]).unwrap();
        assert_eq!(
            decoded,
            serde_json::json!({"type": "UPDATE", "channel": "trade.results", "offset": 3,
                "data": {"b": 2}})
        );
    }
}
