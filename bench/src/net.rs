//! Client sockets: bound to a chosen loopback source address, with kernel receive timestamps
//! (`SO_TIMESTAMPNS`), read through `recvmsg` so each read carries the time the kernel received
//! its data.

use std::io;
use std::mem::{self, MaybeUninit};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};

/// Now on `CLOCK_REALTIME`, in nanoseconds since the Unix epoch: the clock `SCM_TIMESTAMPNS` uses.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The `k`-th source address (0-based): 127.0.0.1, 127.0.0.2, …
pub fn source_ip(k: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 1)) + k)
}

/// A TCP socket ready to connect: kernel receive timestamps on, bound to `source` when given,
/// and with a receive buffer of `rcvbuf` bytes when given (set before connecting, so the
/// advertised window really is small).
pub fn socket(source: Option<Ipv4Addr>, rcvbuf: Option<u32>) -> io::Result<TcpSocket> {
    let socket = TcpSocket::new_v4()?;
    let fd = socket.as_raw_fd();
    set_int(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)?;
    if let Some(bytes) = rcvbuf {
        socket.set_recv_buffer_size(bytes)?;
    }
    if let Some(ip) = source {
        // Pick the port at connect time, per (source, destination) pair, instead of at bind
        // time, so one source address is not limited by ports other destinations use.
        let _ = set_int(fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1);
        socket.bind(SocketAddr::new(ip.into(), 0))?;
    }
    Ok(socket)
}

fn set_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `fd` is an open socket and the option value is a live c_int of the given size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A TCP stream whose reads record the kernel receive timestamp of the data they return.
#[derive(Debug)]
pub struct TsStream {
    inner: TcpStream,
    /// The kernel timestamp (CLOCK_REALTIME ns) of the latest read, if it carried one.
    last_ts: Option<i64>,
}

impl TsStream {
    pub fn new(inner: TcpStream) -> Self {
        Self {
            inner,
            last_ts: None,
        }
    }

    /// The kernel receive time of the latest read's data: the read that completed the message
    /// tungstenite just returned.
    pub fn last_ts(&self) -> Option<i64> {
        self.last_ts
    }
}

/// One `recvmsg` into `dst`; returns the bytes read and the `SCM_TIMESTAMPNS` time, if any.
fn recv_with_ts(fd: RawFd, dst: &mut [MaybeUninit<u8>]) -> io::Result<(usize, Option<i64>)> {
    let mut iov = libc::iovec {
        iov_base: dst.as_mut_ptr().cast(),
        iov_len: dst.len(),
    };
    // Room for a few control messages; u64 for cmsghdr alignment.
    let mut control = [0u64; 16];
    // SAFETY: an all-zero msghdr is a valid empty header; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = mem::size_of_val(&control) as _;
    // SAFETY: `msg` describes `dst` and `control`, both valid for writes of the given lengths.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut ts = None;
    // SAFETY: the CMSG_* walk stays within `msg_controllen`, which the kernel set.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let t: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                ts = Some(t.tv_sec as i64 * 1_000_000_000 + t.tv_nsec as i64);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, ts))
}

impl AsyncRead for TsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            ready!(this.inner.poll_read_ready(cx))?;
            let fd = this.inner.as_raw_fd();
            // SAFETY: recvmsg only writes initialized bytes, and we mark exactly `n` of them.
            let dst = unsafe { buf.unfilled_mut() };
            match this
                .inner
                .try_io(Interest::READABLE, || recv_with_ts(fd, dst))
            {
                Ok((n, ts)) => {
                    // SAFETY: the kernel wrote `n` bytes at the start of the unfilled part.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    this.last_ts = ts;
                    return Poll::Ready(Ok(()));
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }
}

impl AsyncWrite for TsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_carry_a_kernel_timestamp_close_to_now() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = socket(Some(source_ip(1)), None).unwrap();
        let (stream, accepted) = tokio::join!(client.connect(addr), listener.accept());
        let mut stream = TsStream::new(stream.unwrap());
        let started = now_ns();
        let (mut server, peer) = accepted.unwrap();
        assert_eq!(
            peer.ip(),
            std::net::IpAddr::from(Ipv4Addr::new(127, 0, 0, 2))
        );
        // The kernel switches receive timestamping on asynchronously after the first socket
        // asks for it, so the very first packets may come without one.
        let mut buf = [0u8; 16];
        let (before, ts, after) = loop {
            let before = now_ns();
            server.write_all(b"hello").await.unwrap();
            let n = stream.read(&mut buf).await.unwrap();
            let after = now_ns();
            assert_eq!(&buf[..n], b"hello");
            if let Some(ts) = stream.last_ts() {
                break (before, ts, after);
            }
            assert!(
                after - started < 2_000_000_000,
                "no SO_TIMESTAMPNS control message"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        assert!(before <= ts && ts <= after, "{before} <= {ts} <= {after}");
    }
}
