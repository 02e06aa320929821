//! The read half of a dashboard's socket as tungstenite sees it. tungstenite does the reading
//! (unmasking, UTF-8, limits); [`Inbound`] gives it the read half and collects the few control
//! frames it writes itself (replies to pings and closes) for the connection to send in order,
//! since every other byte a connection writes is a shared, pre-framed packet. On a connection
//! that negotiated permessage-deflate, what it reads passes through an [`Inflater`] first.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::edge::connection::inflate::Inflater;

/// The read half of a connection as tungstenite sees it. Writes land in `replies` (a few bytes,
/// and only when the client pings or closes) instead of the socket; the connection sends them.
#[derive(Debug)]
pub struct Inbound<R> {
    read: R,
    replies: Vec<u8>,
    /// Only on a connection that negotiated permessage-deflate; boxed, so the others pay a
    /// pointer for it.
    inflating: Option<Box<Inflating>>,
}

/// What a deflate connection's reads go through.
#[derive(Debug)]
struct Inflating {
    inflater: Inflater,
    /// What tungstenite reads next, from `at` on; empty between messages.
    ready: Vec<u8>,
    at: usize,
}

/// How much a deflate connection reads from its socket at a time.
const READ_CHUNK: usize = 512;

/// Reply bytes kept allocated between uses; a larger buffer is freed once sent.
const REPLIES_KEEP: usize = 256;

impl<R> Inbound<R> {
    /// Wraps the read half of a socket.
    pub fn new(read: R) -> Self {
        Self {
            read,
            replies: Vec::new(),
            inflating: None,
        }
    }

    /// Wraps the read half of a socket whose client may compress its messages up to `limit`
    /// bytes; `leftover`, what was read past the handshake, is read first.
    pub fn inflating(read: R, limit: usize, leftover: &[u8]) -> Self {
        let mut inflating = Inflating {
            inflater: Inflater::new(limit),
            ready: Vec::new(),
            at: 0,
        };
        inflating.inflater.feed(leftover, &mut inflating.ready);
        Self {
            inflating: Some(Box::new(inflating)),
            ..Self::new(read)
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
        let this = &mut *self;
        let Some(inflating) = this.inflating.as_deref_mut() else {
            return Pin::new(&mut this.read).poll_read(cx, buf);
        };
        loop {
            if inflating.at < inflating.ready.len() {
                let ready = &inflating.ready[inflating.at..];
                let n = ready.len().min(buf.remaining());
                buf.put_slice(&ready[..n]);
                inflating.at += n;
                if inflating.at == inflating.ready.len() {
                    inflating.ready = Vec::new();
                    inflating.at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            std::task::ready!(Pin::new(&mut this.read).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                return Poll::Ready(Ok(())); // the peer hung up
            }
            inflating.inflater.feed(read.filled(), &mut inflating.ready);
        }
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
