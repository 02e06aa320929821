//! Relayed messages for the cluster: each one's id, numbered per channel in the epoch in force
//! unless already published, signed, published and kept in its channel's capped stream; and
//! those streams read back.

use std::time::Duration;

use redis::Script;
use redis::aio::MultiplexedConnection;

use super::call::{Failed, bounded};
use super::keys::Keys;
use super::packets::EPOCH;
use crate::input::cluster::seal::Seal;

/// Numbers a relayed message unless it was published already (KEYS[8], its `seen` key):
/// ARGV: token, new epoch, channel, engine, streams' prefix. `{epoch, offset}`.
static NUMBER_RELAYED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        r"{EPOCH}
          if redis.call('EXISTS', KEYS[8]) == 1 then return false end
          local epoch = epoch_or(ARGV[2], ARGV[4], ARGV[5])
          return {{epoch, redis.call('HINCRBY', KEYS[5], ARGV[3], 1)}}"
    )
});

/// Publishes a numbered relayed message while the lease is the caller's, notes that it was
/// (its `seen` key, for `seen` ms; its offset as its channel's last published) and keeps it in
/// its channel's capped stream (an entry out of order there is skipped, not the publish).
/// KEYS: lease, seen, published, stream; ARGV: token, relay channel, message, channel, offset,
/// seen ms, the stream's length.
const SEND_RELAYED: &str = r"
    if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
    redis.call('SET', KEYS[2], 1, 'PX', ARGV[6])
    redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
    redis.pcall('XADD', KEYS[4], 'MAXLEN', ARGV[7], ARGV[5] .. '-1', 'm', ARGV[3])
    redis.call('PUBLISH', ARGV[2], ARGV[3])
    return 1";

/// A message heard on a relayed channel, offered to be numbered for the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The channel it was heard on.
    pub channel: String,
    /// What was heard.
    pub payload: bytes::Bytes,
    /// What tells it from any other: the same on every daemon that heard it ([`message_id`]).
    pub id: String,
}

/// A relayed message's id: its channel and payload hashed (16 hex digits), and how many times
/// the same were heard before it within what the daemon keeps (`earlier`), so a message
/// published twice is two messages, and one heard by several daemons is one.
pub fn message_id(channel: &str, payload: &[u8], earlier: usize) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(channel.as_bytes());
    hash.update([0]);
    hash.update(payload);
    let hex: String = hash.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{hex}:{earlier}")
}

/// Numbers, signs and publishes relayed messages, in order, skipping those already published
/// (by this daemon or the poller before it), while the lease is `token`'s (those
/// refused for a lapsed lease are dropped by Redis, not here). Two round trips for the batch.
#[allow(clippy::too_many_arguments)]
pub async fn relay(
    redis: &mut MultiplexedConnection,
    keys: &Keys,
    token: &str,
    engine: &str,
    seal: &Seal,
    new_epoch: &str,
    batch: &[Offer],
    seen: Duration,
    history: usize,
) -> Result<(), Failed> {
    let mut pipe = redis::pipe();
    let fenced = keys.fenced();
    for offer in batch {
        // EVAL rather than EVALSHA: a restarted Redis has no scripts loaded, and a pipeline
        // cannot load one halfway; Redis caches the compiled script by its text.
        pipe.cmd("EVAL")
            .arg(NUMBER_RELAYED.as_str())
            .arg(fenced.len() + 1)
            .arg(&fenced[..])
            .arg(format!("{}{}", keys.seen, offer.id))
            .arg(token)
            .arg(new_epoch)
            .arg(&offer.channel)
            .arg(engine)
            .arg(&keys.streams);
    }
    let numbered: Vec<Option<(String, u64)>> =
        bounded("numbering relayed messages", pipe.query_async(redis)).await?;
    let mut pipe = redis::pipe();
    let mut sending = 0;
    for (offer, numbered) in batch.iter().zip(numbered) {
        let Some((epoch, offset)) = numbered else {
            continue;
        };
        sending += 1;
        pipe.cmd("EVAL")
            .arg(SEND_RELAYED)
            .arg(4)
            .arg(&keys.lease)
            .arg(format!("{}{}", keys.seen, offer.id))
            .arg(&keys.published)
            .arg(format!("{}{}", keys.streams, offer.channel))
            .arg(token)
            .arg(&keys.relay)
            .arg(seal.relayed(&epoch, offset, &offer.channel, &offer.payload))
            .arg(&offer.channel)
            .arg(offset)
            .arg(seen.as_millis() as u64)
            .arg(history)
            .ignore();
    }
    if sending == 0 {
        return Ok(());
    }
    bounded("relaying", pipe.query_async::<()>(redis)).await
}

/// Reads every relayed channel's stream for the epoch in force, oldest first per channel, up
/// to a byte budget: KEYS: epoch, published; ARGV: epoch, streams' prefix, count per channel,
/// bytes. The messages as published.
static RELAYED_HISTORY: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {} end
          local out, bytes = {}, 0
          for _, channel in ipairs(redis.call('HKEYS', KEYS[2])) do
            local entries = redis.call('XREVRANGE', ARGV[2] .. channel, '+', '-', 'COUNT', ARGV[3])
            local first = #out + 1
            for _, entry in ipairs(entries) do
              local message = entry[2][2]
              bytes = bytes + #message
              if bytes > tonumber(ARGV[4]) then break end
              table.insert(out, first, message)
            end
            if bytes > tonumber(ARGV[4]) then break end
          end
          return out",
    )
});

/// The relayed messages of `epoch` in the cluster's streams, as published (their tags not
/// checked here): each channel's newest `limit` at most, oldest first, and `bytes` in all.
pub async fn relayed_history(
    redis: &mut MultiplexedConnection,
    keys: &Keys,
    epoch: &str,
    limit: usize,
    bytes: usize,
) -> Result<Vec<Vec<u8>>, Failed> {
    let mut range = RELAYED_HISTORY.prepare_invoke();
    range
        .key(&keys.epoch)
        .key(&keys.published)
        .arg(epoch)
        .arg(&keys.streams)
        .arg(limit)
        .arg(bytes);
    bounded("reading the relayed history", range.invoke_async(redis)).await
}
