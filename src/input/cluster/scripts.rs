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

use std::time::Duration;

use redis::Script;
use redis::aio::MultiplexedConnection;
use tokio::time::timeout;

use super::message::parse;
use super::seal::Seal;

/// The keys and channel of one cluster.
#[derive(Debug, Clone)]
pub struct Keys {
    lease: String,
    seq: String,
    epoch: String,
    history: String,
    offsets: String,
    /// The poller's sign of life: set when it takes the lease and with every packet, for
    /// `silence`; once it lapses, a follower may take the lease before the lease itself lapses.
    alive: String,
    /// The fingerprint of the engine the epoch in force was polled from.
    engine: String,
    /// Per relayed channel, the last offset published in this epoch: a new poller numbers on
    /// from there, not from an offset its predecessor took but never published.
    published: String,
    /// The prefix of the keys that say a relayed message was published (`<name>:seen:<id>`).
    seen: String,
    /// The prefix of each relayed channel's capped stream (`<name>:relayed:<channel>`).
    streams: String,
    /// Where every packet (and the notice that the lease was released) is published.
    pub packets: String,
    /// Where every relayed message is published, numbered.
    pub relay: String,
}

impl Keys {
    /// The keys of the fenced scripts, in their `KEYS` order: lease, seq, epoch, history,
    /// offsets, engine and published.
    fn fenced(&self) -> [&str; 7] {
        [
            &self.lease,
            &self.seq,
            &self.epoch,
            &self.history,
            &self.offsets,
            &self.engine,
            &self.published,
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
            alive: format!("{name}:alive"),
            engine: format!("{name}:engine"),
            published: format!("{name}:published"),
            seen: format!("{name}:seen:"),
            streams: format!("{name}:relayed:"),
            packets: format!("{name}:packets"),
            relay: format!("{name}:relay"),
        }
    }
}

/// What the packets channel carries when the poller lets go: the others take over at once.
pub const RELEASED: &str = "released";

/// Time one command or script may take.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);

/// Takes the lease when it is free, still the caller's, or held by a poller gone silent (its
/// `<name>:alive` lapsed): KEYS: lease, alive, engine, epoch, offsets, published; ARGV: token, lease ms, silence
/// ms, the caller's engine. `{answer, engine, epoch}`: the answer 0 (not taken), 1 (free), 2
/// (taken from a silent poller, whose publishing is refused from now on) or 3 (held, alive,
/// by a poller of another engine); the engine and epoch in force, when there are. Taken from
/// another, the relayed offsets go back to the last published (KEYS offsets, published): an
/// offset the old poller took but never published is given again.
static TAKE: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"local holder = redis.call('GET', KEYS[1])
          local engine = redis.call('GET', KEYS[3])
          local epoch = redis.call('GET', KEYS[4])
          local taken = 1
          if holder and holder ~= ARGV[1] then
            if redis.call('EXISTS', KEYS[2]) == 1 then
              if engine and engine ~= ARGV[4] then return {3, engine, epoch} end
              return {0, engine, epoch}
            end
            taken = 2
          end
          if holder ~= ARGV[1] then
            local published = redis.call('HGETALL', KEYS[6])
            redis.call('DEL', KEYS[5])
            if #published > 0 then redis.call('HSET', KEYS[5], unpack(published)) end
          end
          redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
          redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
          return {taken, engine, epoch}",
    )
});

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

/// The epoch in force, or `new` when the count is gone (a fresh Redis, a deleted key) or was
/// polled from another engine than `engine`: then the seq starts again from 0, the history and
/// the offsets of the old epoch go, and the epoch is `engine`'s. The scripts below start with
/// it; their keys are lease, seq, epoch, history, offsets and engine.
const EPOCH: &str = r"
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

/// How a try at the lease went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Another daemon holds it and published within its silence.
    No,
    /// A daemon polling another engine holds it and published within its silence.
    Foreign,
    /// Nobody held it (or this daemon still did).
    Free,
    /// Its holder published nothing for its silence: taken before the lease lapsed.
    Silent,
}

impl Taken {
    /// Whether this daemon holds the lease now.
    pub fn taken(self) -> bool {
        matches!(self, Taken::Free | Taken::Silent)
    }
}

/// A try at the lease: how it went, and the fingerprint of the engine and the epoch in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tried {
    /// Whether it was taken.
    pub taken: Taken,
    /// The fingerprint of the engine the epoch in force was polled from; `None` before any.
    pub engine: Option<String>,
    /// The epoch in force; `None` before any.
    pub epoch: Option<String>,
}

/// Takes the lease for `lease` if nobody holds it, or if its holder has been silent (published
/// nothing) for the silence it was given; this daemon's own silence is `silence`, and `engine`
/// the fingerprint of the engine it polls.
pub async fn acquire(
    redis: &mut MultiplexedConnection,
    keys: &Keys,
    token: &str,
    engine: &str,
    lease: Duration,
    silence: Duration,
) -> Result<Tried, Failed> {
    let mut take = TAKE.prepare_invoke();
    take.key(&keys.lease)
        .key(&keys.alive)
        .key(&keys.engine)
        .key(&keys.epoch)
        .key(&keys.offsets)
        .key(&keys.published)
        .arg(token)
        .arg(lease.as_millis() as u64)
        .arg(silence.as_millis() as u64)
        .arg(engine);
    let (answer, engine, epoch): (i64, Option<String>, Option<String>) =
        bounded("taking the lease", take.invoke_async(redis)).await?;
    let taken = match answer {
        0 => Taken::No,
        2 => Taken::Silent,
        3 => Taken::Foreign,
        _ => Taken::Free,
    };
    Ok(Tried {
        taken,
        engine,
        epoch,
    })
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
