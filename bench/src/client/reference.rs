//! The reference connection: one extra client that asks for nothing (plain JSON, no
//! extension, `--url` without the forms' query) and hands every packet's `data` and timestamp to
//! [`Verify`], for the verifying clients to be compared with and the deltas' staleness to be
//! read from. It runs only when some form or `--verify` is asked, and is in no figure.
//!
//! Part of [`super`]; [`crate::app`] opens it before the clients, so that it has every packet
//! they get.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::describe;
use crate::frames::{Frame, classify};
use crate::verify::{Verify, raw_data};

/// An open reference connection that has had its WELCOME.
pub struct Reference {
    ws: WebSocketStream<TcpStream>,
    verify: Arc<Verify>,
}

impl Reference {
    /// Connects to `url` at `server` and reads up to its WELCOME; an error says what failed.
    pub async fn open(url: &str, server: SocketAddr, verify: Arc<Verify>) -> Result<Self, String> {
        let tcp = TcpStream::connect(server)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (ws, _) = tokio_tungstenite::client_async(url, tcp)
            .await
            .map_err(|e| format!("handshake: {}", describe(&e)))?;
        let mut reference = Self { ws, verify };
        match reference.next().await? {
            Frame::Welcome { .. } => Ok(reference),
            other => Err(format!("the first frame is not a WELCOME: {other:?}")),
        }
    }

    /// Reads until `stop`; the reason if the connection ended before.
    pub async fn follow(mut self, stop: CancellationToken) -> Option<String> {
        loop {
            // What has come is read before stopping: the clients may have got it.
            let next = tokio::select! {
                biased;
                next = self.next() => Some(next),
                _ = stop.cancelled() => None,
            };
            match next {
                None => {
                    let _ = self.ws.close(None).await;
                    return None;
                }
                Some(Err(why)) => return Some(why),
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next packet, handed to the verification.
    async fn next(&mut self) -> Result<Frame, String> {
        loop {
            let text = match self.ws.next().await {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(frame))) => {
                    return Err(format!(
                        "closed: {}",
                        frame.map_or("no code".into(), |f| format!("{} {}", f.code, f.reason))
                    ));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(describe(&e)),
                None => return Err("EOF".into()),
            };
            let frame = classify(text.as_bytes());
            if let Frame::Welcome { seq, ts_ms } | Frame::Telemetry { seq, ts_ms } = frame {
                let data = raw_data(text.as_bytes())
                    .ok_or_else(|| format!("seq {seq}: a packet without data"))?;
                self.verify.reference(seq, data, ts_ms);
                return Ok(frame);
            }
        }
    }
}
