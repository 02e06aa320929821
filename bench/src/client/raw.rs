//! A WebSocket client written by hand, for the clients that offer permessage-deflate
//! (`--deflate`): tungstenite 0.30 has no deflate and refuses frames with RSV1, so these clients
//! do the upgrade themselves and split the server's frames off the socket with
//! [`crate::frames::raw_frame`], answering pings with pongs and a close with a close.
//!
//! Only what the daemon sends is read: unmasked, whole messages (FIN, no continuation frames).
//! Against a server that declines the extension (`bff-floor`) it reads plain frames the same way.
//! Part of [`super`]: [`super::Conn`] wraps it beside tungstenite's stream.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::frames::raw_frame;
use crate::net::TsStream;

/// What a browser offers.
const OFFER: &str = "permessage-deflate; client_max_window_bits";

/// The most a handshake's answer may take.
const MAX_HEAD: usize = 16 << 10;

/// One message the server sent: its opcode, whether it is compressed (RSV1), its payload.
pub struct Frame<'a> {
    pub opcode: u8,
    pub compressed: bool,
    pub payload: &'a [u8],
    /// The kernel receive time of the read that completed it.
    pub ts: Option<i64>,
}

/// An upgraded connection read frame by frame.
pub struct RawWs {
    stream: TsStream,
    /// Bytes read and not yet consumed, from `start`.
    buf: Vec<u8>,
    start: usize,
    /// The frame handed out last, consumed at the next read.
    pending: usize,
    /// The server took permessage-deflate.
    pub deflate: bool,
}

impl RawWs {
    /// Upgrades `stream` with a request for `url` (`ws://host:port/path?query`) offering
    /// permessage-deflate; an error says what the server answered instead of `101`.
    pub async fn connect(mut stream: TsStream, url: &str) -> Result<Self, String> {
        let rest = url.strip_prefix("ws://").ok_or("only ws:// URLs")?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Extensions: {OFFER}\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let mut buf = Vec::with_capacity(4096);
        let head_len = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > MAX_HEAD {
                return Err("handshake: an answer without an end".into());
            }
            buf.reserve(4096);
            match stream.read_buf(&mut buf).await {
                Ok(0) => return Err("handshake: EOF".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("handshake: {e}")),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
        if !head.starts_with("HTTP/1.1 101") {
            let status = head.lines().next().unwrap_or("").trim();
            let body = String::from_utf8_lossy(&buf[head_len..]);
            let body: String = body.trim().chars().take(80).collect();
            return Err(format!(
                "handshake: HTTP {} {body}",
                status.strip_prefix("HTTP/1.1").unwrap_or(status).trim()
            )
            .trim_end()
            .to_string());
        }
        let deflate = head.lines().any(|line| {
            line.split_once(':').is_some_and(|(name, value)| {
                name.trim().eq_ignore_ascii_case("sec-websocket-extensions")
                    && value.trim().starts_with("permessage-deflate")
            })
        });
        Ok(Self {
            stream,
            buf,
            start: head_len,
            pending: 0,
            deflate,
        })
    }

    /// The socket, for a stalled client's drain.
    pub fn stream_mut(&mut self) -> &mut TsStream {
        &mut self.stream
    }

    /// The next data or close frame; pings are answered on the way. `None` at EOF; `Err` for a
    /// read error or bytes that are not a server's frame.
    pub async fn next(&mut self) -> Option<Result<Frame<'_>, String>> {
        self.start += std::mem::take(&mut self.pending);
        loop {
            let (first, payload, size) = match raw_frame(&self.buf[self.start..]) {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    if let Err(e) = self.fill().await {
                        return e.map(Err);
                    }
                    continue;
                }
                Err(()) => return Some(Err("a frame that is not a server's".into())),
            };
            let (at, opcode) = (self.start, first & 0x0f);
            match opcode {
                0x9 => {
                    let ping = self.buf[at + payload.start..at + payload.end].to_vec();
                    self.start += size;
                    if let Err(e) = self.send(0xA, &ping).await {
                        return Some(Err(format!("pong: {e}")));
                    }
                }
                0xA => self.start += size,
                _ => {
                    let compressed = first & 0x40 != 0;
                    if compressed && !self.deflate {
                        return Some(Err("a compressed frame without permessage-deflate".into()));
                    }
                    self.pending = size;
                    return Some(Ok(Frame {
                        opcode,
                        compressed,
                        payload: &self.buf[at + payload.start..at + payload.end],
                        ts: self.stream.last_ts(),
                    }));
                }
            }
        }
    }

    /// Reads more bytes, first moving what is left to the front; `Err(None)` at EOF.
    async fn fill(&mut self) -> Result<(), Option<String>> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(self.buf.len().max(4096));
        }
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) => Err(None),
            Ok(_) => Ok(()),
            Err(e) => Err(Some(e.to_string())),
        }
    }

    /// Sends one masked control frame (a payload of at most 125 bytes).
    async fn send(&mut self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        let mask = [0x5a, 0x17, 0xc3, 0x08];
        let mut frame = Vec::with_capacity(payload.len() + 6);
        frame.push(0x80 | opcode);
        frame.push(0x80 | payload.len().min(125) as u8);
        frame.extend_from_slice(&mask);
        frame.extend(
            payload
                .iter()
                .take(125)
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4]),
        );
        self.stream.write_all(&frame).await
    }

    /// Closes politely (1000), and reads until the server's close or EOF.
    pub async fn close(&mut self) {
        if self.send(0x8, &1000u16.to_be_bytes()).await.is_err() {
            return;
        }
        while let Some(Ok(frame)) = self.next().await {
            if frame.opcode == 0x8 {
                break;
            }
        }
    }
}
