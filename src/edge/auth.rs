//! Optional token authentication for dashboards. When `auth.secret` is set, a handshake must
//! carry an HS256 JWT signed with it and not expired, either as the WebSocket subprotocol pair
//! `token, <JWT>` (what a browser can send; the daemon echoes `token` back, as browsers require)
//! or as `Authorization: Bearer <JWT>`.

use hyper::header::{AUTHORIZATION, HeaderMap, SEC_WEBSOCKET_PROTOCOL};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// The subprotocol name that announces a token in the next list item.
pub const TOKEN_SUBPROTOCOL: &str = "token";

/// Verifies dashboard tokens against the configured secret.
pub struct Auth {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth(HS256, secret ***)")
    }
}

impl Auth {
    /// Token checking with `secret`, or none when it is empty.
    pub fn new(secret: &str) -> Option<Self> {
        if secret.is_empty() {
            return None;
        }
        let mut validation = Validation::new(Algorithm::HS256);
        // `exp` is required and honoured to the second.
        validation.leeway = 0;
        Some(Self {
            key: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        })
    }

    /// Checks the handshake's token; the error is a reason fit for a log line (never the token).
    pub fn check(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let token = token(headers).ok_or("no token")?;
        jsonwebtoken::decode::<serde_json::Value>(token, &self.key, &self.validation)
            .map(drop)
            .map_err(|err| match err.kind() {
                ErrorKind::ExpiredSignature => "token expired",
                ErrorKind::InvalidSignature => "token signature does not match",
                ErrorKind::MissingRequiredClaim(_) => "token has no exp",
                ErrorKind::InvalidAlgorithm => "token is not HS256",
                _ => "token is not a valid JWT",
            })
    }
}

/// The items of every `Sec-WebSocket-Protocol` header, in order.
fn subprotocols(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// Whether the client offered the `token` subprotocol, which the handshake must then echo.
pub fn offers_token_subprotocol(headers: &HeaderMap) -> bool {
    subprotocols(headers).any(|p| p == TOKEN_SUBPROTOCOL)
}

/// The token from `Sec-WebSocket-Protocol: token, <JWT>` or `Authorization: Bearer <JWT>`.
fn token(headers: &HeaderMap) -> Option<&str> {
    let mut offered = subprotocols(headers).skip_while(|p| *p != TOKEN_SUBPROTOCOL);
    if let (Some(_), Some(jwt)) = (offered.next(), offered.next()) {
        return Some(jwt);
    }
    headers
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}
