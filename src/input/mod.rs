//! Inputs: where snapshots come from. Each input turns what it hears into packet data and hands
//! it to the [`crate::hub`]; nothing here knows who is connected.
//!
//! Each input runs on its own and sends what it hears to the one [`assembler`], which folds it
//! into the packet and sends the packet out. The engine's HTTP API ([`crate::engine`]) is polled
//! on a fixed-rate clock by [`poller`], one [`round`] of its three endpoints a tick; [`normalize`]
//! reads their loose answers and [`aggregate`] folds them into one packet. [`redis`] reads the
//! engine's pub/sub events, which the assembler folds over the polled packet, and relays the
//! dashboards' channels. [`cluster`] shares one poll among several daemons over Redis: the one
//! holding the lease polls and publishes, and every daemon takes the packets from there.

pub mod aggregate;
pub(crate) mod assembler;
pub(crate) mod cluster;
pub(crate) mod mood;
pub mod normalize;
pub(crate) mod poller;
pub(crate) mod redis;
pub(crate) mod round;

use std::sync::Arc;
use std::time::Duration;

use self::redis::event::Heard;
use self::round::Answer;
use crate::config::Config;
use crate::engine::SourceKind;

/// What an input hands the assembler, in the order it happened.
pub enum Input {
    /// One endpoint's answer (the poller's).
    Answer(Answer),
    /// A poll's packet is due: all answered, or the publish deadline passed with `late` still
    /// out; `took` since the poll started.
    Polled {
        /// The endpoints still out.
        late: Vec<SourceKind>,
        /// Time since the poll started.
        took: Duration,
    },
    /// A reloaded config the poller applied: it holds from here on.
    Config(Arc<Config>),
    /// An engine event or a change in Redis's health (the subscriber's).
    Heard(Heard),
}
