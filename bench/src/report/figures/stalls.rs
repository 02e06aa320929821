//! The stalled clients' figures: when the daemon gave each one up (seen from its side through
//! `sock_diag`), how long after the first packet it could not deliver, and what was still on its
//! way when the client read again at the end.

use std::collections::HashMap;

use super::{Dist, Tally, tally};
use crate::client::{Client, Session, StallWatch};
use crate::sys::tcp_state_name;

/// How the daemon treated the clients that stopped reading.
pub struct Stalls {
    pub connected: usize,
    /// Clients whose server-side socket was seen closing or gone.
    pub cut_seen: usize,
    /// Clients the server had closed by the time they were read at the end.
    pub closed_when_read: usize,
    pub still_open: usize,
    /// From the WELCOME to the cut, s.
    pub cut_after_welcome: Option<Dist>,
    /// From the first packet that could not reach the client to the cut, s.
    pub cut_after_first_undelivered: Option<Dist>,
    /// How reading each client at the end went.
    pub read_at_end: Tally,
    /// The packets and bytes read at the end from the client that had the most packets
    /// (then bytes) still on their way.
    pub max_buffered: (u32, u64),
    /// The most bytes seen queued on the server side for any watched client.
    pub server_max_send_queue: Option<u32>,
    /// One row per stalled client, in client order.
    pub clients: Vec<StallRow>,
}

/// One stalled client.
pub struct StallRow {
    pub client: usize,
    pub welcome_seq: u64,
    pub packets_buffered: u32,
    pub bytes_buffered: u64,
    /// The last TELEMETRY seq read at the end.
    pub last_seq: Option<u64>,
    /// From the WELCOME to when the other clients got the first packet this one did not, s;
    /// `None` if none was held back before the server cut the client.
    pub first_undelivered_after_s: Option<f64>,
    /// From the WELCOME to the server's cut, s.
    pub cut_after_s: Option<f64>,
    /// The server socket's TCP state when the cut was seen, `gone` if it no longer existed.
    pub state_at_cut: Option<&'static str>,
    /// `None` if the client was never watched.
    pub max_send_queue: Option<u32>,
    /// The server's socket for it was seen established.
    pub watched: bool,
    pub read_at_end: Option<String>,
}

/// The figures of the `stalled` clients, with the server-side `watches` and the first receive
/// of each seq by a normal client; `None` if no stalled client connected.
pub fn compute(
    stalled: &[(&Client, &Session)],
    watches: &[StallWatch],
    first_seen: &HashMap<u64, i64>,
) -> Option<Stalls> {
    if stalled.is_empty() {
        return None;
    }
    let watch_by_index: HashMap<usize, &StallWatch> =
        watches.iter().map(|w| (w.index, w)).collect();
    let mut clients = Vec::new();
    let (mut cut_seen, mut closed_when_read, mut still_open) = (0, 0, 0);
    let mut cut_after = Vec::new();
    let mut cut_after_stuck = Vec::new();
    for (c, s) in stalled {
        let watch = watch_by_index.get(&c.index);
        let drain = s.drain.as_ref();
        let cut_at = watch.and_then(|w| w.cut_at);
        if cut_at.is_some() {
            cut_seen += 1;
        }
        if drain.is_some_and(|d| d.server_closed) {
            closed_when_read += 1;
        } else {
            still_open += 1;
        }
        let last = drain.and_then(|d| d.last_seq).unwrap_or(s.welcome_seq);
        // The first packet that could not reach the client: when the others got it.
        // Only meaningful if that was before the cut: otherwise nothing was held back.
        let stuck_at = first_seen
            .get(&(last + 1))
            .copied()
            .filter(|&at| cut_at.is_none_or(|cut| at < cut));
        let cut_s = cut_at.map(|at| (at - s.welcome_at) as f64 / 1e9);
        if let Some(x) = cut_s {
            cut_after.push(x);
        }
        if let (Some(cut), Some(stuck)) = (cut_at, stuck_at) {
            cut_after_stuck.push((cut - stuck) as f64 / 1e9);
        }
        clients.push(StallRow {
            client: c.index,
            welcome_seq: s.welcome_seq,
            packets_buffered: drain.map_or(0, |d| d.frames),
            bytes_buffered: drain.map_or(0, |d| d.bytes),
            last_seq: drain.and_then(|d| d.last_seq),
            first_undelivered_after_s: stuck_at.map(|at| (at - s.welcome_at) as f64 / 1e9),
            cut_after_s: cut_s,
            state_at_cut: watch.filter(|w| w.cut_at.is_some()).map(|w| {
                if w.cut_state == 0 {
                    "gone"
                } else {
                    tcp_state_name(w.cut_state)
                }
            }),
            max_send_queue: watch.map(|w| w.max_send_queue),
            watched: watch.is_some_and(|w| w.seen),
            read_at_end: drain.map(|d| d.outcome.clone()),
        });
    }
    let drains = || stalled.iter().filter_map(|(_, s)| s.drain.as_ref());
    Some(Stalls {
        connected: stalled.len(),
        cut_seen,
        closed_when_read,
        still_open,
        cut_after_welcome: Dist::of(cut_after),
        cut_after_first_undelivered: Dist::of(cut_after_stuck),
        read_at_end: tally(drains().map(|d| d.outcome.clone())),
        max_buffered: drains()
            .map(|d| (d.frames, d.bytes))
            .max()
            .unwrap_or((0, 0)),
        server_max_send_queue: watches.iter().map(|w| w.max_send_queue).max(),
        clients,
    })
}
