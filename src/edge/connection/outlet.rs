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
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncWrite, WriteHalf};
use tokio::net::tcp::OwnedWriteHalf;

use crate::hub::{self, Encoding, Snapshot};
use crate::metrics::{Frame, Metrics};
use crate::os;

/// Room for the rest of a packet and the close frame after a client was found behind.
const CLOSING_ROOM: usize = 64 * 1024;

/// The cap counts packets in steps of this many bytes. Packets vary by a few bytes from tick to
/// tick, and a cap raised at every new largest packet cost a system call per client each time
/// (with a wake-up of the socket's waiters in the kernel; measured in `docs/BENCHMARKS-JOURNAL.md`,
/// "The socket's cap in steps"). Rounded up, a client may be up to one step a packet further behind before it is
/// cut off.
const CAP_STEP: usize = 512;

/// The write half of a client's transport, written from several places through `&self`.
pub trait Outbox: Send + Sync + 'static {
    /// Writes what fits of `buf`; `Pending` (with `cx` woken when more fits) when nothing does.
    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;

    /// Writes what fits of `buf` now, without registering to be woken.
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self.poll_write(&mut Context::from_waker(Waker::noop()), buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Ends the write direction, so the peer reads the end after the last frame.
    fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Lets at most `bytes` wait written but unsent; `false` where the transport cannot. Only a
    /// transport that can is fed by the hub directly: the cap is how it tells a client behind.
    fn cap_unsent(&self, _bytes: usize) -> bool {
        false
    }
}

impl Outbox for OwnedWriteHalf {
    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let stream = self.as_ref();
        loop {
            std::task::ready!(stream.poll_write_ready(cx))?;
            match stream.try_write(buf) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }

    /// One `send`, registering no waker, so the hub's writes never take the session's place as
    /// the one woken. Not through tokio's `try_write`: its check of the readiness it has seen
    /// reads one more allocation per socket, a cache miss per client in the fan-out's pass
    /// (measured in `docs/BENCHMARKS-JOURNAL.md`, "Storms without an overflow, and cheaper
    /// sends"). A
    /// send that finds the socket full leaves that readiness stale, and the session's next wait
    /// for room tries once and finds out.
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        os::send(self.as_ref(), buf)
    }

    fn poll_shutdown(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(os::shut_write(self.as_ref()))
    }

    fn cap_unsent(&self, bytes: usize) -> bool {
        os::cap_unsent(self.as_ref(), bytes).is_ok()
    }
}

/// In-memory pipes, for tests: the session writes them alone, and only the hub's queue measures
/// how far behind they are.
impl<T: tokio::io::AsyncRead + AsyncWrite + Send + 'static> Outbox for Mutex<WriteHalf<T>> {
    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut *self.lock().expect("pipe lock poisoned")).poll_write(cx, buf)
    }

    fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::pin::Pin::new(&mut *self.lock().expect("pipe lock poisoned")).poll_shutdown(cx)
    }
}

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
}

impl<W: Outbox> SocketOutlet<W> {
    /// Wraps a transport's write half, for packets written as `encoding`; a packet that does
    /// not fit `queue_size` of its kind in the socket means the client is behind.
    pub fn new(out: W, queue_size: usize, metrics: Arc<Metrics>, encoding: Encoding) -> Self {
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
            }),
            metrics,
            queue_size: queue_size.max(1),
        }
    }

    /// How its packets are written.
    pub fn encoding(&self) -> Encoding {
        self.flow().encoding
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

    /// Writes one packet without waiting. On a transport that caps its unsent bytes, one that
    /// does not fit whole means the client is `queue_size` packets behind: what was begun of it
    /// is kept to finish, the cap raised for that and a close frame, and the outlet takes no
    /// more. Counts the packet when it was taken (the fan-out counts its own, once a pass: see
    /// [`hub::Outlet`]).
    pub fn offer(&self, frame: &[u8]) -> Offered {
        let offered = self.offer_uncounted(frame);
        if offered != Offered::Refused {
            self.metrics.sent(Frame::Telemetry, frame.len());
        }
        offered
    }

    /// [`SocketOutlet::offer`] without counting the packet.
    fn offer_uncounted(&self, frame: &[u8]) -> Offered {
        self.offer_locked(&mut self.flow(), frame)
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
        let frame = snapshot.packet(flow.encoding);
        self.offer_locked(&mut flow, frame) != Offered::Refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    fn metrics() -> Arc<Metrics> {
        Arc::new(Metrics::new())
    }

    #[tokio::test]
    async fn a_packet_that_does_not_fit_whole_marks_a_client_that_stopped_reading_behind() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        // A small receive buffer: the client's window fills at once.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let client = socket
            .connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (_read, write) = server.into_split();
        let outlet = SocketOutlet::new(write, 4, metrics(), Encoding::Stream);
        assert!(outlet.direct(), "a TCP socket caps its unsent bytes");

        let packet = vec![b'x'; 16 * 1024];
        let mut sent = 0;
        let refused_at = loop {
            match outlet.offer(&packet) {
                Offered::Sent => sent += 1,
                Offered::Refused => break sent,
                Offered::Queued => panic!("a packet is written whole or the client is behind"),
            }
            assert!(sent < 1000, "a client that never reads is found behind");
        };
        assert!(
            refused_at >= 4,
            "the queue's worth goes out first ({refused_at})"
        );
        assert_eq!(outlet.trouble_found(), Some(Trouble::Behind));
        assert_eq!(
            outlet.offer(&packet),
            Offered::Refused,
            "and no packet after it"
        );
        drop(client);
    }

    /// A transport that takes every write whole and keeps a copy of each.
    #[derive(Default)]
    struct Recording(Mutex<Vec<Vec<u8>>>);

    impl Outbox for Recording {
        fn poll_write(&self, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            self.0.lock().unwrap().push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_shutdown(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn cap_unsent(&self, _: usize) -> bool {
            true
        }
    }

    /// The keepalive learns whether packets were taken since it last asked: taken ones count
    /// (from the fan-out and the session alike), refused ones do not, and each is told once.
    #[test]
    fn the_keepalive_learns_whether_packets_were_taken_since_it_last_asked() {
        let outlet = SocketOutlet::new(Recording::default(), 4, metrics(), Encoding::Stream);
        assert!(!outlet.took_packets(), "nothing written yet");
        assert!(outlet.direct());
        let snapshot = Snapshot::new(
            1,
            "e1".into(),
            crate::hub::packet::Telemetry::initializing(chrono::Utc::now()),
            "{}".into(),
        );
        assert!(hub::Outlet::offer(&outlet, &snapshot));
        assert!(outlet.took_packets(), "the fan-out wrote one");
        assert!(!outlet.took_packets(), "none since it was told");
        assert_eq!(outlet.offer(&snapshot.telemetry), Offered::Sent);
        assert!(outlet.took_packets(), "the session wrote one");
        assert!(outlet.push(b"reply", Frame::Reply).is_ok());
        assert!(!outlet.took_packets(), "a reply is not a packet");
        outlet.close();
        assert_eq!(outlet.offer(&snapshot.telemetry), Offered::Refused);
        assert!(!outlet.took_packets(), "a refused packet was not taken");
        assert_eq!(
            *outlet.out.0.lock().unwrap(),
            [
                snapshot.telemetry.to_vec(),
                snapshot.telemetry.to_vec(),
                b"reply".to_vec()
            ],
            "no ping in the bytes"
        );
    }

    /// A transport that takes `whole` writes, then `last` bytes of the next, then nothing; it
    /// notes every cap it is given.
    struct Filling {
        writes: Mutex<usize>,
        whole: usize,
        last: usize,
        caps: Mutex<Vec<usize>>,
    }

    impl Outbox for Filling {
        fn poll_write(&self, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            let mut writes = self.writes.lock().unwrap();
            *writes += 1;
            match *writes {
                n if n <= self.whole => Poll::Ready(Ok(buf.len())),
                n if n == self.whole + 1 && self.last > 0 => Poll::Ready(Ok(self.last)),
                _ => Poll::Pending,
            }
        }

        fn poll_shutdown(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn cap_unsent(&self, bytes: usize) -> bool {
            self.caps.lock().unwrap().push(bytes);
            true
        }
    }

    #[test]
    fn the_first_packet_caps_the_socket_at_the_queues_worth_of_it() {
        let out = Filling {
            writes: Mutex::new(0),
            whole: usize::MAX,
            last: 0,
            caps: Mutex::new(Vec::new()),
        };
        let outlet = SocketOutlet::new(out, 4, metrics(), Encoding::Stream);
        assert!(outlet.direct());
        for size in [1000, 1200, 1100, 900] {
            assert_eq!(outlet.offer(&vec![b'x'; size]), Offered::Sent);
        }
        let caps = outlet.out.caps.lock().unwrap().clone();
        assert_eq!(
            caps,
            [CLOSING_ROOM, 4 * 1024, 4 * 1536],
            "grown with the largest packet only, a step at a time"
        );
    }

    #[test]
    fn a_client_found_behind_gets_room_for_the_rest_of_the_packet_and_its_close() {
        // Found behind at a packet's start (nothing of it written) and in its middle.
        for last in [0, 100] {
            let out = Filling {
                writes: Mutex::new(0),
                whole: 4,
                last,
                caps: Mutex::new(Vec::new()),
            };
            let outlet = SocketOutlet::new(out, 4, metrics(), Encoding::Stream);
            assert!(outlet.direct());
            let packet = vec![b'x'; 20_000];
            for _ in 0..4 {
                assert_eq!(outlet.offer(&packet), Offered::Sent);
            }
            assert_eq!(outlet.offer(&packet), Offered::Refused);
            assert_eq!(outlet.trouble_found(), Some(Trouble::Behind));
            let caps = outlet.out.caps.lock().unwrap().clone();
            assert_eq!(
                caps.last(),
                Some(&(4 * 20_480 + 20_000 + CLOSING_ROOM)),
                "cap raised when behind after {last} bytes: {caps:?}"
            );
            let pending = outlet.flow().pending.len();
            assert_eq!(pending, if last == 0 { 0 } else { 20_000 - last });
        }
    }

    #[tokio::test]
    async fn what_waits_for_the_socket_goes_out_first_and_in_order() {
        let (server, mut client) = tokio::io::duplex(64);
        let (_read, write) = tokio::io::split(server);
        let outlet = SocketOutlet::new(Mutex::new(write), 4, metrics(), Encoding::Stream);
        assert!(!outlet.direct(), "a pipe is not fed by the hub");

        let first = vec![b'a'; 200];
        assert!(
            outlet.push(&first, Frame::Update).unwrap(),
            "the rest waits"
        );
        assert_eq!(outlet.offer(b"packet"), Offered::Queued);
        assert!(outlet.push(b"ping", Frame::Ping).unwrap());

        let reader = async {
            let mut got = vec![0; 210];
            client.read_exact(&mut got).await.unwrap();
            got
        };
        let (flushed, got) = tokio::join!(outlet.flush(), reader);
        flushed.unwrap();
        assert_eq!(got, [first, b"packet".to_vec(), b"ping".to_vec()].concat());
        assert!(
            !outlet.push(b"next", Frame::Ping).unwrap(),
            "empty again: written at once"
        );
    }
}
