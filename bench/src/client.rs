//! One simulated dashboard: connects, checks that the first frame is WELCOME, then records the
//! sequence number, kernel receive time and staleness of every packet until the run ends, and,
//! when a publisher runs, which packets carry one of its prices. A stalled client stops reading
//! after its WELCOME and is only read again at the end; that part, and the watch on the
//! daemon's side of it, is in [`stalled`].
//!
//! A client may ask for the daemon's other forms (`docs/PROTOCOL.md` §13): fossil deltas and
//! MessagePack through the URL's query, permessage-deflate in its handshake, read by the
//! hand-written client in [`raw`] since tungstenite refuses compressed frames. Every client
//! inflates what is compressed and reads each packet's seq and timestamp as cheaply as a plain
//! one; a delta's timestamp is not in its frame, so its staleness comes from the reference
//! connection's ([`reference`], [`backfill`]). The verifying clients also decode every packet
//! fully ([`crate::verify`]).
//!
//! What each frame says is read by [`crate::frames`] and [`crate::msgpack`]; the sockets come
//! from [`crate::net`]. [`crate::connect`] starts the clients, and [`crate::report`] turns
//! their [`Client`] results into figures.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use crate::frames::{Frame, classify, market_price};
use crate::inflate;
use crate::msgpack;
use crate::net::{self, TsStream, now_ns};
use crate::publisher;
use crate::verify::{Decoder, Verify};

mod conn;
mod raw;
pub mod reference;
mod stalled;

use conn::{Conn, Data, Msg, describe};
use raw::RawWs;
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
    /// Offer permessage-deflate (`--deflate`): connect through [`raw`].
    pub deflate: bool,
    /// The clients that decode every packet fully (`--verify`), by index.
    pub verifiers: std::ops::Range<usize>,
    /// Where they check what they decode, with the reference connection's packets.
    pub verify: Option<Arc<Verify>>,
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
    /// The server took permessage-deflate.
    pub deflate: bool,
    /// Bytes on the wire of the TELEMETRY in `rx`, frame headers included.
    pub wire_bytes: u64,
    /// How many of them were fossil deltas (`"delta":true`).
    pub deltas: u32,
    /// Compressed frames that did not inflate.
    pub undecodable: u32,
    /// The connection's deflate window: the last compressed message, which the next may refer
    /// to (emptied when the run ends).
    pub window: Vec<u8>,
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
    // A verifying client decodes from its first frame on.
    let mut decoder = shared
        .verify
        .as_ref()
        .filter(|_| shared.verifiers.contains(&index) && !stalled)
        .map(|_| Decoder::default());
    let check = decoder.as_mut().map(|d| (d, index));
    let opened = tokio::select! {
        _ = shared.connect_cutoff.cancelled() => Err("connect phase ended before WELCOME".to_string()),
        opened = timeout(shared.connect_timeout, open(&shared, source, stalled, check)) => {
            opened.unwrap_or_else(|_| Err(format!("no WELCOME within {:?}", shared.connect_timeout)))
        }
    };
    shared.settled.fetch_add(1, Ordering::Relaxed);
    let (mut conn, mut session) = match opened {
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
        stalled::stall(conn.stream_mut(), &mut session, index, &shared).await;
    } else {
        let check = decoder.as_mut().map(|d| (d, index));
        read(conn, &mut session, &shared, check).await;
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
    check: Option<(&mut Decoder, usize)>,
) -> Result<(Conn, Session), String> {
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
    let stream = TsStream::new(tcp);
    let mut conn = if shared.deflate {
        Conn::Raw(RawWs::connect(stream, &shared.url).await?)
    } else {
        let (ws, _) = tokio_tungstenite::client_async_with_config(
            shared.url.as_str(),
            stream,
            Some(shared.ws_config),
        )
        .await
        .map_err(|e| format!("handshake: {}", describe(&e)))?;
        Conn::Ws(ws, None)
    };
    let deflate = matches!(&conn, Conn::Raw(raw) if raw.deflate);
    let mut session = Session {
        local,
        tcp_ms,
        welcome_ms: 0.0,
        upgrade_ms: 0.0,
        welcome_at: 0,
        welcome_seq: 0,
        welcome_first: false,
        rx: Vec::with_capacity(if stalled { 0 } else { 96 }),
        priced: Vec::new(),
        extra_welcomes: 0,
        other_text: 0,
        deflate,
        wire_bytes: 0,
        deltas: 0,
        undecodable: 0,
        window: Vec::new(),
        kernel_ts: 0,
        fallback_ts: 0,
        end: End::Stopped,
        drain: None,
    };
    loop {
        match conn.next().await {
            Some(Ok(Msg::Data(data))) => {
                let at = stamp(data.ts, &mut session);
                session.welcome_ms = ms(at - started);
                session.upgrade_ms = ms(at - upgrade_started);
                session.welcome_at = at;
                take(&mut session, shared, check, true, &data, at);
                conn.release();
                break;
            }
            Some(Ok(Msg::Close { code, reason })) => {
                return Err(format!(
                    "closed before the first frame: {}",
                    code.map_or("no code".into(), |c| format!("{c} {reason}"))
                ));
            }
            Some(Ok(Msg::Skip)) => {}
            Some(Err(e)) => return Err(format!("before the first frame: {e}")),
            None => return Err("EOF before the first frame".into()),
        }
    }
    Ok((conn, session))
}

/// One data frame: inflated if compressed, then read as [`take_message`] does; a compressed
/// frame that does not inflate is counted, and failed if this client verifies.
fn take(
    session: &mut Session,
    shared: &Shared,
    check: Option<(&mut Decoder, usize)>,
    first: bool,
    data: &Data,
    at: i64,
) {
    let wire = data.wire_bytes();
    if !data.compressed {
        return take_message(
            session,
            shared,
            check,
            first,
            data.binary,
            data.payload,
            wire,
            at,
        );
    }
    let mut check = check;
    let mut window = std::mem::take(&mut session.window);
    let inflated = inflate::with_inflated(&mut window, data.payload, |bytes| {
        take_message(
            session,
            shared,
            check.take(),
            first,
            data.binary,
            bytes,
            wire,
            at,
        )
    });
    session.window = window;
    if let Err(why) = inflated {
        session.undecodable += 1;
        if let (Some((_, index)), Some(verify)) = (check, &shared.verify) {
            verify.check(index, Err(why));
        }
    }
}

/// One message's bytes: a text frame's JSON or a binary frame's MessagePack, whatever was asked
/// for (`bff-floor` sends plain JSON to everyone). `first` for the connection's first frame.
#[allow(clippy::too_many_arguments)]
fn take_message(
    session: &mut Session,
    shared: &Shared,
    check: Option<(&mut Decoder, usize)>,
    first: bool,
    binary: bool,
    bytes: &[u8],
    wire: u64,
    at: i64,
) {
    let frame = if binary {
        msgpack::classify(bytes)
    } else {
        classify(bytes)
    };
    match frame {
        Frame::Welcome { seq, .. } if first => {
            session.welcome_first = true;
            session.welcome_seq = seq;
        }
        Frame::Welcome { .. } => session.extra_welcomes += 1,
        Frame::Telemetry { seq, ts_ms } => {
            if first {
                session.welcome_seq = seq;
            }
            session.wire_bytes += wire;
            if !binary && bytes.ends_with(br#","delta":true}"#) {
                session.deltas += 1;
            }
            record(session, shared, bytes, rx(seq, ts_ms, at));
        }
        Frame::Other => session.other_text += 1,
    }
    let (Some((decoder, index)), Some(verify)) = (check, &shared.verify) else {
        return;
    };
    match frame {
        Frame::Welcome { .. } | Frame::Telemetry { .. } => {
            let decoded = decoder
                .decode(bytes, binary)
                .and_then(|d| d.ok_or_else(|| "a packet that does not decode as one".to_string()));
            verify.check(index, decoded);
        }
        // Any other message (an announcement, an answer) must still be one: a message that
        // inflated to garbage is not passed over.
        Frame::Other => {
            if let Err(why) = crate::verify::well_formed(bytes, binary) {
                verify.check(index, Err(why));
            }
        }
    }
}

/// A normal client: records every packet until the run stops, then closes. A verifying one
/// (`check`: its decoder and index) also decodes each packet fully and has it checked.
async fn read(
    mut conn: Conn,
    session: &mut Session,
    shared: &Shared,
    mut check: Option<(&mut Decoder, usize)>,
) {
    let stopped = shared.stop.cancelled();
    tokio::pin!(stopped);
    loop {
        let next = tokio::select! {
            biased;
            _ = &mut stopped => break,
            next = conn.next() => next,
        };
        match next {
            Some(Ok(Msg::Data(data))) => {
                let at = stamp(data.ts, session);
                let check = check.as_mut().map(|(d, index)| (&mut **d, *index));
                take(session, shared, check, false, &data, at);
                conn.release();
            }
            Some(Ok(Msg::Close { code, reason })) => {
                session.end = End::ServerClose {
                    at: now_ns(),
                    code,
                    reason,
                };
                break;
            }
            // Pings are answered by tungstenite or by `raw`.
            Some(Ok(Msg::Skip)) => {}
            Some(Err(why)) => {
                session.end = End::Lost { at: now_ns(), why };
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
    session.window = Vec::new();
    if !matches!(session.end, End::Stopped) {
        shared.ended_early.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // Close politely, and give the server a moment to answer so it sees a clean close.
    let _ = timeout(Duration::from_secs(3), conn.close()).await;
}

/// The receive time of the message just read: the kernel time of the read that completed it,
/// or now if that read carried none.
fn stamp(kernel_ts: Option<i64>, session: &mut Session) -> i64 {
    match kernel_ts {
        Some(ts) => {
            session.kernel_ts += 1;
            ts
        }
        None => {
            session.fallback_ts += 1;
            now_ns()
        }
    }
}

/// The staleness of the packets whose frame carried no timestamp to read (a fossil delta's is
/// inside the delta), from the timestamp the reference connection read for the same seq.
pub fn backfill(session: &mut Session, stamps: &BTreeMap<u64, i64>) {
    for rx in session
        .rx
        .iter_mut()
        .filter(|rx| rx.stale_us == NO_STALENESS)
    {
        if let Some(&ts_ms) = stamps.get(&u64::from(rx.seq)) {
            rx.stale_us = staleness(rx.at, ts_ms);
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
    let stale_us = ts_ms.map_or(NO_STALENESS, |ts| staleness(at, ts));
    Rx {
        seq: seq.min(u32::MAX as u64) as u32,
        stale_us,
        at,
    }
}

/// Receive time `at` (ns) minus a timestamp (ms), µs.
fn staleness(at: i64, ts_ms: i64) -> i32 {
    (at / 1_000 - ts_ms * 1_000).clamp(i32::MIN as i64 + 1, i32::MAX as i64) as i32
}

fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}
