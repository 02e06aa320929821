//! One simulated dashboard: connects, checks that the first frame is WELCOME, then records the
//! sequence number, kernel receive time and staleness of every packet until the run ends. A
//! stalled client stops reading after its WELCOME and is only read again at the end.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use crate::net::{self, TsStream, now_ns};
use crate::sys;

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

/// What reading a stalled client at the end found.
#[derive(Debug, Clone)]
pub struct Drain {
    /// Complete data frames still buffered.
    pub frames: u32,
    /// Bytes read.
    pub bytes: u64,
    /// The last TELEMETRY seq among them.
    pub last_seq: Option<u64>,
    /// Whether the server had closed the connection (close frame, EOF or reset).
    pub server_closed: bool,
    pub outcome: String,
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

/// The server-side view of one stalled client, kept up to date by [`watch_stalled`].
#[derive(Debug, Clone)]
pub struct StallWatch {
    pub index: usize,
    /// The client's address: the peer of the server's socket.
    pub client: SocketAddrV4,
    /// The server's socket for it was seen ESTABLISHED at least once.
    pub seen: bool,
    /// When the server's socket was first seen closing or gone.
    pub cut_at: Option<i64>,
    /// The server socket's state then (0 if it was gone).
    pub cut_state: u8,
    /// The most bytes seen queued in the server's send buffer for it.
    pub max_send_queue: u32,
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
        stall(ws, &mut session, index, &shared).await;
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
            session.rx.push(rx(seq, ts_ms, at));
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
                    Frame::Telemetry { seq, ts_ms } => session.rx.push(rx(seq, ts_ms, at)),
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

/// A stalled client: never reads after the first frame, until the run stops; then drains what
/// is left to see whether the server closed it.
async fn stall(
    mut ws: WebSocketStream<TsStream>,
    session: &mut Session,
    index: usize,
    shared: &Shared,
) {
    shared
        .stalled
        .lock()
        .expect("stall list poisoned")
        .push(StallWatch {
            index,
            client: session.local,
            seen: false,
            cut_at: None,
            cut_state: 0,
            max_send_queue: 0,
        });
    shared.stop.cancelled().await;
    session.drain = Some(drain(ws.get_mut()).await);
}

/// Reads what a stalled client has left, as raw frames: through tungstenite it would answer the
/// buffered pings, writing to a connection the server may have closed and drawing a reset.
async fn drain(stream: &mut TsStream) -> Drain {
    let mut drain = Drain {
        frames: 0,
        bytes: 0,
        last_seq: None,
        server_closed: false,
        outcome: String::new(),
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut close: Option<String> = None;
    let mut in_sync = true;
    // Buffered frames come at once; a server that still serves this client sends one a second.
    let cap = Instant::now() + Duration::from_secs(5);
    let idle = Duration::from_millis(500);
    let ended = loop {
        let n = match timeout_at(cap.min(Instant::now() + idle), stream.read(&mut chunk)).await {
            Err(_) => break None,
            Ok(Ok(0)) => break Some("EOF".to_string()),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => break Some(e.to_string()),
        };
        drain.bytes += n as u64;
        if !in_sync {
            continue;
        }
        pending.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        loop {
            match raw_frame(&pending[used..]) {
                Ok(Some((opcode, payload, size))) => {
                    let payload = &pending[used + payload.start..used + payload.end];
                    match opcode {
                        0x1 => {
                            drain.frames += 1;
                            if let Frame::Telemetry { seq, .. } = classify(payload) {
                                drain.last_seq = Some(seq);
                            }
                        }
                        0x8 => {
                            close = Some(match payload {
                                [hi, lo, reason @ ..] => format!(
                                    "close frame {} {}",
                                    u16::from_be_bytes([*hi, *lo]),
                                    String::from_utf8_lossy(reason)
                                ),
                                _ => "close frame".into(),
                            })
                        }
                        _ => {}
                    }
                    used += size;
                }
                Ok(None) => break,
                Err(()) => {
                    in_sync = false;
                    break;
                }
            }
        }
        pending.drain(..used);
    };
    drain.server_closed = ended.is_some() || close.is_some();
    drain.outcome = match (close, ended) {
        (Some(close), Some(end)) => format!("{close}, then {end}"),
        (Some(close), None) => format!("{close}, connection still open"),
        (None, Some(end)) => format!("{end} without a close frame"),
        (None, None) => "still open".into(),
    };
    if !in_sync {
        drain.outcome.push_str(" (frames not parsed)");
    }
    drain
}

/// One unmasked server frame at the start of `buf`: (opcode, payload range, frame size); `None`
/// if incomplete, `Err` if it does not look like a server frame.
fn raw_frame(buf: &[u8]) -> Result<Option<(u8, std::ops::Range<usize>, usize)>, ()> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 || b1 & 0x80 != 0 {
        return Err(());
    }
    let (len, header) = match b1 & 0x7f {
        126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")),
            10,
        ),
        126 | 127 => return Ok(None),
        n => (u64::from(n), 2),
    };
    let size = usize::try_from(len).map_err(|_| ())?.saturating_add(header);
    if buf.len() < size {
        return Ok(None);
    }
    Ok(Some((b0 & 0x0f, header..size, size)))
}

/// Watches the server side of every stalled client (exact `sock_diag` lookups, both ends are on
/// this host) until the run stops, recording when the daemon gave each one up.
pub async fn watch_stalled(shared: Arc<Shared>) {
    let SocketAddr::V4(server) = shared.server else {
        return;
    };
    let mut diag = match sys::SockDiag::open() {
        Ok(diag) => diag,
        Err(err) => {
            eprintln!("bff-load: warning: cannot watch stalled clients (sock_diag: {err})");
            return;
        }
    };
    let mut every = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let at = now_ns();
        let mut watches = shared.stalled.lock().expect("stall list poisoned");
        for w in watches.iter_mut().filter(|w| w.cut_at.is_none()) {
            // Each lookup is one short syscall round trip, so holding the lock is fine.
            match diag.lookup(server, w.client) {
                Ok(Some(side)) if side.state == 1 => {
                    w.seen = true;
                    w.max_send_queue = w.max_send_queue.max(side.send_queue);
                }
                Ok(Some(side)) => {
                    w.cut_at = Some(at);
                    w.cut_state = side.state;
                }
                Ok(None) if w.seen => {
                    w.cut_at = Some(at);
                    w.cut_state = 0;
                }
                Ok(None) | Err(_) => {}
            }
        }
    }
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

/// What a frame's first bytes say.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Telemetry { seq: u64, ts_ms: Option<i64> },
    Welcome { seq: u64, ts_ms: Option<i64> },
    Other,
}

const TELEMETRY: &[u8] = br#"{"type":"TELEMETRY","seq":"#;
const WELCOME: &[u8] = br#"{"type":"WELCOME","seq":"#;
const TIMESTAMP: &[u8] = br#","data":{"timestamp":""#;

/// Reads the type, seq and `data.timestamp` from the envelope's fixed opening
/// (`{"type":"TELEMETRY","seq":N,"data":{"timestamp":"…"`, see `packet::envelope` and the field
/// order of `packet::Telemetry`) without parsing the rest of the packet.
pub fn classify(frame: &[u8]) -> Frame {
    let (rest, telemetry) = if let Some(rest) = frame.strip_prefix(TELEMETRY) {
        (rest, true)
    } else if let Some(rest) = frame.strip_prefix(WELCOME) {
        (rest, false)
    } else {
        return Frame::Other;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return Frame::Other;
    }
    let seq = rest[..digits]
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    let ts_ms = rest[digits..]
        .strip_prefix(TIMESTAMP)
        .and_then(|ts| ts.get(..24))
        .and_then(parse_rfc3339_ms);
    if telemetry {
        Frame::Telemetry { seq, ts_ms }
    } else {
        Frame::Welcome { seq, ts_ms }
    }
}

/// `2025-12-21T11:59:59.812Z` → ms since the epoch; the daemon's only timestamp format.
fn parse_rfc3339_ms(s: &[u8]) -> Option<i64> {
    if s.len() != 24
        || s[4] != b'-'
        || s[7] != b'-'
        || s[10] != b'T'
        || s[13] != b':'
        || s[16] != b':'
        || s[19] != b'.'
        || s[23] != b'Z'
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        s[range].iter().try_fold(0i64, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss, milli) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from civil (H. Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1_000 + milli)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bff::hub::packet;
    use bff::input::aggregate::{self, Inputs};
    use chrono::{DateTime, Utc};

    #[test]
    fn timestamps_parse_like_chrono() {
        for s in [
            "2025-12-21T11:59:59.812Z",
            "2024-02-29T00:00:00.000Z",
            "2000-03-01T23:59:59.999Z",
            "1970-01-01T00:00:00.001Z",
        ] {
            let want = DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis();
            assert_eq!(parse_rfc3339_ms(s.as_bytes()), Some(want), "{s}");
        }
        assert_eq!(parse_rfc3339_ms(b"2025-12-21T11:59:59Z"), None);
    }

    #[test]
    fn raw_server_frames_split() {
        let mut wire = vec![0x81, 126, 0x01, 0x00];
        wire.extend(std::iter::repeat_n(b'x', 256));
        wire.extend([0x88, 0x02, 0x03, 0xe9]);
        let (op, payload, size) = raw_frame(&wire).unwrap().unwrap();
        assert_eq!((op, payload, size), (1, 4..260, 260));
        assert_eq!(raw_frame(&wire[260..]).unwrap(), Some((8, 2..4, 4)));
        assert_eq!(raw_frame(&wire[..100]).unwrap(), None);
        // Masked (client) frames are not what a server sends.
        assert!(raw_frame(&[0x81, 0x85]).is_err());
    }

    #[test]
    fn the_daemons_own_frames_classify() {
        let now = Utc::now();
        let data = aggregate::build(&Inputs::default(), now, 50);
        let (telemetry, welcome) = packet::frames(42, &packet::body(&data));
        let ms = now.timestamp_millis();
        assert_eq!(
            classify(telemetry.as_bytes()),
            Frame::Telemetry {
                seq: 42,
                ts_ms: Some(ms)
            }
        );
        assert_eq!(
            classify(welcome.as_bytes()),
            Frame::Welcome {
                seq: 42,
                ts_ms: Some(ms)
            }
        );
        assert_eq!(classify(packet::PONG.as_bytes()), Frame::Other);
    }
}
