//! The poller: on a fixed-rate clock, fetches the three endpoints at once, folds the answers into
//! the [`Inputs`], builds the packet and hands it to the hub. One log line per tick.

use std::time::Instant;

use chrono::Utc;
use tokio::time::{MissedTickBehavior, interval};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::aggregate::{self, Change, Inputs};
use crate::config::Config;
use crate::engine::{Engine, FetchError, SourceKind};
use crate::hub::Hub;
use crate::normalize;

/// Polls until `shutdown` is cancelled.
pub async fn run(engine: Engine, hub: Hub, config: Config, shutdown: CancellationToken) {
    let mut inputs = Inputs::default();
    let mut ticks = interval(config.poll_interval());
    // Fixed rate: a late tick is skipped rather than bunched, so the phase never drifts.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => tick(&engine, &hub, &mut inputs, config.packet.max_logs).await,
        }
    }
}

/// One poll: fetch, fold in, publish, log.
async fn tick(engine: &Engine, hub: &Hub, inputs: &mut Inputs, max_logs: usize) {
    let started = Instant::now();
    let (state, agents, models) = tokio::join!(
        engine.fetch(SourceKind::State),
        engine.fetch(SourceKind::Agents),
        engine.fetch(SourceKind::Models),
    );
    let poll_ms = started.elapsed().as_millis() as u64;
    let now = Utc::now();
    let changes = [
        inputs.state.record(read(state, normalize::state), now),
        inputs.agents.record(read(agents, normalize::agents), now),
        inputs.models.record(read(models, normalize::models), now),
    ];
    let sources = inputs.sources(now);
    let health = [&sources.state, &sources.agents, &sources.models];
    let mut stale = Vec::new();
    for ((kind, change), health) in SourceKind::ALL.into_iter().zip(changes).zip(health) {
        let url = engine.url(kind).as_str();
        match change {
            Change::Failed => warn!(
                source = kind.name(),
                url,
                error = health.error.as_deref().unwrap_or_default(),
                "Source stale: keeping its last good value until it answers again"
            ),
            Change::Recovered => info!(source = kind.name(), url, "Source recovered"),
            Change::None => {}
        }
        if !health.ok {
            stale.push(kind.name());
        }
    }
    let snapshot = hub.publish(aggregate::build(inputs, now, max_logs));
    info!(
        seq = snapshot.seq,
        clients = hub.subscribers(),
        bytes = snapshot.telemetry.len(),
        poll_ms,
        status = snapshot.data.state.status.as_str(),
        stale = %stale.join(","),
        "Telemetry published"
    );
}

/// A fetch outcome, normalised; both kinds of failure become the reason shown in `sources`.
fn read<T, E: ToString>(
    fetched: Result<serde_json::Value, FetchError>,
    normalize: impl FnOnce(&serde_json::Value) -> Result<T, E>,
) -> Result<T, String> {
    let answer = fetched.map_err(|e| e.to_string())?;
    normalize(&answer).map_err(|e| e.to_string())
}
