//! Who may send what: the caller of a command (its token, as checked, and its address) and the
//! one rule that decides whether it may act (`docs/PROTOCOL.md` §10). The service in `mod.rs`
//! asks [`authorize`] before anything reaches the engine; the WebSocket handshake and the HTTP
//! routes build the [`Caller`] it is asked about.

use std::net::SocketAddr;

use tracing::warn;

use super::outcome::Outcome;
use crate::config::Config;
use crate::edge::admission::auth::Claims;
use crate::engine::action::Action;

/// Who sends a command: what their token says and where they are.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token they presented.
    pub token: Token,
    /// The client's address: the TCP peer's, or the one a trusted proxy forwarded.
    pub peer: SocketAddr,
    /// Whether the loopback exemption may apply: the client is on this machine, came straight
    /// to the daemon (not through a trusted proxy), and is no browser page from another site
    /// (it sent no `Origin`, or the daemon's own, or one listed in `server.allowed_origins`).
    pub loopback: bool,
}

/// A caller's token, as checked.
#[derive(Debug, Clone)]
pub enum Token {
    /// None was presented (or no secret is set to check one against).
    Absent,
    /// A valid token, with its claims (boxed: every connection carries a token, few use it).
    Valid(Box<Claims>),
    /// One was presented and refused, for this reason.
    Invalid(&'static str),
}

impl Caller {
    /// The name rate limits, repeats and logs go by: the token's subject (a token without one
    /// may not act, so `(no sub)` shows only in the log of its refusal).
    pub(super) fn subject(&self) -> &str {
        match &self.token {
            Token::Valid(claims) => claims.subject.as_deref().unwrap_or("(no sub)"),
            Token::Absent | Token::Invalid(_) => "(no token)",
        }
    }
}

/// Whether `caller` may send `action`; `Err` is the HTTP status, the outcome label and why not.
pub(super) fn authorize(
    caller: &Caller,
    action: Action,
    config: &Config,
) -> Result<(), (u16, Outcome, String)> {
    match &caller.token {
        Token::Invalid(reason) => Err((401, Outcome::Unauthorized, (*reason).into())),
        Token::Valid(claims) if claims.expired() => Err((401, Outcome::Unauthorized, "token expired".into())),
        Token::Valid(claims) if !claims.allows(action) => Err((
            403,
            Outcome::Forbidden,
            format!("the token does not allow {}: it needs \"actions\": [\"{}\"] or \"role\": \"operator\"", action.name(), action.name()),
        )),
        // The rate, the repeats and the log go by `sub`: tokens without one would share them.
        Token::Valid(claims) if claims.subject.as_deref().is_none_or(str::is_empty) => Err((
            403,
            Outcome::Forbidden,
            "the token has no sub: commands need a token naming its holder (bff token --sub NAME)".into(),
        )),
        Token::Valid(_) => Ok(()),
        Token::Absent if !config.auth.secret.expose().is_empty() => Err((401, Outcome::Unauthorized, "no token".into())),
        Token::Absent if !config.commands.allow_without_auth => Err((
            403,
            Outcome::Unauthorized,
            "commands need a token and this daemon has no auth.secret: set one and send a token whose claims allow the action".into(),
        )),
        Token::Absent if !caller.loopback => Err((
            403,
            Outcome::Forbidden,
            "commands without a token are allowed from loopback only, never through a proxy or from another site's page (commands.allow_without_auth)".into(),
        )),
        Token::Absent => {
            warn!(peer = %caller.peer, action = action.name(), "Command allowed without a token (commands.allow_without_auth)");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(token: Token, peer: &str) -> Caller {
        let peer: SocketAddr = peer.parse().unwrap();
        Caller {
            token,
            peer,
            loopback: peer.ip().is_loopback(),
        }
    }

    #[test]
    fn without_a_token_only_a_loopback_peer_acts_and_only_when_told_to() {
        let mut config = Config::default();
        let refusal = |config: &Config, peer| {
            authorize(&caller(Token::Absent, peer), Action::Halt, config)
                .map_err(|(s, o, _)| (s, o))
        };
        assert_eq!(
            refusal(&config, "127.0.0.1:5000"),
            Err((403, Outcome::Unauthorized))
        );
        config.commands.allow_without_auth = true;
        assert_eq!(refusal(&config, "127.0.0.1:5000"), Ok(()));
        assert_eq!(refusal(&config, "[::1]:5000"), Ok(()));
        assert_eq!(
            refusal(&config, "10.0.0.7:5000"),
            Err((403, Outcome::Forbidden))
        );
        // A loopback address that came through a proxy or from another site's page is not.
        let relayed = Caller {
            loopback: false,
            ..caller(Token::Absent, "127.0.0.1:5000")
        };
        let (status, outcome, why) = authorize(&relayed, Action::Halt, &config).unwrap_err();
        assert_eq!((status, outcome), (403, Outcome::Forbidden));
        assert!(why.contains("never through a proxy"), "{why}");
        // With a secret set, a missing token is missing, whatever the exception says.
        config.auth.secret = crate::config::Secret::new("0123456789abcdef0123456789abcdef");
        assert_eq!(
            refusal(&config, "127.0.0.1:5000"),
            Err((401, Outcome::Unauthorized))
        );
    }

    #[test]
    fn a_valid_token_acts_within_its_claims() {
        let config = Config::default();
        let claims = Claims {
            subject: Some("ann".into()),
            expires: i64::MAX,
            role: None,
            actions: vec!["resume".into()],
        };
        let ann = caller(Token::Valid(Box::new(claims)), "10.0.0.7:5000");
        assert_eq!(authorize(&ann, Action::Resume, &config), Ok(()));
        let (status, outcome, why) = authorize(&ann, Action::Halt, &config).unwrap_err();
        assert_eq!((status, outcome), (403, Outcome::Forbidden));
        assert!(why.starts_with("the token does not allow halt"), "{why}");
        assert_eq!(ann.subject(), "ann");
    }

    #[test]
    fn a_token_without_a_subject_watches_but_does_not_act() {
        let config = Config::default();
        for subject in [None, Some(String::new())] {
            let claims = Claims {
                subject,
                expires: i64::MAX,
                role: Some("operator".into()),
                actions: Vec::new(),
            };
            let nobody = caller(Token::Valid(Box::new(claims)), "10.0.0.7:5000");
            let (status, outcome, why) = authorize(&nobody, Action::Halt, &config).unwrap_err();
            assert_eq!((status, outcome), (403, Outcome::Forbidden));
            assert!(why.starts_with("the token has no sub"), "{why}");
        }
    }
}
