//! Who may connect: a WebSocket request's way in, from the request line to the session it is
//! handed to, or the refusal that says why not.
//!
//! - [`handshake`] checks the request (RFC 6455), then in turn the handshake rate
//!   ([`throttle`]), the page's origin ([`origin`]), the token ([`auth`]) and the limits on open
//!   connections ([`limits`]); [`extensions`] takes a permessage-deflate offer, and [`form`]
//!   reads what else the query asks for (deltas, MessagePack).
//! - [`forwarded`] says who the client is when it comes through a trusted proxy.

pub(crate) mod auth;
pub(crate) mod extensions;
pub(crate) mod form;
pub(crate) mod forwarded;
pub(crate) mod handshake;
pub(crate) mod limits;
pub(crate) mod origin;
pub(crate) mod throttle;
