//! Commands: a dashboard asking the engine to act (`docs/PROTOCOL.md` §10). One service, shared
//! by the WebSocket sessions and the HTTP routes ([`http`]), decides and sends every command:
//!
//! 1. the action must be one the engine has ([`Action`]) and is not turned off;
//! 2. the caller must hold a valid token allowing it; without `auth.secret` nobody acts, unless
//!    `commands.allow_without_auth` is set and the caller is on loopback (a warning each time);
//! 3. a repeated `id` from the same subject within `commands.repeat_window_ms` is answered from
//!    the first result ([`repeats`]), never sent twice;
//! 4. each subject is held to `commands.per_minute` (governor, keyed by subject, its store
//!    trimmed so it stays bounded);
//! 5. the engine gets one POST, with `commands.timeout_ms` to answer; a `halt` or `resume` that
//!    succeeds asks the poller for a fresh state at once.
//!
//! Every command ends in one [`CommandResult`], one `Command` log line and one count in
//! `bff_commands_total{action,outcome}`. Sessions run commands in tasks of their own
//! ([`Commands::start`]), so a slow engine never holds a connection's packets.

pub mod http;
pub mod repeats;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, info_span, warn};

use self::repeats::Repeats;
use super::auth::Claims;
use crate::config::{Config, EngineConfig};
use crate::engine::action::Action;
use crate::engine::{Engine, FetchError};
use crate::hub::Hub;
use crate::metrics::Metrics;

/// The longest command `id` accepted; ids are remembered for the repeat window.
const MAX_ID_BYTES: usize = 128;

/// Subjects kept in the rate limiter before it is trimmed of those it no longer holds back.
const LIMITER_KEYS: usize = 10_000;

/// Who sends a command: what their token says and where they are.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token they presented.
    pub token: Token,
    /// The peer's address.
    pub peer: SocketAddr,
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
    /// The name rate limits, repeats and logs go by: the token's subject.
    fn subject(&self) -> &str {
        match &self.token {
            Token::Valid(claims) => claims.subject.as_deref().unwrap_or("(no sub)"),
            Token::Absent | Token::Invalid(_) => "(no token)",
        }
    }
}

/// The answer to one command: a `COMMAND_RESULT` frame on WebSocket, the body over HTTP.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema, ts_rs::TS))]
pub struct CommandResult {
    /// Always `COMMAND_RESULT`.
    #[serde(rename = "type")]
    #[cfg_attr(test, ts(rename = "type", type = "\"COMMAND_RESULT\""))]
    #[cfg_attr(test, schemars(with = "ResultType"))]
    pub kind: &'static str,
    /// The command's `id`, as sent; `null` when it had none.
    pub id: Option<String>,
    /// The action, as the daemon names it (or as sent, when it is unknown).
    pub action: String,
    /// Whether the engine did it.
    pub ok: bool,
    /// The engine's HTTP status; `null` when the command was not sent or got no answer.
    pub status: Option<u16>,
    /// The engine's `message`, if it gave one.
    pub message: Option<String>,
    /// Why it did not happen, readable by a person; `null` when `ok`.
    pub error: Option<String>,
    /// The HTTP status an HTTP caller gets.
    #[serde(skip)]
    #[cfg_attr(test, ts(skip))]
    pub http_status: u16,
    /// The `outcome` label in the metrics and the log.
    #[serde(skip)]
    #[cfg_attr(test, ts(skip))]
    pub outcome: &'static str,
}

impl CommandResult {
    /// A command refused before it reached the engine.
    pub fn refused(
        id: Option<String>,
        action: &str,
        http_status: u16,
        outcome: &'static str,
        why: String,
    ) -> Self {
        Self {
            kind: "COMMAND_RESULT",
            id,
            action: action.to_owned(),
            ok: false,
            status: None,
            message: None,
            error: Some(why),
            http_status,
            outcome,
        }
    }

    /// The engine's answer, or why there was none.
    fn answered(
        id: Option<String>,
        action: Action,
        answer: Result<crate::engine::action::Answer, FetchError>,
    ) -> Self {
        let (ok, status, message, error, http_status, outcome) = match answer {
            Ok(a) if a.success => (true, Some(a.status), a.message, None, 200, "ok"),
            Ok(a) if (200..300).contains(&a.status) => {
                let why = format!(
                    "the engine refused: {}",
                    a.message.as_deref().unwrap_or("no reason given")
                );
                (
                    false,
                    Some(a.status),
                    a.message,
                    Some(why),
                    200,
                    "engine_refused",
                )
            }
            Ok(a) => {
                let why = format!("the engine answered HTTP {}", a.status);
                (
                    false,
                    Some(a.status),
                    a.message,
                    Some(why),
                    502,
                    "engine_error",
                )
            }
            Err(err @ FetchError::Timeout(_)) => (
                false,
                None,
                None,
                Some(format!("the engine did not answer: {err}")),
                504,
                "timeout",
            ),
            Err(err) => (
                false,
                None,
                None,
                Some(format!("the engine could not be reached: {err}")),
                502,
                "unreachable",
            ),
        };
        Self {
            kind: "COMMAND_RESULT",
            id,
            action: action.name().to_owned(),
            ok,
            status,
            message,
            error,
            http_status,
            outcome,
        }
    }
}

/// The `type` of a [`CommandResult`], for the schema.
#[cfg(test)]
#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
enum ResultType {
    #[schemars(rename = "COMMAND_RESULT")]
    CommandResult,
}

/// The command service every session and HTTP route shares.
pub struct Commands {
    limiter: DefaultKeyedRateLimiter<String>,
    repeats: Repeats<CommandResult>,
    /// The engine client for actions and the `[engine]` it was built from, rebuilt when a
    /// reload changes it. A mutex: held only to compare and clone.
    engine: Mutex<Option<(EngineConfig, Engine)>>,
    metrics: Arc<Metrics>,
    hub: Hub,
    /// The running config, read when each command starts.
    settings: watch::Receiver<Arc<Config>>,
    /// Command tasks join the connection tasks, so shutdown waits for them.
    tracker: TaskTracker,
    /// Ends a command task at shutdown.
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Commands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Commands")
    }
}

impl Commands {
    /// The service under `settings` (its rate is fixed until a restart); a successful `halt`
    /// or `resume` asks `hub` for a fresh poll. Tasks it starts join `tracker` and end with
    /// `shutdown`.
    pub fn new(
        settings: watch::Receiver<Arc<Config>>,
        metrics: Arc<Metrics>,
        hub: Hub,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        let config = settings.borrow().clone();
        let non_zero = |n: u32| NonZeroU32::new(n).expect("a validated rate is above 0");
        let quota = Quota::per_minute(non_zero(config.commands.per_minute))
            .allow_burst(non_zero(config.commands.burst));
        Self {
            limiter: RateLimiter::keyed(quota),
            repeats: Repeats::default(),
            engine: Mutex::new(None),
            metrics,
            hub,
            settings,
            tracker,
            shutdown,
        }
    }

    /// Runs one command for `caller` in a task of its own, under the config of the moment,
    /// and sends its result to `results`.
    pub fn start(
        self: &Arc<Self>,
        caller: Caller,
        action: String,
        id: Option<String>,
        results: mpsc::Sender<CommandResult>,
    ) {
        let commands = self.clone();
        let span = info_span!("command", action = %action);
        self.tracker.spawn(
            async move {
                let config = commands.settings.borrow().clone();
                let result = tokio::select! {
                    result = commands.run(&caller, &action, id.clone(), &config) => result,
                    _ = commands.shutdown.cancelled() => CommandResult::refused(
                        id, &action, 503, "shutdown", "the daemon is shutting down".into(),
                    ),
                };
                // The session may have ended meanwhile; the result is logged either way.
                let _ = results.send(result).await;
            }
            .instrument(span),
        );
    }

    /// Decides and, if allowed, sends one command; always answers, and logs and counts it.
    pub async fn run(
        &self,
        caller: &Caller,
        action: &str,
        id: Option<String>,
        config: &Config,
    ) -> CommandResult {
        let started = Instant::now();
        let result = self.decide_and_send(caller, action, id, config).await;
        self.count(&result);
        let label = Action::parse(action).map_or("unknown", Action::name);
        info!(
            subject = caller.subject(),
            action = label,
            id = result.id.as_deref().unwrap_or_default(),
            peer = %caller.peer,
            outcome = result.outcome,
            status = result.status,
            duration_ms = started.elapsed().as_millis() as u64,
            error = result.error.as_deref().unwrap_or_default(),
            "Command"
        );
        result
    }

    async fn decide_and_send(
        &self,
        caller: &Caller,
        named: &str,
        id: Option<String>,
        config: &Config,
    ) -> CommandResult {
        let refuse = |status, outcome, why: String| {
            CommandResult::refused(id.clone(), named, status, outcome, why)
        };
        if id.as_ref().is_some_and(|id| id.len() > MAX_ID_BYTES) {
            return refuse(
                400,
                "invalid",
                format!("id is longer than {MAX_ID_BYTES} bytes"),
            );
        }
        let Some(action) = Action::parse(named) else {
            let known: Vec<_> = Action::ALL.iter().map(|a| a.name()).collect();
            return refuse(
                404,
                "unknown_action",
                format!("unknown action {named:?}; known: {}", known.join(", ")),
            );
        };
        if let Err((status, outcome, why)) = authorize(caller, action, config) {
            return refuse(status, outcome, why);
        }
        let engine = self.engine(&config.engine);
        if !engine.offers(action) {
            return refuse(
                404,
                "unknown_action",
                format!(
                    "the {} action is turned off here (engine.{} is empty)",
                    action.name(),
                    action.key()
                ),
            );
        }
        let window = Duration::from_millis(config.commands.repeat_window_ms);
        let key = id
            .as_ref()
            .map(|id| (caller.subject().to_owned(), id.clone()));
        if let Some(first) = key.as_ref().and_then(|k| self.repeats.find(k, window)) {
            let mut result = first
                .get_or_init(|| async { unreachable!("a found entry is being or was answered") })
                .await
                .clone();
            result.outcome = "repeat";
            return result;
        }
        if self
            .limiter
            .check_key(&caller.subject().to_owned())
            .is_err()
        {
            self.trim_limiter();
            return refuse(
                429,
                "rate_limited",
                format!(
                    "rate limit: at most {} commands a minute (burst {}) per token subject; retry later",
                    config.commands.per_minute, config.commands.burst
                ),
            );
        }
        self.trim_limiter();
        let deadline = Duration::from_millis(config.commands.timeout_ms);
        let send = || async {
            let result =
                CommandResult::answered(id.clone(), action, engine.act(action, deadline).await);
            if result.ok && matches!(action, Action::Halt | Action::Resume) {
                self.hub.request_refresh();
            }
            result
        };
        match key {
            // Whoever arrives first sends; a repeat arriving meanwhile waits for that answer.
            Some(key) => {
                let (cell, first) = self.repeats.enter(key, window);
                let mut result = cell.get_or_init(send).await.clone();
                if !first {
                    result.outcome = "repeat";
                }
                result
            }
            None => send().await,
        }
    }

    /// Counts a result in `bff_commands_total`; the action label is `unknown` for a name the
    /// engine has not, so clients cannot make up labels.
    pub fn count(&self, result: &CommandResult) {
        let label = Action::parse(&result.action).map_or("unknown", Action::name);
        self.metrics.command(label, result.outcome);
    }

    /// The engine client for `config`, rebuilt when `[engine]` changed since the last command.
    fn engine(&self, config: &EngineConfig) -> Engine {
        let mut held = self.engine.lock().expect("command engine lock poisoned");
        if let Some((built_from, engine)) = held.as_ref()
            && built_from == config
        {
            return engine.clone();
        }
        let engine = Engine::new(config).expect("a validated [engine] builds a client");
        *held = Some((config.clone(), engine.clone()));
        engine
    }

    /// Keeps the limiter's store bounded: past [`LIMITER_KEYS`] subjects, those it no longer
    /// holds back are dropped.
    fn trim_limiter(&self) {
        if self.limiter.len() > LIMITER_KEYS {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
    }
}

/// Whether `caller` may send `action`; `Err` is the HTTP status, the outcome label and why not.
fn authorize(
    caller: &Caller,
    action: Action,
    config: &Config,
) -> Result<(), (u16, &'static str, String)> {
    match &caller.token {
        Token::Invalid(reason) => Err((401, "unauthorized", (*reason).into())),
        Token::Valid(claims) if claims.expired() => Err((401, "unauthorized", "token expired".into())),
        Token::Valid(claims) if !claims.allows(action) => Err((
            403,
            "forbidden",
            format!("the token does not allow {}: it needs \"actions\": [\"{}\"] or \"role\": \"operator\"", action.name(), action.name()),
        )),
        Token::Valid(_) => Ok(()),
        Token::Absent if !config.auth.secret.expose().is_empty() => Err((401, "unauthorized", "no token".into())),
        Token::Absent if !config.commands.allow_without_auth => Err((
            403,
            "unauthorized",
            "commands need a token and this daemon has no auth.secret: set one and send a token whose claims allow the action".into(),
        )),
        Token::Absent if !caller.peer.ip().is_loopback() => Err((
            403,
            "forbidden",
            "commands without a token are allowed from loopback only (commands.allow_without_auth)".into(),
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
        Caller {
            token,
            peer: peer.parse().unwrap(),
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
            Err((403, "unauthorized"))
        );
        config.commands.allow_without_auth = true;
        assert_eq!(refusal(&config, "127.0.0.1:5000"), Ok(()));
        assert_eq!(refusal(&config, "[::1]:5000"), Ok(()));
        assert_eq!(refusal(&config, "10.0.0.7:5000"), Err((403, "forbidden")));
        // With a secret set, a missing token is missing, whatever the exception says.
        config.auth.secret = crate::config::Secret::new("0123456789abcdef0123456789abcdef");
        assert_eq!(
            refusal(&config, "127.0.0.1:5000"),
            Err((401, "unauthorized"))
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
        assert_eq!((status, outcome), (403, "forbidden"));
        assert!(why.starts_with("the token does not allow halt"), "{why}");
        assert_eq!(ann.subject(), "ann");
    }
}
