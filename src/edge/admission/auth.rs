//! Token authentication for dashboards and commands. When `auth.secret` is set, a handshake must
//! carry an HS256 JWT signed with it and not expired, either as the WebSocket subprotocol pair
//! `token, <JWT>` (what a browser can send; the daemon echoes `token` back, as browsers require)
//! or as `Authorization: Bearer <JWT>`. The token's claims say which engine actions its bearer
//! may send (`"actions": [...]`, or `"role": "operator"` for all); a token without them watches.
//! An `nbf` in the future is refused, and so are an `iss` or `aud` other than `auth.issuer` or
//! `auth.audience` when those are set. During a rollover, tokens signed with
//! `auth.previous_secret_file` verify too, until `auth.previous_secret_until`.

use chrono::Utc;
use hyper::header::{AUTHORIZATION, HeaderMap, SEC_WEBSOCKET_PROTOCOL};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::Value;

use crate::config::AuthConfig;
use crate::engine::action::Action;

/// The subprotocol name that announces a token in the next list item.
pub const TOKEN_SUBPROTOCOL: &str = "token";

/// The role that may send every action.
pub const OPERATOR: &str = "operator";

/// Verifies dashboard tokens against the configured secret (and the previous one, during a
/// rollover).
pub struct Auth {
    key: DecodingKey,
    /// The secret rotated out, and when it stops verifying (seconds since the epoch).
    previous: Option<(DecodingKey, i64)>,
    validation: Validation,
}

/// A token that verified: its claims, and when it verified with the previous secret only, the
/// end of that secret's window (a connection holding it is closed then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// What it says; `expires` is no later than the window's end.
    pub claims: Claims,
    /// The end of the previous secret's window, when that is the key it verified with.
    pub window_end: Option<i64>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth(HS256, secret ***)")
    }
}

/// What a verified token says about its bearer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// Who the token was issued to (`sub`); logs and the command rate go by it.
    pub subject: Option<String>,
    /// When it expires, in seconds since the epoch (`exp`).
    pub expires: i64,
    /// `role`; `operator` may send every action.
    pub role: Option<String>,
    /// `actions`: the actions it may send besides.
    pub actions: Vec<String>,
}

impl Claims {
    /// Reads the claims the daemon uses, leniently: a claim of the wrong type counts as absent.
    fn from_json(claims: &Value) -> Self {
        Self {
            subject: claims["sub"].as_str().map(str::to_owned),
            expires: claims["exp"].as_i64().unwrap_or(0),
            role: claims["role"].as_str().map(str::to_owned),
            actions: claims["actions"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Whether the token allows `action`.
    pub fn allows(&self, action: Action) -> bool {
        self.role.as_deref() == Some(OPERATOR)
            || self
                .actions
                .iter()
                .any(|a| Action::parse(a) == Some(action))
    }

    /// The actions the token allows, in their usual order.
    pub fn allowed(&self) -> Vec<Action> {
        Action::ALL
            .into_iter()
            .filter(|a| self.allows(*a))
            .collect()
    }

    /// Whether it has expired by now: a connection outlives its token, its commands do not.
    pub fn expired(&self) -> bool {
        self.expires <= Utc::now().timestamp()
    }
}

impl Auth {
    /// Token checking with `secret` alone, or none when it is empty.
    #[cfg(test)]
    pub fn new(secret: &str) -> Option<Self> {
        Self::from_config(&AuthConfig {
            secret: crate::config::Secret::new(secret),
            ..AuthConfig::default()
        })
    }

    /// Token checking as `[auth]` says, or none when no secret is set.
    pub fn from_config(config: &AuthConfig) -> Option<Self> {
        let secret = config.secret.expose();
        if secret.is_empty() {
            return None;
        }
        let mut validation = Validation::new(Algorithm::HS256);
        // `exp` is required and honoured to the second, and so is `nbf` when present.
        validation.leeway = 0;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(issuer) = &config.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        if let Some(audience) = &config.audience {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        let previous = config.previous_until().and_then(|until| {
            let previous = config.previous_secret.expose();
            (!previous.is_empty()).then(|| (DecodingKey::from_secret(previous.as_bytes()), until))
        });
        Some(Self {
            key: DecodingKey::from_secret(secret.as_bytes()),
            previous,
            validation,
        })
    }

    /// Checks the handshake's token (subprotocol or bearer); the error is a reason fit for a
    /// log line and an answer (never the token).
    pub fn check(&self, headers: &HeaderMap) -> Result<Verified, &'static str> {
        self.verify(presented(headers).ok_or("no token")?)
    }

    /// Checks `Authorization: Bearer <JWT>`, as HTTP commands carry it.
    pub fn check_bearer(&self, headers: &HeaderMap) -> Result<Claims, &'static str> {
        self.verify(bearer(headers).ok_or("no token")?)
            .map(|v| v.claims)
    }

    /// Checks one token: with the secret, or failing its signature, with the previous secret
    /// while its window lasts. The error names the claim or check that failed, never the token.
    pub fn verify(&self, token: &str) -> Result<Verified, &'static str> {
        let with = |key| {
            jsonwebtoken::decode::<Value>(token, key, &self.validation)
                .map(|data| Claims::from_json(&data.claims))
        };
        match with(&self.key) {
            Ok(claims) => Ok(Verified {
                claims,
                window_end: None,
            }),
            Err(err) => match (&self.previous, err.kind()) {
                (Some((key, until)), ErrorKind::InvalidSignature)
                    if *until > Utc::now().timestamp() =>
                {
                    let mut claims = with(key).map_err(|err| reason(&err))?;
                    claims.expires = claims.expires.min(*until);
                    Ok(Verified {
                        claims,
                        window_end: Some(*until),
                    })
                }
                _ => Err(reason(&err)),
            },
        }
    }
}

/// Why a token was refused, naming the claim at fault: fit for a log line and an answer.
fn reason(err: &jsonwebtoken::errors::Error) -> &'static str {
    match err.kind() {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not valid yet (nbf is in the future)",
        ErrorKind::InvalidIssuer => "token issuer (iss) does not match auth.issuer",
        ErrorKind::InvalidAudience => "token audience (aud) does not match auth.audience",
        ErrorKind::InvalidSignature => "token signature does not match",
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "iss" => "token has no iss",
            "aud" => "token has no aud",
            _ => "token has no exp",
        },
        ErrorKind::InvalidClaimFormat(claim) if claim == "nbf" => "token nbf is not a number",
        ErrorKind::InvalidAlgorithm => "token is not HS256",
        _ => "token is not a valid JWT",
    }
}

/// Signs a token with `secret` for `subject`, valid for `ttl_s` seconds, allowing `role` (the
/// `operator` role allows every action) and `actions`: what `bff token` prints.
pub fn mint(
    secret: &str,
    subject: &str,
    ttl_s: i64,
    role: Option<&str>,
    actions: &[String],
) -> String {
    let mut claims = serde_json::json!({
        "sub": subject,
        "iat": Utc::now().timestamp(),
        "exp": Utc::now().timestamp() + ttl_s,
    });
    if let Some(role) = role {
        claims["role"] = role.into();
    }
    if !actions.is_empty() {
        claims["actions"] = actions.into();
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing with a byte key cannot fail")
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

/// The token from `Sec-WebSocket-Protocol: token, <JWT>` or `Authorization: Bearer <JWT>`,
/// when the handshake presents one.
pub fn presented(headers: &HeaderMap) -> Option<&str> {
    let mut offered = subprotocols(headers).skip_while(|p| *p != TOKEN_SUBPROTOCOL);
    if let (Some(_), Some(jwt)) = (offered.next(), offered.next()) {
        return Some(jwt);
    }
    bearer(headers)
}

/// The token from `Authorization: Bearer <JWT>`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_may_do_everything_others_what_they_are_given() {
        let claims = |role: Option<&str>, actions: &[&str]| Claims {
            role: role.map(str::to_owned),
            actions: actions.iter().map(|a| a.to_string()).collect(),
            ..Claims::default()
        };
        assert_eq!(claims(Some("operator"), &[]).allowed(), Action::ALL);
        assert_eq!(
            claims(Some("viewer"), &["HALT", "export_logs", "liquidate"]).allowed(),
            [Action::Halt, Action::ExportLogs]
        );
        assert!(claims(None, &[]).allowed().is_empty());
    }

    #[test]
    fn a_minted_token_verifies_with_its_claims() {
        let secret = "0123456789abcdef0123456789abcdef";
        let token = mint(secret, "ann", 3600, Some("viewer"), &["halt".into()]);
        let claims = Auth::new(secret).unwrap().verify(&token).unwrap().claims;
        assert_eq!(claims.subject.as_deref(), Some("ann"));
        assert_eq!(claims.allowed(), [Action::Halt]);
        assert!(!claims.expired());
        let other = Auth::new("another-secret-another-secret-1234").unwrap();
        assert_eq!(other.verify(&token), Err("token signature does not match"));
    }

    #[test]
    fn claims_of_the_wrong_type_count_as_absent() {
        let claims = Claims::from_json(&serde_json::json!({
            "sub": 7, "exp": 99, "role": ["operator"], "actions": "halt"
        }));
        assert_eq!(
            claims,
            Claims {
                expires: 99,
                ..Claims::default()
            }
        );
    }
}
