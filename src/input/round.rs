//! One poll of the engine: its three endpoints fetched at once, each answer taken as it comes.
//! The poller publishes when all three are in, or at the publish deadline with what is in, so a
//! slow or hung endpoint never holds a tick; an answer that comes later (before its timeout)
//! goes into the next packet.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};

use super::normalize::{self, EngineState};
use crate::engine::{Engine, SourceKind};
use crate::hub::packet::{Agents, Models};
use crate::metrics::Metrics;

/// One endpoint's answer, read, or why there is none.
pub enum Answer {
    /// The state endpoint's (boxed: it is much the largest).
    State(Box<Result<EngineState, String>>),
    /// The agent-metrics endpoint's.
    Agents(Result<Agents, String>),
    /// The model-metrics endpoint's.
    Models(Result<Models, String>),
}

impl Answer {
    /// Which endpoint it is from.
    pub fn kind(&self) -> SourceKind {
        match self {
            Answer::State(_) => SourceKind::State,
            Answer::Agents(_) => SourceKind::Agents,
            Answer::Models(_) => SourceKind::Models,
        }
    }
}

type Fetch = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// A poll on its way.
pub struct Round {
    /// When it started, for the publish deadline.
    pub started: tokio::time::Instant,
    began: Instant,
    pending: FuturesUnordered<Fetch>,
    answered: [bool; SourceKind::ALL.len()],
    /// Its packet went out (all answered, or the deadline passed).
    pub published: bool,
}

impl Round {
    /// Starts fetching all three endpoints.
    pub fn start(engine: &Engine, metrics: &Arc<Metrics>) -> Self {
        let pending = FuturesUnordered::new();
        let fetch = |kind: SourceKind| -> Fetch {
            let (engine, metrics) = (engine.clone(), metrics.clone());
            Box::pin(async move {
                match kind {
                    SourceKind::State => {
                        let state = poll(&engine, &metrics, kind, normalize::state).await;
                        Answer::State(Box::new(state))
                    }
                    SourceKind::Agents => {
                        Answer::Agents(poll(&engine, &metrics, kind, normalize::agents).await)
                    }
                    SourceKind::Models => {
                        Answer::Models(poll(&engine, &metrics, kind, normalize::models).await)
                    }
                }
            })
        };
        for kind in SourceKind::ALL {
            pending.push(fetch(kind));
        }
        Self {
            started: tokio::time::Instant::now(),
            began: Instant::now(),
            pending,
            answered: [false; SourceKind::ALL.len()],
            published: false,
        }
    }

    /// The next answer; `None` once all are in.
    pub async fn next(&mut self) -> Option<Answer> {
        let answer = self.pending.next().await?;
        self.answered[answer.kind() as usize] = true;
        Some(answer)
    }

    /// Whether every endpoint has answered (or failed).
    pub fn complete(&self) -> bool {
        self.pending.is_empty()
    }

    /// The endpoints that have not answered yet.
    pub fn late(&self) -> Vec<SourceKind> {
        SourceKind::ALL
            .into_iter()
            .filter(|kind| !self.answered[*kind as usize])
            .collect()
    }

    /// Time since it started.
    pub fn took(&self) -> Duration {
        self.began.elapsed()
    }
}

/// Fetches and reads one endpoint, and records the outcome in the metrics. Both kinds of failure
/// become the reason shown in `sources`; an answer the normaliser refuses is a `shape` error.
async fn poll<T, E: ToString>(
    engine: &Engine,
    metrics: &Metrics,
    kind: SourceKind,
    normalize: impl FnOnce(&serde_json::Value) -> Result<T, E>,
) -> Result<T, String> {
    let started = Instant::now();
    let outcome = match engine.fetch(kind).await {
        Ok(answer) => normalize(&answer).map_err(|e| ("shape", e.to_string())),
        Err(err) => Err((err.kind(), err.to_string())),
    };
    metrics.polled(
        kind.name(),
        started.elapsed(),
        outcome.as_ref().err().map(|(k, _)| *k),
    );
    outcome.map_err(|(_, why)| why)
}
