//! Who may open a WebSocket: counts open connections in total and per client IP, and hands out
//! a [`Permit`] that gives the slot back when the connection ends, however it ends.
//!
//! Rates are governor's job; this counts what is open, which a rate limiter cannot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Counts of open connections, shared by the listener and every connection task.
#[derive(Debug, Clone)]
pub struct Admission {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    max_total: usize,
    max_per_ip: usize,
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
    /// Allows at most `max_total` open connections, `max_per_ip` from any one IP.
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                max_total,
                max_per_ip,
                open: Mutex::default(),
            }),
        }
    }

    /// Takes a slot for `ip`, or says which limit is reached.
    pub fn admit(&self, ip: IpAddr) -> Result<Permit, Refusal> {
        let mut open = self.shared.open.lock().expect("admission lock poisoned");
        let from_ip = open.per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= self.shared.max_per_ip {
            return Err(Refusal::PerIp(self.shared.max_per_ip));
        }
        if open.total >= self.shared.max_total {
            return Err(Refusal::Total(self.shared.max_total));
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
        let admission = Admission::new(3, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let p1 = admission.admit(a).unwrap();
        let _p2 = admission.admit(a).unwrap();
        assert_eq!(admission.admit(a).unwrap_err(), Refusal::PerIp(2));
        let _p3 = admission.admit(b).unwrap();
        assert_eq!(admission.admit(b).unwrap_err(), Refusal::Total(3));
        drop(p1);
        assert_eq!(admission.open(), 2);
        assert!(admission.admit(a).is_ok());
    }
}
