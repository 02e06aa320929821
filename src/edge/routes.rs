//! HTTP on the WebSocket port: the live page, `/health`, `/metrics`, `/schema.json`, the
//! WebSocket paths (handed to [`super::handshake`]), and a clear 404 for everything else.

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::Utc;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::command;
use super::context::Context;
use super::handshake;
use super::reply::{Body, ok, text};
use super::session::Endpoint;
use crate::config::Config;
use crate::contract;
use crate::hub::Snapshot;
use crate::hub::packet::Sources;

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
    let response = match (path, endpoint(&config, path)) {
        ("/health", _) => health(&ctx),
        ("/metrics", _) => metrics(&ctx),
        ("/schema.json", _) => ok(contract::SCHEMA, "application/schema+json"),
        _ if command::http::serves(path) => command::http::handle(req, peer, &ctx).await,
        // A browser asking for `/` gets the live page; a WebSocket handshake on `/` still works.
        ("/", _) if read && !upgrade => page(&config.server.ws_paths),
        (_, Some(endpoint)) => {
            let response = handshake::websocket(req, peer, endpoint, config.clone(), &ctx);
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

/// The kind of WebSocket path `path` is, if it is one.
fn endpoint(config: &Config, path: &str) -> Option<Endpoint> {
    if config.server.ws_paths.iter().any(|p| p == path) {
        Some(Endpoint::Stream)
    } else if config.server.bridge_paths.iter().any(|p| p == path) {
        Some(Endpoint::Bridge)
    } else {
        None
    }
}

/// `GET /health`: the process, its connections and each source's freshness, as JSON.
fn health(ctx: &Context) -> Response<Body> {
    let latest = ctx.hub.latest();
    let now = Utc::now();
    let mut sources = sources(&latest).clone();
    for source in [&mut sources.state, &mut sources.agents, &mut sources.models]
        .into_iter()
        .chain(sources.redis.as_mut())
    {
        source.age_ms = source.updated.map(|t| t.age_ms(now));
    }
    let stale: Vec<&str> = sources
        .named()
        .into_iter()
        .filter(|(_, health)| !health.ok)
        .map(|(name, _)| name)
        .collect();
    let state = match (latest.seq, stale.is_empty()) {
        (0, _) => "starting",
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
        "connections": ctx.admission.open(),
        // Every task in the daemon's runtime: connections, HTTP requests, the poller. A number
        // that keeps growing with a steady connection count is a leak.
        "tasks": tokio::runtime::Handle::current().metrics().num_alive_tasks(),
        "uptime_s": ctx.started.elapsed().as_secs(),
        "sources": sources,
    });
    ok(body.to_string(), "application/json")
}

/// The live page, embedded in the binary: plain HTML and JavaScript with no dependencies.
const PAGE: &str = include_str!("page/index.html");

/// `GET /`: the live page, pointed at the first WebSocket path.
fn page(ws_paths: &[String]) -> Response<Body> {
    let path = ws_paths.first().map_or("/", String::as_str);
    let html = PAGE.replacen(
        r#"<meta name="bff-ws-path" content="/">"#,
        &format!(
            r#"<meta name="bff-ws-path" content="{}">"#,
            escape_attribute(path)
        ),
        1,
    );
    let mut response = ok(html, "text/html; charset=utf-8");
    // The page runs only its own inline code and talks only to WebSocket servers.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             img-src data:; connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'",
        ),
    );
    response
}

/// `path` safe inside a double-quoted HTML attribute.
fn escape_attribute(path: &str) -> String {
    path.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
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
