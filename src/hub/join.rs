//! Where a connection starts: the latest packet, or where it left off (`?since=&epoch=`), from
//! the hub's memory or, further back, from the store behind it. The one place resume ordering is
//! decided ([`Hub::join`]).

use std::sync::Arc;

use super::Hub;
use super::encoding::{Encoding, Message, Packet};
use super::form::Form;
use super::resume::{History, Joined, Resume, Subscription};

impl Hub {
    /// Joins the feed: the latest snapshot now, then every later one.
    #[cfg(test)]
    pub fn subscribe(&self) -> Subscription {
        self.subscribe_from(None)
    }

    /// Joins the feed where a client left off, when the history reaches back to `resume`
    /// (same epoch, its next snapshot still kept): the first missed snapshot as WELCOME, the
    /// rest after it, then every later one. Otherwise as [`Hub::subscribe`], saying it could
    /// not resume.
    pub fn subscribe_from(&self, resume: Option<&Resume>) -> Subscription {
        let state = self.shared.state.lock().expect("hub lock poisoned");
        let rx = self.shared.tx.subscribe();
        let latest = state.latest.clone();
        let Some(resume) = resume else {
            return Subscription {
                welcome: latest,
                missed: Vec::new(),
                resumed: None,
                rx,
            };
        };
        let reaches = *latest.epoch == *resume.epoch
            && resume.since <= latest.seq
            && state
                .history
                .front()
                .is_some_and(|oldest| oldest.seq <= resume.since + 1);
        if !reaches {
            return Subscription {
                welcome: latest,
                missed: Vec::new(),
                resumed: Some(false),
                rx,
            };
        }
        let mut missed: Vec<_> = state
            .history
            .iter()
            .filter(|s| s.seq > resume.since)
            .cloned()
            .collect();
        let welcome = if missed.is_empty() {
            latest
        } else {
            missed.remove(0)
        };
        Subscription {
            welcome,
            missed,
            resumed: Some(true),
            rx,
        }
    }

    /// Joins the feed for a connection of `encoding`, resuming where it left off when it asks
    /// to: from the hub's memory when it reaches back; else, for a stream connection (the
    /// store keeps stream frames), from the store behind it ([`Hub::set_history`]) and then
    /// what memory holds after that; else the latest, telling it that it could not resume. The
    /// one place resume ordering is decided.
    /// Frames are written in the connection's `form`; the store's frames are plain JSON, so a
    /// MessagePack connection resumes from memory only.
    pub async fn join(&self, resume: Option<&Resume>, encoding: Encoding, form: Form) -> Joined {
        let Subscription {
            welcome,
            missed,
            resumed,
            rx,
        } = self.subscribe_from(resume);
        if let (Some(false), Some(resume)) = (resumed, resume)
            && encoding == Encoding::Stream
            && !form.msgpack
        {
            // Further back than this daemon remembers: the cluster's history may reach.
            let older = self.older(&resume.epoch, resume.since).await;
            if let Some(&(last, _)) = older.last() {
                let mut frames: Vec<_> = older.into_iter().map(|(_, frame)| frame).collect();
                // What came after, still in memory; the live feed follows with no repeat.
                let after = self.subscribe_from(Some(&Resume {
                    since: last,
                    epoch: resume.epoch.clone(),
                }));
                // Its WELCOME is the first packet after `last` when memory reaches back to it
                // (and `last` itself, not sent again, when nothing came after).
                let first = (after.resumed == Some(true) && after.welcome.seq > last)
                    .then_some(after.welcome);
                let mut seq = last;
                for snapshot in first.into_iter().chain(after.missed) {
                    seq = snapshot.seq;
                    frames.push(snapshot.packet_as(encoding, form).clone());
                }
                return Joined {
                    frames,
                    seq,
                    epoch: resume.epoch.as_str().into(),
                    rx,
                };
            }
        }
        let last = missed.last().unwrap_or(&welcome);
        let (seq, epoch) = (last.seq, last.epoch.clone());
        let frames = std::iter::once(welcome.welcome_as(encoding, resumed, form))
            .chain(
                missed
                    .iter()
                    .map(|snapshot| snapshot.packet_as(encoding, form).clone()),
            )
            .collect();
        Joined {
            frames,
            seq,
            epoch,
            rx,
        }
    }

    /// Lets clients resume from `history` when the hub's memory does not reach back.
    pub fn set_history(&self, history: Arc<dyn History>) {
        *self.shared.history.lock().expect("hub lock poisoned") = Some(history);
    }

    /// The packets of `epoch` after `since` from the store behind the hub's memory, framed as
    /// TELEMETRY (the first as a resumed WELCOME; `since` itself when nothing came after it);
    /// empty when there is no store or it does not reach back.
    async fn older(&self, epoch: &str, since: u64) -> Vec<(u64, bytes::Bytes)> {
        let history = self
            .shared
            .history
            .lock()
            .expect("hub lock poisoned")
            .clone();
        let Some(history) = history else {
            return Vec::new();
        };
        // The store holds the epoch in force only and reads nothing for another (a daemon just
        // started may not have the cluster's latest packet yet, so the store is the judge).
        // From `since` itself, so a client that missed nothing is resumed too (with that packet
        // again as its WELCOME).
        let mut packets = history.from(epoch, since).await;
        if packets.first().map(|(seq, _)| *seq) != Some(since) {
            return Vec::new();
        }
        if packets.len() > 1 {
            packets.remove(0);
        }
        packets
            .into_iter()
            .enumerate()
            .map(|(i, (seq, body))| {
                let parts = Packet {
                    seq,
                    epoch,
                    body: &body,
                };
                let message = if i == 0 {
                    Message::Welcome(parts, Some(true))
                } else {
                    Message::Packet(parts)
                };
                (seq, Encoding::Stream.frame(message))
            })
            .collect()
    }
}
