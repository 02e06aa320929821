//! bff: polls a trading engine's HTTP API once a second, aggregates the three answers into one
//! TELEMETRY packet, and pushes it over WebSocket to every connected dashboard.
//!
//! Data flows one way, through three layers, each a folder:
//! - [`input`]: where snapshots come from. The fixed-rate poller of the engine's answers, their
//!   normaliser and aggregation, and the Redis subscriber of the engine's events and the relayed
//!   channels hand what they hear to the one assembler, which builds the packets; the cluster
//!   passes them through one shared Redis when several daemons share one poll.
//! - [`hub`]: the only place packets come from. The packet types, the frames serialized once
//!   per snapshot and per encoding, the latest snapshot for newcomers and a resume history of
//!   the last ones, the relay channels, and the fan-out.
//! - [`edge`]: what dashboards touch. The listener, HTTP routes, the WebSocket handshake and its
//!   checks (rate, origin, token, limits, who is behind a trusted proxy), each connection's
//!   session with its channel subscriptions, and the commands sent to the engine.
//!
//! Below them, used by all and using none of them: [`config`] (`bff.toml`), [`engine`] (the
//! engine's HTTP API: the sources the poller reads and the actions commands send), [`metrics`]
//! (the Prometheus metrics), [`os`] (file limits, the listening socket, socket options, the
//! fan-out's prefetch: the only module allowed `unsafe` code) and [`contract`] (the published
//! JSON Schema). [`demo`] is an engine simulator on its own, for `--demo`. [`cli`] is the
//! command line's flags, subcommands and reload, which `main.rs` calls.
//!
//! The wire contract is written down in `docs/PROTOCOL.md`.
//!
//! Every module but [`cli`] is the crate's own (`pub(crate)`). What is public is what the
//! binary, the tests, the benchmarks and the fuzzers use, re-exported here on purpose: [`run`]
//! with [`fixed`] and [`shutdown_signal`], the [`Config`] and its [`Secret`], [`RedisUrl`] and
//! [`Watch`], the listening socket ([`listen`], [`raise_file_limit`]), tokens ([`mint`]), the
//! pure pipeline from engine answers to packet bytes ([`normalize`], [`aggregate`], [`packet`]),
//! what clients may send ([`message`]), the cluster's [`scripts`] and [`Seal`], and the published
//! [`SCHEMA`] and [`METRICS_CONTENT_TYPE`].
#![warn(missing_docs)]
#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod cli;
pub(crate) mod config;
pub(crate) mod contract;
pub(crate) mod demo;
pub(crate) mod edge;
pub(crate) mod engine;
pub(crate) mod hub;
pub(crate) mod input;
pub(crate) mod metrics;
pub(crate) mod os;

// The public surface (see above).
pub use config::{Config, RedisUrl, Secret, Watch};
pub use contract::SCHEMA;
pub use edge::admission::auth::mint;
pub use edge::session::message;
pub use hub::{msgpack, packet};
pub use input::cluster::{scripts, seal::Seal};
pub use input::{aggregate, normalize};
pub use metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;
pub use os::{listen, raise_file_limit};

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, info_span, warn};

use crate::config::mask_credentials;
use crate::edge::Context;
use crate::edge::admission::limits::Admission;
use crate::edge::command::Commands;
use crate::engine::{Engine, SourceKind};
use crate::hub::Hub;
use crate::hub::packet::Telemetry;
use crate::input::cluster::Cluster;
use crate::input::redis::subscriber::{self, SharedHealth, Subscriber};
use crate::input::{assembler, poller};
use crate::metrics::Metrics;

/// Inputs heard but not yet assembled; past it the Redis reading (and the poller) waits for the
/// assembler (a burst of ten thousand events a second is merged well within it).
const EVENT_QUEUE: usize = 4096;

/// Runs the daemon on `listener` until `shutdown` is cancelled, then closes every client with
/// 1001 and waits (at most `server.shutdown_grace_ms`) for them to go.
///
/// `settings` holds the config, which must have passed [`Config::validate`]; sending a new one
/// reloads it without dropping anyone (`edge::Context::config` says what applies when).
/// [`fixed`] makes one that never changes.
pub async fn run(
    settings: watch::Receiver<Arc<Config>>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let config = settings.borrow().clone();
    let engine = Engine::new(&config.engine)?;
    let hub = Hub::new(
        Telemetry::initializing(Utc::now()),
        config.clients.queue_size,
        config.clients.resume_history,
    );
    let addr = listener.local_addr()?;
    info!(
        %addr,
        ws_paths = ?config.server.ws_paths,
        state = %mask_credentials(engine.url(SourceKind::State).as_str()),
        agents = %mask_credentials(engine.url(SourceKind::Agents).as_str()),
        models = %mask_credentials(engine.url(SourceKind::Models).as_str()),
        redis = %config.redis.url.masked(),
        cluster = %config.cluster.url.masked(),
        "Listening"
    );
    if !addr.ip().is_loopback() && config.auth.secret.expose().is_empty() {
        warn!(
            %addr,
            "Listening beyond this machine with no auth.secret: anyone who can reach {addr} can \
             watch the telemetry without a token (commands stay refused). Set auth.secret or \
             auth.secret_file (see `bff token`), or listen on 127.0.0.1"
        );
    }
    let metrics = Arc::new(Metrics::new());
    hub.report_to(metrics.clone());
    let tracker = TaskTracker::new();
    let cluster = config.cluster.enabled().then(|| {
        Cluster::start(
            &config,
            hub.clone(),
            metrics.clone(),
            &tracker,
            shutdown.clone(),
        )
    });
    // The one receiver of the inputs: the poller and the Redis subscriber send to it.
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    let health = config.redis.enabled().then(|| {
        let health = SharedHealth::default();
        subscriber::spawn(
            Subscriber {
                config: config.redis.clone(),
                hub: hub.clone(),
                cluster: cluster.clone(),
                metrics: metrics.clone(),
                events: tx.clone(),
                health: health.clone(),
                shutdown: shutdown.clone(),
            },
            &tracker,
        );
        health
    });
    tracker.spawn(
        assembler::run(
            hub.clone(),
            metrics.clone(),
            settings.borrow().clone(),
            rx,
            health,
            cluster.clone(),
            shutdown.clone(),
        )
        .instrument(info_span!("poller")),
    );
    tracker.spawn(
        poller::run(
            engine,
            hub.clone(),
            metrics.clone(),
            settings.clone(),
            cluster,
            tx,
            shutdown.clone(),
        )
        .instrument(info_span!("poller")),
    );
    let commands = Arc::new(Commands::new(
        settings.clone(),
        metrics.clone(),
        hub.clone(),
        tracker.clone(),
        shutdown.clone(),
    ));
    if config
        .server
        .allowed_origins
        .iter()
        .any(|o| o == edge::admission::origin::ANY)
    {
        warn!(
            "server.allowed_origins holds \"*\": a page on any web site a viewer opens can read \
             the stream from their browser; list your dashboards' origins instead"
        );
    }
    if config.commands.allow_without_auth {
        warn!(
            "commands.allow_without_auth is on: loopback peers may halt, resume, rebalance and \
             export logs without a token"
        );
    }
    let ctx = Arc::new(Context {
        settings,
        admission: Admission::default(),
        handshakes: Default::default(),
        sockets: Admission::default(),
        refusals: Default::default(),
        commands,
        hub,
        metrics,
        shutdown,
        tracker: tracker.clone(),
        started: Instant::now(),
    });
    let counted = ctx.metrics.clone();
    tracker.spawn(
        os::trim_after_storms(move || counted.connects(), ctx.shutdown.clone())
            .instrument(info_span!("memory")),
    );
    edge::http::server::accept(listener, ctx.clone()).await;
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
