//! Who polls: taking the lease (free, or from a poller gone silent), renewing it and releasing
//! it, each a script that acts only while the key holds the caller's token.

use std::time::Duration;

use redis::Script;
use redis::aio::MultiplexedConnection;

use super::call::{Failed, bounded};
use super::keys::{Keys, RELEASED};

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
