//! What a client asks for in its handshake's query besides resuming: `?delta=fossil` and
//! `?format=msgpack` (or `json`), on stream paths (`docs/PROTOCOL.md` §13.2, §13.3). A query
//! the daemon cannot honour is refused with `400` and why, rather than quietly sending what
//! the client cannot read.

use crate::hub::Encoding;

/// What the query asked for: (delta, MessagePack).
pub type Asked = (bool, bool);

/// `?delta=…` and `?format=…` in `query`, for a connection of `encoding`; `Err` is the reason
/// for the `400`.
pub fn asked(query: Option<&str>, encoding: Encoding) -> Result<Asked, String> {
    let mut delta = false;
    let mut msgpack = false;
    let pairs = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|pair| pair.split_once('='));
    for (key, value) in pairs {
        match (key, value) {
            ("delta", "fossil") => delta = true,
            ("delta", other) => {
                return Err(format!(
                    "Unknown delta `{other}`: the one offered is `?delta=fossil`.\n"
                ));
            }
            ("format", "msgpack") => msgpack = true,
            ("format", "json") => msgpack = false,
            ("format", other) => {
                return Err(format!(
                    "Unknown format `{other}`: `?format=json` (the default) or `?format=msgpack`.\n"
                ));
            }
            _ => {}
        }
    }
    if (delta || msgpack) && encoding != Encoding::Stream {
        return Err(
            "`delta` and `format` are offered on stream paths (server.ws_paths) only.\n".into(),
        );
    }
    if delta && msgpack {
        return Err(
            "`?delta=fossil` and `?format=msgpack` are not offered together: ask for one \
             (either may be compressed with permessage-deflate).\n"
                .into(),
        );
    }
    Ok((delta, msgpack))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each form asked for, and each query refused with its reason.
    #[test]
    fn each_form_and_each_refusal() {
        let stream = Encoding::Stream;
        assert_eq!(asked(None, stream), Ok((false, false)));
        assert_eq!(asked(Some("since=4&epoch=e"), stream), Ok((false, false)));
        assert_eq!(
            asked(Some("delta=fossil&since=4"), stream),
            Ok((true, false))
        );
        assert_eq!(asked(Some("format=msgpack"), stream), Ok((false, true)));
        assert_eq!(asked(Some("format=json"), stream), Ok((false, false)));
        let refused = |query, encoding| asked(Some(query), encoding).unwrap_err();
        assert!(refused("delta=xdelta", stream).starts_with("Unknown delta `xdelta`"));
        assert!(refused("format=cbor", stream).starts_with("Unknown format `cbor`"));
        assert!(refused("delta=fossil&format=msgpack", stream).contains("not offered together"));
        assert!(refused("delta=fossil", Encoding::Bridge).contains("stream paths"));
    }
}
