//! The WebSocket handshake on a stream path: RFC 6455 checks, the origin allow-list, the token,
//! the connection limits; then the `101` answer, with the session started once hyper hands the
//! socket over. Every refusal is an HTTP status with a reason, logged without the token.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tracing::{Instrument, Span, warn};

use crate::config::{Config, Watch};
use crate::edge::admission::auth::{self, Auth};
use crate::edge::admission::forwarded::Client;
use crate::edge::admission::limits::Refusal;
use crate::edge::admission::origin::PageOrigin;
use crate::edge::admission::{extensions, form};
use crate::edge::command::{Caller, Token};
use crate::edge::context::Context;
use crate::edge::http::reply::{Body, text};
use crate::edge::session::{self, Admitted, TokenCheck};
use crate::hub::{Deflate, Encoding, Form, Resume};

/// A request to a WebSocket path whose connections are written as `encoding`: the handshake,
/// or the reason there is none.
pub fn websocket(
    mut req: Request<Incoming>,
    client: Client,
    encoding: Encoding,
    config: Arc<Config>,
    ctx: &Arc<Context>,
) -> Response<Body> {
    let accept_key = match check_handshake(req.method(), req.headers()) {
        Ok(key) => key,
        Err(refused) => return refused,
    };
    let peer = client.addr;
    let (delta, msgpack) = match form::asked(req.uri().query(), encoding) {
        Ok(asked) => asked,
        Err(reason) => {
            warn!(%peer, reason = reason.trim_end(), "Client refused: bad query");
            return text(StatusCode::BAD_REQUEST, &reason);
        }
    };
    let limits = &config.server;
    if let Err(wait) = ctx.handshakes.check(
        peer.ip(),
        limits.handshakes_per_second_per_ip,
        limits.handshake_burst_per_ip,
    ) {
        return too_fast(peer, limits.handshakes_per_second_per_ip, wait);
    }
    let page = PageOrigin::of_request(&config.server.allowed_origins, req.headers());
    if !page.admitted() {
        let origin = req.headers().get(header::ORIGIN).map(HeaderValue::to_str);
        let origin = origin.and_then(Result::ok).unwrap_or("(not text)");
        warn!(%peer, origin, "Client refused: origin not allowed");
        return text(
            StatusCode::FORBIDDEN,
            "Origin not allowed: a page may connect from the daemon's own origin or one listed \
             in server.allowed_origins.\n",
        );
    }
    let (token, token_check) = match check_token(req.headers(), &config, ctx) {
        Ok(checked) => checked,
        Err(reason) => {
            warn!(%peer, reason, "Client refused: unauthorized");
            return text(
                StatusCode::UNAUTHORIZED,
                "A valid token is required: send `Sec-WebSocket-Protocol: token, <JWT>` or \
                 `Authorization: Bearer <JWT>`.\n",
            );
        }
    };
    let echo_token = auth::offers_token_subprotocol(req.headers());
    let permit = match ctx.admission.admit(
        peer.ip(),
        limits.max_connections,
        limits.max_connections_per_ip,
    ) {
        Ok(permit) => permit,
        Err(refusal) => return refuse(peer, refusal),
    };
    // Only where packets carry a seq to resume from (not on a bridge path).
    let resume = if encoding.resumes() {
        req.uri().query().and_then(resume_from)
    } else {
        None
    };
    let deflate = config
        .clients
        .compression
        .then(|| extensions::offers_deflate(req.headers()))
        .flatten()
        .map(|takeover| Deflate {
            min_bytes: config.clients.compression_min_bytes,
            takeover,
        });
    let form = Form {
        deflate,
        delta,
        msgpack,
    };
    let admitted = Admitted {
        permit,
        encoding,
        form,
        caller: Caller {
            token,
            peer,
            loopback: client.on_loopback() && page.vouched(),
        },
        resume,
        config,
        token_check,
    };
    let task = session::serve(hyper::upgrade::on(&mut req), admitted, ctx.clone());
    // The connection's own span (`http{peer=…}`), not one of its own: every span costs a
    // connect storm's handshakes a registration and the peer formatted again, and a child span
    // would keep its parent alive (a few hundred bytes a connection) as long as the WebSocket.
    ctx.tracker.spawn(task.instrument(Span::current()));
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept_key).expect("a base64 key is a valid header"),
    );
    if let Some(deflate) = deflate {
        headers.insert(
            header::SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_static(extensions::deflate_answer(deflate.takeover)),
        );
    }
    // A browser that offered subprotocols fails the handshake unless one is chosen.
    if echo_token {
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(auth::TOKEN_SUBPROTOCOL),
        );
    }
    response
}

/// The handshake's token, checked under `config`'s `[auth]`, and what its session keeps to check
/// it again on reloads. No secret: nobody needs one. `auth.watch = "open"`: a handshake without
/// a token is let in to watch, while one presenting a token must present a valid one. `Err` is
/// the reason for the log, never the token.
fn check_token(
    headers: &HeaderMap,
    config: &Config,
    ctx: &Context,
) -> Result<(Token, Option<Box<TokenCheck>>), &'static str> {
    let Some(auth) = Auth::from_config(&config.auth) else {
        return Ok((Token::Absent, None));
    };
    let presented = auth::presented(headers);
    if presented.is_none() && config.auth.watch == Watch::Open {
        return Ok((Token::Absent, None));
    }
    let verified = auth.check(headers)?;
    let check =
        presented.map(|token| TokenCheck::new(token, ctx.settings.clone(), verified.window_end));
    Ok((Token::Valid(Box::new(verified.claims)), check))
}

/// `?since=<seq>&epoch=<epoch>`: where a reconnecting client left off. A `since` without an
/// epoch cannot match one, so that client starts afresh and is told so.
fn resume_from(query: &str) -> Option<Resume> {
    let value = |key: &str| {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    };
    Some(Resume {
        since: value("since")?.parse().ok()?,
        epoch: value("epoch").unwrap_or_default().to_owned(),
    })
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

/// 429 for a handshake over `server.handshakes_per_second_per_ip`, with the whole seconds to
/// wait until the next would pass.
fn too_fast(peer: SocketAddr, per_second: u32, wait: std::time::Duration) -> Response<Body> {
    let retry = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let retry = retry.max(1);
    let message = format!(
        "Too many handshakes from your address (limit {per_second} a second, \
         server.handshakes_per_second_per_ip); retry in {retry} s.\n"
    );
    warn!(%peer, status = 429, "Client refused: {}", message.trim_end());
    let mut response = text(StatusCode::TOO_MANY_REQUESTS, &message);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_str(&retry.to_string()).expect("digits are a valid header"),
    );
    response
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
