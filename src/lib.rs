//! bff: polls a trading engine's HTTP API once a second, aggregates the three answers into one
//! TELEMETRY packet, and pushes it over WebSocket to every connected dashboard.
//!
//! Data flows top to bottom through these modules:
//! - [`config`]: `bff.toml`, defaults and validation.
//! - [`engine`]: the HTTP client for the engine's three endpoints.
//! - [`normalize`]: the engine's loose JSON shapes → typed sections (pure).
//! - [`aggregate`]: last good value per source → one packet (pure).
//! - [`poller`]: the fixed-rate loop that drives the three above.
//! - [`packet`]: the packet types and their envelope.
//! - [`hub`]: the only place packets come from; serializes once, fans out shared bytes.
//! - [`server`], [`routes`], [`admission`], [`auth`], [`connection`], [`inbound`], [`wire`]: the
//!   listening socket, HTTP routes and handshake, connection limits, token checks, one
//!   dashboard's WebSocket, what clients may send, and the shared pre-framed bytes written to
//!   every socket.
//! - [`metrics`]: the Prometheus metrics at `/metrics`.
//! - [`contract`]: the JSON Schema and TypeScript types of the packets, checked against the types.
//! - [`os`]: the open-file limit and the listening socket.
//! - [`demo`]: an embedded engine simulator for `--demo`.

pub mod admission;
pub mod aggregate;
pub mod auth;
pub mod config;
pub mod connection;
pub mod contract;
pub mod demo;
pub mod engine;
pub mod hub;
pub mod inbound;
pub mod metrics;
pub mod normalize;
pub mod os;
pub mod packet;
pub mod poller;
pub mod routes;
pub mod server;
pub mod wire;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, info_span, warn};

use crate::admission::Admission;
use crate::aggregate::Inputs;
use crate::config::Config;
use crate::engine::{Engine, SourceKind};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::server::Context;

/// Runs the daemon on `listener` until `shutdown` is cancelled, then closes every client with
/// 1001 and waits (at most `server.shutdown_grace_ms`) for them to go.
///
/// `settings` holds the config, which must have passed [`Config::validate`]; sending a new one
/// reloads it without dropping anyone (see [`server::Context::config`] for what applies when).
/// [`fixed`] makes one that never changes.
pub async fn run(
    settings: watch::Receiver<Arc<Config>>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let config = settings.borrow().clone();
    let engine = Engine::new(&config)?;
    let initial = aggregate::build(&Inputs::default(), Utc::now(), config.packet.max_logs);
    let hub = Hub::new(initial, config.clients.queue_size);
    let addr = listener.local_addr()?;
    info!(
        %addr,
        ws_paths = ?config.server.ws_paths,
        state = %engine.url(SourceKind::State),
        agents = %engine.url(SourceKind::Agents),
        models = %engine.url(SourceKind::Models),
        "Listening"
    );
    let metrics = Arc::new(Metrics::new());
    let tracker = TaskTracker::new();
    tracker.spawn(
        poller::run(
            engine,
            hub.clone(),
            metrics.clone(),
            settings.clone(),
            shutdown.clone(),
        )
        .instrument(info_span!("poller")),
    );
    let ctx = Arc::new(Context {
        settings,
        admission: Admission::default(),
        hub,
        metrics,
        shutdown,
        tracker: tracker.clone(),
        started: Instant::now(),
    });
    server::accept(listener, ctx.clone()).await;
    info!(
        clients = ctx.admission.open(),
        "Shutting down: closing every client with 1001"
    );
    tracker.close();
    let grace = Duration::from_millis(ctx.config().server.shutdown_grace_ms);
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        warn!(
            left = ctx.admission.open(),
            "Some connections did not close within the grace period"
        );
    }
    info!("Stopped");
    Ok(())
}

/// Settings that are never reloaded: `config` for good.
pub fn fixed(config: Config) -> watch::Receiver<Arc<Config>> {
    watch::channel(Arc::new(config)).1
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
