//! What the daemon asks of the operating system: enough file descriptors for its connections
//! (and the table for them made at start), a listening socket whose backlog survives a reconnect
//! storm, a cap on each client's unsent bytes, a write held to leave with the next, and the
//! allocator's free memory given back after a storm; and a cache prefetch for the fan-out.
//!
//! The only module with `unsafe` code (the crate denies it elsewhere): each block is a call the
//! compiler cannot check, wrapped here in a safe function and with a `// SAFETY:` comment.
#![allow(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use tokio::net::{TcpListener, TcpSocket};
use tracing::{info, warn};

/// Pending connections the kernel may hold for us; Linux caps it at `net.core.somaxconn`
/// (4096 by default), so a storm of reconnecting dashboards is queued rather than refused.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Descriptors kept beyond the dashboards: the listener, the engine client, logs, a margin.
const SPARE_FILES: u64 = 64;

/// Raises the soft open-file limit to the hard one, logs both, makes the descriptor table
/// big enough for `max_connections` now rather than during a storm of them, and warns when
/// they cannot fit under the limit.
pub fn raise_file_limit(max_connections: usize) {
    let before = rlimit::Resource::NOFILE.get();
    let raised = rlimit::increase_nofile_limit(u64::MAX);
    match (before, raised) {
        (Ok((soft, hard)), Ok(now)) => {
            info!(soft_before = soft, soft = now, hard, "Open-file limit");
            let wanted = (max_connections as u64 + SPARE_FILES).min(now);
            if let Err(err) = reserve_descriptors(wanted) {
                warn!(%err, wanted, "Cannot make room for the descriptors ahead of time");
            }
            if max_connections as u64 + SPARE_FILES > now {
                warn!(
                    limit = now,
                    max_connections,
                    "server.max_connections exceeds what the open-file limit allows; \
                     connections past it will fail to be accepted: raise the hard limit \
                     (ulimit -Hn, LimitNOFILE=) or lower server.max_connections"
                );
            }
        }
        (_, Err(err)) | (Err(err), _) => warn!(%err, "Cannot read or raise the open-file limit"),
    }
}

/// Grows the process's descriptor table to hold `count` descriptors at once, by placing one at
/// `count - 1` and closing it (the table never shrinks). The kernel grows it by doubling as
/// descriptors are opened, and in a process with threads each growth waits inside `accept` for
/// every CPU to pass a quiescent point: a storm of 10,000 connects met eight of them, some 20 ms
/// in all with the accepting thread asleep, which was enough for the listen queue to overflow.
fn reserve_descriptors(count: u64) -> io::Result<()> {
    let Some(top) = count.checked_sub(1) else {
        return Ok(());
    };
    let top = libc::c_int::try_from(top).unwrap_or(libc::c_int::MAX);
    let null = std::fs::File::open("/dev/null")?;
    // SAFETY: F_DUPFD_CLOEXEC duplicates a descriptor owned by `null` onto the lowest free one
    // at or above `top`; the copy is closed at once and used for nothing else.
    let copy = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, top) };
    if copy < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `copy` was just opened here and is owned by nothing else.
    checked(unsafe { libc::close(copy) })
}

/// Binds `addr` with address reuse and a backlog of [`LISTEN_BACKLOG`].
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Caps the bytes a TCP socket holds written but not yet sent (`TCP_NOTSENT_LOWAT`): past
/// it, a write takes only what fits and then none until the peer reads. A reader that fell
/// behind is found by the write itself, with no question asked of the kernel per send.
pub fn cap_unsent(socket: &impl AsRawFd, bytes: usize) -> io::Result<()> {
    let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: the option value is one c_int, passed by pointer with its size, live for the
    // call; the descriptor is owned by `socket`.
    checked(unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
}

/// Ends a socket's write direction (`shutdown(SHUT_WR)`): the peer reads the end of the
/// stream after the last byte written, while reading goes on.
pub fn shut_write(socket: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: a plain call on a descriptor owned by `socket`.
    checked(unsafe { libc::shutdown(socket.as_raw_fd(), libc::SHUT_WR) })
}

/// `MSG_NOSIGNAL` where there is one: a closed peer is an error, not a signal (which Rust's
/// runtime ignores anyway).
#[cfg(any(target_os = "linux", target_os = "android"))]
const NO_SIGNAL: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const NO_SIGNAL: libc::c_int = 0;

/// `MSG_MORE` where there is one (Linux); elsewhere the write goes at once.
#[cfg(any(target_os = "linux", target_os = "android"))]
const MORE: libc::c_int = libc::MSG_MORE;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const MORE: libc::c_int = 0;

/// Writes what fits of `buf` to a non-blocking socket now, with one `send`.
pub fn send(socket: &impl AsRawFd, buf: &[u8]) -> io::Result<usize> {
    send_with(socket, buf, NO_SIGNAL)
}

/// Writes `buf` as `send(MSG_MORE)` does: the kernel holds it, up to a full segment and for at
/// most about 200 ms, until the next write without the flag, and sends both together.
pub fn send_more(socket: &impl AsRawFd, buf: &[u8]) -> io::Result<usize> {
    send_with(socket, buf, MORE | NO_SIGNAL)
}

fn send_with(socket: &impl AsRawFd, buf: &[u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: `buf` is live and readable for its length during the call; the descriptor is
    // owned by `socket`.
    let sent = unsafe { libc::send(socket.as_raw_fd(), buf.as_ptr().cast(), buf.len(), flags) };
    usize::try_from(sent).map_err(|_| io::Error::last_os_error())
}

/// A system call's 0-or-error return as a `Result`.
fn checked(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Connections accepted between two returns of free memory, at least.
const TRIM_AFTER_CONNECTS: u64 = 1000;

/// How often to look.
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Gives the allocator's free memory back to the system every few seconds after at least
/// [`TRIM_AFTER_CONNECTS`] connections came (`connects` counts them), until `shutdown`. A storm
/// of handshakes leaves their buffers (hyper's 8 KB each) free but kept by the allocator,
/// spread among the connections' own memory; glibc's `malloc_trim` returns the pages among
/// them that hold nothing.
pub async fn trim_after_storms(
    connects: impl Fn() -> u64,
    shutdown: tokio_util::sync::CancellationToken,
) {
    trim_when(connects, trim, shutdown).await;
}

/// [`trim_after_storms`] with the trimming given, for tests.
async fn trim_when(
    connects: impl Fn() -> u64,
    trim: fn(),
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut trimmed_at = connects();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(TRIM_EVERY) => {}
        }
        let now = connects();
        if now >= trimmed_at + TRIM_AFTER_CONNECTS {
            trimmed_at = now;
            // It walks the whole heap: not on a runtime thread.
            let _ = tokio::task::spawn_blocking(trim).await;
        }
    }
}

#[cfg(target_env = "gnu")]
fn trim() {
    // SAFETY: malloc_trim only walks and releases the allocator's own free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(target_env = "gnu"))]
fn trim() {}

/// Asks the CPU to bring the cache line at `at` in; reads nothing, so any address will do.
/// The fan-out calls it once per connection per tick, hence inlined.
#[cfg(target_arch = "x86_64")]
#[inline]
#[allow(
    clippy::not_unsafe_ptr_arg_deref,
    reason = "a prefetch never dereferences: any address, even a dangling one, is sound"
)]
pub fn prefetch(at: *const i8) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    // SAFETY: a prefetch is a hint: it never faults and reads nothing the program sees.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(at) }
}

/// Does nothing where there is no prefetch instruction used.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub fn prefetch(_: *const i8) {}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    static CONNECTS: AtomicU64 = AtomicU64::new(0);
    static TRIMS: AtomicUsize = AtomicUsize::new(0);

    fn counted() {
        TRIMS.fetch_add(1, Ordering::SeqCst);
    }

    /// The table holds `count` descriptors afterwards, as `/proc` reports it.
    #[test]
    fn the_descriptor_table_is_grown_ahead_of_time() {
        let table = || {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("FDSize:")).unwrap();
            line[7..].trim().parse::<u64>().unwrap()
        };
        let limit = rlimit::Resource::NOFILE.get().unwrap().0;
        let count = limit.min(4096);
        assert!(
            table() < count,
            "the test needs a table smaller than {count}"
        );
        reserve_descriptors(count).unwrap();
        assert!(table() >= count, "{} descriptors, not {count}", table());
    }

    #[tokio::test(start_paused = true)]
    async fn free_memory_goes_back_only_after_a_thousand_connections() {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(trim_when(
            || CONNECTS.load(Ordering::SeqCst),
            counted,
            shutdown.clone(),
        ));
        let after = |secs| tokio::time::sleep(Duration::from_secs(secs) + Duration::from_millis(1));
        after(5).await;
        CONNECTS.store(999, Ordering::SeqCst);
        after(5).await;
        assert_eq!(
            TRIMS.load(Ordering::SeqCst),
            0,
            "999 connections: a trickle"
        );
        CONNECTS.store(1000, Ordering::SeqCst);
        after(5).await;
        // The blocking pool runs the trim on a thread of its own.
        for _ in 0..100_000 {
            if TRIMS.load(Ordering::SeqCst) > 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(TRIMS.load(Ordering::SeqCst), 1, "a thousand: trimmed");
        after(10).await;
        assert_eq!(TRIMS.load(Ordering::SeqCst), 1, "nothing came since");
        shutdown.cancel();
        task.await.unwrap();
    }
}
