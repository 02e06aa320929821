//! One dashboard's connection, its whole life in one place: it holds its admission slot, is
//! counted and logged when it comes and goes, and runs one `select!` loop over the hub feed, the
//! client's frames, the keepalive timer and shutdown until an [`Ending`].
//!
//! What a connection is sent and how it may talk depends on its [`Endpoint`]; the per-connection
//! state (rate limiter, keepalive, the last `seq` sent) is the [`Session`]. Per-connection
//! subscriptions, and a second kind of endpoint with other rules, are fields and variants here.

use std::num::NonZeroU32;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hyper::upgrade::{Parts, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncRead;
use tokio::net::TcpStream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, interval_at};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::admission::Permit;
use super::command::{Caller, CommandResult, Commands};
use super::context::Context;
use super::ending::Ending;
use super::message::{self, ClientMessage};
use super::socket::{Outbox, Socket};
use crate::config::Config;
use crate::hub::frame::{self, PING};
use crate::hub::packet::PONG;
use crate::hub::{Hub, Subscription};
use crate::metrics::Frame;

/// The framed answer to a client's PING.
static PONG_FRAME: LazyLock<Bytes> = LazyLock::new(|| frame::text_frame(PONG));

/// The kind of path a connection came in on, which decides what it is sent and how it talks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// A `server.ws_paths` path: WELCOME at once, then every TELEMETRY.
    Stream,
}

/// Runs one upgraded client from WELCOME to close, holding its admission slot throughout, and
/// counts and logs its coming and going. `config` is the config it was admitted under; its
/// `[clients]` settings hold for its whole life.
pub async fn run(
    upgraded: Upgraded,
    permit: Permit,
    endpoint: Endpoint,
    caller: Caller,
    config: &Config,
    ctx: &Context,
) {
    // Take the TCP socket back from hyper so frames can be written to it directly.
    let Ok(Parts { io, read_buf, .. }) = upgraded.downcast::<TokioIo<TcpStream>>() else {
        warn!("Upgraded connection is not a TCP stream; dropping it");
        return;
    };
    // Copy out what hyper read past the handshake (usually nothing): holding `read_buf` would
    // keep hyper's whole read buffer alive for the life of the connection.
    let leftover = read_buf.to_vec();
    drop(read_buf);
    let (read, write) = io.into_inner().into_split();
    ctx.metrics.connected();
    info!(clients = ctx.admission.open(), "Client Connected");
    let socket = Socket::new(read, write, leftover, &config.clients, ctx.metrics.clone()).await;
    let ending = Session::new(socket, endpoint, config)
        .with_commands(ctx.commands.clone(), caller)
        .run(&ctx.hub, &ctx.shutdown)
        .await;
    let code = ending.code();
    // Counted before the slot is freed, so whoever sees the connection gone sees it counted.
    ctx.metrics
        .disconnected(ending.label(), code, ending.is_slow());
    drop(permit);
    let clients = ctx.admission.open();
    if ending.is_normal() {
        info!(clients, reason = %ending, code, "Client Disconnected");
    } else {
        warn!(clients, reason = %ending, code, "Client Disconnected");
    }
}

/// One connection's state between the socket and the hub.
pub struct Session<R, W> {
    socket: Socket<R, W>,
    endpoint: Endpoint,
    /// Client messages beyond this rate (pongs excluded) end the connection with 1008.
    limiter: DefaultDirectRateLimiter,
    ping_every: Duration,
    idle_timeout: Duration,
    /// The command service and who this connection is; `None` where it cannot send commands
    /// (tests over pipes).
    commands: Option<(Arc<Commands>, Caller)>,
    /// Results of this connection's commands, written as they come; bounded by
    /// `commands.max_in_flight`, the number it may have running. Made at the first command:
    /// most connections never send one, and a channel costs a few KB.
    results: Option<(mpsc::Sender<CommandResult>, mpsc::Receiver<CommandResult>)>,
    max_in_flight: usize,
    in_flight: usize,
}

impl<R, W> Session<R, W>
where
    R: AsyncRead + Unpin,
    W: Outbox,
{
    /// A session on `socket` under the settings it started with.
    pub fn new(socket: Socket<R, W>, endpoint: Endpoint, config: &Config) -> Self {
        let clients = &config.clients;
        Self {
            socket,
            endpoint,
            limiter: RateLimiter::direct(
                Quota::per_second(validated_non_zero(clients.messages_per_second))
                    .allow_burst(validated_non_zero(clients.message_burst)),
            ),
            ping_every: Duration::from_millis(clients.ping_interval_ms),
            idle_timeout: Duration::from_millis(clients.idle_timeout_ms),
            commands: None,
            results: None,
            max_in_flight: config.commands.max_in_flight,
            in_flight: 0,
        }
    }

    /// Lets the session send commands, as `caller`.
    pub fn with_commands(mut self, commands: Arc<Commands>, caller: Caller) -> Self {
        self.commands = Some((commands, caller));
        self
    }

    /// Serves the connection until it ends, and says how it ended.
    pub async fn run(mut self, hub: &Hub, shutdown: &CancellationToken) -> Ending {
        let Subscription { welcome, mut rx } = hub.subscribe();
        let mut last_seq = welcome.seq;
        let mut ending = match self.endpoint {
            // The latest snapshot at once, so a dashboard never starts blank.
            Endpoint::Stream => self
                .socket
                .write(&welcome.welcome, Frame::Welcome)
                .await
                .err(),
        };
        drop(welcome);
        let mut keepalive = interval_at(Instant::now() + self.ping_every, self.ping_every);
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
                        self.socket.send_packet(&snapshot.telemetry).await.err()
                    }
                    Err(RecvError::Lagged(missed)) => Some(Ending::TooSlow(missed)),
                    Err(RecvError::Closed) => Some(Ending::Shutdown),
                },
                Some(result) = next_result(&mut self.results) => {
                    self.in_flight -= 1;
                    // Boxed, like starting one: rare paths must not grow every session's future.
                    Box::pin(self.send_result(&result)).await.err()
                },
                frame = self.socket.next() => {
                    last_heard = Instant::now();
                    match self.heard(frame).await {
                        None => self.socket.send_replies().await.err(),
                        some => some,
                    }
                },
                _ = keepalive.tick() => {
                    if last_heard.elapsed() >= self.idle_timeout {
                        Some(Ending::IdleTimeout)
                    } else {
                        self.socket.write(PING, Frame::Ping).await.err()
                    }
                },
            };
        }
        let ending = ending.expect("the loop ends with an ending");
        self.socket.close(&ending).await;
        ending
    }

    /// Acts on one frame (or the end) from the client; `Some` when the connection is over.
    async fn heard(
        &mut self,
        frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Option<Ending> {
        match frame {
            None => Some(Ending::Vanished("closed without a close frame".into())),
            Some(Err(err)) => Some(err.into()),
            Some(Ok(Message::Close(frame))) => {
                Some(Ending::ClientClosed(frame.map(|f| f.code.into())))
            }
            // Pongs answer our own pings, so only what the client starts counts.
            Some(Ok(Message::Pong(_))) => None,
            Some(Ok(_)) if self.limiter.check().is_err() => Some(Ending::Flooding),
            Some(Ok(Message::Text(text))) => self.answer(&text).await.err(),
            Some(Ok(Message::Binary(data))) => {
                debug!(
                    bytes = data.len(),
                    "Binary frame ignored: the protocol is JSON text"
                );
                None
            }
            // Pings: tungstenite has queued the pong, which the loop sends next.
            Some(Ok(_)) => None,
        }
    }

    /// Answers one text frame from the client.
    async fn answer(&mut self, text: &str) -> Result<(), Ending> {
        match message::parse(text) {
            Ok(ClientMessage::Ping) => self.socket.write(&PONG_FRAME, Frame::Reply).await,
            Ok(ClientMessage::Command { action, id }) => Box::pin(self.command(action, id)).await,
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
}

impl<R, W> Session<R, W>
where
    R: AsyncRead + Unpin,
    W: Outbox,
{
    /// Starts one command apart from this loop, or answers at once when it cannot start.
    async fn command(&mut self, action: String, id: Option<String>) -> Result<(), Ending> {
        let Some((commands, caller)) = &self.commands else {
            let result = CommandResult::refused(
                id,
                &action,
                503,
                "unavailable",
                "commands are not available on this connection".into(),
            );
            return self.send_result(&result).await;
        };
        if self.in_flight >= self.max_in_flight {
            let result = CommandResult::refused(
                id,
                &action,
                429,
                "busy",
                format!(
                    "{} commands are already waiting for the engine on this connection",
                    self.in_flight
                ),
            );
            commands.count(&result);
            return self.send_result(&result).await;
        }
        self.in_flight += 1;
        let max = self.max_in_flight;
        let (results, _) = self.results.get_or_insert_with(|| mpsc::channel(max));
        commands.start(caller.clone(), action, id, results.clone());
        Ok(())
    }

    /// Writes one COMMAND_RESULT.
    async fn send_result(&mut self, result: &CommandResult) -> Result<(), Ending> {
        let json = serde_json::to_string(result).expect("a CommandResult always serializes");
        self.socket
            .write(&frame::text_frame(&json), Frame::Reply)
            .await
    }
}

/// The next command result, once there is a channel for them; until then, never.
async fn next_result(
    results: &mut Option<(mpsc::Sender<CommandResult>, mpsc::Receiver<CommandResult>)>,
) -> Option<CommandResult> {
    match results {
        Some((_, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// `Config::validate` refuses a zero rate or burst.
fn validated_non_zero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("a validated rate is above 0")
}

/// Builds a session over in-memory halves, for the tests of this module.
#[cfg(test)]
async fn over<R, W>(read: R, write: W, config: &Config) -> Session<R, W>
where
    R: AsyncRead + Unpin,
    W: Outbox,
{
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let socket = Socket::new(read, write, Vec::new(), &config.clients, metrics).await;
    Session::new(socket, Endpoint::Stream, config)
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
