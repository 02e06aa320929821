//! The edge: everything a dashboard touches. The listening socket and HTTP routes, the
//! WebSocket handshake and who may connect, and each connection's session from WELCOME to close.
//! It only ever subscribes to the [`crate::hub`]; it never knows where packets come from.
//!
//! - [`server`] accepts TCP connections and serves HTTP on each ([`http_io`] holds a `101`
//!   back to leave with the WELCOME); [`routes`] answers the plain
//!   requests (page, health, metrics, schema, commands) and hands WebSocket paths to
//!   [`handshake`], which checks the request, the handshake rate ([`throttle`]), the origin
//!   ([`origin`]), the token ([`auth`]) and the limits ([`admission`]); behind a trusted proxy,
//!   [`forwarded`] says who the client is.
//! - [`command`] decides and sends engine actions for sessions and for HTTP callers.
//! - [`session`] is one connection's life over its [`socket`] ([`inbound`] is the read half
//!   tungstenite parses; [`outlet`] the write half, shared with the hub's fan-out), with what
//!   clients may send in [`message`], its relay-channel subscriptions in [`channels`], and every
//!   way it can end in [`ending`].
//! - [`context`] is what all of them share; [`reply`] builds the plain HTTP answers.

pub mod admission;
pub mod auth;
pub mod channels;
pub mod command;
pub mod context;
pub mod ending;
pub mod forwarded;
pub mod handshake;
pub mod http_io;
pub mod inbound;
pub mod message;
pub mod origin;
pub mod outlet;
pub mod reply;
pub mod routes;
pub mod server;
pub mod session;
pub mod socket;
pub mod throttle;

pub use context::Context;
