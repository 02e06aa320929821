//! The edge: everything a dashboard touches. The listening socket and HTTP routes, the
//! WebSocket handshake and who may connect, and each connection's session from WELCOME to close.
//! It only ever subscribes to the [`crate::hub`]; it never knows where packets come from.
//!
//! It is grouped in rooms, each a folder:
//! - [`http`]: the listener, HTTP on each connection, the plain routes and their answers.
//! - [`admission`]: a WebSocket request's way in: the handshake and its checks (rate, origin,
//!   token, limits), and who the client is behind a trusted proxy.
//! - [`connection`]: one connection's socket: the write half shared with the hub's fan-out,
//!   the read half, and every way it ends.
//! - [`session`]: one connection's life from WELCOME to close, what clients may send, its
//!   relay-channel subscriptions and its token.
//! - [`command`]: engine actions decided and sent for sessions and for HTTP callers.
//!
//! [`context`] is what all of them share.

pub(crate) mod admission;
pub(crate) mod command;
pub(crate) mod connection;
pub(crate) mod context;
pub(crate) mod http;
pub(crate) mod session;

pub use context::Context;
