//! One client's socket as a session uses it: tungstenite reads the client's frames through
//! [`Inbound`]; every byte going out goes through the connection's [`SocketOutlet`], shared with
//! the hub's fan-out, and is written under a send timeout and counted.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::config::ClientConfig;
use crate::edge::connection::ending::Ending;
use crate::edge::connection::inbound::Inbound;
use crate::edge::connection::outbox::Outbox;
use crate::edge::connection::outlet::{Offered, SocketOutlet, Trouble};
use crate::hub::Snapshot;
use crate::hub::{Encoding, Form};
use crate::metrics::{Frame, Metrics};

/// tungstenite's read buffer is allocated up front for every connection (and cleared on every
/// read attempt); client messages are a few dozen bytes, so a small one keeps many idle
/// dashboards cheap (the default is 128 KiB). A larger message grows it as needed.
const READ_BUFFER_BYTES: usize = 64;

/// How long a closing connection waits for its close frame to go out and the peer to hang up.
pub const LINGER: Duration = Duration::from_secs(1);

/// tungstenite settings for reading a client under `config`.
pub fn websocket_config(config: &ClientConfig) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        // tungstenite only writes control replies, into `Inbound`, which sends them at once.
        .write_buffer_size(0)
        .max_message_size(Some(config.max_message_bytes))
        .max_frame_size(Some(config.max_message_bytes))
}

/// One client's socket: tungstenite over the read half, and the outlet everything is written to.
pub struct Socket<R, W> {
    ws: WebSocketStream<Inbound<R>>,
    out: Arc<SocketOutlet<W>>,
    metrics: Arc<Metrics>,
    send_timeout: Duration,
}

impl<R, W> Socket<R, W>
where
    R: AsyncRead + Unpin,
    W: Outbox,
{
    /// Wraps an upgraded connection's halves, whose packets are written as `encoding`, and
    /// in its `form`; `leftover` is whatever the HTTP layer read past
    /// the handshake.
    pub async fn new(
        read: R,
        out: W,
        leftover: Vec<u8>,
        config: &ClientConfig,
        metrics: Arc<Metrics>,
        (encoding, form): (Encoding, Form),
    ) -> Self {
        let (inbound, leftover) = match form.deflate {
            Some(_) => (
                Inbound::inflating(read, config.max_message_bytes, &leftover),
                Vec::new(),
            ),
            None => (Inbound::new(read), leftover),
        };
        let ws = WebSocketStream::from_partially_read(
            inbound,
            leftover,
            Role::Server,
            Some(websocket_config(config)),
        )
        .await;
        Self {
            ws,
            out: Arc::new(SocketOutlet::new(
                out,
                config.queue_size,
                metrics.clone(),
                encoding,
                form,
            )),
            metrics,
            send_timeout: Duration::from_millis(config.send_timeout_ms),
        }
    }

    /// The outlet, for the hub's fan-out and for waiting on its trouble.
    pub fn outlet(&self) -> &Arc<SocketOutlet<W>> {
        &self.out
    }

    /// The client's next message (tungstenite answers pings and closes by itself, into replies
    /// that [`Socket::send_replies`] sends).
    pub async fn next(&mut self) -> Option<Result<Message, WsError>> {
        self.ws.next().await
    }

    /// Writes one packet, unless the client already has `queue_size` packets' worth waiting in
    /// its socket: a client that stopped reading is cut off after that many ticks, and its kernel
    /// buffers stay bounded, however large they could grow (see [`SocketOutlet::offer_snapshot`]).
    pub async fn send_packet(&mut self, snapshot: &Snapshot) -> Result<(), Ending> {
        match self.out.offer_snapshot(snapshot) {
            Offered::Sent => Ok(()),
            Offered::Queued => self.flush().await,
            Offered::Refused => Err(self.troubled().await),
        }
    }

    /// How the connection ends after the fan-out (or [`Socket::send_packet`]) found it in
    /// trouble: a client behind gets the rest of the packet begun, then its close.
    pub async fn troubled(&mut self) -> Ending {
        match self.out.troubled().await {
            Trouble::Behind => match self.flush().await {
                Ok(()) => Ending::TooSlow(self.out.queue_size() as u64),
                Err(ending) => ending,
            },
            Trouble::Failed(err) => Ending::Vanished(err),
            Trouble::Closed => Ending::Shutdown,
        }
    }

    /// Writes whole frames, giving up after the send timeout: a client that does not read must
    /// not hold its task.
    pub async fn write(&mut self, frames: &[u8], kind: Frame) -> Result<(), Ending> {
        match self.out.push(frames, kind) {
            Ok(false) => Ok(()),
            Ok(true) => self.flush().await,
            Err(err) => {
                self.metrics.send_failed();
                Err(Ending::Vanished(err.to_string()))
            }
        }
    }

    /// Waits, up to the send timeout, until what the outlet holds is written.
    ///
    /// The wait is boxed: it runs only for a client whose socket was full, and a timer kept in
    /// place would be 112 bytes more in the state of every connection's task.
    pub async fn flush(&mut self) -> Result<(), Ending> {
        if !self.out.holds_pending() {
            return Ok(());
        }
        let result = match Box::pin(timeout(self.send_timeout, self.out.flush())).await {
            Err(_) => Err(Ending::Stalled),
            Ok(result) => result.map_err(|err| Ending::Vanished(err.to_string())),
        };
        if result.is_err() {
            self.metrics.send_failed();
        }
        result
    }

    /// Sends the control frames tungstenite queued (pongs, a close reply). tungstenite writes a
    /// ping's pong only at its next read or flush, and the next read waits for the client's next
    /// frame: flushed here, the pong goes now (a client that pings, as Python's `websockets`
    /// does every 20 s, drops a connection whose pong is 20 s late).
    pub async fn send_replies(&mut self) -> Result<(), Ending> {
        self.ws.flush().await.map_err(Ending::from)?;
        match self.ws.get_mut().take_replies() {
            Some(replies) => self.write(&replies, Frame::Reply).await,
            None => Ok(()),
        }
    }

    /// Sends the ending's close frame (or the reply to the client's), then reads and discards
    /// until the peer hangs up, so the close frame is not lost to a TCP reset.
    pub async fn close(&mut self, ending: &Ending) {
        // No packet after the close frame.
        self.out.close();
        if matches!(ending, Ending::Stalled | Ending::Vanished(_)) {
            return;
        }
        let _ = timeout(LINGER, async {
            if let Some(frame) = ending.close_frame() {
                let _ = self.ws.close(Some(frame)).await;
            }
            // Flushed there: the close frame, or the reply to the client's that tungstenite queued.
            if self.send_replies().await.is_err() || self.out.shutdown().await.is_err() {
                return;
            }
            if matches!(ending, Ending::ClientClosed(_)) {
                return; // the handshake is complete; nothing more will come
            }
            let mut sink = [0u8; 512];
            let reader = self.ws.get_mut().reader();
            while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }
}
