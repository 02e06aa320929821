//! What the daemon's frames say, read without a JSON parser: [`classify`] takes a text frame's
//! type, seq and `data.timestamp` (RFC 3339, parsed by hand) from the envelope's fixed opening,
//! [`market_price`] reads `data.market.price` just after it (only when a publisher runs), and
//! [`raw_frame`] splits unmasked server frames off a byte stream.
//!
//! Pure functions on bytes, below everything else here: [`crate::client`] classifies every packet
//! a dashboard receives, and its stalled clients split what is left in their sockets with
//! [`raw_frame`]. The tests check both against the daemon's own frames and against chrono.

/// What a frame's first bytes say: enough for a receive record (which tick, stamped when) without
/// parsing the whole packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Telemetry { seq: u64, ts_ms: Option<i64> },
    Welcome { seq: u64, ts_ms: Option<i64> },
    Other,
}

const TELEMETRY: &[u8] = br#"{"type":"TELEMETRY","seq":"#;
const WELCOME: &[u8] = br#"{"type":"WELCOME","seq":"#;
const TIMESTAMP: &[u8] = br#","data":{"timestamp":""#;

/// Reads the type, seq and `data.timestamp` from the envelope's fixed opening
/// (`{"type":"TELEMETRY","seq":N,"data":{"timestamp":"…"`, see `packet::envelope` and the field
/// order of `packet::Telemetry`) without parsing the rest of the packet.
pub fn classify(frame: &[u8]) -> Frame {
    let (rest, telemetry) = if let Some(rest) = frame.strip_prefix(TELEMETRY) {
        (rest, true)
    } else if let Some(rest) = frame.strip_prefix(WELCOME) {
        (rest, false)
    } else {
        return Frame::Other;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return Frame::Other;
    }
    let seq = rest[..digits]
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    let ts_ms = rest[digits..]
        .strip_prefix(TIMESTAMP)
        .and_then(|ts| ts.get(..24))
        .and_then(parse_rfc3339_ms);
    if telemetry {
        Frame::Telemetry { seq, ts_ms }
    } else {
        Frame::Welcome { seq, ts_ms }
    }
}

const MARKET: &[u8] = br#","market":{"symbol":"#;
const PRICE: &[u8] = br#","price":"#;

/// `data.market.price` of a TELEMETRY or WELCOME frame, `None` when it is `null` or the frame is
/// not laid out as the daemon writes it. It follows the fixed opening [`classify`] reads:
/// `…"timestamp":"…","status":"ACTIVE","market":{"symbol":"SPY","price":451.25,…` (the field
/// order of `packet::Telemetry` and `packet::Market`), so only the first few dozen bytes are
/// looked at.
pub fn market_price(frame: &[u8]) -> Option<f64> {
    // `"status"` is one of three short words: the market section starts within a few bytes.
    let head = &frame[..frame.len().min(160)];
    let start = head.windows(MARKET.len()).position(|w| w == MARKET)? + MARKET.len();
    let rest = &frame[start..];
    // The symbol: `null` or a JSON string, whose escapes are skipped over.
    let after_symbol = if let Some(rest) = rest.strip_prefix(b"null") {
        rest
    } else {
        let body = rest.strip_prefix(b"\"")?;
        let mut i = 0;
        loop {
            match *body.get(i)? {
                b'\\' => i += 2,
                b'"' => break &body[i + 1..],
                _ => i += 1,
            }
        }
    };
    let number = after_symbol.strip_prefix(PRICE)?;
    let len = number
        .iter()
        .take_while(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
        .count();
    std::str::from_utf8(&number[..len]).ok()?.parse().ok()
}

/// `2025-12-21T11:59:59.812Z` → ms since the epoch; the daemon's only timestamp format.
pub fn parse_rfc3339_ms(s: &[u8]) -> Option<i64> {
    if s.len() != 24
        || s[4] != b'-'
        || s[7] != b'-'
        || s[10] != b'T'
        || s[13] != b':'
        || s[16] != b':'
        || s[19] != b'.'
        || s[23] != b'Z'
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        s[range].iter().try_fold(0i64, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss, milli) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from civil (H. Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1_000 + milli)
}

/// One unmasked server frame at the start of `buf`: (first byte: FIN, RSV1 and opcode, payload
/// range, frame size); `None` if incomplete, `Err` if it does not look like a server frame (RSV1,
/// permessage-deflate's bit, is the only one allowed). Stalled clients are read this way at the
/// end, straight off the socket rather than through tungstenite, so that nothing (no pong) is
/// written back; so are the clients that offer permessage-deflate (`client::raw`).
pub fn raw_frame(buf: &[u8]) -> Result<Option<(u8, std::ops::Range<usize>, usize)>, ()> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b0 & 0x30 != 0 || b1 & 0x80 != 0 {
        return Err(());
    }
    let (len, header) = match b1 & 0x7f {
        126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")),
            10,
        ),
        126 | 127 => return Ok(None),
        n => (u64::from(n), 2),
    };
    let size = usize::try_from(len).map_err(|_| ())?.saturating_add(header);
    if buf.len() < size {
        return Ok(None);
    }
    Ok(Some((b0, header..size, size)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bff::aggregate::{self, Inputs};
    use bff::packet;
    use chrono::{DateTime, Utc};

    #[test]
    fn timestamps_parse_like_chrono() {
        for s in [
            "2025-12-21T11:59:59.812Z",
            "2024-02-29T00:00:00.000Z",
            "2000-03-01T23:59:59.999Z",
            "1970-01-01T00:00:00.001Z",
        ] {
            let want = DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis();
            assert_eq!(parse_rfc3339_ms(s.as_bytes()), Some(want), "{s}");
        }
        assert_eq!(parse_rfc3339_ms(b"2025-12-21T11:59:59Z"), None);
    }

    #[test]
    fn raw_server_frames_split() {
        let mut wire = vec![0x81, 126, 0x01, 0x00];
        wire.extend(std::iter::repeat_n(b'x', 256));
        wire.extend([0x88, 0x02, 0x03, 0xe9]);
        let (first, payload, size) = raw_frame(&wire).unwrap().unwrap();
        assert_eq!((first, payload, size), (0x81, 4..260, 260));
        assert_eq!(raw_frame(&wire[260..]).unwrap(), Some((0x88, 2..4, 4)));
        assert_eq!(raw_frame(&wire[..100]).unwrap(), None);
        // Masked (client) frames are not what a server sends.
        assert!(raw_frame(&[0x81, 0x85]).is_err());
        // A compressed frame (RSV1) is; RSV2 and RSV3 are not.
        assert_eq!(
            raw_frame(&[0xc1, 0x01, b'x']).unwrap(),
            Some((0xc1, 2..3, 3))
        );
        assert!(raw_frame(&[0xa1, 0x01, b'x']).is_err());
    }

    #[test]
    fn the_daemons_own_frames_classify() {
        let now = Utc::now();
        let data = aggregate::build(&Inputs::default(), now, 50);
        let body = packet::body(&data);
        let telemetry = packet::envelope("TELEMETRY", 42, "0123456789abcdef", &body, None);
        let welcome = packet::envelope("WELCOME", 42, "0123456789abcdef", &body, Some(true));
        let ms = now.timestamp_millis();
        assert_eq!(
            classify(telemetry.as_bytes()),
            Frame::Telemetry {
                seq: 42,
                ts_ms: Some(ms)
            }
        );
        assert_eq!(
            classify(welcome.as_bytes()),
            Frame::Welcome {
                seq: 42,
                ts_ms: Some(ms)
            }
        );
        assert_eq!(classify(packet::PONG.as_bytes()), Frame::Other);
    }

    /// The daemon's TELEMETRY and WELCOME around `data`, as it frames them.
    fn frames(seq: u64, data: &bff::packet::Telemetry) -> (String, String) {
        let body = packet::body(data);
        (
            packet::envelope("TELEMETRY", seq, "0123456789abcdef", &body, None),
            packet::envelope("WELCOME", seq, "0123456789abcdef", &body, None),
        )
    }

    #[test]
    fn the_market_price_is_read_from_the_daemons_own_frames() {
        let mut data = aggregate::build(&Inputs::default(), Utc::now(), 50);
        let (telemetry, welcome) = frames(7, &data);
        // Before any state: no symbol, no price.
        assert_eq!(market_price(telemetry.as_bytes()), None);
        assert_eq!(market_price(welcome.as_bytes()), None);
        for (symbol, price) in [
            (Some("SPY"), 1000.001),
            (Some("S\"P\\Y,\"price\":1"), 451.25),
            (None, 1e21),
            (Some("SPY"), -0.5),
        ] {
            data.state.market.symbol = symbol.map(str::to_owned);
            data.state.market.price = Some(price);
            data.state.market.alpha = Some(2.5);
            let (telemetry, welcome) = frames(8, &data);
            assert_eq!(
                market_price(telemetry.as_bytes()),
                Some(price),
                "{telemetry}"
            );
            assert_eq!(market_price(welcome.as_bytes()), Some(price), "{welcome}");
        }
        data.state.market.price = None;
        let (telemetry, _) = frames(9, &data);
        assert_eq!(market_price(telemetry.as_bytes()), None);
        assert_eq!(market_price(packet::PONG.as_bytes()), None);
    }
}
