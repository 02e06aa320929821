//! The cluster's state in Redis, changed only by these commands and scripts, so each change is
//! atomic on the server and checks who makes it:
//!
//! - the lease: a script takes it when it is free, or when its holder has published nothing
//!   for its silence (`<name>:alive`, set with the lease and with every packet, has lapsed);
//!   renewing and releasing are scripts that act only while the key still holds the caller's
//!   token;
//! - the publish is fenced, in two steps so the poller can sign what Redis numbers: one script
//!   checks the token and numbers the packet from `<name>:seq` (starting a new `<name>:epoch`
//!   when the count is gone); the poller signs epoch, seq and data ([`Seal`]); a second script
//!   checks the token again, appends the packet to the capped stream `<name>:history` and
//!   publishes it on `<name>:packets`. A daemon whose lease lapsed (paused, cut off, slow) is
//!   refused, whatever it believes;
//! - relayed messages are numbered the same way: one script checks the token and takes the next
//!   offset of the message's channel from the hash `<name>:offsets`; signed, the second
//!   publishes it on `<name>:relay`, so every daemon gives it the same offset. A new epoch starts
//!   the offsets again.
//!
//! A packet on the channel, and in the history, is `<epoch> <seq> <tag> <data JSON>`; a relayed
//! message is `<epoch> <offset> <tag> <length of the channel's name> <channel><payload>`; the
//! tag and its space are absent without `cluster.secret_file`.
//!
//! One file per concern: the keys ([`Keys`]), the lease (`lease.rs`), numbering and publishing
//! packets (`packets.rs`), relayed messages (`relayed.rs`), and how each call is bounded
//! (`call.rs`).

mod call;
mod keys;
mod lease;
mod packets;
mod relayed;

pub use self::call::Failed;
pub use self::keys::{Keys, RELEASED};
pub use self::lease::{Taken, Tried, acquire, release, renew};
pub use self::packets::{history, number, publish, send};
pub use self::relayed::{Offer, message_id, relay, relayed_history};
