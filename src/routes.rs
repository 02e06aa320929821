//! HTTP on the WebSocket port: `GET /health`, the WebSocket handshake on the configured paths
//! (origin, limits, RFC 6455 checks), and clear errors for everything else.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::Utc;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::upgrade::{Parts, Upgraded};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::admission::{Permit, Refusal};
use crate::auth::{self, Auth};
use crate::config::{ClientConfig, Config};
use crate::connection;
use crate::contract;
use crate::server::Context;

type Body = Full<Bytes>;

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
    let response = match path {
        "/health" => health(&ctx),
        "/metrics" => metrics(&ctx),
        "/schema.json" => ok(contract::SCHEMA, "application/schema+json"),
        // A browser asking for `/` gets the live page; a WebSocket handshake on `/` still works.
        "/" if read && !upgrade => page(&config.server.ws_paths),
        _ if config.server.ws_paths.iter().any(|p| p == path) => {
            let response = websocket(req, peer, config.clone(), &ctx);
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

/// `GET /health`: the process, its connections and each source's freshness, as JSON.
fn health(ctx: &Context) -> Response<Body> {
    let latest = ctx.hub.latest();
    let now = Utc::now();
    let mut sources = latest.data.sources.clone();
    for source in [&mut sources.state, &mut sources.agents, &mut sources.models] {
        source.age_ms = source.updated.map(|t| t.age_ms(now));
    }
    let status = if latest.seq == 0 {
        "starting"
    } else if sources.state.ok && sources.agents.ok && sources.models.ok {
        "ok"
    } else {
        "degraded"
    };
    let body = json!({
        "status": status,
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

/// A 200 answer with `body` and its `Content-Type`.
fn ok(body: impl Into<Bytes>, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(body.into()));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /metrics`: Prometheus metrics.
fn metrics(ctx: &Context) -> Response<Body> {
    let latest = ctx.hub.latest();
    let body = ctx
        .metrics
        .render(ctx.admission.open(), &latest.data.sources, Utc::now());
    ok(body, crate::metrics::CONTENT_TYPE)
}

/// A request to a WebSocket path: the handshake, or the reason there is none.
fn websocket(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    config: Arc<Config>,
    ctx: &Arc<Context>,
) -> Response<Body> {
    let accept_key = match check_handshake(req.method(), req.headers()) {
        Ok(key) => key,
        Err(refused) => return refused,
    };
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok());
    if !origin_allowed(&config.server.allowed_origins, origin) {
        warn!(%peer, origin = origin.unwrap_or_default(), "Client refused: origin not allowed");
        return text(
            StatusCode::FORBIDDEN,
            "Origin not allowed: add it to server.allowed_origins.\n",
        );
    }
    if let Some(auth) = Auth::new(config.auth.secret.expose())
        && let Err(reason) = auth.check(req.headers())
    {
        warn!(%peer, reason, "Client refused: unauthorized");
        return text(
            StatusCode::UNAUTHORIZED,
            "A valid token is required: send `Sec-WebSocket-Protocol: token, <JWT>` or \
             `Authorization: Bearer <JWT>`.\n",
        );
    }
    let echo_token = auth::offers_token_subprotocol(req.headers());
    let limits = &config.server;
    let permit = match ctx.admission.admit(
        peer.ip(),
        limits.max_connections,
        limits.max_connections_per_ip,
    ) {
        Ok(permit) => permit,
        Err(refusal) => return refuse(peer, refusal),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let task_ctx = ctx.clone();
    ctx.tracker.spawn(
        async move {
            match on_upgrade.await {
                Ok(upgraded) => client(upgraded, permit, &config.clients, &task_ctx).await,
                Err(err) => debug!(%err, "Upgrade did not complete"),
            }
        }
        .instrument(info_span!("ws")),
    );
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept_key).expect("a base64 key is a valid header"),
    );
    // A browser that offered subprotocols fails the handshake unless one is chosen.
    if echo_token {
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(auth::TOKEN_SUBPROTOCOL),
        );
    }
    response
}

/// Runs one upgraded client from WELCOME to close, holding its admission slot throughout.
async fn client(upgraded: Upgraded, permit: Permit, config: &ClientConfig, ctx: &Context) {
    // Take the TCP socket back from hyper so frames can be written to it directly.
    let Ok(Parts { io, read_buf, .. }) = upgraded.downcast::<TokioIo<TcpStream>>() else {
        warn!("Upgraded connection is not a TCP stream; dropping it");
        return;
    };
    // Copy out what hyper read past the handshake (usually nothing): holding `read_buf` would
    // keep hyper's whole read buffer alive for the life of the connection.
    let leftover = read_buf.to_vec();
    drop(read_buf);
    let (read, write) = io.into_inner().into_split();
    ctx.metrics.connected();
    info!(clients = ctx.admission.open(), "Client Connected");
    let ending = connection::serve(
        read,
        write,
        leftover,
        &ctx.hub,
        &ctx.metrics,
        config,
        &ctx.shutdown,
    )
    .await;
    let code = ending.code();
    // Counted before the slot is freed, so whoever sees the connection gone sees it counted.
    ctx.metrics
        .disconnected(ending.label(), code, ending.is_slow());
    drop(permit);
    let clients = ctx.admission.open();
    if ending.is_normal() {
        info!(clients, reason = %ending, code, "Client Disconnected");
    } else {
        warn!(clients, reason = %ending, code, "Client Disconnected");
    }
}

/// RFC 6455 §4.2.1 checks; `Ok` carries the `Sec-WebSocket-Accept` value.
#[allow(clippy::result_large_err)]
fn check_handshake(method: &Method, headers: &HeaderMap) -> Result<String, Response<Body>> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(header::UPGRADE, "websocket") {
        let mut response = text(
            StatusCode::UPGRADE_REQUIRED,
            "This is a WebSocket endpoint. Connect with a WebSocket client, e.g. \
             new WebSocket('ws://HOST:PORT/'); for the daemon's state, GET /health.\n",
        );
        let headers = response.headers_mut();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        return Err(response);
    }
    if method != Method::GET {
        return Err(text(
            StatusCode::METHOD_NOT_ALLOWED,
            "A WebSocket handshake is a GET.\n",
        ));
    }
    if !has_token(header::CONNECTION, "upgrade") {
        return Err(text(
            StatusCode::BAD_REQUEST,
            "Handshake lacks `Connection: Upgrade`.\n",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        let mut response = text(
            StatusCode::BAD_REQUEST,
            "Only WebSocket version 13 is supported.\n",
        );
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return Err(response);
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(HeaderValue::as_bytes)
        .filter(|key| BASE64.decode(key).is_ok_and(|k| k.len() == 16));
    match key {
        Some(key) => Ok(derive_accept_key(key)),
        None => Err(text(
            StatusCode::BAD_REQUEST,
            "Handshake needs a Sec-WebSocket-Key of 16 base64-encoded bytes.\n",
        )),
    }
}

/// An empty list allows any origin; a request without `Origin` is not from a browser page, which
/// is what the list guards against, so it is allowed too.
fn origin_allowed(allowed: &[String], origin: Option<&str>) -> bool {
    match origin {
        Some(origin) if !allowed.is_empty() => {
            allowed.iter().any(|a| a.eq_ignore_ascii_case(origin))
        }
        _ => true,
    }
}

fn refuse(peer: SocketAddr, refusal: Refusal) -> Response<Body> {
    let (status, message) = match refusal {
        Refusal::PerIp(limit) => (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many connections from your address (limit {limit}); close one and retry.\n"
            ),
        ),
        Refusal::Total(limit) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Server full ({limit} connections); retry later.\n"),
        ),
    };
    warn!(%peer, status = status.as_u16(), "Client refused: {}", message.trim_end());
    let mut response = text(status, &message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(message.to_owned()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let list = vec!["https://dash.example.com".to_string()];
        assert!(origin_allowed(&[], Some("https://evil.example")));
        assert!(origin_allowed(&list, Some("https://DASH.example.com")));
        assert!(!origin_allowed(&list, Some("https://evil.example")));
        assert!(origin_allowed(&list, None));
    }
}
