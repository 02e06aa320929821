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

/// Bytes written to a TCP socket that its peer has not yet taken (`SIOCOUTQ`): how far behind
/// a reader is, counted in the kernel rather than in a queue of our own.
pub fn unsent_bytes(socket: &impl std::os::fd::AsRawFd) -> Option<usize> {
    let mut unsent: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ for sockets) writes one int through the pointer, which points
    // at a live c_int for the duration of the call; the descriptor is owned by `socket`.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ, &mut unsent) };
    (rc == 0).then_some(unsent as usize)
}
