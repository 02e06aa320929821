//! A session's pace: how fast its client may talk (messages and channel subscriptions, each
//! over a rate made at first use) and when its keepalives fall due, on a grid every
//! connection shares so one wake-up pings many.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{Quota, RateLimiter};
use tokio::io::AsyncRead;
use tokio::time::Instant;

use super::Session;
use crate::edge::connection::outbox::Outbox;

impl<R, W> Session<R, W>
where
    R: AsyncRead + Unpin,
    W: Outbox,
{
    /// When a keepalive is due next after `last`: a ping interval later.
    pub(super) fn next_ping(&self, last: Instant) -> Instant {
        last + Duration::from_millis(self.config.clients.ping_interval_ms)
    }

    /// Whether a message the client started goes over its rate, counting it.
    pub(super) fn flooding(&mut self) -> bool {
        let clients = &self.config.clients;
        let limiter = self.limiter.get_or_insert_with(|| {
            Box::new(RateLimiter::direct(
                Quota::per_second(validated_non_zero(clients.messages_per_second))
                    .allow_burst(validated_non_zero(clients.message_burst)),
            ))
        });
        limiter.check().is_err()
    }

    /// Whether subscribing to `channels` more goes over the client's rate, counting them.
    pub(super) fn churning(&mut self, channels: usize) -> bool {
        let clients = &self.config.clients;
        let joins = self.joins.get_or_insert_with(|| {
            Box::new(RateLimiter::direct(
                Quota::per_second(validated_non_zero(clients.subscriptions_per_second))
                    .allow_burst(validated_non_zero(clients.subscription_burst)),
            ))
        });
        let Some(n) = NonZeroU32::new(u32::try_from(channels).unwrap_or(u32::MAX)) else {
            return false;
        };
        // More at once than the burst can ever allow is over it too.
        !matches!(joins.check_n(n), Ok(Ok(())))
    }
}

/// Keepalives are due only on a shared grid of this step, so those of connections made within
/// one step fall due together and one wake-up of the runtime sends them all, rather than one
/// wake-up for each connection (10,000 connections pinging every 20 s would be 500 a second).
pub(super) const KEEPALIVE_GRID: Duration = Duration::from_millis(250);

/// `at`, put off to the next point of [`KEEPALIVE_GRID`] on the wall clock.
pub(super) fn on_the_grid(at: Instant) -> Instant {
    let step = KEEPALIVE_GRID.as_nanos();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let late = (now + (at - Instant::now()).as_nanos()) % step;
    let wait = if late == 0 { 0 } else { step - late };
    at + Duration::from_nanos(wait as u64)
}

/// `Config::validate` refuses a zero rate or burst.
fn validated_non_zero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("a validated rate is above 0")
}
