//! A stalled dashboard: after its WELCOME it reads nothing more (its socket has a small
//! SO_RCVBUF, `--stall-rcvbuf`), so the daemon's send buffer for it fills up and the daemon has to
//! decide what to do with it. While the run lasts, [`watch_stalled`] follows the daemon's side of
//! every stalled client through `sock_diag`; when the run stops, [`stall`] reads what is left as
//! raw frames to see what was still on its way and how the connection ended.
//!
//! Part of [`super`] (the client's life); the raw frames are split by [`crate::frames`], and
//! [`crate::report`] reads the [`StallWatch`] and [`Drain`] records.

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::time::{Instant, timeout_at};

use super::{Session, Shared};
use crate::frames::{Frame, classify, raw_frame};
use crate::net::{TsStream, now_ns};
use crate::sys;

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

/// A stalled client: never reads after the first frame, until the run stops; then drains what
/// is left to see whether the server closed it.
pub(super) async fn stall(
    stream: &mut TsStream,
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
    session.drain = Some(drain(stream).await);
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
                Ok(Some((first, payload, size))) => {
                    let payload = &pending[used + payload.start..used + payload.end];
                    match first & 0x0f {
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
