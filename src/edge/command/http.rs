//! Commands over HTTP, for scripts and for frontends written against the gateway bff replaces:
//! `POST /api/actions/<action>` and that gateway's `POST /trade/force` (a rebalance), each with
//! `Authorization: Bearer <JWT>` and an optional `{"id": "…"}` body (or an `Idempotency-Key`
//! header); `GET /api/actions` says which actions the caller's token allows, so a page can
//! show only the buttons that will work. Answers are JSON with the same fields as a
//! COMMAND_RESULT. Browsers are held to the origin check ([`crate::edge::admission::origin`]), a listed
//! origin gets the CORS headers its page needs, and an action is never a CORS "simple" request:
//! it carries `Content-Type: application/json` or an `Authorization` header, either of which a
//! browser sends only after a preflight, so another site's page cannot send one unseen.

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tracing::warn;

use super::{Caller, Token};
use crate::config::Config;
use crate::edge::admission::auth::Auth;
use crate::edge::admission::forwarded::Client;
use crate::edge::admission::origin::{self, PageOrigin};
use crate::edge::context::Context;
use crate::edge::http::reply::{Body, ok, text};
use crate::engine::action::Action;

/// Where the actions are served.
pub const PREFIX: &str = "/api/actions";

/// The old gateway's route, which rebalanced.
pub const TRADE_FORCE: &str = "/trade/force";

/// The largest request body read (it holds at most an id).
const MAX_BODY_BYTES: usize = 4096;

/// Whether `path` is one of the command routes.
pub fn serves(path: &str) -> bool {
    path == TRADE_FORCE || path == PREFIX || path.starts_with("/api/actions/")
}

/// Answers a request on a command route. Never fails: every problem is an HTTP answer.
pub async fn handle(req: Request<Incoming>, client: Client, ctx: &Context) -> Response<Body> {
    let config = ctx.config();
    let peer = client.addr;
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_owned);
    let page = PageOrigin::of_request(&config.server.allowed_origins, req.headers());
    if !page.admitted() {
        warn!(
            %peer,
            origin = origin.as_deref().unwrap_or("(not text)"),
            path = req.uri().path(),
            "Command route refused: origin not allowed"
        );
        return text(
            StatusCode::FORBIDDEN,
            "Origin not allowed: a page may use the command routes from the daemon's own origin \
             or one listed in server.allowed_origins.\n",
        );
    }
    // The loopback exemption needs a client on this machine, straight to the daemon, and no
    // page that was merely let in by "*".
    let loopback = client.on_loopback() && page.vouched();
    let path = req.uri().path().to_owned();
    let is_action = req.method() == Method::POST && path != PREFIX;
    if is_action && !preflighted(req.headers()) {
        warn!(%peer, path, "Command refused: neither a JSON body nor an Authorization header");
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "An action is a POST with `Content-Type: application/json` or an `Authorization` \
             header, which a browser sends only after asking (a CORS preflight).\n",
        );
    }
    let caller = |headers: &HeaderMap| Caller {
        token: token(headers, &config),
        peer,
        loopback,
    };
    let mut response = match (req.method(), path.as_str()) {
        (&Method::OPTIONS, _) => preflight(),
        (&Method::GET | &Method::HEAD, PREFIX) => allowed(caller(req.headers()), &config),
        (&Method::POST, TRADE_FORCE) => {
            let caller = caller(req.headers());
            command(req, caller, "rebalance".into(), ctx, &config).await
        }
        (&Method::POST, path) if path.starts_with("/api/actions/") => {
            let action = path["/api/actions/".len()..].to_owned();
            let caller = caller(req.headers());
            command(req, caller, action, ctx, &config).await
        }
        _ => {
            let allow = if path == PREFIX {
                "GET, HEAD, OPTIONS"
            } else {
                "POST, OPTIONS"
            };
            let mut response = text(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("{path} answers {allow}.\n"),
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            response
        }
    };
    // A page on a listed origin may read the answer; one let in by "*" may not: a listed
    // origin is a deliberate choice, a star is not.
    if let Some(origin) = origin
        && origin::listed(&config.server.allowed_origins, &origin)
    {
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&origin) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        }
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

/// The caller's token, checked: from `Authorization: Bearer` when a secret is set.
fn token(headers: &HeaderMap, config: &Config) -> Token {
    match Auth::from_config(&config.auth).map(|auth| auth.check_bearer(headers)) {
        None | Some(Err("no token")) => Token::Absent,
        Some(Ok(claims)) => Token::Valid(Box::new(claims)),
        Some(Err(reason)) => Token::Invalid(reason),
    }
}

/// Whether a browser had to ask before sending this POST: it says `Content-Type:
/// application/json` or carries `Authorization`, neither of which a CORS "simple" request (a
/// form, a `no-cors` fetch) can. A request that is not from a browser sends either as easily.
fn preflighted(headers: &HeaderMap) -> bool {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    json || headers.contains_key(header::AUTHORIZATION)
}

/// `POST` on an action: decided and sent by the shared service.
async fn command(
    req: Request<Incoming>,
    caller: Caller,
    action: String,
    ctx: &Context,
    config: &Config,
) -> Response<Body> {
    let header_id = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await;
    let body_id = match body.map(|b| b.to_bytes()) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => None,
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(fields)) => match fields.get("id") {
                Some(Value::String(id)) => Some(id.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            },
            _ => {
                return text(
                    StatusCode::BAD_REQUEST,
                    "The body, when there is one, is a JSON object such as {\"id\": \"c-42\"}.\n",
                );
            }
        },
        Err(_) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("The body holds at most an id: {MAX_BODY_BYTES} bytes.\n"),
            );
        }
    };
    let result = ctx
        .commands
        .run(&caller, &action, body_id.or(header_id), config)
        .await;
    let mut response = ok(
        serde_json::to_string(&result).expect("a CommandResult always serializes"),
        "application/json",
    );
    *response.status_mut() = StatusCode::from_u16(result.http_status).unwrap_or(StatusCode::OK);
    match result.http_status {
        401 => {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        429 => {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after(config.commands.per_minute));
        }
        _ => {}
    }
    response
}

/// Seconds until a subject refused for the rate has a command again: one `per_minute`'s share
/// of a minute, rounded up, so a script that waits this long is not refused again for the rate.
fn retry_after(per_minute: u32) -> HeaderValue {
    HeaderValue::from(60u32.div_ceil(per_minute.max(1)))
}

/// `GET /api/actions`: which actions this caller's token allows, and every action there is.
fn allowed(caller: Caller, config: &Config) -> Response<Body> {
    let names = |actions: Vec<Action>| actions.iter().map(|a| a.name()).collect::<Vec<_>>();
    let (allowed, why) = match caller.token {
        Token::Valid(claims) if !claims.expired() => (names(claims.allowed()), None),
        Token::Valid(_) => (Vec::new(), Some("token expired")),
        Token::Invalid(reason) => (Vec::new(), Some(reason)),
        Token::Absent
            if config.auth.secret.expose().is_empty()
                && config.commands.allow_without_auth
                && caller.loopback =>
        {
            (names(Action::ALL.to_vec()), None)
        }
        Token::Absent => (Vec::new(), Some("no token")),
    };
    let body = json!({
        "allowed": allowed,
        "actions": names(Action::ALL.to_vec()),
        "error": why,
    });
    ok(body.to_string(), "application/json")
}

/// The answer to a browser's CORS preflight: POST with a bearer token and a JSON body.
fn preflight() -> Response<Body> {
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, idempotency-key"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_a_share_of_a_minute_rounded_up() {
        for (per_minute, seconds) in [(1, "60"), (7, "9"), (10, "6"), (120, "1")] {
            assert_eq!(retry_after(per_minute), seconds, "{per_minute} a minute");
        }
    }
}
