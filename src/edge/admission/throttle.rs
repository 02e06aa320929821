//! How fast one client address may open WebSocket handshakes (`server.handshakes_per_second_per_ip`
//! with `server.handshake_burst_per_ip`): a governor limiter keyed by IP, whose store is kept
//! bounded however many addresses knock. Open connections are [`super::limits`]'s count; this
//! is their rate, which every handshake pays before its token is checked or anything is read for it.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::edge::admission::limits::per_ip_key;

/// Addresses the limiter remembers at most; past it, those back to a full burst are forgotten,
/// and if that is not enough, all of them (each then starts again with a full burst).
const MAX_ADDRESSES: usize = 65_536;

/// The handshake rate per client address, shared by every request handler.
#[derive(Debug, Default)]
pub struct Throttle {
    /// The limiter and the (rate, burst) it was made for, made again when a reload changes
    /// them. A mutex held only to clone the limiter out; the limiter locks its own store.
    limiter: Mutex<Option<Made>>,
}

/// A limiter and the (rate, burst) it was made for.
type Made = ((u32, u32), Arc<DefaultKeyedRateLimiter<IpAddr>>);

impl Throttle {
    /// Counts one handshake from `ip` (its /64 for IPv6, as the admission counts) against
    /// `per_second` sustained with `burst` at once; `Err` holds how long until it would be
    /// allowed. Both are validated above 0.
    pub fn check(&self, ip: IpAddr, per_second: u32, burst: u32) -> Result<(), Duration> {
        let ip = per_ip_key(ip);
        let limiter = {
            let mut slot = self.limiter.lock().expect("throttle lock poisoned");
            match &*slot {
                Some((made_for, limiter)) if *made_for == (per_second, burst) => limiter.clone(),
                _ => {
                    let quota =
                        Quota::per_second(non_zero(per_second)).allow_burst(non_zero(burst));
                    let limiter = Arc::new(RateLimiter::keyed(quota));
                    *slot = Some(((per_second, burst), limiter.clone()));
                    limiter
                }
            }
        };
        if limiter.len() >= MAX_ADDRESSES {
            limiter.retain_recent();
            if limiter.len() >= MAX_ADDRESSES {
                self.forget_all();
            }
        }
        limiter
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Drops every address's count; the next handshake makes the limiter again.
    fn forget_all(&self) {
        *self.limiter.lock().expect("throttle lock poisoned") = None;
    }

    /// Addresses remembered now.
    #[cfg(test)]
    pub fn addresses(&self) -> usize {
        self.limiter
            .lock()
            .expect("throttle lock poisoned")
            .as_ref()
            .map_or(0, |(_, limiter)| limiter.len())
    }
}

/// `Config::validate` refuses a zero rate or burst.
fn non_zero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("a validated rate is above 0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_burst_and_a_refusal_says_how_long_to_wait() {
        let throttle = Throttle::default();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(throttle.check(a, 1, 2), Ok(()));
        assert_eq!(throttle.check(a, 1, 2), Ok(()));
        let wait = throttle.check(a, 1, 2).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert_eq!(
            throttle.check(b, 1, 2),
            Ok(()),
            "another address is not held back"
        );
        assert_eq!(throttle.addresses(), 2);
        // A reloaded rate is a new limiter: everyone starts again with its burst.
        assert_eq!(throttle.check(a, 1, 3), Ok(()));
        assert_eq!(throttle.addresses(), 1);
    }
}
