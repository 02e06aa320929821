//! The cluster's state in Redis, changed only by these commands and scripts, so each change is
//! atomic on the server and checks who makes it:
//!
//! - the lease: `SET <name>:lease <token> NX PX <ms>` takes it; renewing and releasing are
//!   scripts that act only while the key still holds the caller's token;
//! - the publish is fenced: one script checks the token, numbers the packet from
//!   `<name>:seq` (starting a new `<name>:epoch` when the count is gone), appends it to the
//!   capped stream `<name>:history` and publishes it on `<name>:packets`. A daemon whose lease
//!   lapsed (paused, cut off, slow) is refused, whatever it believes;
//! - relayed messages are numbered the same way: one script checks the token, takes the next
//!   offset of the message's channel from the hash `<name>:offsets` and publishes it on
//!   `<name>:relay`, so every daemon gives it the same offset. A new epoch starts the offsets
//!   again.
//!
//! A packet on the channel, and in the history, is `<epoch> <seq> <data JSON>`; a relayed
//! message is `<epoch> <offset> <length of the channel's name> <channel><payload>`.

use std::time::Duration;

use redis::Script;
use redis::aio::MultiplexedConnection;
use tokio::time::timeout;

/// The keys and channel of one cluster.
#[derive(Debug, Clone)]
pub struct Keys {
    lease: String,
    seq: String,
    epoch: String,
    history: String,
    offsets: String,
    /// Where every packet (and the notice that the lease was released) is published.
    pub packets: String,
    /// Where every relayed message is published, numbered.
    pub relay: String,
}

impl Keys {
    /// The keys of the fenced scripts, in their `KEYS` order: lease, seq, epoch, history and
    /// offsets.
    fn fenced(&self) -> [&str; 5] {
        [
            &self.lease,
            &self.seq,
            &self.epoch,
            &self.history,
            &self.offsets,
        ]
    }

    /// The keys of the cluster called `name`.
    pub fn new(name: &str) -> Self {
        Self {
            lease: format!("{name}:lease"),
            seq: format!("{name}:seq"),
            epoch: format!("{name}:epoch"),
            history: format!("{name}:history"),
            offsets: format!("{name}:offsets"),
            packets: format!("{name}:packets"),
            relay: format!("{name}:relay"),
        }
    }
}

/// What the packets channel carries when the poller lets go: the others take over at once.
pub const RELEASED: &str = "released";

/// Time one command or script may take.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);

static RENEW: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then
            return redis.call('PEXPIRE', KEYS[1], ARGV[2])
          end
          return 0",
    )
});

static RELEASE: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then
            redis.call('DEL', KEYS[1])
            redis.call('PUBLISH', ARGV[2], ARGV[3])
            return 1
          end
          return 0",
    )
});

/// The epoch in force, or `new` when the count is gone (a fresh Redis, a deleted key): then
/// the seq starts again from 0 and the history and the offsets of the old epoch go. The
/// scripts below start with it; their keys are lease, seq, epoch, history and offsets.
const EPOCH: &str = r"
    local function epoch_or(new)
      local epoch = redis.call('GET', KEYS[3])
      if epoch and redis.call('EXISTS', KEYS[2]) == 1 then return epoch end
      redis.call('SET', KEYS[3], new)
      redis.call('SET', KEYS[2], 0)
      redis.call('DEL', KEYS[4], KEYS[5])
      return new
    end
    if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
";

/// ARGV: token, new epoch, data JSON, history length, packets channel.
static PUBLISH: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(&format!(
        r"{EPOCH}
          local epoch = epoch_or(ARGV[2])
          local seq = redis.call('INCR', KEYS[2])
          local packet = epoch .. ' ' .. seq .. ' ' .. ARGV[3]
          redis.call('XADD', KEYS[4], 'MAXLEN', ARGV[4], seq .. '-1', 'p', packet)
          redis.call('PUBLISH', ARGV[5], packet)
          return {{epoch, seq}}"
    ))
});

/// ARGV: token, new epoch, channel, payload, relay channel.
static RELAY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        r"{EPOCH}
          local epoch = epoch_or(ARGV[2])
          local offset = redis.call('HINCRBY', KEYS[5], ARGV[3], 1)
          redis.call('PUBLISH', ARGV[5],
            epoch .. ' ' .. offset .. ' ' .. string.len(ARGV[3]) .. ' ' .. ARGV[3] .. ARGV[4])
          return offset"
    )
});

/// Why a command did not get an answer.
pub type Failed = String;

async fn bounded<T>(
    what: &str,
    command: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, Failed> {
    match timeout(COMMAND_TIMEOUT, command).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(err)) => Err(format!("{what}: {err}")),
        Err(_) => Err(format!(
            "{what}: no answer within {} ms",
            COMMAND_TIMEOUT.as_millis()
        )),
    }
}

/// Takes the lease for `lease` if nobody holds it; whether it did.
pub async fn acquire(
    redis: &mut MultiplexedConnection,
    keys: &Keys,
    token: &str,
    lease: Duration,
) -> Result<bool, Failed> {
    let mut set = redis::cmd("SET");
    set.arg(&keys.lease)
        .arg(token)
        .arg("NX")
        .arg("PX")
        .arg(lease.as_millis() as u64);
    let answer: Option<String> = bounded("taking the lease", set.query_async(redis)).await?;
    Ok(answer.is_some())
}

/// Extends the lease while it is still `token`'s; whether it was.
pub async fn renew(
    redis: &mut MultiplexedConnection,
    keys: &Keys,
    token: &str,
    lease: Duration,
) -> Result<bool, Failed> {
    let mut renew = RENEW.prepare_invoke();
    renew
        .key(&keys.lease)
        .arg(token)
        .arg(lease.as_millis() as u64);
    let answer: i64 = bounded("renewing the lease", renew.invoke_async(redis)).await?;
    Ok(answer == 1)
}

/// Gives the lease up while it is still `token`'s, and tells the others.
pub async fn release(
    redis: &mut MultiplexedConnection,
    keys: &Keys,
    token: &str,
) -> Result<bool, Failed> {
    let mut release = RELEASE.prepare_invoke();
    release
        .key(&keys.lease)
        .arg(token)
        .arg(&keys.packets)
        .arg(RELEASED);
    let answer: i64 = bounded("releasing the lease", release.invoke_async(redis)).await?;
    Ok(answer == 1)
}

/// Publishes one packet's data while the lease is `token`'s: its epoch and seq, or `None` when
/// the lease is not (or no longer) `token`'s. `new_epoch` names the count if it must start
/// again; `history` is how many packets the stream keeps.
pub async fn publish(
    redis: &mut MultiplexedConnection,
    keys: &Keys,
    token: &str,
    body: &str,
    history: usize,
    new_epoch: &str,
) -> Result<Option<(String, u64)>, Failed> {
    let mut publish = PUBLISH.prepare_invoke();
    publish
        .key(&keys.fenced()[..])
        .arg(token)
        .arg(new_epoch)
        .arg(body)
        .arg(history)
        .arg(&keys.packets);
    bounded("publishing", publish.invoke_async(redis)).await
}

/// Numbers and publishes relayed messages, in order, while the lease is `token`'s (those
/// refused for a lapsed lease are dropped by Redis, not here). One round trip for the batch.
pub async fn relay(
    redis: &mut MultiplexedConnection,
    keys: &Keys,
    token: &str,
    new_epoch: &str,
    batch: &[(String, bytes::Bytes)],
) -> Result<(), Failed> {
    let mut pipe = redis::pipe();
    let fenced = keys.fenced();
    for (channel, payload) in batch {
        // EVAL rather than EVALSHA: a restarted Redis has no scripts loaded, and a pipeline
        // cannot load one halfway; Redis caches the compiled script by its text.
        pipe.cmd("EVAL")
            .arg(RELAY.as_str())
            .arg(fenced.len())
            .arg(&fenced[..])
            .arg(token)
            .arg(new_epoch)
            .arg(channel)
            .arg(payload.as_ref())
            .arg(&keys.relay)
            .ignore();
    }
    bounded("relaying", pipe.query_async::<()>(redis)).await
}

/// The packets of `epoch` from `from` on in the cluster's history, oldest first, as `(seq,
/// data JSON)`; at most `limit`.
pub async fn history(
    redis: &mut MultiplexedConnection,
    keys: &Keys,
    epoch: &str,
    from: u64,
    limit: usize,
) -> Result<Vec<(u64, String)>, Failed> {
    let mut range = redis::cmd("XRANGE");
    range
        .arg(&keys.history)
        .arg(format!("{from}-1"))
        .arg("+")
        .arg("COUNT")
        .arg(limit);
    let entries: Vec<(String, Vec<(String, String)>)> =
        bounded("reading the history", range.query_async(redis)).await?;
    Ok(entries
        .into_iter()
        .filter_map(|(_, fields)| fields.into_iter().find(|(name, _)| name == "p"))
        .filter_map(|(_, packet)| {
            let (e, seq, body) = parse(&packet)?;
            (e == epoch).then(|| (seq, body.to_owned()))
        })
        .collect())
}

/// Reads one packet as published: its epoch, seq and data JSON.
pub fn parse(packet: &str) -> Option<(&str, u64, &str)> {
    let mut parts = packet.splitn(3, ' ');
    let epoch = parts.next()?;
    let seq = parts.next()?.parse().ok()?;
    let body = parts.next()?;
    Some((epoch, seq, body))
}

/// Reads one relayed message as published: its epoch, offset, channel and payload.
pub fn parse_relayed(message: &[u8]) -> Option<(&str, u64, &str, &[u8])> {
    let mut fields = message.splitn(4, |b| *b == b' ');
    let epoch = std::str::from_utf8(fields.next()?).ok()?;
    let offset = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
    let length: usize = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
    let rest = fields.next()?;
    let channel = std::str::from_utf8(rest.get(..length)?).ok()?;
    Some((epoch, offset, channel, &rest[length..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relayed_message_reads_as_published() {
        let published = b"e1 17 13 trade.results{\"a\": \"b c\"}";
        assert_eq!(
            parse_relayed(published),
            Some(("e1", 17, "trade.results", &br#"{"a": "b c"}"#[..]))
        );
        // A channel with a space in its name, and an empty payload.
        assert_eq!(
            parse_relayed(b"e1 2 5 a b c"),
            Some(("e1", 2, "a b c", &b""[..]))
        );
        assert_eq!(
            parse_relayed(b"e1 2 9 short"),
            None,
            "shorter than its length"
        );
        assert_eq!(parse_relayed(b"e1 x 1 a{}"), None);
        assert_eq!(parse_relayed(b"released"), None);
    }

    #[test]
    fn a_packet_reads_as_published() {
        assert_eq!(
            parse(r#"e1 42 {"a":"b c"}"#),
            Some(("e1", 42, r#"{"a":"b c"}"#))
        );
        assert_eq!(parse("released"), None);
        assert_eq!(parse("e1 x {}"), None);
    }
}
