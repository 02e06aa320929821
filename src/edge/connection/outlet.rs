//! A client's write side, shared by its session and the hub's fan-out. Every byte a connection
//! sends goes through its [`SocketOutlet`], under one short lock, so frames never interleave
//! whoever writes them: the hub writes each packet straight to the socket of a stream client
//! without waking its task, and the session writes everything else (WELCOME, updates, pings,
//! replies, the close). It is the edge's side of the hub's [`hub::Outlet`] trait (what the
//! fan-out writes to), named for the socket so the two are not confused.
//!
//! Nothing waits under the lock. A write that does not go out whole leaves the rest in a
//! `pending` buffer, which the session flushes as the socket drains; meanwhile whatever else is
//! written queues behind it, so order is kept. The socket holds at most `queue_size` packets'
//! worth unsent (`TCP_NOTSENT_LOWAT`): a packet that does not fit whole means the client is that
//! far behind, and the session is told to cut it off.

use std::future::poll_fn;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use super::outbox::Outbox;
use crate::hub::{self, Encoding, Form, Snapshot, deflate};
use crate::metrics::{Frame, Metrics};

/// Room for the rest of a packet and the close frame after a client was found behind.
const CLOSING_ROOM: usize = 64 * 1024;

/// The cap counts packets in steps of this many bytes. Packets vary by a few bytes from tick to
/// tick, and a cap raised at every new largest packet cost a system call per client each time
/// (with a wake-up of the socket's waiters in the kernel; measured in `docs/BENCHMARKS-JOURNAL.md`,
/// "The socket's cap in steps"). Rounded up, a client may be up to one step a packet further behind before it is
/// cut off.
const CAP_STEP: usize = 512;

/// What became of a packet offered to an outlet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Written whole.
    Sent,
    /// Queued behind bytes still waiting for the socket; the session's flush sends it.
    Queued,
    /// Not taken: the client is behind, gone or closing (see [`SocketOutlet::trouble`]).
    Refused,
}

/// Why an outlet takes no more packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trouble {
    /// A packet did not fit whole: the client is `queue_size` packets behind.
    Behind,
    /// The socket failed.
    Failed(String),
    /// The session is closing it.
    Closed,
}

/// One client's write side; see the module documentation.
pub struct SocketOutlet<W> {
    out: W,
    flow: Mutex<Flow>,
    metrics: Arc<Metrics>,
    queue_size: usize,
}

struct Flow {
    /// Bytes taken but not yet written: only while the socket is full.
    pending: Vec<u8>,
    /// The unsent bytes the socket may hold now: `queue_size` of the largest packet yet, in
    /// [`CAP_STEP`]s.
    unsent_cap: usize,
    /// The transport caps its unsent bytes (until it says it cannot).
    cappable: bool,
    /// A packet was written here since the session's keepalive last asked: the client is
    /// taking them, so it needs no ping.
    took: bool,
    trouble: Option<Trouble>,
    /// The session's task, woken when trouble is found. A waker in the flow rather than a
    /// `Notify`: the session waits on its outlet for its whole life, and a `Notify`'s wait is
    /// 88 bytes of every connection's state, this one's 8.
    waiting: Option<Waker>,
    /// How the connection's packets are written, for the fan-out: here rather than beside
    /// `queue_size`, as the flow has a byte to spare for it (a field of the outlet's own would
    /// grow every connection by 8), and the fan-out reads it under the lock it takes anyway.
    encoding: Encoding,
    /// What it asked for besides: permessage-deflate, deltas, MessagePack.
    form: Form,
    /// The [`Snapshot::serial`] of the packet last written here by the fan-out, when it went
    /// compressed and nothing was written after it; else 0. A client that keeps its deflate
    /// window holds that packet at the window's end, so the next one may come compressed
    /// after it.
    last_packet: u64,
}

impl<W: Outbox> SocketOutlet<W> {
    /// Wraps a transport's write half, for packets written as `encoding` in `form`; a packet that does not fit `queue_size` of its kind in the socket
    /// means the client is behind.
    pub fn new(
        out: W,
        queue_size: usize,
        metrics: Arc<Metrics>,
        encoding: Encoding,
        form: Form,
    ) -> Self {
        Self {
            out,
            flow: Mutex::new(Flow {
                pending: Vec::new(),
                unsent_cap: 0,
                cappable: true,
                took: false,
                trouble: None,
                waiting: None,
                encoding,
                form,
                last_packet: 0,
            }),
            metrics,
            queue_size: queue_size.max(1),
        }
    }

    /// How its packets are written.
    pub fn encoding(&self) -> Encoding {
        self.flow().encoding
    }

    /// The form its packets are written in.
    pub fn form(&self) -> Form {
        self.flow().form
    }

    /// How many packets' worth its client may fall behind.
    pub fn queue_size(&self) -> usize {
        self.queue_size
    }

    fn flow(&self) -> MutexGuard<'_, Flow> {
        self.flow.lock().expect("outlet lock poisoned")
    }

    /// Whether the hub may write packets here itself: only where the socket counts how far
    /// behind its client is.
    pub fn direct(&self) -> bool {
        let mut flow = self.flow();
        if flow.unsent_cap == 0 && flow.cappable {
            // Whether the transport can; the first packet sets the cap it keeps, `queue_size`
            // of it, however much smaller than this one.
            flow.cappable = self.out.cap_unsent(CLOSING_ROOM);
        }
        flow.cappable
    }

    /// Whether a packet was written here since the last time the session asked. A client that
    /// takes the packets shows itself alive without a ping: one that stops reading is cut off
    /// at `queue_size` packets behind, well before any idle timeout.
    pub fn took_packets(&self) -> bool {
        std::mem::take(&mut self.flow().took)
    }

    /// Writes one snapshot's packet without waiting: in this connection's encoding and form,
    /// compressed after the packet before when its client's window ends with that one
    /// ([`Snapshot::packet_after`]). On a transport that caps its unsent bytes, one that does
    /// not fit whole means the client is `queue_size` packets behind: what was begun of it is
    /// kept to finish, the cap raised for that and a close frame, and the outlet takes no
    /// more. Counts the packet when it was taken (the fan-out counts its own, once a pass: see
    /// [`hub::Outlet`]).
    pub fn offer_snapshot(&self, snapshot: &Snapshot) -> Offered {
        let mut flow = self.flow();
        let frame = snapshot.packet_after(flow.encoding, flow.form, flow.last_packet);
        let offered = self.write_packet(&mut flow, snapshot, frame);
        if offered != Offered::Refused && !frame.is_empty() {
            self.metrics.sent(Frame::Telemetry, frame.len());
        }
        offered
    }

    /// Writes `frame`, `snapshot`'s packet, under the flow's lock, and remembers whether the
    /// client's window now ends with it.
    fn write_packet(&self, flow: &mut Flow, snapshot: &Snapshot, frame: &[u8]) -> Offered {
        if frame.is_empty() {
            // Nothing for this connection in that snapshot (a market-stream path's, most): its
            // window still ends where it did.
            return Offered::Sent;
        }
        // Whether the packet went compressed follows from the frame itself, whichever
        // connection's settings made it.
        flow.last_packet = match flow.form.deflate {
            Some(deflate) if deflate.takeover && deflate::ends_compressed(frame) => snapshot.serial,
            _ => 0,
        };
        self.offer_locked(flow, frame)
    }

    /// Writes one frame as a packet, as [`SocketOutlet::offer_snapshot`] writes a snapshot's,
    /// for the tests of the cap: counted, and not in any client's window.
    #[cfg(test)]
    pub fn offer(&self, frame: &[u8]) -> Offered {
        let mut flow = self.flow();
        flow.last_packet = 0;
        let offered = self.offer_locked(&mut flow, frame);
        if offered != Offered::Refused {
            self.metrics.sent(Frame::Telemetry, frame.len());
        }
        offered
    }

    /// Writes `frame`, under the flow's lock.
    fn offer_locked(&self, flow: &mut Flow, frame: &[u8]) -> Offered {
        if flow.trouble.is_some() {
            return Offered::Refused;
        }
        let cap = self.queue_size * frame.len().next_multiple_of(CAP_STEP);
        if flow.cappable && cap > flow.unsent_cap {
            flow.cappable = self.out.cap_unsent(cap);
            flow.unsent_cap = cap;
        }
        let draining = !flow.pending.is_empty();
        if flow.cappable && draining && flow.pending.len() + frame.len() > flow.unsent_cap {
            // Behind something still draining by the queue's worth.
            return self.trouble(flow, Trouble::Behind);
        }
        let written = match self.write_or_queue(flow, frame) {
            Ok(written) => written,
            Err(err) => {
                self.metrics.send_failed();
                return self.trouble(flow, Trouble::Failed(err.to_string()));
            }
        };
        if written == frame.len() || draining || !flow.cappable {
            flow.took = true;
            return if written == frame.len() {
                Offered::Sent
            } else {
                Offered::Queued
            };
        }
        // Did not fit whole into an empty queue: behind by its whole queue.
        if written == 0 {
            flow.pending.clear(); // nothing begun, nothing to finish
        }
        flow.unsent_cap += frame.len() + CLOSING_ROOM;
        self.out.cap_unsent(flow.unsent_cap);
        self.trouble(flow, Trouble::Behind)
    }

    fn trouble(&self, flow: &mut Flow, trouble: Trouble) -> Offered {
        flow.trouble = Some(trouble);
        if let Some(waker) = flow.waiting.take() {
            waker.wake();
        }
        Offered::Refused
    }

    /// Writes what fits of `frame` now, unless bytes are already waiting, and queues the rest
    /// behind them; returns how much was written now.
    fn write_or_queue(&self, flow: &mut Flow, frame: &[u8]) -> io::Result<usize> {
        let written = if flow.pending.is_empty() {
            match self.out.try_write(frame) {
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => 0,
                Err(err) => return Err(err),
            }
        } else {
            0
        };
        flow.pending.extend_from_slice(&frame[written..]);
        Ok(written)
    }

    /// Takes a frame of the session's own, written now as far as the socket takes it; `true`
    /// when some of it waits in `pending` for [`SocketOutlet::flush`].
    pub fn push(&self, frame: &[u8], kind: Frame) -> io::Result<bool> {
        let mut flow = self.flow();
        flow.last_packet = 0;
        self.write_or_queue(&mut flow, frame)?;
        self.metrics.sent(kind, frame.len());
        Ok(!flow.pending.is_empty())
    }

    /// Whether bytes wait in `pending` for [`SocketOutlet::flush`].
    pub fn holds_pending(&self) -> bool {
        !self.flow().pending.is_empty()
    }

    /// Writes what waits in `pending` as the socket drains, until none is left.
    pub async fn flush(&self) -> io::Result<()> {
        poll_fn(|cx| {
            let mut flow = self.flow();
            while !flow.pending.is_empty() {
                match self.out.poll_write(cx, &flow.pending) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => drop(flow.pending.drain(..n)),
                    Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            // A large burst's buffer is not kept for the rest of the connection.
            flow.pending = Vec::new();
            Poll::Ready(Ok(()))
        })
        .await
    }

    /// Waits until the fan-out finds the client in trouble, and says which. One task waits at a
    /// time, the session's: a second wait takes the first one's place.
    pub fn troubled(&self) -> impl Future<Output = Trouble> + '_ {
        poll_fn(|cx| {
            let mut flow = self.flow();
            if let Some(trouble) = &flow.trouble {
                return Poll::Ready(trouble.clone());
            }
            match &mut flow.waiting {
                Some(waker) => waker.clone_from(cx.waker()),
                none => *none = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
    }

    /// The trouble found, if any.
    pub fn trouble_found(&self) -> Option<Trouble> {
        self.flow().trouble.clone()
    }

    /// Takes no more packets: the session is about to write its close frame.
    pub fn close(&self) {
        let mut flow = self.flow();
        if flow.trouble.is_none() {
            flow.trouble = Some(Trouble::Closed);
        }
    }

    /// Ends the write direction after the last frame.
    pub async fn shutdown(&self) -> io::Result<()> {
        poll_fn(|cx| self.out.poll_shutdown(cx)).await
    }
}

/// The hub's fan-out writes each packet here, in order; a client in trouble is dropped from it.
/// The hub counts the packets taken, once a pass: counters shared by every connection, added to
/// at every send from each of the pass's threads, would pass their cache line between the cores.
impl<W: Outbox> hub::Outlet for SocketOutlet<W> {
    fn offer(&self, snapshot: &Snapshot) -> bool {
        let mut flow = self.flow();
        let frame = snapshot.packet_after(flow.encoding, flow.form, flow.last_packet);
        self.write_packet(&mut flow, snapshot, frame) != Offered::Refused
    }
}

#[cfg(test)]
#[path = "outlet_tests.rs"]
mod tests;
