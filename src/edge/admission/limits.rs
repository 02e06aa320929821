//! Who may open a WebSocket: counts open connections in total and per client IP, and hands out
//! a [`Permit`] that gives the slot back when the connection ends, however it ends.
//!
//! Rates are governor's job; this counts what is open, which a rate limiter cannot. An IPv6
//! client is counted by its /64, the block one subscriber is given, so hopping addresses inside
//! it does not multiply its share.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// Counts of open connections, shared by the listener and every connection task.
#[derive(Debug, Clone, Default)]
pub struct Admission {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// One short critical section per connect and disconnect; a mutex keeps the two counts
    /// consistent with each other, which two atomics could not.
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This IP already holds its share; HTTP 429.
    PerIp(usize),
    /// The daemon is full; HTTP 503.
    Total(usize),
}

/// One admitted connection's slot, returned on drop.
#[derive(Debug)]
pub struct Permit {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Admission {
    /// Takes a slot for `ip` (its /64 for IPv6) if fewer than `max_total` connections are open, fewer than
    /// `max_per_ip` of them from `ip`; or says which limit is reached. The limits are passed in,
    /// not kept, so a reloaded config applies to the next handshake.
    pub fn admit(
        &self,
        ip: IpAddr,
        max_total: usize,
        max_per_ip: usize,
    ) -> Result<Permit, Refusal> {
        let ip = per_ip_key(ip);
        let mut open = self.shared.open.lock().expect("admission lock poisoned");
        let from_ip = open.per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= max_per_ip {
            return Err(Refusal::PerIp(max_per_ip));
        }
        if open.total >= max_total {
            return Err(Refusal::Total(max_total));
        }
        open.total += 1;
        open.per_ip.insert(ip, from_ip + 1);
        Ok(Permit {
            shared: self.shared.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.shared
            .open
            .lock()
            .expect("admission lock poisoned")
            .total
    }
}

/// What the per-IP count goes by: an IPv4 address (an IPv4-mapped IPv6 one as IPv4), or an IPv6
/// address's /64. The handshake rate goes by it too.
pub(crate) fn per_ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.shared.open.lock().expect("admission lock poisoned");
        open.total -= 1;
        if let Some(n) = open.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_apply_and_slots_come_back() {
        let admission = Admission::default();
        let admit = |ip| admission.admit(ip, 3, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let p1 = admit(a).unwrap();
        let _p2 = admit(a).unwrap();
        assert_eq!(admit(a).unwrap_err(), Refusal::PerIp(2));
        let _p3 = admit(b).unwrap();
        assert_eq!(admit(b).unwrap_err(), Refusal::Total(3));
        drop(p1);
        assert_eq!(admission.open(), 2);
        assert!(admit(a).is_ok());
        // Lowered limits apply to the next connection; open ones keep their slots.
        assert_eq!(admission.admit(b, 10, 1).unwrap_err(), Refusal::PerIp(1));
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_and_mapped_v4_as_v4() {
        let admission = Admission::default();
        let admit = |ip: &str| admission.admit(ip.parse().unwrap(), 100, 2);
        let _a = admit("2001:db8:1:2::1").unwrap();
        let _b = admit("2001:db8:1:2:ffff:ffff:ffff:ffff").unwrap();
        assert_eq!(admit("2001:db8:1:2::99").unwrap_err(), Refusal::PerIp(2));
        assert!(
            admit("2001:db8:1:3::1").is_ok(),
            "the next /64 is someone else"
        );
        let _c = admit("192.0.2.1").unwrap();
        let _d = admit("::ffff:192.0.2.1").unwrap();
        assert_eq!(admit("192.0.2.1").unwrap_err(), Refusal::PerIp(2));
        drop((_a, _b, _c, _d));
        assert_eq!(admission.open(), 0);
        // Slots went back to the key they were taken from.
        let _e = admit("2001:db8:1:2::7").unwrap();
        let _f = admit("2001:db8:1:2::8").unwrap();
    }
}
