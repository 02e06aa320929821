//! The fenced publish of a packet: numbered from the cluster's `seq` in the epoch in force
//! (started again when the count is gone or the engine changed), signed, kept in the capped
//! history and published; and the history read back for a resuming client.

use std::time::Duration;

use redis::Script;
use redis::aio::MultiplexedConnection;

use super::call::{Failed, bounded};
use super::keys::Keys;
use crate::input::cluster::message::parse;
use crate::input::cluster::seal::Seal;

/// The epoch in force, or `new` when the count is gone (a fresh Redis, a deleted key) or was
/// polled from another engine than `engine`: then the seq starts again from 0, the history and
/// the offsets of the old epoch go, and the epoch is `engine`'s. The scripts below start with
/// it; their keys are lease, seq, epoch, history, offsets and engine.
pub(super) const EPOCH: &str = r"
    local function epoch_or(new, engine, streams)
      local epoch = redis.call('GET', KEYS[3])
      if epoch and redis.call('EXISTS', KEYS[2]) == 1
        and redis.call('GET', KEYS[6]) == engine then return epoch end
      redis.call('SET', KEYS[3], new)
      redis.call('SET', KEYS[2], 0)
      redis.call('SET', KEYS[6], engine)
      for _, channel in ipairs(redis.call('HKEYS', KEYS[7])) do
        redis.call('DEL', streams .. channel)
      end
      redis.call('DEL', KEYS[4], KEYS[5], KEYS[7])
      return new
    end
    if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
";

/// Numbers a packet: ARGV: token, new epoch, engine, streams' prefix. `{epoch, seq}`.
static NUMBER: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(&format!(
        r"{EPOCH}
          local epoch = epoch_or(ARGV[2], ARGV[3], ARGV[4])
          return {{epoch, redis.call('INCR', KEYS[2])}}"
    ))
});

/// Publishes what was numbered and signed, while the lease is the caller's, and keeps a packet
/// in the history and the poller's sign of life. KEYS: lease, history, alive; ARGV: token,
/// channel, message, and for a packet its seq, the history's length and the silence in ms
/// (empty for a relayed message). 1, or 0 when refused.
const SEND: &str = r"
    if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
    if ARGV[4] ~= '' then
      redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[5], ARGV[4] .. '-1', 'p', ARGV[3])
      redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[6])
    end
    redis.call('PUBLISH', ARGV[2], ARGV[3])
    return 1";

static SEND_SCRIPT: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| Script::new(SEND));

/// Publishes one packet's data while the lease is `token`'s, signed with `seal`: its epoch and
/// seq, or `None` when the lease is not (or no longer) `token`'s. `new_epoch` names the count
/// if it must start again; `history` is how many packets the stream keeps; `silence` how long
/// this packet keeps the poller alive for the others. Two round trips: the seq comes from
/// Redis, and the tag covers it.
#[allow(clippy::too_many_arguments)]
pub async fn publish(
    redis: &mut MultiplexedConnection,
    keys: &Keys,
    token: &str,
    engine: &str,
    seal: &Seal,
    body: &str,
    history: usize,
    silence: Duration,
    new_epoch: &str,
) -> Result<Option<(String, u64)>, Failed> {
    let Some((epoch, seq)) = number(redis, keys, token, engine, new_epoch).await? else {
        return Ok(None);
    };
    let sent = send(
        redis,
        keys,
        token,
        seal,
        (&epoch, seq),
        body,
        history,
        silence,
    )
    .await?;
    Ok(sent.then_some((epoch, seq)))
}

/// The first step of [`publish`]: the packet's epoch and seq, while the lease is `token`'s; a
/// new epoch when the one in force was polled from another engine than `engine`.
pub async fn number(
    redis: &mut MultiplexedConnection,
    keys: &Keys,
    token: &str,
    engine: &str,
    new_epoch: &str,
) -> Result<Option<(String, u64)>, Failed> {
    let mut number = NUMBER.prepare_invoke();
    number
        .key(&keys.fenced()[..])
        .arg(token)
        .arg(new_epoch)
        .arg(engine)
        .arg(&keys.streams);
    bounded("numbering", number.invoke_async(redis)).await
}

/// The second step of [`publish`]: the numbered packet signed, kept and published while the
/// lease is still `token`'s; whether it was.
#[allow(clippy::too_many_arguments)]
pub async fn send(
    redis: &mut MultiplexedConnection,
    keys: &Keys,
    token: &str,
    seal: &Seal,
    (epoch, seq): (&str, u64),
    body: &str,
    history: usize,
    silence: Duration,
) -> Result<bool, Failed> {
    let mut send = SEND_SCRIPT.prepare_invoke();
    send.key(&keys.lease)
        .key(&keys.history)
        .key(&keys.alive)
        .arg(token)
        .arg(&keys.packets)
        .arg(seal.packet(epoch, seq, body))
        .arg(seq)
        .arg(history)
        .arg(silence.as_millis() as u64);
    let sent: i64 = bounded("publishing", send.invoke_async(redis)).await?;
    Ok(sent == 1)
}

/// Reads the history only for the epoch in force: KEYS: epoch, history; ARGV: epoch, first id,
/// count. A client of another epoch costs one `GET`, not up to `clients.resume_history` packets.
static HISTORY: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {} end
          return redis.call('XRANGE', KEYS[2], ARGV[2], '+', 'COUNT', ARGV[3])",
    )
});

/// The packets of `epoch` from `from` on in the cluster's history, oldest first, as published
/// (their tags not checked here); at most `limit`, and none unless `epoch` is the one in force.
pub async fn history(
    redis: &mut MultiplexedConnection,
    keys: &Keys,
    epoch: &str,
    from: u64,
    limit: usize,
) -> Result<Vec<String>, Failed> {
    let mut range = HISTORY.prepare_invoke();
    range
        .key(&keys.epoch)
        .key(&keys.history)
        .arg(epoch)
        .arg(format!("{from}-1"))
        .arg(limit);
    let entries: Vec<(String, Vec<(String, String)>)> =
        bounded("reading the history", range.invoke_async(redis)).await?;
    Ok(entries
        .into_iter()
        .filter_map(|(_, fields)| fields.into_iter().find(|(name, _)| name == "p"))
        .map(|(_, packet)| packet)
        .filter(|packet| parse(packet).is_some_and(|p| p.epoch == epoch))
        .collect())
}
