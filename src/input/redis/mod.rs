//! The Redis input: the engine's pub/sub events, merged into the polled packet between polls
//! (`docs/PROTOCOL.md` §8).
//!
//! [`subscriber`] holds the connection: it subscribes to the engine's channels and the relay
//! list, hands every relayed message to the hub's relay, and each engine event to the assembler,
//! and keeps itself alive (backoff, its own heartbeat). [`event`] reads one message of a channel
//! into an [`event::Event`] (or says why it was dropped), and [`merge`] folds those events into
//! an [`merge::Overlay`] that writes the newest values over a packet built by
//! [`super::aggregate::build`]. The poll stays the authority: a merged value shows only while it
//! is newer than the poll's answer. `event` and `merge` do no I/O and read no clock.

pub(crate) mod event;
pub(crate) mod merge;
pub(crate) mod sentinel;
mod stamped;
pub(crate) mod subscriber;
