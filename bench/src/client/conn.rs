//! A client's connection, whichever way it reads: tungstenite's, or the hand-written one
//! ([`super::raw`]) of a client that offers permessage-deflate, which tungstenite 0.30 cannot
//! read; and what one read gives, the same either way.

use futures_util::StreamExt;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message;

use super::raw::RawWs;
use crate::net::TsStream;

/// A client's connection: tungstenite's, or the hand-written one of a client that offers
/// permessage-deflate. Not boxed: a plain client costs what it did before there was a choice.
#[allow(clippy::large_enum_variant)]
pub(super) enum Conn {
    /// With the message handed out last, which [`Msg`] borrows from.
    Ws(WebSocketStream<TsStream>, Option<Message>),
    Raw(RawWs),
}

/// What [`Conn::next`] read.
pub(super) enum Msg<'a> {
    Data(Data<'a>),
    Close {
        code: Option<u16>,
        reason: String,
    },
    /// Pings, pongs and anything else that is not a message.
    Skip,
}

/// One data frame: text or binary (MessagePack), compressed or not, and when it came.
pub(super) struct Data<'a> {
    pub binary: bool,
    pub compressed: bool,
    pub payload: &'a [u8],
    /// The kernel receive time of the read that completed it.
    pub ts: Option<i64>,
}

impl Data<'_> {
    /// Bytes on the wire: the payload and an unmasked frame's header.
    pub fn wire_bytes(&self) -> u64 {
        let header = match self.payload.len() {
            0..=125 => 2,
            126..=0xffff => 4,
            _ => 10,
        };
        (self.payload.len() + header) as u64
    }
}

impl Conn {
    /// The next frame the server sent, or `None` at the end of the stream.
    pub async fn next(&mut self) -> Option<Result<Msg<'_>, String>> {
        match self {
            Conn::Ws(ws, held) => {
                let message = match ws.next().await? {
                    Ok(message) => message,
                    Err(e) => return Some(Err(describe(&e))),
                };
                let ts = ws.get_ref().last_ts();
                let data = |binary, payload| {
                    Msg::Data(Data {
                        binary,
                        compressed: false,
                        payload,
                        ts,
                    })
                };
                Some(Ok(match held.insert(message) {
                    Message::Text(text) => data(false, text.as_bytes()),
                    Message::Binary(bytes) => data(true, bytes),
                    Message::Close(frame) => Msg::Close {
                        code: frame.as_ref().map(|f| f.code.into()),
                        reason: frame
                            .as_ref()
                            .map(|f| f.reason.to_string())
                            .unwrap_or_default(),
                    },
                    _ => Msg::Skip,
                }))
            }
            Conn::Raw(raw) => {
                let frame = match raw.next().await? {
                    Ok(frame) => frame,
                    Err(e) => return Some(Err(e)),
                };
                Some(Ok(match frame.opcode {
                    0x1 | 0x2 => Msg::Data(Data {
                        binary: frame.opcode == 0x2,
                        compressed: frame.compressed,
                        payload: frame.payload,
                        ts: frame.ts,
                    }),
                    0x8 => Msg::Close {
                        code: frame
                            .payload
                            .get(..2)
                            .map(|c| u16::from_be_bytes([c[0], c[1]])),
                        reason: String::from_utf8_lossy(frame.payload.get(2..).unwrap_or(&[]))
                            .into_owned(),
                    },
                    _ => Msg::Skip,
                }))
            }
        }
    }

    /// Drops the message handed out last, once it is read: a plain client holds no packet
    /// between ticks, as before.
    pub fn release(&mut self) {
        if let Conn::Ws(_, held) = self {
            *held = None;
        }
    }

    /// The socket underneath, for a stalled client's drain.
    pub fn stream_mut(&mut self) -> &mut TsStream {
        match self {
            Conn::Ws(ws, _) => ws.get_mut(),
            Conn::Raw(raw) => raw.stream_mut(),
        }
    }

    /// Closes politely, and reads until the server's answer so it sees a clean close.
    pub async fn close(&mut self) {
        match self {
            Conn::Ws(ws, _) => {
                if ws.close(None).await.is_ok() {
                    while let Some(Ok(_)) = ws.next().await {}
                }
            }
            Conn::Raw(raw) => raw.close().await,
        }
    }
}

/// A readable error, with the HTTP status of a refused handshake.
pub(super) fn describe(err: &WsError) -> String {
    match err {
        WsError::Http(resp) => {
            let body: String = resp
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).trim().chars().take(80).collect())
                .unwrap_or_default();
            format!("HTTP {} {body}", resp.status())
                .trim_end()
                .to_string()
        }
        other => other.to_string(),
    }
}
