//! The HTTP side of the edge: the listener and each TCP connection's HTTP/1.1, the plain routes
//! (page, health, metrics, schema, commands) and their answers. WebSocket paths leave here for
//! [`super::admission`].
//!
//! - [`server`] accepts TCP connections and serves HTTP on each, keeping every task it starts
//!   in one tracker; [`io`] holds a `101` back to leave in one segment with the WELCOME.
//! - [`routes`] answers the plain requests and hands WebSocket paths to the handshake;
//!   [`reply`] builds the plain answers; [`page`] is the live page and its scripts.

pub(crate) mod io;
pub(crate) mod page;
pub(crate) mod reply;
pub(crate) mod routes;
pub(crate) mod server;
