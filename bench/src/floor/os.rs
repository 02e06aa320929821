//! The system calls under the floor's loop, each checked once here: the listening socket, epoll,
//! the tick timer (`timerfd`), the signals (`signalfd`), the open-file limit, and the socket
//! calls made per client. Errors come back as `io::Error`.

use std::io;
use std::mem;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// The daemon's listen backlog (`LISTEN_BACKLOG` in its `src/os.rs`), so a connect storm queues alike.
const LISTEN_BACKLOG: libc::c_int = 4096;

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn owned(rc: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: a non-negative result of the calls below is a new descriptor that nothing else owns.
    check(rc).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A non-blocking listening socket on `addr` (address reuse, as std sets it), and the address
/// it got.
pub fn listen(addr: SocketAddr) -> io::Result<(OwnedFd, SocketAddr)> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    // A second listen() only changes the backlog: std's is smaller than the daemon's.
    // SAFETY: plain call on a socket we own.
    check(unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) })?;
    // SAFETY: the descriptor comes out of the listener, which gives up its ownership.
    Ok((
        unsafe { OwnedFd::from_raw_fd(listener.into_raw_fd()) },
        local,
    ))
}

pub fn epoll() -> io::Result<OwnedFd> {
    // SAFETY: plain call.
    owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })
}

/// Watches `fd` for reading (level-triggered), tagged with the descriptor itself.
pub fn watch(epoll: RawFd, fd: RawFd) -> io::Result<()> {
    let mut event = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: fd as u64,
    };
    // SAFETY: `event` is a valid epoll_event for the duration of the call.
    check(unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event) }).map(drop)
}

/// Waits for events, up to `events.len()`; the number that arrived (0 if interrupted).
pub fn wait(epoll: RawFd, events: &mut [libc::epoll_event]) -> io::Result<usize> {
    // SAFETY: the kernel writes at most `events.len()` entries into the slice.
    let n = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), events.len() as i32, -1) };
    match check(n) {
        Ok(n) => Ok(n as usize),
        Err(err) if err.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(err) => Err(err),
    }
}

/// A non-blocking timer firing every `period`, the first time one period from now.
pub fn timer(period: Duration) -> io::Result<OwnedFd> {
    // SAFETY: plain call.
    let fd = owned(unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    })?;
    let spec = libc::timespec {
        tv_sec: period.as_secs() as libc::time_t,
        tv_nsec: period.subsec_nanos() as libc::c_long,
    };
    let value = libc::itimerspec {
        it_interval: spec,
        it_value: spec,
    };
    // SAFETY: `value` is a valid itimerspec; the old value is not asked for.
    check(unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &value, std::ptr::null_mut()) })?;
    Ok(fd)
}

/// Reads a descriptor that has something small to say (a timer's count, a signal's record),
/// so that level-triggered epoll stops reporting it.
pub fn drain(fd: RawFd) {
    let mut buf = [0u8; 128];
    // SAFETY: reads at most `buf.len()` bytes into `buf`.
    unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
}

/// Blocks SIGTERM and SIGINT and returns a descriptor that becomes readable when one arrives.
pub fn signals() -> io::Result<OwnedFd> {
    // SAFETY: an all-zero sigset_t is a valid argument to sigemptyset, which initialises it; the
    // set outlives the calls that read it.
    unsafe {
        let mut set: libc::sigset_t = mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        check(libc::sigprocmask(
            libc::SIG_BLOCK,
            &set,
            std::ptr::null_mut(),
        ))?;
        owned(libc::signalfd(
            -1,
            &set,
            libc::SFD_NONBLOCK | libc::SFD_CLOEXEC,
        ))
    }
}

/// Raises the soft open-file limit to the hard one, as the daemon does.
pub fn raise_nofile() -> io::Result<()> {
    // SAFETY: an all-zero rlimit is valid; getrlimit fills it and setrlimit reads it.
    unsafe {
        let mut lim: libc::rlimit = mem::zeroed();
        check(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim))?;
        lim.rlim_cur = lim.rlim_max;
        check(libc::setrlimit(libc::RLIMIT_NOFILE, &lim)).map(drop)
    }
}

/// Accepts one pending connection, non-blocking and with `TCP_NODELAY` as the daemon sets it;
/// `Ok(None)` when none is pending.
pub fn accept(listener: RawFd) -> io::Result<Option<RawFd>> {
    // SAFETY: the peer address is not asked for.
    let fd = unsafe {
        libc::accept4(
            listener,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    match check(fd) {
        Ok(fd) => {
            let one: libc::c_int = 1;
            // SAFETY: the option value is a live c_int of the size given.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    (&one as *const libc::c_int).cast(),
                    mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            Ok(Some(fd))
        }
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(None),
        // The connection was reset while queued: try the next one.
        Err(err) if err.raw_os_error() == Some(libc::ECONNABORTED) => accept(listener),
        Err(err) => Err(err),
    }
}

/// What a non-blocking call on a client socket came to.
pub enum Io {
    /// This many bytes were read or sent; 0 read means end of stream.
    Done(usize),
    /// Nothing to read, or no room to send.
    WouldBlock,
    Failed,
}

fn io(rc: isize) -> Io {
    if rc >= 0 {
        Io::Done(rc as usize)
    } else if io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock {
        Io::WouldBlock
    } else {
        Io::Failed
    }
}

pub fn recv(fd: RawFd, buf: &mut [u8]) -> Io {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    io(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) })
}

/// One `send` of `buf`, without blocking or raising SIGPIPE.
pub fn send(fd: RawFd, buf: &[u8]) -> Io {
    // SAFETY: the kernel reads at most `buf.len()` bytes from `buf`.
    io(unsafe {
        libc::send(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    })
}

/// One `sendmsg` of `first` then `second`, without blocking or raising SIGPIPE.
pub fn send2(fd: RawFd, first: &[u8], second: &[u8]) -> Io {
    let mut iov = [first, second].map(|part| libc::iovec {
        iov_base: part.as_ptr() as *mut libc::c_void,
        iov_len: part.len(),
    });
    // SAFETY: an all-zero msghdr is valid (no address, no control data).
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len() as _;
    // SAFETY: `msg` points at `iov`, whose entries point at live slices; the kernel only reads.
    io(unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) })
}

pub fn close(fd: RawFd) {
    // SAFETY: the caller owns `fd` and forgets it after this call.
    unsafe { libc::close(fd) };
}
