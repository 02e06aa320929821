//! Relay channels: messages heard on Redis, passed as they are to the dashboards that subscribed
//! to their channel (`docs/PROTOCOL.md` §9). Each message gets the next `offset` of its channel
//! and is framed once per [`Encoding`] (`UPDATE` on the stream paths, `update` on the bridge
//! paths); every subscriber writes those same bytes.
//!
//! A subscription is a topic: one exact channel, or a pattern (`market.tick.*`). Topics are made
//! when the first dashboard subscribes and dropped when the last one leaves ([`Relay::leave`]),
//! so names subscribed and left in a loop hold nothing; how many may be held at once is capped
//! daemon-wide (`redis.max_topics`). Every relayed message is
//! framed and kept whether or not anybody listens now: a dashboard may come back for it.
//!
//! Offsets belong to an epoch, the packets' one: this daemon's own, or its cluster's when the
//! cluster's poller numbers them ([`Relay::publish_numbered`]), so every daemon of a cluster
//! gives the same message the same offset. The last messages of each channel are kept, so a
//! client that reconnects can ask for what it missed (`SUBSCRIBE` with `since`) and gets it
//! before the live ones, with no gap and no repeat.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

pub use super::update::Update;
use super::update::frames;
use crate::config::{is_pattern, matches};

/// Relayed messages a subscriber may fall behind on one topic before it skips ahead (and
/// sees the gap in `offset`).
const TOPIC_CAPACITY: usize = 256;

/// Channels whose offsets are kept; past this, the least recently heard is forgotten (its
/// offsets start again, which a client sees as a new sequence).
const MAX_CHANNELS: usize = 10_000;

/// Bytes of framed messages kept for resuming, all channels together; past this, the oldest
/// go first, whatever their channel.
const KEPT_BYTES: usize = 16 << 20;

/// What joining a topic gives: the live messages, and those a resuming client missed.
#[derive(Debug)]
pub struct Joined {
    /// Every message the topic matches from now on.
    pub rx: broadcast::Receiver<Arc<Update>>,
    /// The kept messages after the asked offsets, in the order they were heard; none of them
    /// comes again on `rx`.
    pub missed: Vec<Arc<Update>>,
    /// For each asked channel the topic covers: whether everything after its offset was there
    /// to send (`false`: the epoch differs, or the kept messages no longer reach back).
    pub resumed: Vec<(String, bool)>,
}

/// The relay's topics, offsets and kept messages, shared by the Redis input and every session.
#[derive(Debug)]
pub struct Relay {
    /// Held to number a message and pick its topics, or to add a topic; the framing and the
    /// sends happen outside it.
    inner: Mutex<Inner>,
    /// Messages each channel keeps for resuming.
    keep: usize,
}

impl Default for Relay {
    fn default() -> Self {
        Self::new("".into(), 300)
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// The epoch the offsets belong to.
    epoch: Arc<str>,
    channels: HashMap<Arc<str>, Channel>,
    topics: HashMap<String, broadcast::Sender<Arc<Update>>>,
    /// Messages heard in this epoch; numbers the kept ones in the order they came.
    heard: u64,
    /// Every kept message, oldest first, as (channel, offset), to drop the oldest when
    /// [`KEPT_BYTES`] is passed.
    kept: VecDeque<(Arc<str>, u64)>,
    /// Bytes and count of the messages kept now.
    kept_bytes: usize,
    kept_now: usize,
}

/// One channel: its last offset, when it was last heard, and its last messages.
#[derive(Debug, Default)]
struct Channel {
    offset: u64,
    heard: u64,
    last: VecDeque<(u64, Arc<Update>)>,
}

impl Channel {
    /// Whether everything after `since` is kept (or nothing came after it).
    fn reaches(&self, since: u64) -> bool {
        since <= self.offset
            && self
                .last
                .front()
                .is_none_or(|(_, first)| first.offset <= since + 1)
            && (since == self.offset || !self.last.is_empty())
    }
}

impl Relay {
    /// A relay numbering in `epoch` until told another, keeping the last `keep` messages of
    /// each channel for resuming clients.
    pub fn new(epoch: Arc<str>, keep: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                epoch,
                ..Inner::default()
            }),
            keep,
        }
    }

    /// Relays one message heard on `channel`, numbered here (the next offset of that channel
    /// in `epoch`), to every topic it matches. A payload that is not JSON is carried as
    /// `{"raw": "<text>"}`. Returns how many subscriptions it reached.
    pub fn publish(&self, epoch: &str, channel: &str, payload: &[u8]) -> usize {
        self.relay(epoch, channel, None, payload)
    }

    /// Relays one message numbered by a producer (the cluster's poller): `offset` of
    /// `channel` in `epoch`. An offset not after the channel's latest is a repeat, dropped.
    pub fn publish_numbered(
        &self,
        epoch: &str,
        channel: &str,
        offset: u64,
        payload: &[u8],
    ) -> usize {
        self.relay(epoch, channel, Some(offset), payload)
    }

    fn relay(&self, epoch: &str, channel: &str, given: Option<u64>, payload: &[u8]) -> usize {
        let mut guard = self.inner.lock().expect("relay lock poisoned");
        let inner = &mut *guard;
        if *inner.epoch != *epoch {
            // A new count: the old offsets and what was kept under them mean nothing now.
            let topics = std::mem::take(&mut inner.topics);
            *inner = Inner {
                epoch: epoch.into(),
                topics,
                ..Inner::default()
            };
        }
        inner.heard += 1;
        let heard = inner.heard;
        if inner.channels.len() >= MAX_CHANNELS && !inner.channels.contains_key(channel) {
            inner.forget_oldest_channel();
        }
        let name: Arc<str> = match inner.channels.get_key_value(channel) {
            Some((name, _)) => name.clone(),
            None => channel.into(),
        };
        let state = inner.channels.entry(name.clone()).or_default();
        let offset = match given {
            None => state.offset + 1,
            Some(given) if given <= state.offset => return 0,
            Some(given) => {
                if given != state.offset + 1 {
                    // Some went by unheard here: what is kept would have a hole.
                    let gone = std::mem::take(&mut state.last);
                    inner.kept_bytes -= gone.iter().map(|(_, u)| u.bytes()).sum::<usize>();
                    inner.kept_now -= gone.len();
                }
                given
            }
        };
        state.offset = offset;
        state.heard = heard;
        inner.topics.retain(|_, tx| tx.receiver_count() > 0);
        let senders: Vec<_> = inner
            .topics
            .iter()
            .filter(|(topic, _)| {
                topic.as_str() == channel || (is_pattern(topic) && matches(topic, channel))
            })
            .map(|(_, tx)| tx.clone())
            .collect();
        // Framed under the lock, so a client joining now finds it either kept or coming.
        let update = Arc::new(frames(name.clone(), offset, payload));
        inner.keep(name, heard, update.clone(), self.keep);
        drop(guard);
        senders
            .iter()
            .filter(|tx| tx.send(update.clone()).is_ok())
            .count()
    }

    /// Joins `topic` (a channel or a pattern): every later message it matches. `since` names
    /// the last offset a resuming client got of some channels, under `epoch` (none: this
    /// relay's own); the kept messages after them come back in [`Joined::missed`].
    #[cfg(test)]
    pub fn subscribe(&self, topic: &str, since: &[(String, u64)], epoch: Option<&str>) -> Joined {
        self.join(topic, since, epoch, usize::MAX)
            .expect("no cap, no refusal")
    }

    /// [`Relay::subscribe`], unless `topic` is new and `max_topics` are held already: then
    /// `Err(max_topics)`, and nothing is held for it. Each topic costs its subscribers'
    /// queue ([`TOPIC_CAPACITY`] slots) until [`Relay::leave`] drops it.
    pub fn join(
        &self,
        topic: &str,
        since: &[(String, u64)],
        epoch: Option<&str>,
        max_topics: usize,
    ) -> Result<Joined, usize> {
        let mut inner = self.inner.lock().expect("relay lock poisoned");
        if !inner.topics.contains_key(topic) && inner.topics.len() >= max_topics {
            // Receivers dropped without a `leave` (none should be) still hold their slot.
            inner.topics.retain(|_, tx| tx.receiver_count() > 0);
            if inner.topics.len() >= max_topics {
                return Err(max_topics);
            }
        }
        let rx = inner
            .topics
            .entry(topic.to_owned())
            .or_insert_with(|| broadcast::channel(TOPIC_CAPACITY).0)
            .subscribe();
        let same_epoch = epoch.is_none_or(|e| *e == *inner.epoch);
        let mut missed = Vec::new();
        let mut resumed = Vec::new();
        for (channel, from) in since {
            let covered = channel == topic || (is_pattern(topic) && matches(topic, channel));
            if !covered || resumed.iter().any(|(c, _)| c == channel) {
                continue;
            }
            let state = inner.channels.get(channel.as_str());
            let reaches = same_epoch && state.map_or(*from == 0, |s| s.reaches(*from));
            if let (true, Some(state)) = (reaches, state) {
                missed.extend(state.last.iter().filter(|(_, u)| u.offset > *from).cloned());
            }
            resumed.push((channel.clone(), reaches));
        }
        missed.sort_by_key(|(heard, _)| *heard);
        Ok(Joined {
            rx,
            missed: missed.into_iter().map(|(_, update)| update).collect(),
            resumed,
        })
    }

    /// Drops `topic` if its last subscriber is gone: called once a receiver of it is dropped,
    /// so a topic nobody hears costs nothing even when no message ever comes to prune it.
    pub fn leave(&self, topic: &str) {
        let mut inner = self.inner.lock().expect("relay lock poisoned");
        if inner
            .topics
            .get(topic)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            inner.topics.remove(topic);
        }
    }

    /// Topics held now, each with its queue: what `redis.max_topics` caps, and the
    /// `bff_relay_topics` gauge.
    pub fn held(&self) -> usize {
        self.inner.lock().expect("relay lock poisoned").topics.len()
    }

    /// Topics with at least one subscriber now.
    #[cfg(test)]
    pub fn topics(&self) -> usize {
        let inner = self.inner.lock().expect("relay lock poisoned");
        inner
            .topics
            .values()
            .filter(|tx| tx.receiver_count() > 0)
            .count()
    }
}

impl Inner {
    /// Forgets the channel heard least recently, and what it kept.
    fn forget_oldest_channel(&mut self) {
        let oldest = self
            .channels
            .iter()
            .min_by_key(|(_, state)| state.heard)
            .map(|(name, _)| name.clone());
        if let Some(state) = oldest.and_then(|name| self.channels.remove(&name)) {
            self.kept_bytes -= state.last.iter().map(|(_, u)| u.bytes()).sum::<usize>();
            self.kept_now -= state.last.len();
        }
    }

    /// Keeps `update` for resuming: at most `keep` per channel and [`KEPT_BYTES`] in all.
    fn keep(&mut self, channel: Arc<str>, heard: u64, update: Arc<Update>, keep: usize) {
        if keep == 0 {
            return;
        }
        let bytes = update.bytes();
        let offset = update.offset;
        let state = self
            .channels
            .get_mut(&channel)
            .expect("the channel was just numbered");
        state.last.push_back((heard, update));
        self.kept_now += 1;
        if state.last.len() > keep
            && let Some((_, gone)) = state.last.pop_front()
        {
            self.kept_bytes -= gone.bytes();
            self.kept_now -= 1;
        }
        self.kept_bytes += bytes;
        self.kept.push_back((channel, offset));
        while self.kept_bytes > KEPT_BYTES {
            let Some((channel, offset)) = self.kept.pop_front() else {
                break;
            };
            // Entries whose message already went (its channel's cap, or the channel) are skipped.
            if let Some(state) = self.channels.get_mut(&channel)
                && state.last.front().is_some_and(|(_, u)| u.offset == offset)
                && let Some((_, gone)) = state.last.pop_front()
            {
                self.kept_bytes -= gone.bytes();
                self.kept_now -= 1;
            }
        }
        if self.kept.len() > 2 * self.kept_now + 1024 {
            // Mostly entries of messages gone by their channel's cap: drop those in one pass,
            // which the growth since the last pass pays for.
            let channels = &self.channels;
            self.kept.retain(|(channel, offset)| {
                channels
                    .get(channel)
                    .and_then(|s| s.last.front())
                    .is_some_and(|(_, first)| first.offset <= *offset)
            });
        }
    }
}

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;
