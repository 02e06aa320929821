//! One simulated dashboard: connects, checks that the first frame is WELCOME, then records the
//! sequence number, kernel receive time and staleness of every packet until the run ends, and,
//! when a publisher runs, which packets carry one of its prices. A stalled client stops reading
//! after its WELCOME and is only read again at the end; that part, and the watch on the
//! daemon's side of it, is in [`stalled`].
//!
//! What each frame says is read by [`crate::frames`]; the sockets come from [`crate::net`].
//! [`crate::connect`] starts the clients, and [`crate::report`] turns their [`Client`] results
//! into figures.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use crate::frames::{Frame, classify, market_price};
use crate::net::{self, TsStream, now_ns};
use crate::publisher;

mod stalled;

pub use stalled::{Drain, StallWatch, watch_stalled};

/// What every client shares with the run.
pub struct Shared {
    pub url: String,
    pub server: SocketAddr,
    pub ws_config: WebSocketConfig,
    /// Deadline for one client's connect, handshake and WELCOME.
    pub connect_timeout: Duration,
    /// SO_RCVBUF of stalled clients.
    pub stall_rcvbuf: u32,
    /// Cancelled when the connect phase is over: connects still in flight give up.
    pub connect_cutoff: CancellationToken,
    /// Cancelled at the end of the steady window: clients stop and close.
    pub stop: CancellationToken,
    /// Clients whose connect attempt is over, either way.
    pub settled: AtomicUsize,
    pub connected: AtomicUsize,
    /// Normal clients whose stream ended before the run did.
    pub ended_early: AtomicUsize,
    /// Stalled clients, watched on the server side through `sock_diag`.
    pub stalled: Mutex<Vec<StallWatch>>,
    /// A publisher runs: look for its prices in every TELEMETRY (see [`Priced`]).
    pub prices: bool,
}

/// One packet as a client saw it; 16 bytes, so 20,000 clients × 100 ticks stay small.
#[derive(Debug, Clone, Copy)]
pub struct Rx {
    pub seq: u32,
    /// Receive time minus `data.timestamp`, µs; [`NO_STALENESS`] if the timestamp did not parse.
    pub stale_us: i32,
    /// Receive time, ns since the epoch (CLOCK_REALTIME).
    pub at: i64,
}

pub const NO_STALENESS: i32 = i32::MIN;

/// A packet that carried a publisher's price as `data.market.price`; 8 bytes, kept beside the
/// [`Rx`] records, and only when a publisher runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priced {
    /// The packet's index in [`Session::rx`].
    pub rx: u32,
    /// Which publish the price is from ([`publisher::key`]).
    pub n: u32,
}

/// How a client's stream ended.
#[derive(Debug, Clone)]
pub enum End {
    /// We stopped it at the end of the run.
    Stopped,
    /// The server sent a close frame.
    ServerClose {
        at: i64,
        code: Option<u16>,
        reason: String,
    },
    /// The stream ended, or failed, without a close frame.
    Lost { at: i64, why: String },
}

/// A client that got its first frame.
#[derive(Debug)]
pub struct Session {
    pub local: SocketAddrV4,
    /// TCP connect time, ms.
    pub tcp_ms: f64,
    /// From starting the TCP connect to receiving the first frame, ms.
    pub welcome_ms: f64,
    /// From sending the HTTP upgrade request to receiving the first frame, ms: the daemon's
    /// share, without our own connect scheduling.
    pub upgrade_ms: f64,
    pub welcome_at: i64,
    pub welcome_seq: u64,
    /// The first data frame was a WELCOME.
    pub welcome_first: bool,
    /// TELEMETRY packets after the first frame.
    pub rx: Vec<Rx>,
    /// Those of them that carried a publisher's price, in the order received.
    pub priced: Vec<Priced>,
    /// WELCOME frames after the first one.
    pub extra_welcomes: u32,
    /// Text frames that are neither TELEMETRY nor WELCOME.
    pub other_text: u32,
    pub kernel_ts: u64,
    pub fallback_ts: u64,
    pub end: End,
    pub drain: Option<Drain>,
}

/// The result of one client.
#[derive(Debug)]
pub struct Client {
    pub index: usize,
    pub stalled: bool,
    pub outcome: Result<Session, String>,
}

/// Runs client `index` until the run stops.
pub async fn run(
    index: usize,
    shared: Arc<Shared>,
    source: Option<Ipv4Addr>,
    stalled: bool,
) -> Client {
    let opened = tokio::select! {
        _ = shared.connect_cutoff.cancelled() => Err("connect phase ended before WELCOME".to_string()),
        opened = timeout(shared.connect_timeout, open(&shared, source, stalled)) => {
            opened.unwrap_or_else(|_| Err(format!("no WELCOME within {:?}", shared.connect_timeout)))
        }
    };
    shared.settled.fetch_add(1, Ordering::Relaxed);
    let (ws, mut session) = match opened {
        Ok(opened) => opened,
        Err(err) => {
            return Client {
                index,
                stalled,
                outcome: Err(err),
            };
        }
    };
    shared.connected.fetch_add(1, Ordering::Relaxed);
    if stalled {
        stalled::stall(ws, &mut session, index, &shared).await;
    } else {
        read(ws, &mut session, &shared).await;
    }
    Client {
        index,
        stalled,
        outcome: Ok(session),
    }
}

/// Connects, upgrades and reads the first data frame.
async fn open(
    shared: &Shared,
    source: Option<Ipv4Addr>,
    stalled: bool,
) -> Result<(WebSocketStream<TsStream>, Session), String> {
    let socket = net::socket(source, stalled.then_some(shared.stall_rcvbuf))
        .map_err(|e| format!("socket: {e}"))?;
    let started = now_ns();
    let tcp = socket
        .connect(shared.server)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let tcp_ms = ms(now_ns() - started);
    let local = match tcp.local_addr() {
        Ok(SocketAddr::V4(a)) => a,
        Ok(other) => return Err(format!("unexpected local address {other}")),
        Err(e) => return Err(format!("local address: {e}")),
    };
    let upgrade_started = now_ns();
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(
        shared.url.as_str(),
        TsStream::new(tcp),
        Some(shared.ws_config),
    )
    .await
    .map_err(|e| format!("handshake: {}", describe(&e)))?;
    let (mut kernel_ts, mut fallback_ts) = (0, 0);
    let (text, at) = loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let at = stamp(&ws, &mut kernel_ts, &mut fallback_ts);
                break (text, at);
            }
            Some(Ok(Message::Close(frame))) => {
                return Err(format!(
                    "closed before the first frame: {}",
                    frame.map_or("no code".into(), |f| format!("{} {}", f.code, f.reason))
                ));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("before the first frame: {}", describe(&e))),
            None => return Err("EOF before the first frame".into()),
        }
    };
    let mut session = Session {
        local,
        tcp_ms,
        welcome_ms: ms(at - started),
        upgrade_ms: ms(at - upgrade_started),
        welcome_at: at,
        welcome_seq: 0,
        welcome_first: false,
        rx: Vec::with_capacity(if stalled { 0 } else { 96 }),
        priced: Vec::new(),
        extra_welcomes: 0,
        other_text: 0,
        kernel_ts,
        fallback_ts,
        end: End::Stopped,
        drain: None,
    };
    match classify(text.as_bytes()) {
        Frame::Welcome { seq, .. } => {
            session.welcome_first = true;
            session.welcome_seq = seq;
        }
        Frame::Telemetry { seq, ts_ms } => {
            session.welcome_seq = seq;
            record(&mut session, shared, text.as_bytes(), rx(seq, ts_ms, at));
        }
        Frame::Other => session.other_text += 1,
    }
    Ok((ws, session))
}

/// A normal client: records every packet until the run stops, then closes.
async fn read(mut ws: WebSocketStream<TsStream>, session: &mut Session, shared: &Shared) {
    let stopped = shared.stop.cancelled();
    tokio::pin!(stopped);
    loop {
        let next = tokio::select! {
            biased;
            _ = &mut stopped => break,
            next = ws.next() => next,
        };
        match next {
            Some(Ok(Message::Text(text))) => {
                let at = stamp(&ws, &mut session.kernel_ts, &mut session.fallback_ts);
                match classify(text.as_bytes()) {
                    Frame::Telemetry { seq, ts_ms } => {
                        record(session, shared, text.as_bytes(), rx(seq, ts_ms, at));
                    }
                    Frame::Welcome { .. } => session.extra_welcomes += 1,
                    Frame::Other => session.other_text += 1,
                }
            }
            Some(Ok(Message::Close(frame))) => {
                session.end = End::ServerClose {
                    at: now_ns(),
                    code: frame.as_ref().map(|f| f.code.into()),
                    reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                };
                break;
            }
            // Pings are answered by tungstenite; binary frames are not part of the protocol.
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                session.end = End::Lost {
                    at: now_ns(),
                    why: describe(&e),
                };
                break;
            }
            None => {
                session.end = End::Lost {
                    at: now_ns(),
                    why: "EOF".into(),
                };
                break;
            }
        }
    }
    if !matches!(session.end, End::Stopped) {
        shared.ended_early.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // Close politely, and give the server a moment to answer so it sees a clean close.
    let _ = timeout(Duration::from_secs(3), async {
        if ws.close(None).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}

/// The receive time of the message tungstenite just returned: the kernel time of the read that
/// completed it, or now if that read carried none.
fn stamp(ws: &WebSocketStream<TsStream>, kernel: &mut u64, fallback: &mut u64) -> i64 {
    match ws.get_ref().last_ts() {
        Some(ts) => {
            *kernel += 1;
            ts
        }
        None => {
            *fallback += 1;
            now_ns()
        }
    }
}

/// Keeps a TELEMETRY packet's record, and notes its price if a publisher sent it.
fn record(session: &mut Session, shared: &Shared, frame: &[u8], rx: Rx) {
    if shared.prices
        && let Some(n) = market_price(frame).and_then(publisher::key)
    {
        session.priced.push(Priced {
            rx: session.rx.len().min(u32::MAX as usize) as u32,
            n,
        });
    }
    session.rx.push(rx);
}

fn rx(seq: u64, ts_ms: Option<i64>, at: i64) -> Rx {
    let stale_us = ts_ms.map_or(NO_STALENESS, |ts| {
        (at / 1_000 - ts * 1_000).clamp(i32::MIN as i64 + 1, i32::MAX as i64) as i32
    });
    Rx {
        seq: seq.min(u32::MAX as u64) as u32,
        stale_us,
        at,
    }
}

fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

/// A readable error, with the HTTP status of a refused handshake.
fn describe(err: &WsError) -> String {
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
