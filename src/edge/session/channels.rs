//! One connection's relay-channel subscriptions (`docs/PROTOCOL.md` §9): which it may have
//! (the `redis.relay` allow-list, at most `clients.max_channels`), the receivers it reads them
//! from, and the `SUBSCRIBED` / `UNSUBSCRIBED` answers with a reason for each refusal.
//!
//! A pattern may be subscribed only as the allow-list writes it; an exact channel when any entry
//! matches it. An exact channel already covered by a pattern the client holds is refused, and a
//! pattern replaces the exact channels it covers, so no message arrives twice. Where the
//! connection's encoding says so (a bridge path's), `telemetry` is a channel too: the packet
//! itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use tokio_stream::StreamExt;
use tokio_stream::StreamMap;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::config::{Config, is_pattern, matches};
use crate::edge::session::message::Subscribe;
use crate::hub::Encoding;
use crate::hub::relay::{Joined, Relay, Update};

/// The channel that carries the packet itself, where that is a channel
/// ([`Encoding::telemetry_is_a_channel`]).
pub const TELEMETRY: &str = "telemetry";

/// A channel a client asked for and did not get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema, ts_rs::TS))]
pub struct Rejected {
    /// The channel (or pattern) as asked.
    pub channel: String,
    /// Why not, readable by a person.
    pub reason: String,
}

/// The answer to `SUBSCRIBE` (`subscribed` in the bridge dialect) and `UNSUBSCRIBE`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema, ts_rs::TS))]
pub struct Subscribed {
    /// `SUBSCRIBED` or `UNSUBSCRIBED`, lowercase when the request was.
    #[serde(rename = "type")]
    #[cfg_attr(
        test,
        ts(
            rename = "type",
            type = "\"SUBSCRIBED\" | \"UNSUBSCRIBED\" | \"subscribed\" | \"unsubscribed\""
        )
    )]
    #[cfg_attr(test, schemars(with = "SubscribedType"))]
    pub kind: &'static str,
    /// The channels now subscribed (or left) by this request.
    pub channels: Vec<String>,
    /// Those refused, each with its reason.
    pub rejected: Vec<Rejected>,
    /// Only when the request named offsets (`since`): for each such channel the request
    /// subscribed, whether every message after its offset follows (`false`: the epoch differs,
    /// or the kept messages no longer reach back, so only the live ones come).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub resumed: Option<BTreeMap<String, bool>>,
}

/// The `type` of a [`Subscribed`], for the schema.
#[cfg(test)]
#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
enum SubscribedType {
    #[schemars(rename = "SUBSCRIBED")]
    Subscribed,
    #[schemars(rename = "UNSUBSCRIBED")]
    Unsubscribed,
    #[schemars(rename = "subscribed")]
    SubscribedLower,
    #[schemars(rename = "unsubscribed")]
    UnsubscribedLower,
}

/// The `type` of an [`UpdateMessage`], for the schema.
#[cfg(test)]
#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
enum UpdateType {
    #[schemars(rename = "UPDATE")]
    Update,
}

/// One relayed message as a stream-path client receives it.
#[cfg(test)]
#[derive(Debug, Clone, Serialize, schemars::JsonSchema, ts_rs::TS)]
pub struct UpdateMessage {
    /// Always `UPDATE` (`update` on bridge paths, which carry no `offset`).
    #[serde(rename = "type")]
    #[ts(rename = "type", type = "\"UPDATE\"")]
    #[schemars(with = "UpdateType")]
    pub kind: &'static str,
    /// The channel it was published on.
    pub channel: String,
    /// Grows by one per message on that channel: a gap is a loss.
    pub offset: u64,
    /// The message as published; text that is not JSON comes as `{"raw": "<text>"}`.
    #[ts(type = "unknown")]
    pub data: serde_json::Value,
}

/// What a relayed receiver gave: a message, or how many it skipped for falling behind.
pub type Heard = Result<Arc<Update>, u64>;

/// A connection's subscriptions. Each topic it leaves, and all of them when it is dropped, are
/// given back to the relay, which frees a topic once its last subscriber is gone.
#[derive(Default)]
pub struct Channels {
    topics: StreamMap<String, BroadcastStream<Arc<Update>>>,
    /// The relay its topics were joined on, set at the first; `None` while there was none.
    relay: Option<Arc<Relay>>,
    /// Bridge only: the packet, as the `telemetry` channel.
    pub telemetry: bool,
}

impl Drop for Channels {
    fn drop(&mut self) {
        let Some(relay) = self.relay.take() else {
            return;
        };
        let topics: Vec<String> = self.topics.keys().cloned().collect();
        // The receivers first: a topic is dropped only once none is left.
        self.topics = StreamMap::new();
        for topic in topics {
            relay.leave(&topic);
        }
    }
}

impl Channels {
    /// Subscriptions held now (`telemetry` included).
    pub fn len(&self) -> usize {
        self.topics.len() + usize::from(self.telemetry)
    }

    /// Subscribes to what was `asked`, as far as `config` allows, for a connection of
    /// `encoding` (which says whether `telemetry` is a channel, and answers are lowercase).
    /// Returns the answer and, when the request named offsets, the kept messages after them,
    /// to send before any live one.
    pub fn subscribe(
        &mut self,
        asked: Subscribe,
        config: &Config,
        relay: &Arc<Relay>,
        encoding: Encoding,
    ) -> (Subscribed, Vec<Arc<Update>>) {
        let packets = encoding.telemetry_is_a_channel();
        let mut answer = Subscribed {
            kind: if asked.lowercase || encoding.lowercase() {
                "subscribed"
            } else {
                "SUBSCRIBED"
            },
            channels: Vec::new(),
            rejected: Vec::new(),
            resumed: (!asked.since.is_empty()).then(BTreeMap::new),
        };
        let mut missed = Vec::new();
        for channel in asked.channels {
            match self.admit(&channel, config, packets) {
                Err(reason) => answer.rejected.push(Rejected { channel, reason }),
                Ok(()) if packets && channel == TELEMETRY => {
                    self.telemetry = true;
                    answer.channels.push(channel);
                }
                Ok(()) => {
                    let relay = self.relay.get_or_insert_with(|| relay.clone()).clone();
                    let max_topics = config.redis.max_topics;
                    let since = &asked.since;
                    let Ok(joined) =
                        relay.join(&channel, since, asked.epoch.as_deref(), max_topics)
                    else {
                        answer.rejected.push(Rejected {
                            channel,
                            reason: format!(
                                "too many relay channels held daemon-wide (redis.max_topics = \
                                 {max_topics}); retry later"
                            ),
                        });
                        continue;
                    };
                    if is_pattern(&channel) {
                        // The pattern covers these now: keep one way in for each message.
                        let covered: Vec<String> = self
                            .topics
                            .keys()
                            .filter(|t| !is_pattern(t) && matches(&channel, t))
                            .cloned()
                            .collect();
                        for topic in covered {
                            self.leave(&topic);
                        }
                    }
                    let Joined {
                        rx,
                        missed: older,
                        resumed,
                    } = joined;
                    missed.extend(older);
                    if let Some(answered) = answer.resumed.as_mut() {
                        answered.extend(resumed);
                    }
                    self.topics
                        .insert(channel.clone(), BroadcastStream::new(rx));
                    answer.channels.push(channel);
                }
            }
        }
        (answer, missed)
    }

    /// Whether `channel` may be added (`packets` when `telemetry` is a channel); `Err` says why
    /// not.
    fn admit(&self, channel: &str, config: &Config, packets: bool) -> Result<(), String> {
        if channel.is_empty() || channel.contains(char::is_whitespace) {
            return Err("not a channel name".into());
        }
        if self.topics.contains_key(channel) || (packets && channel == TELEMETRY && self.telemetry)
        {
            return Err("already subscribed".into());
        }
        if self.len() >= config.clients.max_channels {
            return Err(format!(
                "at most {} subscriptions per connection (clients.max_channels)",
                config.clients.max_channels
            ));
        }
        if packets && channel == TELEMETRY {
            return Ok(());
        }
        if !config.redis.enabled() {
            return Err("channels are off here: redis.url is not set".into());
        }
        let allowed = if is_pattern(channel) {
            config.redis.relay.iter().any(|entry| entry == channel)
        } else {
            config
                .redis
                .relay
                .iter()
                .any(|entry| matches(entry, channel))
        };
        if !allowed {
            return Err(if is_pattern(channel) {
                "a pattern must be one of redis.relay as written".into()
            } else {
                "not relayed: no entry of redis.relay matches it".into()
            });
        }
        if let Some(pattern) = self
            .topics
            .keys()
            .find(|t| is_pattern(t) && !is_pattern(channel) && matches(t, channel))
        {
            return Err(format!("already covered by {pattern}"));
        }
        Ok(())
    }

    /// Leaves what was `asked`; the answer lists what was held and is no more.
    pub fn unsubscribe(&mut self, asked: Vec<String>, lowercase: bool) -> Subscribed {
        let mut answer = Subscribed {
            kind: if lowercase {
                "unsubscribed"
            } else {
                "UNSUBSCRIBED"
            },
            channels: Vec::new(),
            rejected: Vec::new(),
            resumed: None,
        };
        for channel in asked {
            let held = if channel == TELEMETRY && self.telemetry {
                self.telemetry = false;
                true
            } else {
                self.leave(&channel)
            };
            if held {
                answer.channels.push(channel);
            } else {
                answer.rejected.push(Rejected {
                    channel,
                    reason: "not subscribed".into(),
                });
            }
        }
        answer
    }

    /// Drops the subscription to `topic`, and the relay's topic with it when it was the last;
    /// whether it was held.
    fn leave(&mut self, topic: &str) -> bool {
        if self.topics.remove(topic).is_none() {
            return false;
        }
        if let Some(relay) = &self.relay {
            relay.leave(topic);
        }
        true
    }

    /// The next relayed message on any subscription; never, while there is none.
    pub async fn next(&mut self) -> Heard {
        if self.topics.is_empty() {
            return std::future::pending().await;
        }
        match self.topics.next().await {
            Some((_, Ok(update))) => Ok(update),
            Some((_, Err(BroadcastStreamRecvError::Lagged(skipped)))) => Err(skipped),
            // A topic's sender never goes away while the relay lives.
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
#[path = "channels_tests.rs"]
mod tests;
