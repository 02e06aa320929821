//! What the floor writes, as bytes: the answer to an upgrade request ([`websocket_key`],
//! [`accept_key`], [`upgrade_response`]) and the packets ([`Frames`]), each framed once as an
//! unmasked text frame ([`text_header`]). Pure functions; [`crate::serve`] does the I/O.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;

/// RFC 6455's GUID, appended to the client's key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a request's `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes())
}

/// The `Sec-WebSocket-Key` of an HTTP request head (header names are case-insensitive), trimmed;
/// `None` if it has none. Nothing else in the request is looked at.
pub fn websocket_key(head: &[u8]) -> Option<&[u8]> {
    head.split(|&b| b == b'\n')
        .find_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            line[..colon]
                .trim_ascii()
                .eq_ignore_ascii_case(b"sec-websocket-key")
                .then(|| line[colon + 1..].trim_ascii())
        })
        .filter(|key| !key.is_empty())
}

/// The `101 Switching Protocols` answer to a request carrying `key`.
pub fn upgrade_response(key: &[u8]) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key)
    )
    .into_bytes()
}

/// The header of a final, unmasked text frame of `len` payload bytes (RFC 6455 §5.2).
pub fn text_header(len: usize) -> Vec<u8> {
    let mut header = vec![0x81];
    match len {
        0..=125 => header.push(len as u8),
        126..=0xffff => {
            header.push(126);
            header.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            header.push(127);
            header.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    header
}

/// The current packet, framed twice: as the TELEMETRY every client gets on a tick, and as the
/// WELCOME a new client gets first. Rebuilt once a tick, never per client.
pub struct Frames {
    pub telemetry: Vec<u8>,
    pub welcome: Vec<u8>,
}

impl Frames {
    /// The frames of packet `seq` stamped `now`, whose payload is `bytes` long (or as short as
    /// the envelope allows).
    pub fn new(seq: u64, now: SystemTime, bytes: usize) -> Frames {
        let timestamp = rfc3339_ms(now);
        Frames {
            telemetry: frame(&payload("TELEMETRY", seq, &timestamp, bytes)),
            welcome: frame(&payload("WELCOME", seq, &timestamp, bytes)),
        }
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = text_header(payload.len());
    frame.extend_from_slice(payload);
    frame
}

/// The daemon's envelope with a padding field in place of its data:
/// `{"type":"TELEMETRY","seq":N,"data":{"timestamp":"…","pad":"xx…"},"epoch":"0000000000000000"}`,
/// padded to `bytes` long. The load generator reads the type, seq and `data.timestamp` of this
/// fixed opening, as it does the daemon's.
pub fn payload(kind: &str, seq: u64, timestamp: &str, bytes: usize) -> Vec<u8> {
    let head =
        format!(r#"{{"type":"{kind}","seq":{seq},"data":{{"timestamp":"{timestamp}","pad":""#);
    let tail = r#""},"epoch":"0000000000000000"}"#;
    let pad = bytes.saturating_sub(head.len() + tail.len());
    let mut payload = Vec::with_capacity(head.len() + pad + tail.len());
    payload.extend_from_slice(head.as_bytes());
    payload.resize(head.len() + pad, b'x');
    payload.extend_from_slice(tail.as_bytes());
    payload
}

/// `2025-12-21T11:59:59.812Z`: the daemon's timestamp format, in UTC.
pub fn rfc3339_ms(t: SystemTime) -> String {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (year, month, day) = crate::civil::date(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1_000 % 60,
        ms_of_day % 1_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use std::time::Duration;

    #[test]
    fn the_accept_key_is_rfc_6455s() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn the_key_is_found_in_a_request() {
        let request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:3000\r\nConnection: Upgrade\r\n\
            Upgrade: websocket\r\nsec-websocket-KEY:  dGhlIHNhbXBsZSBub25jZQ== \r\n\
            Sec-WebSocket-Version: 13\r\n\r\n";
        assert_eq!(
            websocket_key(request),
            Some(&b"dGhlIHNhbXBsZSBub25jZQ=="[..])
        );
        assert_eq!(websocket_key(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), None);
        assert_eq!(
            websocket_key(b"GET / HTTP/1.1\r\nSec-WebSocket-Key:\r\n\r\n"),
            None
        );
        let response = String::from_utf8(upgrade_response(b"dGhlIHNhbXBsZSBub25jZQ==")).unwrap();
        assert!(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(response.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(response.ends_with("\r\n\r\n"));
    }

    #[test]
    fn frame_headers_carry_the_length() {
        // A packet of the daemon's size takes the 16-bit length form.
        assert_eq!(text_header(4200), [0x81, 126, 0x10, 0x68]);
        assert_eq!(text_header(125), [0x81, 125]);
        assert_eq!(text_header(126), [0x81, 126, 0, 126]);
        assert_eq!(
            text_header(70_000),
            [0x81, 127, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70]
        );
    }

    #[test]
    fn packets_have_the_envelope_and_the_size_asked_for() {
        let now = UNIX_EPOCH + Duration::from_millis(1_766_318_399_812);
        let frames = Frames::new(42, now, 4200);
        assert_eq!(frames.telemetry.len(), 4 + 4200);
        assert_eq!(frames.telemetry[..4], [0x81, 126, 0x10, 0x68]);
        let telemetry = std::str::from_utf8(&frames.telemetry[4..]).unwrap();
        assert!(telemetry.starts_with(
            r#"{"type":"TELEMETRY","seq":42,"data":{"timestamp":"2025-12-21T11:59:59.812Z","pad":"xxx"#
        ));
        assert!(telemetry.ends_with(r#"xxx"},"epoch":"0000000000000000"}"#));
        let welcome = std::str::from_utf8(&frames.welcome[4..]).unwrap();
        assert_eq!(welcome.len(), 4200);
        assert!(welcome.starts_with(r#"{"type":"WELCOME","seq":42,"data":{"timestamp":"#));
        let value: serde_json::Value = serde_json::from_str(telemetry).unwrap();
        assert_eq!(value["seq"], 42);
        // Smaller than the envelope: no padding, no truncation.
        let short = payload("TELEMETRY", 7, "2025-12-21T11:59:59.812Z", 10);
        let short = String::from_utf8(short).unwrap();
        assert!(short.contains(r#""pad":"""#), "{short}");
    }

    #[test]
    fn timestamps_format_like_chrono() {
        for ms in [
            0,
            1,
            951_782_400_000,
            1_709_164_800_000,
            1_766_318_399_812,
            4_102_444_799_999,
        ] {
            let t = UNIX_EPOCH + Duration::from_millis(ms);
            let want = DateTime::<Utc>::from(t)
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string();
            assert_eq!(rfc3339_ms(t), want, "{ms}");
        }
    }
}
