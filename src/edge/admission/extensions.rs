//! The `Sec-WebSocket-Extensions` negotiation: permessage-deflate (RFC 7692) is taken when a
//! client offers it in a form the daemon can keep, and answered with both
//! `no_context_takeover` parameters, so every message is compressed on its own: one
//! compressed packet serves every connection, and no connection keeps a window
//! (`docs/PROTOCOL.md` §13.1).

use hyper::header::{HeaderMap, SEC_WEBSOCKET_EXTENSIONS};

/// The extension the daemon answers with when it takes an offer. RFC 7692 §7.1.1.2 lets a
/// server add `client_no_context_takeover` whether or not the client offered it.
pub const DEFLATE_ANSWER: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// Whether the handshake offers permessage-deflate in a form the daemon can take: any offer
/// whose parameters it can honour (a `server_max_window_bits` under 15 it cannot: its
/// compressor's window is 15 bits).
pub fn offers_deflate(headers: &HeaderMap) -> bool {
    headers
        .get_all(SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(acceptable)
}

/// One offer (`name; param; param=value`).
fn acceptable(offer: &str) -> bool {
    let mut parts = offer.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|name| name.eq_ignore_ascii_case("permessage-deflate"))
    {
        return false;
    }
    let mut seen = Vec::new();
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (param, None),
        };
        if seen.contains(&name) {
            return false; // RFC 7692 §7: an offer with a parameter twice is declined
        }
        seen.push(name);
        let fine = match (name, value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => true,
            ("client_max_window_bits", None) => true,
            ("client_max_window_bits", Some(bits)) => window_bits(bits).is_some(),
            ("server_max_window_bits", Some(bits)) => window_bits(bits) == Some(15),
            _ => false,
        };
        if !fine {
            return false;
        }
    }
    true
}

/// A window size parameter's value, 8 to 15.
fn window_bits(value: &str) -> Option<u8> {
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    /// What browsers, Python's `websockets` and Node's `ws` offer is taken; what the daemon
    /// cannot honour, or another extension alone, is not.
    #[test]
    fn offers_the_daemon_can_keep_are_taken() {
        let cases = [
            ("permessage-deflate; client_max_window_bits", true), // Chromium, Firefox
            ("permessage-deflate; client_max_window_bits=15", true),
            ("permessage-deflate", true),
            (
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
                true,
            ),
            ("permessage-deflate; server_max_window_bits=10", false),
            (
                "permessage-deflate; server_max_window_bits=10, permessage-deflate",
                true,
            ),
            ("permessage-deflate; server_max_window_bits=15", true),
            ("permessage-deflate; client_max_window_bits=20", false),
            ("permessage-deflate; mystery", false),
            (
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                false,
            ),
            ("x-webkit-deflate-frame", false),
            ("", false),
        ];
        for (offer, taken) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(
                SEC_WEBSOCKET_EXTENSIONS,
                HeaderValue::from_str(offer).unwrap(),
            );
            assert_eq!(offers_deflate(&headers), taken, "{offer:?}");
        }
        assert!(!offers_deflate(&HeaderMap::new()));
    }
}
