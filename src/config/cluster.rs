//! `[cluster]`: several daemons sharing one poll through Redis. Off until `cluster.url` is set.

use serde::{Deserialize, Serialize};

use super::RedisUrl;

const DEFAULT_NAME: &str = "bff";
const DEFAULT_LEASE_MS: u64 = 2_000;

/// Several daemons, one poller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The Redis every daemon of the cluster shares (`--cluster`); empty: this daemon polls
    /// alone.
    pub url: RedisUrl,
    /// The prefix of the cluster's keys and channels, so several clusters can share a Redis.
    pub name: String,
    /// How long the poller's lease lasts without a renewal: the longest a killed poller leaves
    /// the cluster without packets.
    pub lease_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            url: RedisUrl::default(),
            name: DEFAULT_NAME.into(),
            lease_ms: DEFAULT_LEASE_MS,
        }
    }
}

impl ClusterConfig {
    /// Whether this daemon is one of a cluster.
    pub fn enabled(&self) -> bool {
        !self.url.expose().is_empty()
    }
}
