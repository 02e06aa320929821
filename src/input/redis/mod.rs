//! The Redis input: the engine's pub/sub events, merged into the polled packet between polls
//! (`docs/PROTOCOL.md` §8.1).
//!
//! Pure so far: [`event`] reads one message of a channel into an [`event::Event`] (or says why it
//! was dropped), and [`merge`] folds those events into an [`merge::Overlay`] that writes the
//! newest values over a packet built by [`super::aggregate::build`]. The poll stays the
//! authority: a merged value shows only while it is newer than the poll's answer. Neither part
//! does I/O or reads a clock; the subscriber that feeds them goes beside them here.

pub mod event;
pub mod merge;
