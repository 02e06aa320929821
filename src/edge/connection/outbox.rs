//! What an outlet writes to: the write half of a client's transport, behind one trait so the
//! outlet is the same over a real TCP socket (one `send` each, its unsent bytes capped by the
//! kernel) and over the in-memory pipes of the tests.

use std::io;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncWrite, WriteHalf};
use tokio::net::tcp::OwnedWriteHalf;

use crate::os;

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
