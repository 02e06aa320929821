//! Inputs: where snapshots come from. Each input turns what it hears into packet data and hands
//! it to the [`crate::hub`]; nothing here knows who is connected.
//!
//! Today that is the engine's HTTP API, polled on a fixed-rate clock: [`engine`] fetches,
//! [`normalize`] reads the loose answers, [`aggregate`] folds them into one packet and
//! [`poller`] drives the three. Another input (a pub/sub subscriber, a feed shared by several
//! daemons) lives here beside the poller.

pub mod aggregate;
pub mod engine;
pub mod normalize;
pub mod poller;
