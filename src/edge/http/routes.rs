//! HTTP on the WebSocket port: the live page (and its scripts), `/health`, `/metrics`, `/schema.json`, the
//! WebSocket paths (handed to [`crate::edge::admission::handshake`]), and a clear 404 for everything else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use hyper::body::Incoming;
use hyper::header;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::config::Config;
use crate::contract;
use crate::edge::admission::forwarded::{self, Client, TrustedProxies};
use crate::edge::admission::handshake;
use crate::edge::command;
use crate::edge::context::Context;
use crate::edge::http::page;
use crate::edge::http::reply::{Body, ok, text};
use crate::hub::packet::Sources;
use crate::hub::{Encoding, Mode, Snapshot};

/// Routes one request. Never fails: every problem is an HTTP answer.
pub async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    ctx: Arc<Context>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let path = req.uri().path();
    let config = ctx.config();
    let upgrade = req.headers().contains_key(header::UPGRADE);
    let read = matches!(*req.method(), Method::GET | Method::HEAD);
    let response = match (path, encoding(&config, path)) {
        ("/health", _) => health(&ctx),
        ("/metrics", _) => metrics(&ctx),
        ("/schema.json", _) => ok(contract::SCHEMA, "application/schema+json"),
        _ if command::http::serves(path) => {
            let client = client(peer, &req, &config);
            command::http::handle(req, client, &ctx).await
        }
        // A browser asking for `/` gets the live page; a WebSocket handshake on `/` still works.
        ("/", _) if read && !upgrade => page::page(&config),
        // Its scripts, next to it (a WebSocket path of the same name still upgrades).
        _ if !upgrade && page::serves(path) => page::script(req.method(), path),
        (_, Some(encoding)) => {
            let client = client(peer, &req, &config);
            let response = handshake::websocket(req, client, encoding, config.clone(), &ctx);
            if response.status() != StatusCode::SWITCHING_PROTOCOLS {
                ctx.metrics.refused(response.status().as_u16());
            }
            response
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "Not found. Served here: the live page at /, WebSocket paths, /health, /metrics and \
             /schema.json.\n",
        ),
    };
    Ok(response)
}

/// Who sent `req`: `peer`, or the client a trusted proxy at `peer` forwarded it for.
fn client(peer: SocketAddr, req: &Request<Incoming>, config: &Config) -> Client {
    let proxies = &config.server.trusted_proxies;
    if proxies.is_empty() {
        return Client {
            addr: peer,
            proxied: false,
        };
    }
    // Validated at load, so every entry parses.
    let trusted = TrustedProxies::parse(proxies).unwrap_or_default();
    forwarded::client(peer, req.headers(), &trusted)
}

/// How connections on `path` are written, if it is a WebSocket path: the one place a path
/// picks an encoding.
fn encoding(config: &Config, path: &str) -> Option<Encoding> {
    if config.server.ws_paths.iter().any(|p| p == path) {
        Some(Encoding::Stream)
    } else if config.server.bridge_paths.iter().any(|p| p == path) {
        Some(Encoding::Bridge)
    } else if config.server.market_stream_paths.iter().any(|p| p == path) {
        Some(Encoding::MarketStream)
    } else {
        None
    }
}

/// `GET /health`: the process, its connections and each source's freshness, as JSON.
fn health(ctx: &Context) -> Response<Body> {
    let config = ctx.config();
    let latest = ctx.hub.latest();
    let now = Utc::now();
    let mut sources = sources(&latest).clone();
    sources.each_mut(|_, source| source.age_ms = source.updated.map(|t| t.age_ms(now)));
    let stale: Vec<&str> = sources
        .named()
        .into_iter()
        .filter(|(_, health)| !health.ok)
        .map(|(name, _)| name)
        .collect();
    // No packet for three periods: whatever the last one said, it is old news (a stopped
    // poller, a feed whose every message is refused).
    let age = ctx.hub.latest_age();
    let silent = age > Duration::from_millis(config.engine.poll_interval_ms) * 3;
    // Polling alone in a cluster (Redis away, or its poller polls another engine): the data may
    // be fine, the cluster is not.
    let alone = matches!(ctx.hub.mode(), Mode::Cluster(role) if role.alone());
    let state = match (latest.seq, stale.is_empty()) {
        _ if silent => "stale",
        (0, _) => "starting",
        _ if alone => "degraded",
        (_, true) => "ok",
        (_, false) => "degraded",
    };
    let body = json!({
        // Up and serving, as a bridge's health check expects; how fresh the data is says `state`.
        "status": "healthy",
        "state": state,
        // Where the packets come from: this daemon alone, or its role in a cluster.
        "mode": ctx.hub.mode(),
        "stale": stale,
        "seq": latest.seq,
        // How long ago the latest packet went to the clients (since start, before the first).
        "packet_age_ms": age.as_millis() as u64,
        // Messages from the cluster's Redis dropped for their tag (`cluster.secret_file`).
        "cluster_rejected": ctx.metrics.cluster_rejections(),
        "connections": ctx.admission.open(),
        // Every task in the daemon's runtime: connections, HTTP requests, the poller. A number
        // that keeps growing with a steady connection count is a leak.
        "tasks": tokio::runtime::Handle::current().metrics().num_alive_tasks(),
        "uptime_s": ctx.started.elapsed().as_secs(),
        "sources": sources,
    });
    ok(body.to_string(), "application/json")
}

/// Each source's health in the hub's latest snapshot: the hub slims only the snapshots it
/// keeps behind the latest, so the latest always has its data.
fn sources(latest: &Snapshot) -> &Sources {
    &latest
        .data()
        .expect("the latest snapshot keeps its data")
        .sources
}

/// `GET /metrics`: Prometheus metrics.
fn metrics(ctx: &Context) -> Response<Body> {
    let latest = ctx.hub.latest();
    let last_good = sources(&latest)
        .named()
        .into_iter()
        .map(|(name, health)| (name, health.updated.map(|t| t.0)));
    ctx.metrics.relay_topics(ctx.hub.relay().held());
    let body = ctx
        .metrics
        .render(ctx.admission.open(), last_good, Utc::now());
    ok(body, crate::metrics::CONTENT_TYPE)
}
