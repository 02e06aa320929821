//! `data.sources`: how fresh each input of the packet is (the engine's endpoints, and Redis
//! when it is on), with the one table of the endpoints that everything walking them reads.

use serde::{Deserialize, Serialize};

use super::timestamp::Timestamp;

/// How fresh one input is, so a UI can grey out a stale panel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema, ts_rs::TS))]
pub struct SourceHealth {
    /// The last fetch succeeded.
    pub ok: bool,
    /// When the last good answer arrived.
    pub updated: Option<Timestamp>,
    /// Milliseconds between `updated` and the packet's poll time.
    pub age_ms: Option<u64>,
    /// Why the last fetch failed, readable by a person.
    pub error: Option<String>,
}

/// `data.sources`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema, ts_rs::TS))]
pub struct Sources {
    /// The state endpoint.
    pub state: SourceHealth,
    /// The agent-metrics endpoint.
    pub agents: SourceHealth,
    /// The model-metrics endpoint.
    pub models: SourceHealth,
    /// The Redis subscription, present only when `redis.url` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub redis: Option<SourceHealth>,
}

/// One engine endpoint's row in `sources`: its name (the engine's `SourceKind::name`) and where
/// its health is.
type Row = (
    &'static str,
    fn(&Sources) -> &SourceHealth,
    fn(&mut Sources) -> &mut SourceHealth,
);

/// The engine's endpoints in `sources`, in the order they are serialized. A new endpoint is one
/// row here beside its field above; everything that walks the sources reads this table.
const ENDPOINTS: [Row; 3] = [
    ("state", |s| &s.state, |s| &mut s.state),
    ("agents", |s| &s.agents, |s| &mut s.agents),
    ("models", |s| &s.models, |s| &mut s.models),
];

impl Sources {
    /// Every source with its name, in the order they are serialized: the endpoints, then
    /// Redis when it is on.
    pub fn named(&self) -> Vec<(&'static str, &SourceHealth)> {
        ENDPOINTS
            .iter()
            .map(|(name, health, _)| (*name, health(self)))
            .chain(self.redis.as_ref().map(|redis| ("redis", redis)))
            .collect()
    }

    /// Changes every source, in the order of [`Sources::named`].
    pub fn each_mut(&mut self, mut change: impl FnMut(&'static str, &mut SourceHealth)) {
        for (name, _, health) in &ENDPOINTS {
            change(name, health(self));
        }
        if let Some(redis) = &mut self.redis {
            change("redis", redis);
        }
    }

    /// The endpoint named `name` (an engine `SourceKind::name`), to change; `None` for a name
    /// with no row.
    pub fn endpoint_mut(&mut self, name: &str) -> Option<&mut SourceHealth> {
        let (_, _, health) = ENDPOINTS.iter().find(|(row, _, _)| *row == name)?;
        Some(health(self))
    }
}
