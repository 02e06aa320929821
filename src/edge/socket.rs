//! One client's socket as a session uses it: tungstenite reads the client's frames through
//! [`Inbound`]; every byte going out is written here straight to the write half, under a send
//! timeout, and counted. The socket holds at most `queue_size` packets' worth written but not
//! sent: a packet that does not fit whole means the client stopped reading, and it is cut off.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::ending::Ending;
use super::inbound::Inbound;
use crate::config::ClientConfig;
use crate::metrics::{Frame, Metrics};
use crate::os;

/// tungstenite's read buffer is allocated up front for every connection (and cleared on every
/// read attempt); client messages are a few dozen bytes, so a small one keeps many idle
/// dashboards cheap (the default is 128 KiB). A larger message grows it as needed.
const READ_BUFFER_BYTES: usize = 256;

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

/// Room for the rest of a packet and the close frame after a client was found behind.
const CLOSING_ROOM: usize = 64 * 1024;

/// The write half of a client's socket. Where the transport can, it caps the bytes waiting
/// unsent and writes without waiting, so a short write tells that the client is behind.
pub trait Outbox: AsyncWrite + Unpin {
    /// Lets at most `bytes` wait written but unsent; `false` where the transport cannot.
    fn cap_unsent(&mut self, _bytes: usize) -> bool {
        false
    }

    /// Writes what fits of `frame` now, without waiting (only called once the cap is set).
    fn write_now(&mut self, _frame: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

impl Outbox for OwnedWriteHalf {
    fn cap_unsent(&mut self, bytes: usize) -> bool {
        os::cap_unsent(self.as_ref(), bytes).is_ok()
    }

    fn write_now(&mut self, frame: &[u8]) -> io::Result<usize> {
        self.as_ref().try_write(frame)
    }
}

/// In-memory pipes, for tests: only the hub's queue measures how far behind they are.
impl<T: AsyncRead + AsyncWrite> Outbox for tokio::io::WriteHalf<T> {}

/// One client's socket: tungstenite over the read half, and the write half for shared frames.
pub struct Socket<R, W> {
    ws: WebSocketStream<Inbound<R>>,
    out: W,
    metrics: Arc<Metrics>,
    send_timeout: Duration,
    queue_size: usize,
    /// The unsent bytes the socket may hold now (`queue_size` of the largest packet yet);
    /// 0 while none is set, or where the transport cannot cap them.
    unsent_cap: usize,
    /// The transport can cap unsent bytes.
    cappable: bool,
}

impl<R, W> Socket<R, W>
where
    R: AsyncRead + Unpin,
    W: Outbox,
{
    /// Wraps an upgraded connection's halves; `leftover` is whatever the HTTP layer read past
    /// the handshake.
    pub async fn new(
        read: R,
        out: W,
        leftover: Vec<u8>,
        config: &ClientConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        let ws = WebSocketStream::from_partially_read(
            Inbound::new(read),
            leftover,
            Role::Server,
            Some(websocket_config(config)),
        )
        .await;
        Self {
            ws,
            out,
            metrics,
            send_timeout: Duration::from_millis(config.send_timeout_ms),
            queue_size: config.queue_size,
            unsent_cap: 0,
            cappable: true,
        }
    }

    /// The client's next message (tungstenite answers pings and closes by itself, into replies
    /// that [`Socket::send_replies`] sends).
    pub async fn next(&mut self) -> Option<Result<Message, WsError>> {
        self.ws.next().await
    }

    /// Writes one packet, unless the client already has `queue_size` packets' worth waiting in
    /// its socket: a client that stopped reading is cut off after that many ticks, and its kernel
    /// buffers stay bounded, however large they could grow. The socket itself keeps the count:
    /// it takes at most that many packets' worth unsent, so a packet that does not fit whole is
    /// the sign, and a packet that fits costs one `send`.
    pub async fn send_packet(&mut self, frame: &[u8]) -> Result<(), Ending> {
        let cap = self.queue_size.max(1) * frame.len();
        if self.cappable && cap > self.unsent_cap {
            self.cappable = self.out.cap_unsent(cap);
            self.unsent_cap = cap;
        }
        if !self.cappable {
            return self.write(frame, Frame::Telemetry).await;
        }
        let written = match self.out.write_now(frame) {
            Ok(n) if n == frame.len() => {
                self.metrics.sent(Frame::Telemetry, n);
                return Ok(());
            }
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => 0,
            Err(err) => {
                self.metrics.send_failed();
                return Err(Ending::Vanished(err.to_string()));
            }
        };
        // Behind by its whole queue: what was begun of this packet, then the close frame.
        self.unsent_cap += frame.len() + CLOSING_ROOM;
        self.out.cap_unsent(self.unsent_cap);
        if written > 0 {
            self.write(&frame[written..], Frame::Telemetry).await?;
        }
        Err(Ending::TooSlow(self.queue_size as u64))
    }

    /// Writes whole frames, giving up after the send timeout: a client that does not read must
    /// not hold its task.
    pub async fn write(&mut self, frames: &[u8], kind: Frame) -> Result<(), Ending> {
        let mut write = pin!(self.out.write_all(frames));
        // Nearly every write completes at once; only one that has to wait arms a timer.
        let first = poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await;
        let result = match first {
            Poll::Pending => timeout(self.send_timeout, write)
                .await
                .map_err(|_| Ending::Stalled)
                .and_then(|result| result.map_err(|err| Ending::Vanished(err.to_string()))),
            Poll::Ready(result) => result.map_err(|err| Ending::Vanished(err.to_string())),
        };
        match result {
            Ok(()) => self.metrics.sent(kind, frames.len()),
            Err(_) => self.metrics.send_failed(),
        }
        result
    }

    /// Sends the control frames tungstenite queued (pongs, a close reply).
    pub async fn send_replies(&mut self) -> Result<(), Ending> {
        match self.ws.get_mut().take_replies() {
            Some(replies) => self.write(&replies, Frame::Reply).await,
            None => Ok(()),
        }
    }

    /// Sends the ending's close frame (or the reply to the client's), then reads and discards
    /// until the peer hangs up, so the close frame is not lost to a TCP reset.
    pub async fn close(&mut self, ending: &Ending) {
        if matches!(ending, Ending::Stalled | Ending::Vanished(_)) {
            return;
        }
        let _ = timeout(LINGER, async {
            let _ = match ending.close_frame() {
                Some(frame) => self.ws.close(Some(frame)).await,
                // The client closed: flushing makes tungstenite write the reply it has queued.
                None => self.ws.flush().await,
            };
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
