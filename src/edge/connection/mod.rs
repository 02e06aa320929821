//! One connection's transport, under its session: the write half it shares with the hub's
//! fan-out, the read half tungstenite parses, and every way it can end.
//!
//! - [`socket`] is the two halves together, writing shared frames under a send timeout;
//!   [`inbound`] is the read half, which [`inflate`]s what a deflate client compressed; [`outlet`] the write half, one short lock shared with the
//!   hub's fan-out, over the transport's [`outbox`].
//! - [`ending`] is every way a connection ends, with its close code and reason.

pub(crate) mod ending;
pub(crate) mod inbound;
pub(crate) mod inflate;
pub(crate) mod outbox;
pub(crate) mod outlet;
pub(crate) mod socket;
