//! The read half of a dashboard's socket as tungstenite sees it. tungstenite does the reading
//! (unmasking, UTF-8, limits); [`Inbound`] gives it the read half and collects the few control
//! frames it writes itself (replies to pings and closes) for the connection to send in order,
//! since every other byte a connection writes is a shared, pre-framed packet.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The read half of a connection as tungstenite sees it. Writes land in `replies` (a few bytes,
/// and only when the client pings or closes) instead of the socket; the connection sends them.
#[derive(Debug)]
pub struct Inbound<R> {
    read: R,
    replies: Vec<u8>,
}

/// Reply bytes kept allocated between uses; a larger buffer is freed once sent.
const REPLIES_KEEP: usize = 256;

impl<R> Inbound<R> {
    /// Wraps the read half of a socket.
    pub fn new(read: R) -> Self {
        Self {
            read,
            replies: Vec::new(),
        }
    }

    /// The control frames tungstenite wrote since the last call, leaving the buffer empty.
    pub fn take_replies(&mut self) -> Option<Vec<u8>> {
        if self.replies.is_empty() {
            return None;
        }
        let keep = if self.replies.capacity() > REPLIES_KEEP {
            0
        } else {
            self.replies.capacity()
        };
        Some(std::mem::replace(
            &mut self.replies,
            Vec::with_capacity(keep),
        ))
    }

    /// The socket's read half, for draining it at close.
    pub fn reader(&mut self) -> &mut R {
        &mut self.read
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Inbound<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl<R: Unpin> AsyncWrite for Inbound<R> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.replies.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
