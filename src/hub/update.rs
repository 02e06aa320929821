//! One relayed message (`UPDATE`, `docs/PROTOCOL.md` §9) and its frames: made once per
//! [`Encoding`] when it is heard, and once per other form (compressed, MessagePack) by the first
//! connection that needs it; every subscriber writes those same bytes.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::de::IgnoredAny;

use super::encoding::{Encoding, Message};
use super::form::Form;
use super::msgpack;

/// One relayed message, framed in every encoding.
#[derive(Debug)]
pub struct Update {
    /// The channel it was published on.
    pub channel: Arc<str>,
    /// One more than the previous message on that channel.
    pub offset: u64,
    /// Its frame in each encoding, by [`Encoding::index`]. Made when it is heard, as it is kept
    /// for resuming and counted against the relay's cap on kept bytes by what it holds then.
    frames: [Bytes; Encoding::COUNT],
    /// Its frame in the other forms, made by the first connection that needs it: each
    /// encoding's compressed (at most as large as the plain one, see
    /// [`super::deflate::Deflate::frame`]), by [`Encoding::index`], then MessagePack's, plain
    /// and compressed.
    forms: [OnceLock<Bytes>; Encoding::COUNT + 2],
}

impl Update {
    /// The message as `encoding` writes it.
    pub fn frame(&self, encoding: Encoding) -> &Bytes {
        &self.frames[encoding.index()]
    }

    /// The message for a connection of `encoding` in `form` (compressed, MessagePack on a
    /// stream path), made once and shared.
    pub fn frame_as(&self, encoding: Encoding, form: Form) -> &Bytes {
        let msgpack = form.msgpack && encoding == Encoding::Stream;
        if !msgpack && form.deflate.is_none() {
            return self.frame(encoding);
        }
        let slot = if msgpack {
            Encoding::COUNT + usize::from(form.deflate.is_some())
        } else {
            encoding.index()
        };
        self.forms[slot].get_or_init(|| {
            let frame = if msgpack {
                self.msgpack()
            } else {
                self.frame(encoding).clone()
            };
            match form.deflate {
                Some(deflate) => deflate.frame(&frame),
                None => frame,
            }
        })
    }

    /// The MessagePack `UPDATE`, read back from the stream frame's JSON, which holds the
    /// message as it was relayed.
    fn msgpack(&self) -> Bytes {
        let stream = &self.frames[Encoding::Stream.index()];
        let header = match stream[1] & 0x7f {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        let update: serde_json::Value =
            serde_json::from_slice(&stream[header..]).expect("an UPDATE frame is JSON");
        msgpack::update(&self.channel, self.offset, &update["data"].to_string())
    }

    /// What its frames hold, as counted against the relay's cap on kept bytes.
    pub(super) fn bytes(&self) -> usize {
        self.frames.iter().map(Bytes::len).sum()
    }
}

/// Every encoding's frame of one message.
pub(super) fn frames(channel: Arc<str>, offset: u64, payload: &[u8]) -> Update {
    let raw;
    let data = if serde_json::from_slice::<IgnoredAny>(payload).is_ok() {
        std::str::from_utf8(payload).expect("JSON that parsed is UTF-8")
    } else {
        raw = serde_json::json!({ "raw": String::from_utf8_lossy(payload) }).to_string();
        &raw
    };
    let message = Message::Update {
        channel: &channel,
        offset,
        data,
    };
    let frames = Encoding::ALL.map(|encoding| encoding.frame(message));
    Update {
        channel,
        offset,
        frames,
        forms: std::array::from_fn(|_| OnceLock::new()),
    }
}
