//! One dashboard's WebSocket, from WELCOME to close: a single `select!` loop over the hub feed,
//! the client's frames, the keepalive timer and shutdown.
//!
//! Every way a connection can end is an [`Ending`], sorted out here in one place, with the close
//! code it sends; the caller only logs it.

use std::future::{Future, poll_fn};
use std::num::NonZeroU32;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use governor::{Quota, RateLimiter};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, MissedTickBehavior, interval_at, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::config::ClientConfig;
use crate::hub::{Hub, Subscription};
use crate::inbound::{self, ClientMessage};
use crate::metrics::{Frame, Metrics};
use crate::os;
use crate::packet::PONG;
use crate::wire::{self, Inbound};
use tokio::net::tcp::OwnedWriteHalf;

/// tungstenite's read buffer is allocated up front for every connection (and cleared on every
/// read attempt); client messages are a few dozen bytes, so a small one keeps many idle
/// dashboards cheap (the default is 128 KiB). A larger message grows it as needed.
const READ_BUFFER_BYTES: usize = 256;

/// The framed answer to a client's PING.
static PONG_FRAME: std::sync::LazyLock<bytes::Bytes> =
    std::sync::LazyLock::new(|| wire::text_frame(PONG));

/// How long a closing connection waits for its close frame to go out and the peer to hang up.
const LINGER: Duration = Duration::from_secs(1);

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The client sent a close frame (with this code, if any).
    ClientClosed(Option<u16>),
    /// The socket ended without a close handshake, or failed.
    Vanished(String),
    /// The daemon is shutting down.
    Shutdown,
    /// The client fell more packets behind than its queue holds.
    TooSlow(u64),
    /// A frame could not be written within the send timeout: the client stopped reading.
    Stalled,
    /// Nothing heard from the client, not even a pong, within the idle timeout.
    IdleTimeout,
    /// The client sent a message over the size cap.
    TooBig,
    /// The client sent a text frame that is not UTF-8.
    BadUtf8,
    /// The client broke the WebSocket protocol.
    Protocol(String),
    /// The client sent messages faster than the rate limit.
    Flooding,
}

impl Ending {
    /// The close frame this ending sends, if the socket can still carry one.
    pub fn close_frame(&self) -> Option<CloseFrame> {
        let (code, reason) = match self {
            Ending::Shutdown => (CloseCode::Away, "server shutting down"),
            Ending::TooSlow(_) => (CloseCode::Policy, "too slow: fell behind the stream"),
            Ending::IdleTimeout => (CloseCode::Away, "keepalive timeout"),
            Ending::TooBig => (CloseCode::Size, "message too big"),
            Ending::BadUtf8 => (CloseCode::Invalid, "text frame is not UTF-8"),
            Ending::Protocol(_) => (CloseCode::Protocol, "protocol error"),
            Ending::Flooding => (CloseCode::Policy, "message rate limit exceeded"),
            Ending::ClientClosed(_) | Ending::Vanished(_) | Ending::Stalled => return None,
        };
        Some(CloseFrame {
            code,
            reason: reason.into(),
        })
    }

    /// A short name for metrics labels.
    pub fn label(&self) -> &'static str {
        match self {
            Ending::ClientClosed(_) => "client_closed",
            Ending::Vanished(_) => "vanished",
            Ending::Shutdown => "shutdown",
            Ending::TooSlow(_) => "too_slow",
            Ending::Stalled => "stalled",
            Ending::IdleTimeout => "idle_timeout",
            Ending::TooBig => "too_big",
            Ending::BadUtf8 => "bad_utf8",
            Ending::Protocol(_) => "protocol",
            Ending::Flooding => "flooding",
        }
    }

    /// The close code sent, or the client's own when it closed first.
    pub fn code(&self) -> Option<u16> {
        match self {
            Ending::ClientClosed(code) => *code,
            other => other.close_frame().map(|f| f.code.into()),
        }
    }

    /// Whether the client was cut off for not keeping up with the stream.
    pub fn is_slow(&self) -> bool {
        matches!(self, Ending::TooSlow(_) | Ending::Stalled)
    }

    /// Whether this is an ordinary end (client left, daemon stopping) rather than a fault.
    pub fn is_normal(&self) -> bool {
        matches!(
            self,
            Ending::ClientClosed(_) | Ending::Vanished(_) | Ending::Shutdown
        )
    }
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::ClientClosed(Some(code)) => write!(f, "client closed ({code})"),
            Ending::ClientClosed(None) => write!(f, "client closed"),
            Ending::Vanished(why) => write!(f, "connection lost: {why}"),
            Ending::Shutdown => write!(f, "server shutting down"),
            Ending::TooSlow(n) => write!(f, "too slow: {n} packets behind"),
            Ending::Stalled => write!(
                f,
                "stalled: a frame could not be sent within the send timeout"
            ),
            Ending::IdleTimeout => write!(f, "keepalive timeout"),
            Ending::TooBig => write!(f, "message over the size cap"),
            Ending::BadUtf8 => write!(f, "invalid UTF-8 in a text frame"),
            Ending::Protocol(why) => write!(f, "protocol error: {why}"),
            Ending::Flooding => write!(f, "message rate limit exceeded"),
        }
    }
}

impl From<WsError> for Ending {
    fn from(err: WsError) -> Self {
        match err {
            WsError::Capacity(_) => Ending::TooBig,
            WsError::Utf8(_) => Ending::BadUtf8,
            WsError::ConnectionClosed | WsError::AlreadyClosed => Ending::Vanished("closed".into()),
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                Ending::Vanished("reset without a close frame".into())
            }
            WsError::Io(e) => Ending::Vanished(e.to_string()),
            WsError::WriteBufferFull(_) => Ending::Stalled,
            other => Ending::Protocol(other.to_string()),
        }
    }
}

/// tungstenite settings for reading a client under `config`.
pub fn websocket_config(config: &ClientConfig) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        // tungstenite only writes control replies, into `Inbound`, which sends them at once.
        .write_buffer_size(0)
        .max_message_size(Some(config.max_message_bytes))
        .max_frame_size(Some(config.max_message_bytes))
}

/// The write half of a client's socket. It may say how many written bytes the peer has not yet
/// taken, which is how far behind a client that stopped reading is.
pub trait Outbox: AsyncWrite + Unpin {
    /// Bytes written but not yet taken by the peer, where the transport can tell.
    fn unsent(&self) -> Option<usize> {
        None
    }
}

impl Outbox for OwnedWriteHalf {
    fn unsent(&self) -> Option<usize> {
        os::unsent_bytes(self.as_ref())
    }
}

/// In-memory pipes, for tests: only the hub's queue measures how far behind they are.
impl<T: AsyncRead + AsyncWrite> Outbox for tokio::io::WriteHalf<T> {}

/// One client's socket: tungstenite over the read half, and the write half for shared frames.
struct Client<'m, R, W> {
    ws: WebSocketStream<Inbound<R>>,
    out: W,
    metrics: &'m Metrics,
    send_timeout: Duration,
    queue_size: usize,
}

/// Serves one upgraded connection until it ends, and says how it ended. `leftover` is whatever
/// the HTTP layer read past the handshake.
pub async fn serve<R, W>(
    read: R,
    out: W,
    leftover: Vec<u8>,
    hub: &Hub,
    metrics: &Metrics,
    config: &ClientConfig,
    shutdown: &CancellationToken,
) -> Ending
where
    R: AsyncRead + Unpin,
    W: Outbox,
{
    let ws = WebSocketStream::from_partially_read(
        Inbound::new(read),
        leftover,
        Role::Server,
        Some(websocket_config(config)),
    )
    .await;
    let mut client = Client {
        ws,
        out,
        metrics,
        send_timeout: Duration::from_millis(config.send_timeout_ms),
        queue_size: config.queue_size,
    };
    let Subscription { welcome, mut rx } = hub.subscribe();
    let ping_every = Duration::from_millis(config.ping_interval_ms);
    let idle_timeout = Duration::from_millis(config.idle_timeout_ms);
    let limiter = RateLimiter::direct(
        Quota::per_second(validated_non_zero(config.messages_per_second))
            .allow_burst(validated_non_zero(config.message_burst)),
    );
    let mut last_seq = welcome.seq;
    let mut ending = client.write(&welcome.welcome, Frame::Welcome).await.err();
    drop(welcome);
    let mut keepalive = interval_at(Instant::now() + ping_every, ping_every);
    keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();

    while ending.is_none() {
        ending = tokio::select! {
            _ = shutdown.cancelled() => Some(Ending::Shutdown),
            next = rx.recv() => match next {
                // Snapshots already covered by the WELCOME are skipped.
                Ok(snapshot) if snapshot.seq <= last_seq => None,
                Ok(snapshot) => {
                    last_seq = snapshot.seq;
                    client.send_packet(&snapshot.telemetry).await.err()
                }
                Err(RecvError::Lagged(missed)) => Some(Ending::TooSlow(missed)),
                Err(RecvError::Closed) => Some(Ending::Shutdown),
            },
            frame = client.ws.next() => {
                last_heard = Instant::now();
                let ending = match frame {
                    None => Some(Ending::Vanished("closed without a close frame".into())),
                    Some(Err(err)) => Some(err.into()),
                    Some(Ok(Message::Close(frame))) => {
                        Some(Ending::ClientClosed(frame.map(|f| f.code.into())))
                    }
                    // Pongs answer our own pings, so only what the client starts counts.
                    Some(Ok(Message::Pong(_))) => None,
                    Some(Ok(_)) if limiter.check().is_err() => Some(Ending::Flooding),
                    Some(Ok(Message::Text(text))) => client.answer(&text).await.err(),
                    Some(Ok(Message::Binary(data))) => {
                        debug!(bytes = data.len(), "Binary frame ignored: the protocol is JSON text");
                        None
                    }
                    // Pings: tungstenite has queued the pong, sent just below.
                    Some(Ok(_)) => None,
                };
                match ending {
                    None => client.send_replies().await.err(),
                    some => some,
                }
            },
            _ = keepalive.tick() => {
                if last_heard.elapsed() >= idle_timeout {
                    Some(Ending::IdleTimeout)
                } else {
                    client.write(wire::PING, Frame::Ping).await.err()
                }
            },
        };
    }
    let ending = ending.expect("the loop ends with an ending");
    client.close(&ending).await;
    ending
}

impl<R, W> Client<'_, R, W>
where
    R: AsyncRead + Unpin,
    W: Outbox,
{
    /// Writes one packet, unless the client already has `queue_size` packets' worth waiting in
    /// its socket: a client that stopped reading is cut off after that many ticks, and its kernel
    /// buffers stay bounded, however large they could grow.
    async fn send_packet(&mut self, frame: &[u8]) -> Result<(), Ending> {
        let behind = self.out.unsent().unwrap_or(0) / frame.len().max(1);
        if behind >= self.queue_size {
            return Err(Ending::TooSlow(behind as u64));
        }
        self.write(frame, Frame::Telemetry).await
    }

    /// Writes whole frames, giving up after the send timeout: a client that does not read must
    /// not hold its task.
    async fn write(&mut self, frames: &[u8], kind: Frame) -> Result<(), Ending> {
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
    async fn send_replies(&mut self) -> Result<(), Ending> {
        match self.ws.get_mut().take_replies() {
            Some(replies) => self.write(&replies, Frame::Reply).await,
            None => Ok(()),
        }
    }

    /// Answers one text frame from the client.
    async fn answer(&mut self, text: &str) -> Result<(), Ending> {
        match inbound::parse(text) {
            Ok(ClientMessage::Ping) => self.write(&PONG_FRAME, Frame::Reply).await,
            Ok(ClientMessage::Reserved(kind)) => {
                debug!(kind, "Reserved command ignored: not implemented yet");
                Ok(())
            }
            Ok(ClientMessage::Unknown(kind)) => {
                debug!(kind, "Unknown message type ignored");
                Ok(())
            }
            Err(why) => {
                debug!(%why, bytes = text.len(), "Malformed message ignored");
                Ok(())
            }
        }
    }

    /// Sends the ending's close frame (or the reply to the client's), then reads and discards
    /// until the peer hangs up, so the close frame is not lost to a TCP reset.
    async fn close(&mut self, ending: &Ending) {
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

/// `Config::validate` refuses a zero rate or burst.
fn validated_non_zero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("a validated rate is above 0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{self, Inputs};
    use chrono::Utc;
    use tokio::io::{DuplexStream, ReadHalf, WriteHalf};

    fn hub(queue_size: usize) -> Hub {
        Hub::new(
            aggregate::build(&Inputs::default(), Utc::now(), 50),
            queue_size,
        )
    }

    fn packet_data() -> crate::packet::Telemetry {
        aggregate::build(&Inputs::default(), Utc::now(), 50)
    }

    /// The server's read and write halves and a client, joined by an in-memory pipe of `buffer` bytes.
    async fn pair(
        buffer: usize,
    ) -> (
        (ReadHalf<DuplexStream>, WriteHalf<DuplexStream>),
        WebSocketStream<DuplexStream>,
    ) {
        let (server, client) = tokio::io::duplex(buffer);
        (
            tokio::io::split(server),
            WebSocketStream::from_raw_socket(client, Role::Client, None).await,
        )
    }

    async fn run(
        server: (ReadHalf<DuplexStream>, WriteHalf<DuplexStream>),
        hub: &Hub,
        config: &ClientConfig,
        shutdown: &CancellationToken,
    ) -> Ending {
        serve(
            server.0,
            server.1,
            Vec::new(),
            hub,
            &Metrics::new(),
            config,
            shutdown,
        )
        .await
    }

    fn config(ping_ms: u64, idle_ms: u64, send_ms: u64) -> ClientConfig {
        ClientConfig {
            ping_interval_ms: ping_ms,
            idle_timeout_ms: idle_ms,
            send_timeout_ms: send_ms,
            ..ClientConfig::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_is_pinged_then_dropped_at_the_idle_timeout() {
        let config = config(1_000, 3_000, 5_000);
        let (server, client) = pair(64 * 1024).await;
        let mut client = client.into_inner();
        let started = Instant::now();
        let ending = run(server, &hub(4), &config, &CancellationToken::new()).await;
        assert_eq!(ending, Ending::IdleTimeout);
        // Detected on the third ping tick, then at most LINGER spent closing.
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(3) && waited <= Duration::from_secs(3) + LINGER,
            "{waited:?}"
        );

        // Read what the server wrote as raw frames: a WebSocket client would answer the pings.
        let mut wire = Vec::new();
        client.read_to_end(&mut wire).await.unwrap();
        let opcodes: Vec<(u8, Vec<u8>)> = raw_frames(&wire);
        let kinds: Vec<u8> = opcodes.iter().map(|(op, _)| *op).collect();
        // WELCOME, pings at 1 s and 2 s (at 3 s the peer is already overdue), then close 1001.
        assert_eq!(kinds, [0x1, 0x9, 0x9, 0x8]);
        assert_eq!(opcodes[3].1[..2], 1001u16.to_be_bytes());
    }

    /// Splits unmasked server frames into (opcode, payload).
    fn raw_frames(mut wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut frames = Vec::new();
        while wire.len() >= 2 {
            let (opcode, len7) = (wire[0] & 0x0f, (wire[1] & 0x7f) as usize);
            let (len, header) = match len7 {
                126 => (u16::from_be_bytes([wire[2], wire[3]]) as usize, 4),
                127 => (
                    u64::from_be_bytes(wire[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                n => (n, 2),
            };
            frames.push((opcode, wire[header..header + len].to_vec()));
            wire = &wire[header + len..];
        }
        frames
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_answers_pings_stays_connected() {
        let config = config(1_000, 3_000, 5_000);
        let (server, mut client) = pair(64 * 1024).await;
        // Reading is enough: the client's WebSocket answers each ping with a pong.
        let reader = tokio::spawn(async move { while let Some(Ok(_)) = client.next().await {} });
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            stop.cancel();
        });
        assert_eq!(
            run(server, &hub(4), &config, &shutdown).await,
            Ending::Shutdown
        );
        reader.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_does_not_read_is_dropped_after_the_send_timeout() {
        let config = config(60_000, 120_000, 2_000);
        // Smaller than the WELCOME frame: the first send cannot complete.
        let (server, _client) = pair(128).await;
        let started = Instant::now();
        assert_eq!(
            run(server, &hub(4), &config, &CancellationToken::new()).await,
            Ending::Stalled
        );
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_client_that_falls_more_than_its_queue_behind_gets_1008() {
        let config = config(60_000, 120_000, 60_000);
        let (server, mut client) = pair(128).await;
        let hub = hub(2);
        let task = {
            let hub = hub.clone();
            tokio::spawn(async move { run(server, &hub, &config, &CancellationToken::new()).await })
        };
        while hub.subscribers() == 0 {
            tokio::task::yield_now().await;
        }
        // The WELCOME is stuck in the pipe; meanwhile more snapshots than the queue holds go by.
        for _ in 0..5 {
            hub.publish(packet_data());
        }
        assert!(
            matches!(client.next().await, Some(Ok(Message::Text(t))) if t.starts_with(r#"{"type":"WELCOME","seq":0,"#))
        );
        match client.next().await {
            Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Policy),
            other => panic!("expected close 1008, got {other:?}"),
        }
        drop(client);
        assert_eq!(task.await.unwrap(), Ending::TooSlow(3));
    }
}
