//! The engine simulator run from the command line: alone (`bff demo-engine`), or beside the
//! daemon that polls it (`bff --demo`).

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::{Config, RedisUrl};
use crate::demo;

/// What `bff demo-engine` takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address to serve the engine API on
    #[arg(long = "on", value_name = "ADDR", default_value = "127.0.0.1:8000")]
    pub addr: SocketAddr,
    /// Redis URL to publish the simulator's events to (market ticks, system_events, …)
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
}

/// `bff demo-engine`: the simulator alone until `until` resolves; with a Redis URL (its own
/// `--redis-url`, else the one before the subcommand, `outer_redis`), it publishes its events
/// there.
pub async fn run(
    args: &Args,
    outer_redis: Option<&str>,
    until: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let redis = args.redis_url.as_deref().or(outer_redis);
    let shutdown = CancellationToken::new();
    let bound = demo::start(args.addr, redis, shutdown.clone())
        .await
        .with_context(|| format!("cannot serve the demo engine on {}", args.addr))?;
    info!(addr = %bound, "Demo engine simulator running");
    if let Some(url) = redis {
        log_publishing(&RedisUrl::new(url));
    }
    until.await;
    shutdown.cancel();
    Ok(())
}

/// `bff --demo`: starts the simulator on a free loopback port for the daemon to poll, until
/// `shutdown`, and returns its address. Only a Redis named on the command line (`publish_to`)
/// gets its events: a redis.url in the config file may be a real engine's.
pub async fn beside_daemon(
    config: &Config,
    publish_to: Option<&RedisUrl>,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let addr = demo::start(
        ([127, 0, 0, 1], 0).into(),
        publish_to.map(|url| url.expose()),
        shutdown,
    )
    .await
    .context("starting the demo engine")?;
    info!(%addr, "Demo engine simulator running");
    match publish_to {
        Some(url) => log_publishing(url),
        None if config.redis.enabled() => info!(
            "The demo engine publishes nothing to redis.url from the config file; \
             give --redis-url for it to publish its events"
        ),
        None => {}
    }
    if config.auth.secret.expose().is_empty() && !config.commands.allow_without_auth {
        info!(
            "Commands (HALT, RESUME) need a token. To try them: \
             `bff token --secret-file demo.secret --sub me --role operator --ttl 1h` prints one \
             (and creates demo.secret); restart with `--demo --auth-secret-file demo.secret` \
             and open http://{}/?token=<the token>",
            config.server.listen
        );
    }
    Ok(addr)
}

/// The line that says where the demo engine publishes, and what.
fn log_publishing(url: &RedisUrl) {
    info!(
        redis = %url.masked(),
        "Demo engine publishing to Redis: market.tick.SPY {} times a second; physics.forces, \
         strategy.signals, forecast.signals, agent.updates, risk.state, trade.results every \
         second; system_events on HALT and RESUME",
        demo::TICKS_PER_STEP
    );
}
