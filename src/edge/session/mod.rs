//! One dashboard's connection, its whole life in one place: it holds its admission slot, is
//! counted and logged when it comes and goes, and runs one `select!` loop over the hub feed, its
//! relay channels, its commands' results, the client's frames, the keepalive timer and shutdown
//! until an [`Ending`]. A stream connection's packets are written by the hub's fan-out once it
//! is welcomed, so its task sleeps through the ticks.
//!
//! What a connection is sent and how it talks depends on its [`Encoding`], which the path it
//! came in on decides: a stream path gets WELCOME at once and every TELEMETRY; a bridge path
//! gets nothing until it subscribes, in the lowercase dialect. The session asks the encoding
//! what to do and takes its frames from the snapshots and messages, never picking one itself.
//! What a client says is answered in `answer`; its commands are queued, in `command`, and run
//! apart. How it follows the hub is in `feed`, its client's rates and its keepalive grid in
//! `pace`. What clients may send is in [`message`], its relay-channel subscriptions in
//! [`channels`], its token's checks on reloads in `token`.

mod answer;
pub(crate) mod channels;
mod command;
mod feed;
pub mod message;
mod pace;
mod token;

pub use token::TokenCheck;

use command::next_result;
use feed::next_snapshot;
#[cfg(test)]
use pace::KEEPALIVE_GRID;
use pace::on_the_grid;

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use governor::DefaultDirectRateLimiter;
use hyper::upgrade::{OnUpgrade, Parts};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncRead;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::edge::admission::limits::Permit;
use crate::edge::command::{Caller, Commands};
use crate::edge::connection::ending::Ending;
use crate::edge::connection::outbox::Outbox;
use crate::edge::connection::socket::Socket;
use crate::edge::context::Context;
use crate::edge::http::io::HttpIo;
use crate::edge::session::channels::Channels;
use crate::hub::frame::PING;
use crate::hub::{Encoding, Form, Hub, Resume, Snapshot};
use crate::metrics::Frame;

/// What the handshake decided about a client it let in.
pub struct Admitted {
    /// Its slot among the open connections, given back when it ends.
    pub permit: Permit,
    /// How its frames are written, which the path it came in on decided.
    pub encoding: Encoding,
    /// What it asked for besides: permessage-deflate, deltas, MessagePack.
    pub form: Form,
    /// Who it is, for its commands.
    pub caller: Caller,
    /// Where it left off, when it reconnected with `?since=…&epoch=…`.
    pub resume: Option<Resume>,
    /// The config it was admitted under; its `[clients]` settings hold for its whole life.
    pub config: Arc<Config>,
    /// Its token, to check again on reloads; `None` when it came without one.
    pub token_check: Option<Box<TokenCheck>>,
}

/// Runs one client from its upgrade until it ends, holding its admission slot throughout, and
/// counts and logs its coming and going.
///
/// Not an `async fn`: the task lives as long as the connection, and an `async fn` keeps its
/// arguments twice (as passed, and as bound in its body). The start, which runs once, is boxed
/// and given the admission before the task's own future is made, so the task keeps only the
/// admission slot and the running session's box.
#[allow(clippy::manual_async_fn)] // see above: an `async fn` would keep its arguments twice
pub fn serve(
    on_upgrade: OnUpgrade,
    admitted: Admitted,
    ctx: Arc<Context>,
) -> impl Future<Output = ()> + Send {
    let start = Box::pin(start(on_upgrade, admitted, ctx.clone()));
    async move {
        let Some((session, permit, peer)) = start.await else {
            return;
        };
        let ending = Box::pin(session.run(&ctx.shutdown)).await;
        let code = ending.code();
        // Counted before the slot is freed, so whoever sees the connection gone sees it counted.
        ctx.metrics
            .disconnected(ending.label(), code, ending.is_slow());
        drop(permit);
        let clients = ctx.admission.open();
        if ending.is_normal() {
            info!(%peer, clients, reason = %ending, code, "Client Disconnected");
        } else {
            warn!(%peer, clients, reason = %ending, code, "Client Disconnected");
        }
    }
}

/// Waits for the upgrade, takes the TCP socket back from hyper, and makes the session over it;
/// returns it with the admission slot it holds and the peer's address, or `None` when there is
/// no connection to serve.
async fn start(
    on_upgrade: OnUpgrade,
    admitted: Admitted,
    ctx: Arc<Context>,
) -> Option<(Session<OwnedReadHalf, OwnedWriteHalf>, Permit, SocketAddr)> {
    let Admitted {
        permit,
        encoding,
        form,
        caller,
        resume,
        config,
        token_check,
    } = admitted;
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(err) => {
            debug!(%err, "Upgrade did not complete");
            return None;
        }
    };
    // Take the TCP socket back from hyper so frames can be written to it directly.
    let Ok(Parts { io, read_buf, .. }) = upgraded.downcast::<TokioIo<HttpIo>>() else {
        warn!(peer = %caller.peer, "Upgraded connection is not a TCP stream; dropping it");
        return None;
    };
    // Copy out what hyper read past the handshake (usually nothing): holding `read_buf` would
    // keep hyper's whole read buffer alive for the life of the connection.
    let leftover = read_buf.to_vec();
    drop(read_buf);
    let (read, write) = io.into_inner().into_inner().into_split();
    ctx.metrics.connected();
    let peer = caller.peer;
    info!(
        %peer,
        clients = ctx.admission.open(),
        endpoint = ?encoding,
        "Client Connected"
    );
    let socket = Socket::new(
        read,
        write,
        leftover,
        &config.clients,
        ctx.metrics.clone(),
        (encoding, form),
    )
    .await;
    let session = Session::new(socket, config, ctx.hub.clone())
        .with_commands(ctx.commands.clone(), caller)
        .checking_token(token_check)
        .resuming(resume);
    Some((session, permit, peer))
}

/// One connection's state between the socket and the hub.
pub struct Session<R, W> {
    socket: Socket<R, W>,
    /// How its frames are written, and the dialect it talks.
    encoding: Encoding,
    /// What it asked for besides its encoding.
    form: Form,
    /// The config it was admitted under.
    config: Arc<Config>,
    hub: Hub,
    /// The packets: from the start, or once it subscribes to `telemetry` where that is a
    /// channel ([`Encoding::telemetry_is_a_channel`]).
    feed: Option<broadcast::Receiver<Arc<Snapshot>>>,
    /// The last packet sent and its epoch, so none is sent twice or out of order.
    last_seq: u64,
    epoch: Option<Arc<str>>,
    /// Where the client left off, when it reconnected asking to resume (boxed, as are the
    /// other rarely used parts below: every connection keeps its session).
    resume: Option<Box<Resume>>,
    /// The epoch it asked to resume in: its relay offsets belong to it too.
    resume_epoch: Option<Box<str>>,
    /// Its relay-channel subscriptions.
    channels: Channels,
    /// Whether a ping went out that no pong has answered yet: only such a pong shows the client
    /// alive and is free; any other is a message the client started, counted like the rest.
    pinged: bool,
    /// Client messages beyond this rate (pongs to our pings excluded) end the connection with
    /// 1008. Made at
    /// the first message: most dashboards never send one, and a fresh limiter allows the full
    /// burst, as one made at the start would after any pause.
    limiter: Option<Box<DefaultDirectRateLimiter>>,
    /// Channels subscribed beyond this rate end the connection with 1008: each costs the relay
    /// a topic. Made at the first SUBSCRIBE, for the same reasons.
    joins: Option<Box<DefaultDirectRateLimiter>>,
    /// The command service and who this connection is; `None` where it cannot send commands
    /// (tests over pipes).
    commands: Option<(Arc<Commands>, Caller)>,
    /// This connection's command queue and its results, written as they come; bounded by
    /// `commands.max_in_flight`, the number it may have waiting. Made at the first command.
    pending: Option<Box<command::Pending>>,
    in_flight: usize,
    /// Its token, checked again on reloads; `None` for a connection without one.
    token_check: Option<Box<TokenCheck>>,
}

impl<R, W> Session<R, W>
where
    R: AsyncRead + Unpin,
    W: Outbox,
{
    /// A session on `socket` under the settings it started with, fed by `hub`, in the
    /// socket's encoding.
    pub fn new(socket: Socket<R, W>, config: Arc<Config>, hub: Hub) -> Self {
        Self {
            encoding: socket.outlet().encoding(),
            form: socket.outlet().form(),
            socket,
            config,
            hub,
            feed: None,
            last_seq: 0,
            epoch: None,
            resume: None,
            resume_epoch: None,
            channels: Channels::default(),
            pinged: false,
            limiter: None,
            joins: None,
            commands: None,
            pending: None,
            in_flight: 0,
            token_check: None,
        }
    }

    /// Checks the session's token again at every reload, when it has one.
    pub fn checking_token(mut self, check: Option<Box<TokenCheck>>) -> Self {
        self.token_check = check;
        self
    }

    /// Resumes the client's stream where it left off, when the history reaches back.
    pub fn resuming(mut self, resume: Option<Resume>) -> Self {
        self.resume_epoch = resume.as_ref().map(|r| r.epoch.as_str().into());
        self.resume = resume.map(Box::new);
        self
    }

    /// Lets the session send commands, as `caller`.
    pub fn with_commands(mut self, commands: Arc<Commands>, caller: Caller) -> Self {
        self.commands = Some((commands, caller));
        self
    }

    /// Serves the connection until it ends, and says how it ended.
    ///
    /// Not an `async fn`: one keeps an argument taken by value twice, as passed and as bound
    /// in its body, and this future lives as long as the connection.
    #[allow(clippy::manual_async_fn)] // see above: an `async fn` would keep the session twice
    pub fn run<'a>(mut self, shutdown: &'a CancellationToken) -> impl Future<Output = Ending> + 'a
    where
        R: 'a,
        W: 'a,
    {
        async move {
            let mut ending = if self.encoding.telemetry_is_a_channel() {
                None
            } else {
                // The latest snapshot at once, so a dashboard never starts blank.
                match Box::pin(self.follow(Frame::Welcome)).await {
                    Ok(()) => Box::pin(self.go_direct()).await.err(),
                    Err(ending) => Some(ending),
                }
            };
            let outlet = self.socket.outlet().clone();
            // A timer kept in place rather than an `Interval`, which boxes its own.
            let mut keepalive = pin!(sleep_until(on_the_grid(self.next_ping(Instant::now()))));
            // The last sign of life: a message from the client, or packets it took.
            let mut alive_at = Instant::now();
            // Made once: a wait on the shared token made and dropped at every turn of the loop
            // would take the token's lock twice a packet, against every other connection.
            let mut cancelled = pin!(shutdown.cancelled());

            while ending.is_none() {
                ending = tokio::select! {
                    _ = &mut cancelled => Some(Ending::Shutdown),
                    // The fan-out found the client behind or gone.
                    _ = outlet.troubled() => Some(self.socket.troubled().await),
                    next = next_snapshot(&mut self.feed) => match next {
                        // Snapshots already sent (with the WELCOME, or as missed ones) are skipped;
                        // another epoch is a new count.
                        Ok(snapshot) if snapshot.seq <= self.last_seq
                            && self.epoch.as_ref() == Some(&snapshot.epoch) => None,
                        Ok(snapshot) => {
                            self.last_seq = snapshot.seq;
                            self.epoch = Some(snapshot.epoch.clone());
                            self.socket.send_packet(&snapshot).await.err()
                        }
                        Err(RecvError::Lagged(missed)) => Some(Ending::TooSlow(missed)),
                        Err(RecvError::Closed) => Some(Ending::Shutdown),
                    },
                    heard = self.channels.next() => match heard {
                        Ok(update) => {
                            let frame = update.frame_as(self.encoding, self.form);
                            self.socket.write(frame, Frame::Update).await.err()
                        }
                        // Fell behind on a channel: the offsets show the gap; carry on.
                        Err(skipped) => {
                            debug!(skipped, "Relay updates skipped for a slow client");
                            None
                        }
                    },
                    () = token::due(&mut self.token_check) => self.recheck_token().err(),
                    Some(result) = next_result(&mut self.pending) => {
                        self.in_flight -= 1;
                        // Boxed, like starting one: rare paths must not grow every session's future.
                        Box::pin(self.send_result(&result)).await.err()
                    },
                    frame = self.socket.next() => {
                        // A pong shows the client alive only when it answers our ping: an
                        // unsolicited one must not keep a dead or hostile client on forever.
                        let pong = matches!(frame, Some(Ok(Message::Pong(_))));
                        let answer = pong && std::mem::take(&mut self.pinged);
                        if !pong || answer {
                            alive_at = Instant::now();
                        }
                        // Boxed: what a client says is rare, and its handling must not grow the
                        // state every connection keeps.
                        match Box::pin(self.heard(frame, answer)).await {
                            None => self.socket.send_replies().await.err(),
                            some => some,
                        }
                    },
                    () = &mut keepalive => {
                        // A ping interval after the last one was due, which keeps it on the
                        // grid; from now, when the loop was kept past that.
                        let now = Instant::now();
                        let next = self.next_ping(keepalive.deadline());
                        keepalive.as_mut().reset(if next > now { next } else { self.next_ping(now) });
                        let idle_timeout = self.config.clients.idle_timeout_ms;
                        if outlet.took_packets() {
                            // Taking packets shows it alive, without a ping: a client that
                            // stops reading is cut off `queue_size` packets behind.
                            alive_at = Instant::now();
                            None
                        } else if alive_at.elapsed() >= Duration::from_millis(idle_timeout) {
                            Some(Ending::IdleTimeout)
                        } else {
                            self.pinged = true;
                            self.socket.write(PING, Frame::Ping).await.err()
                        }
                    },
                };
            }
            let ending = ending.expect("the loop ends with an ending");
            // Boxed, as it runs once: its state must not be every connection's.
            Box::pin(self.socket.close(&ending)).await;
            ending
        }
    }

    /// Acts on one frame (or the end) from the client, `answer` when it is a pong to our ping;
    /// `Some` when the connection is over.
    async fn heard(
        &mut self,
        frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
        answer: bool,
    ) -> Option<Ending> {
        match frame {
            None => Some(Ending::Vanished("closed without a close frame".into())),
            Some(Err(err)) => Some(err.into()),
            Some(Ok(Message::Close(frame))) => {
                Some(Ending::ClientClosed(frame.map(|f| f.code.into())))
            }
            // A pong that answers our ping is free; an unsolicited one counts like any message.
            Some(Ok(Message::Pong(_))) if answer => None,
            Some(Ok(_)) if self.flooding() => Some(Ending::Flooding),
            Some(Ok(Message::Text(text))) => self.answer(&text).await.err(),
            Some(Ok(Message::Binary(data))) => {
                debug!(
                    bytes = data.len(),
                    "Binary frame ignored: the protocol is JSON text"
                );
                None
            }
            // Pings (tungstenite has queued the pong, which the loop sends next), and pongs
            // within the rate.
            Some(Ok(_)) => None,
        }
    }
}

#[cfg(test)]
mod tests;
