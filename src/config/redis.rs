//! `[redis]`: where the engine publishes its events, and which channels dashboards may have
//! relayed. Off until `redis.url` is set.

use reqwest::Url;
use serde::{Deserialize, Serialize};

const DEFAULT_MAX_PUSH_HZ: u32 = 5;
const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;
const DEFAULT_SILENCE_MS: u64 = 3_000;
/// Each topic costs a queue of 256 messages, about 10 KB: 1,000 of them about 10 MB.
const DEFAULT_MAX_TOPICS: usize = 1_000;
/// The engine's own channels, the quotes, and the trading agents' channels.
const DEFAULT_RELAY: &[&str] = &[
    "market.tick.*",
    "market.quote.*",
    "physics.forces",
    "strategy.signals",
    "forecast.signals",
    "system_events",
    "agent.updates",
    "trade.results",
    "risk.state",
    "portfolio.summary",
    "strategy.performance",
];

/// The Redis input and relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port[/db]`; empty turns Redis off.
    pub url: RedisUrl,
    /// Channels dashboards may subscribe to, exact or with `*` and `?` patterns.
    pub relay: Vec<String>,
    /// Packets a second the engine's events may push, beyond the regular tick; events in
    /// between fold into the next one.
    pub max_push_hz: u32,
    /// Largest message taken from a channel; larger ones are counted and dropped.
    pub max_message_bytes: usize,
    /// A subscription that hears nothing this long, not even the daemon's own heartbeat
    /// (published every second), is taken for dead and made again.
    pub silence_ms: u64,
    /// Relay channels and patterns subscribed at once, all dashboards together; a subscription
    /// to one more is refused, so clients churning through names cannot grow the daemon.
    #[serde(default = "default_max_topics")]
    pub max_topics: usize,
}

fn default_max_topics() -> usize {
    DEFAULT_MAX_TOPICS
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: RedisUrl::default(),
            relay: DEFAULT_RELAY.iter().map(|c| c.to_string()).collect(),
            max_push_hz: DEFAULT_MAX_PUSH_HZ,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            silence_ms: DEFAULT_SILENCE_MS,
            max_topics: default_max_topics(),
        }
    }
}

impl RedisConfig {
    /// Whether Redis is on.
    pub fn enabled(&self) -> bool {
        !self.url.expose().is_empty()
    }
}

/// A Redis URL: read like a string, but its password is shown as `***` in logs, `Debug` and
/// `check-config`.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// Wraps a URL given other than through the config file.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL itself, password included, for the one place that connects.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password masked, fit for a log line.
    pub fn masked(&self) -> String {
        match Url::parse(&self.0) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("***"));
                url.to_string()
            }
            Ok(_) => self.0.clone(),
            // Not a URL (`127.0.0.1:6379`, a scheme forgotten): shown, so the operator sees what
            // to mend, but for whatever stands before an `@`, where a password would be.
            Err(_) => match self.0.rsplit_once('@') {
                Some((_, host)) => format!("***@{host}"),
                None => self.0.clone(),
            },
        }
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.masked())
    }
}

impl Serialize for RedisUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.masked())
    }
}

/// Whether `channel` matches `pattern`, in Redis's glob syntax as far as the relay uses it:
/// `*` any run of characters, `?` any one, everything else itself.
pub fn matches(pattern: &str, channel: &str) -> bool {
    fn go(p: &[u8], c: &[u8]) -> bool {
        match (p.first(), c.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], c) || (!c.is_empty() && go(p, &c[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &c[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &c[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), channel.as_bytes())
}

/// Whether `text` is a pattern rather than one channel.
pub fn is_pattern(text: &str) -> bool {
    text.contains(['*', '?'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        let url = RedisUrl::new("redis://:hunter2@cache.internal:6379/0");
        assert_eq!(url.masked(), "redis://:***@cache.internal:6379/0");
        assert!(!format!("{url:?}").contains("hunter2"));
        assert_eq!(
            RedisUrl::new("redis://127.0.0.1:6379").masked(),
            "redis://127.0.0.1:6379"
        );
        // Not a URL: shown whole, so the mistake can be seen, but for what stands before an `@`.
        assert_eq!(RedisUrl::new("127.0.0.1:6379").masked(), "127.0.0.1:6379");
        assert_eq!(
            RedisUrl::new(":hunter2@127.0.0.1:6379").masked(),
            "***@127.0.0.1:6379"
        );
        assert_eq!(RedisUrl::new("").masked(), "");
    }

    #[test]
    fn patterns_match_like_redis() {
        assert!(matches("market.tick.*", "market.tick.SPY"));
        assert!(matches("market.tick.*", "market.tick."));
        assert!(!matches("market.tick.*", "market.quote.SPY"));
        assert!(matches("risk.state", "risk.state"));
        assert!(!matches("risk.state", "risk.states"));
        assert!(matches("a?c*", "abcdef") && !matches("a?c", "ac"));
        assert!(is_pattern("market.*") && !is_pattern("risk.state"));
    }
}
