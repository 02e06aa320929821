//! What the daemon asks of the operating system before it serves: enough file descriptors for
//! its connections, and a listening socket whose backlog survives a reconnect storm.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};
use tracing::{info, warn};

/// Pending connections the kernel may hold for us; Linux caps it at `net.core.somaxconn`
/// (4096 by default), so a storm of reconnecting dashboards is queued rather than refused.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Descriptors kept beyond the dashboards: the listener, the engine client, logs, a margin.
const SPARE_FILES: u64 = 64;

/// Raises the soft open-file limit to the hard one, logs both, and warns when
/// `max_connections` cannot fit under it.
pub fn raise_file_limit(max_connections: usize) {
    let before = rlimit::Resource::NOFILE.get();
    let raised = rlimit::increase_nofile_limit(u64::MAX);
    match (before, raised) {
        (Ok((soft, hard)), Ok(now)) => {
            info!(soft_before = soft, soft = now, hard, "Open-file limit");
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
pub fn cap_unsent(socket: &impl std::os::fd::AsRawFd, bytes: usize) -> io::Result<()> {
    let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: the option value is one c_int, passed by pointer with its size, live for the
    // call; the descriptor is owned by `socket`.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
