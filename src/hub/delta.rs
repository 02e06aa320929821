//! Fossil deltas (`?delta=fossil`, `docs/PROTOCOL.md` §13.2): a TELEMETRY whose `data` is the
//! fossil delta (as a JSON string) of its `data` against the previous packet's, made once per
//! snapshot and shared by every delta connection; a full packet (`"delta": false`) when there
//! is no previous packet of the same epoch to apply it to.

use super::packet;

/// `body`'s delta against `base`, as text: `None` when, in its JSON string, it would not be
/// shorter than `body`. (Its copies and inserts are whole characters, [`super::fossil`], so a
/// JSON string can carry it; a `body` that is not UTF-8 gets none.)
pub fn between(base: &[u8], body: &[u8]) -> Option<String> {
    let delta = String::from_utf8(super::fossil::delta(base, body)).ok()?;
    (quoted_len(&delta) < body.len()).then_some(delta)
}

/// How long `text` is as a JSON string, its quotes and escapes included, as serde_json writes
/// it: what the delta weighs in its packet.
fn quoted_len(text: &str) -> usize {
    let escaped = |byte: &u8| match byte {
        b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
        0x00..=0x1f => 6,
        _ => 1,
    };
    2 + text.as_bytes().iter().map(escaped).sum::<usize>()
}

/// A delta client's TELEMETRY: the fossil `delta` of the data when there is one, else the
/// whole `body` with `"delta": false`.
pub fn telemetry(seq: u64, epoch: &str, body: &str, delta: Option<&str>) -> String {
    let quoted;
    let (data, flag) = match delta {
        Some(delta) => {
            quoted = serde_json::to_string(delta).expect("a string serializes");
            (quoted.as_str(), r#","delta":true}"#)
        }
        None => (body, r#","delta":false}"#),
    };
    let mut text = packet::envelope("TELEMETRY", seq, epoch, data, None);
    text.pop();
    text.push_str(flag);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frame's two forms, byte for byte.
    #[test]
    fn a_delta_telemetry_carries_the_delta_as_a_string_and_a_full_one_says_so() {
        assert_eq!(
            telemetry(8, "e1", r#"{"a":1}"#, Some("7\n1:x")),
            r#"{"type":"TELEMETRY","seq":8,"data":"7\n1:x","epoch":"e1","delta":true}"#
        );
        assert_eq!(
            telemetry(8, "e1", r#"{"a":1}"#, None),
            r#"{"type":"TELEMETRY","seq":8,"data":{"a":1},"epoch":"e1","delta":false}"#
        );
    }

    /// A delta applies back to the packet (the crate's apply, the fossil reference's
    /// algorithm); one that would not be smaller is not made.
    #[test]
    fn deltas_apply_back_and_only_smaller_ones_are_made() {
        let pad = "unchanged ".repeat(30);
        let base = format!(r#"{{"price":450.25,"log":["a","b","c"],"pad":"{pad}"}}"#);
        let body = format!(r#"{{"price":450.5,"log":["b","c","d"],"pad":"{pad}"}}"#);
        let delta = between(base.as_bytes(), body.as_bytes()).unwrap();
        assert!(delta.len() < body.len() / 2, "{delta}");
        assert_eq!(fossil_delta::apply(&base, &delta).unwrap(), body.as_bytes());
        assert_eq!(between(b"abc", b"xyz"), None);
        let text = "quote \" slash \\ lines \n\r\t bell \u{7} \u{8}\u{c} é → 𝄞";
        assert_eq!(quoted_len(text), serde_json::to_string(text).unwrap().len());
    }
}
