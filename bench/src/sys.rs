//! What the operating system knows: the daemon's CPU and memory (`/proc/PID/stat`, `/status`),
//! our own CPU (`getrusage`), the open-file limit, and the server side of our sockets
//! (`NETLINK_SOCK_DIAG`), which shows when the daemon gave up on a stalled client.

use std::io;
use std::net::SocketAddrV4;

/// One look at a process.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    /// utime + stime, in seconds.
    pub cpu_s: f64,
    /// stime alone: time in the kernel, which on loopback includes the receiving side's TCP work.
    pub sys_s: f64,
    /// Resident set, KiB.
    pub rss_kb: u64,
    /// Peak resident set (VmHWM), KiB.
    pub hwm_kb: u64,
    pub threads: u64,
}

/// Clock ticks per second, the unit of `/proc/PID/stat` times.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Reads `/proc/PID/stat` and `/proc/PID/status`.
pub fn sample(pid: u32) -> io::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name is in parentheses and may hold spaces: count fields after the last ')'.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| io::Error::other("unexpected /proc/PID/stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime is field 14, stime 15, num_threads 20.
    let num = |i: usize| -> u64 { fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0) };
    let cpu_s = (num(11) + num(12)) as f64 / clock_ticks();
    let sys_s = num(12) as f64 / clock_ticks();
    let threads = num(17);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(ProcSample {
        cpu_s,
        sys_s,
        rss_kb: kb("VmRSS:"),
        hwm_kb: kb("VmHWM:"),
        threads,
    })
}

/// This process's CPU seconds (user + system, all threads), from `getrusage`.
pub fn self_cpu() -> f64 {
    // SAFETY: an all-zero rusage is valid, and getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid rusage to write into.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Raises the soft open-file limit to the hard one; returns (soft before, soft now).
pub fn raise_nofile() -> io::Result<(u64, u64)> {
    // SAFETY: an all-zero rlimit is valid, and getrlimit fills it.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `lim` is a valid rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = lim.rlim_cur as u64;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((before, lim.rlim_cur as u64))
}

/// The server-side view of one connection.
#[derive(Debug, Clone, Copy)]
pub struct ServerSide {
    /// TCP state number (1 ESTABLISHED, 4 FIN_WAIT1, 7 CLOSE, …).
    pub state: u8,
    /// Bytes the server has written but the client has not acknowledged.
    pub send_queue: u32,
}

/// The kernel's TCP state names.
pub fn tcp_state_name(state: u8) -> &'static str {
    match state {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        _ => "?",
    }
}

/// A `NETLINK_SOCK_DIAG` socket for looking up single TCP sockets by their four-tuple: an exact
/// lookup is a hash probe in the kernel, unlike `/proc/net/tcp`, which walks every socket.
pub struct SockDiag {
    fd: std::os::fd::OwnedFd,
    seq: u32,
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// nlmsghdr (16) + inet_diag_req_v2 (56).
const REQUEST_LEN: usize = 72;
/// Offsets in a reply: nlmsghdr, then inet_diag_msg { family, state, timer, retrans,
/// sockid (48), expires, rqueue, wqueue, … }.
const REPLY_STATE: usize = 16 + 1;
const REPLY_WQUEUE: usize = 16 + 60;
const REPLY_PEER_PORT: usize = 16 + 4 + 2;
const REPLY_PEER_IP: usize = 16 + 4 + 20;

impl SockDiag {
    pub fn open() -> io::Result<SockDiag> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket(2); the descriptor is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        Ok(SockDiag { fd, seq: 0 })
    }

    /// The TCP socket whose local address is `local` and peer `peer`, if it exists.
    pub fn lookup(
        &mut self,
        local: SocketAddrV4,
        peer: SocketAddrV4,
    ) -> io::Result<Option<ServerSide>> {
        use std::os::fd::AsRawFd;
        self.seq = self.seq.wrapping_add(1);
        let mut req = [0u8; REQUEST_LEN];
        // nlmsghdr
        req[0..4].copy_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
        req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        req[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
        req[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        // inet_diag_req_v2: family, protocol, ext, pad, states (all)
        req[16] = libc::AF_INET as u8;
        req[17] = libc::IPPROTO_TCP as u8;
        req[20..24].copy_from_slice(&u32::MAX.to_ne_bytes());
        // inet_diag_sockid: sport, dport (network order), src[4], dst[4], if, cookie[2]
        req[24..26].copy_from_slice(&local.port().to_be_bytes());
        req[26..28].copy_from_slice(&peer.port().to_be_bytes());
        req[28..32].copy_from_slice(&local.ip().octets());
        req[44..48].copy_from_slice(&peer.ip().octets());
        // No cookie to check: INET_DIAG_NOCOOKIE.
        req[64..72].fill(0xff);
        let fd = self.fd.as_raw_fd();
        // SAFETY: `req` is valid for reads of its length.
        let sent = unsafe { libc::send(fd, req.as_ptr().cast(), req.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut reply = [0u8; 1024];
        loop {
            // SAFETY: `reply` is valid for writes of its length.
            let n = unsafe { libc::recv(fd, reply.as_mut_ptr().cast(), reply.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = n as usize;
            if n < 16 {
                return Err(io::Error::other("short sock_diag reply"));
            }
            let kind = u16::from_ne_bytes([reply[4], reply[5]]);
            let seq = u32::from_ne_bytes(reply[8..12].try_into().expect("4 bytes"));
            if seq != self.seq {
                continue;
            }
            if kind == libc::NLMSG_ERROR as u16 {
                let errno = -i32::from_ne_bytes(reply[16..20].try_into().expect("4 bytes"));
                return if errno == libc::ENOENT {
                    Ok(None)
                } else {
                    Err(io::Error::from_raw_os_error(errno))
                };
            }
            if kind != SOCK_DIAG_BY_FAMILY || n < REPLY_WQUEUE + 4 {
                return Err(io::Error::other("unexpected sock_diag reply"));
            }
            // An exact lookup falls back to the listening socket when the connection is gone.
            if reply[REPLY_PEER_PORT..REPLY_PEER_PORT + 2] != peer.port().to_be_bytes()
                || reply[REPLY_PEER_IP..REPLY_PEER_IP + 4] != peer.ip().octets()
            {
                return Ok(None);
            }
            return Ok(Some(ServerSide {
                state: reply[REPLY_STATE],
                send_queue: u32::from_ne_bytes(
                    reply[REPLY_WQUEUE..REPLY_WQUEUE + 4]
                        .try_into()
                        .expect("4 bytes"),
                ),
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn sock_diag_finds_both_ends_of_a_connection_and_not_others() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let v4 = |a: std::net::SocketAddr| match a {
            std::net::SocketAddr::V4(a) => a,
            _ => unreachable!(),
        };
        let (s, c) = (
            v4(server.local_addr().unwrap()),
            v4(client.local_addr().unwrap()),
        );
        let mut diag = SockDiag::open().unwrap();
        let side = diag.lookup(s, c).unwrap().expect("the server side exists");
        assert_eq!(side.state, 1);
        let other = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 9), 1);
        assert!(diag.lookup(s, other).unwrap().is_none());
        drop(server);
        let side = diag.lookup(s, c).unwrap().expect("closing, not gone yet");
        assert_ne!(side.state, 1);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_kb > 0 && s.hwm_kb >= s.rss_kb && s.threads >= 1);
    }
}
