//! Redis behind Sentinel (`docs/PROTOCOL.md` §11.7): for a `redis+sentinel://` URL
//! ([`crate::config::sentinel`]) each connection asks the Sentinels which server is the master
//! now, so after a failover the next connection (every input connects again when its
//! connection breaks) goes to the new one. Any other URL is opened as it is.

use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{Client, RedisConnectionInfo};

use crate::config::sentinel::parse;

/// A client for the server `url` names: the master of the moment for a `redis+sentinel://`
/// URL (asked of the Sentinels now), else the URL's own server.
pub async fn client(url: &str) -> Result<Client, String> {
    let Some(watched) = parse(url)? else {
        return Client::open(url).map_err(|e| format!("bad URL: {e}"));
    };
    let mut sentinel = Sentinel::build(watched.sentinels.clone())
        .map_err(|e| format!("bad Sentinel address: {e}"))?;
    let mut info = RedisConnectionInfo::default().set_db(watched.db);
    if let Some(password) = &watched.password {
        info = info.set_password(password);
    }
    let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(info);
    sentinel
        .async_master_for(&watched.master, Some(&node))
        .await
        .map_err(|e| format!("no master {:?} from the Sentinels: {e}", watched.master))
}
