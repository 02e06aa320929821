//! `[cluster]`: several daemons sharing one poll through Redis. Off until `cluster.url` is set.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{RedisUrl, Secret};

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
    /// How long the poller's lease lasts without a renewal; half of it is the least silence
    /// after which a follower replaces a poller that publishes nothing.
    pub lease_ms: u64,
    /// A file holding the secret every daemon of the cluster signs what it publishes with, and
    /// checks what it takes with (surrounding whitespace ignored); none: anyone who can publish
    /// on the cluster's Redis feeds the dashboards.
    pub secret_file: Option<PathBuf>,
    /// Names the engine this daemon polls, for daemons that reach one engine by different URLs
    /// (a proxy each); empty: the engine is told by its three endpoints' URLs. A daemon never
    /// follows a poller of another engine.
    pub engine_id: String,
    /// The secret read from `secret_file` at start; never in the file itself.
    #[serde(skip)]
    pub secret: Secret,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            url: RedisUrl::default(),
            name: DEFAULT_NAME.into(),
            lease_ms: DEFAULT_LEASE_MS,
            secret_file: None,
            engine_id: String::new(),
            secret: Secret::default(),
        }
    }
}

impl ClusterConfig {
    /// Whether this daemon is one of a cluster.
    pub fn enabled(&self) -> bool {
        !self.url.expose().is_empty()
    }

    /// Reads `secret_file`, when one is named, into `secret`: the problem, with its key, when it
    /// cannot be read.
    pub fn read_secret_file(&mut self) -> Result<(), String> {
        let Some(path) = &self.secret_file else {
            return Ok(());
        };
        let text = std::fs::read_to_string(path).map_err(|err| {
            format!(
                "cluster.secret_file: cannot read {}: {err}; name a readable file holding the \
                 cluster's secret",
                path.display()
            )
        })?;
        self.secret = Secret::new(text.trim());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn the_secret_file_is_read_named_in_its_problems_and_never_shown() {
        let dir = std::env::temp_dir().join(format!("bff-cluster-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let with = |file: &str| {
            let path = dir.join(file);
            Config::parse(&format!("[cluster]\nsecret_file = {:?}\n", path.display())).unwrap()
        };

        let err = with("missing").read_secret_file("bff.toml").unwrap_err();
        let err = err.to_string();
        assert!(
            err.contains("cluster.secret_file: cannot read") && err.contains("missing"),
            "{err}"
        );

        std::fs::write(dir.join("short"), "short\n").unwrap();
        let mut short = with("short");
        short.read_secret_file("bff.toml").unwrap();
        let err = short.validate("bff.toml").unwrap_err().to_string();
        assert!(
            err.contains("cluster.secret_file: the secret is 5 bytes"),
            "{err}"
        );

        let secret = "c1uster-c1uster-c1uster-c1uster-c1uster";
        std::fs::write(dir.join("good"), format!("{secret}\n")).unwrap();
        let mut good = with("good");
        good.read_secret_file("bff.toml").unwrap();
        good.validate("bff.toml").unwrap();
        assert_eq!(good.cluster.secret.expose(), secret);
        assert!(!good.to_toml().contains(secret), "{}", good.to_toml());
        assert!(!format!("{good:?}").contains(secret));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_engine_id_is_a_printable_name() {
        let parse = |id: &str| Config::parse(&format!("[cluster]\nengine_id = {id:?}\n")).unwrap();
        parse("prod-engine").validate("bff.toml").unwrap();
        for bad in ["a\nb", &"x".repeat(201)] {
            let err = parse(bad).validate("bff.toml").unwrap_err().to_string();
            assert!(
                err.contains("cluster.engine_id: must be at most 200"),
                "{err}"
            );
        }
    }
}
