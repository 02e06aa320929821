//! The TCP stream hyper serves HTTP on, as it comes from the listener but for one thing: the
//! `101` that ends a WebSocket handshake is written with `MSG_MORE`. The kernel holds it and
//! sends it in one segment with the session's first frame, the WELCOME, which follows at once.
//! A connection then costs one send and one wake-up of its client fewer, which a storm of
//! reconnecting dashboards pays for each of them.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::os;

/// How every `101` hyper writes begins. Only WebSocket handshakes are answered with one, and a
/// session writes its WELCOME (or a close frame) as soon as it has the socket; a socket closed
/// before that sends what it holds first.
const SWITCHING_PROTOCOLS: &[u8] = b"HTTP/1.1 101 ";

/// A TCP stream for hyper; [`HttpIo::into_inner`] gives the stream back after an upgrade.
#[derive(Debug)]
pub struct HttpIo {
    stream: TcpStream,
}

impl HttpIo {
    /// Wraps an accepted stream.
    pub fn new(stream: TcpStream) -> Self {
        Self { stream }
    }

    /// The stream, once hyper is done with it.
    pub fn into_inner(self) -> TcpStream {
        self.stream
    }
}

impl AsyncRead for HttpIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for HttpIo {
    /// hyper flattens a response into one buffer (`writev(false)` where it is served), so a
    /// `101` is the start of a write.
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if !buf.starts_with(SWITCHING_PROTOCOLS) {
            return Pin::new(&mut self.stream).poll_write(cx, buf);
        }
        loop {
            ready!(self.stream.poll_write_ready(cx))?;
            let stream = &self.stream;
            match stream.try_io(Interest::WRITABLE, || os::send_more(stream, buf)) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                written => return Poll::Ready(written),
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
