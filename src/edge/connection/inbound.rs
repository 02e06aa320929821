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
    reading: Reading,
}

/// How a connection's reads reach tungstenite.
#[derive(Debug)]
enum Reading {
    /// As they come.
    Plain,
    /// Through an [`Inflater`], once the client sends anything: most dashboards never do
    /// (packets flowing keep them alive without a ping), so they pay no inflater at all.
    Deflate { limit: usize },
    /// Through this one, boxed: the others pay a pointer for it.
    Inflating(Box<Inflating>),
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
            reading: Reading::Plain,
        }
    }

    /// Wraps the read half of a socket whose client may compress its messages up to `limit`
    /// bytes; `leftover`, what was read past the handshake, is read first.
    pub fn inflating(read: R, limit: usize, leftover: &[u8]) -> Self {
        let mut inbound = Self {
            reading: Reading::Deflate { limit },
            ..Self::new(read)
        };
        if !leftover.is_empty() {
            inbound.inflate(leftover);
        }
        inbound
    }

    /// Feeds what the socket gave to the inflater, made at the first bytes.
    fn inflate(&mut self, read: &[u8]) {
        if let Reading::Deflate { limit } = self.reading {
            self.reading = Reading::Inflating(Box::new(Inflating {
                inflater: Inflater::new(limit),
                ready: Vec::new(),
                at: 0,
            }));
        }
        if let Reading::Inflating(inflating) = &mut self.reading {
            inflating.inflater.feed(read, &mut inflating.ready);
        }
    }

    /// Whether an inflater was made: a deflate client sent something.
    #[cfg(test)]
    fn has_inflater(&self) -> bool {
        matches!(self.reading, Reading::Inflating(_))
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
        if let Reading::Plain = this.reading {
            return Pin::new(&mut this.read).poll_read(cx, buf);
        }
        loop {
            if let Reading::Inflating(inflating) = &mut this.reading
                && inflating.at < inflating.ready.len()
            {
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
            this.inflate(read.filled());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::connection::inflate::tests::{client_frame, plain};
    use crate::hub::deflate::compress;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A deflate connection makes its inflater at the first bytes its client sends, not
    /// before: a dashboard that only takes packets holds none. A compressed message then
    /// reads as its plain frame; one read past the handshake makes it at once.
    #[tokio::test]
    async fn the_inflater_is_made_at_the_first_bytes() {
        let text = br#"{"type":"PING"}"#;
        let frame = client_frame(0x1, true, true, &compress(text));
        let (mut client, server) = tokio::io::duplex(4096);
        let mut inbound = Inbound::inflating(server, 1024, &[]);
        assert!(!inbound.has_inflater());
        client.write_all(&frame).await.unwrap();
        let mut out = vec![0; plain(text).len()];
        inbound.read_exact(&mut out).await.unwrap();
        assert_eq!(out, plain(text));
        assert!(inbound.has_inflater());

        let (_client, server) = tokio::io::duplex(4096);
        let mut inbound = Inbound::inflating(server, 1024, &frame);
        assert!(inbound.has_inflater());
        inbound.read_exact(&mut out).await.unwrap();
        assert_eq!(out, plain(text));
    }
}
