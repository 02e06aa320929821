//! The poller: on a fixed-rate clock, fetches the three endpoints at once, folds the answers into
//! the [`Inputs`], builds the packet and hands it to the hub. One log line per tick.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use tokio::sync::watch;
use tokio::time::{Interval, MissedTickBehavior, interval};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::aggregate::{self, Change, Inputs};
use super::normalize;
use crate::config::Config;
use crate::engine::{Engine, SourceKind};
use crate::hub::Hub;
use crate::metrics::Metrics;

/// Polls until `shutdown` is cancelled. A new config from `settings` (a reload) applies from
/// the next tick: a changed `[engine]` gets a new client, a changed period a new clock. The
/// sources' last good values are kept across a reload.
pub async fn run(
    mut engine: Engine,
    hub: Hub,
    metrics: Arc<Metrics>,
    mut settings: watch::Receiver<Arc<Config>>,
    shutdown: CancellationToken,
) {
    let mut config = settings.borrow_and_update().clone();
    let mut inputs = Inputs::default();
    let mut ticks = clock(&config);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            Ok(()) = settings.changed() => {
                let next = settings.borrow_and_update().clone();
                if next.engine != config.engine {
                    match Engine::new(&next.engine) {
                        Ok(rebuilt) => engine = rebuilt,
                        Err(err) => {
                            warn!(%err, "Engine settings not applied: keeping the running ones");
                            continue;
                        }
                    }
                    if next.engine.poll_interval_ms != config.engine.poll_interval_ms {
                        ticks = clock(&next);
                    }
                    info!(
                        state = %engine.url(SourceKind::State),
                        poll_interval_ms = next.engine.poll_interval_ms,
                        "Poller reconfigured"
                    );
                }
                config = next;
            }
            _ = ticks.tick() => tick(&engine, &hub, &metrics, &mut inputs, config.packet.max_logs).await,
            // A command changed the engine's state: show it now, not at the next tick. The
            // fixed-rate clock keeps its phase.
            _ = hub.refresh_requested() => tick(&engine, &hub, &metrics, &mut inputs, config.packet.max_logs).await,
        }
    }
}

/// The fixed-rate clock for `config`'s period: a late tick is skipped rather than bunched, so
/// the phase never drifts.
fn clock(config: &Config) -> Interval {
    let mut ticks = interval(config.poll_interval());
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    ticks
}

/// One poll: fetch, fold in, publish, log.
async fn tick(engine: &Engine, hub: &Hub, metrics: &Metrics, inputs: &mut Inputs, max_logs: usize) {
    let started = Instant::now();
    let (state, agents, models) = tokio::join!(
        poll(engine, metrics, SourceKind::State, normalize::state),
        poll(engine, metrics, SourceKind::Agents, normalize::agents),
        poll(engine, metrics, SourceKind::Models, normalize::models),
    );
    let poll_ms = started.elapsed().as_millis() as u64;
    let now = Utc::now();
    let changes = [
        inputs.state.record(state, now),
        inputs.agents.record(agents, now),
        inputs.models.record(models, now),
    ];
    let sources = inputs.sources(now);
    let mut stale = Vec::new();
    for ((kind, change), (_, health)) in SourceKind::ALL
        .into_iter()
        .zip(changes)
        .zip(sources.named())
    {
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
    metrics.published();
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
