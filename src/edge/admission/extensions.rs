//! The `Sec-WebSocket-Extensions` negotiation: permessage-deflate (RFC 7692) is taken when a
//! client offers it in a form the daemon can keep. The daemon keeps no window of a client's
//! (`client_no_context_takeover`), and keeps to the client's choice for its own: without
//! `server_no_context_takeover` in the offer, packets may come compressed after the previous
//! one, in the window the client keeps (`docs/PROTOCOL.md` §13.1).

use hyper::header::{HeaderMap, SEC_WEBSOCKET_EXTENSIONS};

/// What the daemon answers a taken offer with: RFC 7692 §7.1.1.2 lets a server add
/// `client_no_context_takeover` whether or not the client offered it, and
/// `server_no_context_takeover` is answered exactly when it was asked for.
pub fn deflate_answer(takeover: bool) -> &'static str {
    if takeover {
        "permessage-deflate; client_no_context_takeover"
    } else {
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    }
}

/// The first offer of permessage-deflate in a form the daemon can take (a
/// `server_max_window_bits` under 15 it cannot: its compressor's window is 15 bits), if any:
/// whether it lets the daemon's side keep its context (no `server_no_context_takeover`).
pub fn offers_deflate(headers: &HeaderMap) -> Option<bool> {
    headers
        .get_all(SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(acceptable)
}

/// One offer (`name; param; param=value`): whether the server may keep its context, when the
/// daemon can take it.
fn acceptable(offer: &str) -> Option<bool> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|name| name.eq_ignore_ascii_case("permessage-deflate"))
    {
        return None;
    }
    let mut seen = Vec::new();
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (param, None),
        };
        if seen.contains(&name) {
            return None; // RFC 7692 §7: an offer with a parameter twice is declined
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
            return None;
        }
    }
    Some(!seen.contains(&"server_no_context_takeover"))
}

/// A window size parameter's value, 8 to 15.
fn window_bits(value: &str) -> Option<u8> {
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    /// What browsers, Python's `websockets` and Node's `ws` offer is taken, keeping the
    /// server's context unless the offer taken says not to; what the daemon cannot honour, or
    /// another extension alone, is not.
    #[test]
    fn offers_the_daemon_can_keep_are_taken() {
        let cases = [
            ("permessage-deflate; client_max_window_bits", Some(true)), // Chromium, Firefox
            ("permessage-deflate; client_max_window_bits=15", Some(true)),
            ("permessage-deflate", Some(true)),
            (
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
                Some(false),
            ),
            ("permessage-deflate; server_max_window_bits=10", None),
            (
                "permessage-deflate; server_max_window_bits=10, permessage-deflate",
                Some(true),
            ),
            (
                "permessage-deflate; server_no_context_takeover, permessage-deflate",
                Some(false),
            ),
            ("permessage-deflate; server_max_window_bits=15", Some(true)),
            ("permessage-deflate; client_max_window_bits=20", None),
            ("permessage-deflate; mystery", None),
            (
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                None,
            ),
            ("x-webkit-deflate-frame", None),
            ("", None),
        ];
        for (offer, taken) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(
                SEC_WEBSOCKET_EXTENSIONS,
                HeaderValue::from_str(offer).unwrap(),
            );
            assert_eq!(offers_deflate(&headers), taken, "{offer:?}");
        }
        assert_eq!(offers_deflate(&HeaderMap::new()), None);
        assert!(!deflate_answer(true).contains("server_no_context_takeover"));
        assert!(deflate_answer(false).contains("server_no_context_takeover"));
    }
}
