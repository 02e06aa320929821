//! Inputs: where snapshots come from. Each input turns what it hears into packet data and hands
//! it to the [`crate::hub`]; nothing here knows who is connected.
//!
//! Today that is the engine's HTTP API ([`crate::engine`]), polled on a fixed-rate clock:
//! [`normalize`] reads its loose answers, [`aggregate`] folds them into one packet and
//! [`poller`] fetches and drives the two. [`redis`] reads the engine's pub/sub events and folds
//! them over the polled packet (its pure part so far; the subscriber is not wired in yet).
//! Another input (a feed shared by several daemons) lives here beside the poller.

pub mod aggregate;
pub mod cluster;
pub mod normalize;
pub mod poller;
pub mod redis;
pub mod round;
