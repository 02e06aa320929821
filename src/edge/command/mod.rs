//! Commands: a dashboard asking the engine to act (`docs/PROTOCOL.md` §10). One service, shared
//! by the WebSocket sessions and the HTTP routes ([`http`]), decides and sends every command:
//!
//! 1. the action must be one the engine has ([`Action`]) and is not turned off;
//! 2. the caller must hold a valid token allowing it (`grant`); without `auth.secret` nobody
//!    acts, unless `commands.allow_without_auth` is set and the caller is on loopback (a warning
//!    each time);
//! 3. a repeated `id` from the same subject within `commands.repeat_window_ms` is answered from
//!    the first result ([`repeats`]), never sent twice;
//! 4. each subject is held to `commands.per_minute` (governor, keyed by subject, its store
//!    trimmed so it stays bounded);
//! 5. the engine gets one POST, with `commands.timeout_ms` to answer; a `halt` or `resume` that
//!    succeeds asks the poller for a fresh state at once.
//!
//! Every command ends in one [`CommandResult`] (`result`), one `Command` log line and one count in
//! `bff_commands_total{action,outcome}`. Sessions run commands in tasks of their own
//! ([`Commands::start`]), so a slow engine never holds a connection's packets.

mod grant;
pub mod http;
pub mod repeats;
mod result;

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, info_span};

use self::grant::authorize;
pub use self::grant::{Caller, Token};
use self::repeats::Repeats;
pub use self::result::CommandResult;
use crate::config::{Config, EngineConfig};
use crate::engine::Engine;
use crate::engine::action::Action;
use crate::hub::Hub;
use crate::metrics::Metrics;

/// The longest command `id` accepted; ids are remembered for the repeat window.
const MAX_ID_BYTES: usize = 128;

/// Subjects kept in the rate limiter before it is trimmed of those it no longer holds back.
const LIMITER_KEYS: usize = 10_000;

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
