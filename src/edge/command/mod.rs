//! Commands: a dashboard asking the engine to act (`docs/PROTOCOL.md` §10). One service, shared
//! by the WebSocket sessions and the HTTP routes ([`http`]), decides and sends every command:
//!
//! 1. the action's name and `id` must be short, the action one the engine has ([`Action`]) and
//!    not turned off;
//! 2. the caller must hold a valid token naming its holder (`sub`) and allowing it (`grant`);
//!    without `auth.secret` nobody acts, unless `commands.allow_without_auth` is set and the
//!    caller is on loopback (a warning each time);
//! 3. a repeated `id` from the same subject within `commands.repeat_window_ms` is answered from
//!    the first result ([`repeats`]), never sent twice; the same `id` for another action is
//!    refused (`id_conflict`);
//! 4. each subject is held to `commands.per_minute` (governor, keyed by subject, its store
//!    trimmed so it stays bounded), except for `halt` and `resume`: the kill switch is never
//!    refused for the rate;
//! 5. the engine gets one POST, with `commands.timeout_ms` to answer; `halt` and `resume` from
//!    every caller go one at a time, so the engine ends in the state of the last one sent, and
//!    one that succeeds asks the poller for a fresh state at once.
//!
//! Every command ends in one [`CommandResult`] (`result`), one `Command` log line (`log`, which
//! limits those of refusals) and one count in `bff_commands_total{action,outcome}`. A session's
//! commands go through a bounded queue of its own, drained by one task ([`Commands::queue`]), so
//! they reach the engine in the order sent and a slow engine never holds the connection's packets.

mod grant;
pub(crate) mod http;
pub(crate) mod log;
mod outcome;
pub(crate) mod repeats;
mod result;

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info_span};

use self::grant::authorize;
pub use self::grant::{Caller, Token};
pub use self::outcome::Outcome;
use self::repeats::{Entry, Repeats};
pub use self::result::{CommandResult, MAX_ACTION_BYTES, MAX_ID_BYTES};
use crate::config::{Config, EngineConfig};
use crate::engine::Engine;
use crate::engine::action::Action;
use crate::hub::Hub;
use crate::metrics::Metrics;

/// Subjects kept in the rate limiter before it is trimmed of those it no longer holds back.
const LIMITER_KEYS: usize = 10_000;

/// One command a connection queued: the action as named, and its `id`.
pub type Queued = (String, Option<String>);

/// The command service every session and HTTP route shares.
pub struct Commands {
    limiter: DefaultKeyedRateLimiter<String>,
    repeats: Repeats<CommandResult>,
    /// Held while a `halt` or `resume` is with the engine, by every caller (HTTP and WebSocket):
    /// one at a time, in the order they came (tokio's mutex is fair), so two never cross on the
    /// way and the engine ends in the state of the last one.
    kill_switch: tokio::sync::Mutex<()>,
    /// Counts refusals so a flood of them cannot flood the log.
    throttle: Mutex<log::Throttle>,
    /// The engine client for actions and the `[engine]` it was built from, rebuilt when a
    /// reload changes it. A mutex: held only to compare and clone.
    engine: Mutex<Option<(EngineConfig, Engine)>>,
    metrics: Arc<Metrics>,
    hub: Hub,
    /// The running config, read when each command starts.
    settings: watch::Receiver<Arc<Config>>,
    /// Connections' command tasks join the connection tasks, so shutdown waits for them.
    tracker: TaskTracker,
    /// Ends a command at shutdown.
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
            kill_switch: tokio::sync::Mutex::new(()),
            throttle: Mutex::default(),
            engine: Mutex::new(None),
            metrics,
            hub,
            settings,
            tracker,
            shutdown,
        }
    }

    /// A queue of `capacity` commands for one connection of `caller`, drained in order by one
    /// task, which sends each result to `results` and ends when the queue's sender is dropped
    /// and it is empty (a command whose connection closed still completes and is logged).
    /// Each command runs under the config of the moment it is taken from the queue.
    pub fn queue(
        self: &Arc<Self>,
        caller: Caller,
        capacity: usize,
        results: mpsc::Sender<CommandResult>,
    ) -> mpsc::Sender<Queued> {
        let (queue, mut queued) = mpsc::channel::<Queued>(capacity);
        let commands = self.clone();
        let span = info_span!("commands", peer = %caller.peer);
        self.tracker.spawn(
            async move {
                while let Some((action, id)) = queued.recv().await {
                    let config = commands.settings.borrow().clone();
                    let result = tokio::select! {
                        result = commands.run(&caller, &action, id.clone(), &config) => result,
                        _ = commands.shutdown.cancelled() => CommandResult::refused(
                            id, &action, 503, Outcome::Shutdown, "the daemon is shutting down".into(),
                        ),
                    };
                    // The session may have ended meanwhile; the result is logged either way.
                    let _ = results.send(result).await;
                }
            }
            .instrument(span),
        );
        queue
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
        // Named by its label, never by what the client wrote: the span is on every line below.
        let span = info_span!("command", action = label(action));
        let result = self
            .decide_and_send(caller, action, id, config)
            .instrument(span.clone())
            .await;
        span.in_scope(|| self.record(caller, &result, started.elapsed()));
        result
    }

    /// Counts `result` and writes its log line (those of refusals within the limit).
    pub fn record(&self, caller: &Caller, result: &CommandResult, took: Duration) {
        self.metrics
            .command(label(&result.action), result.outcome.as_str());
        log::command(&self.throttle, caller, result, took);
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
        if named.len() > MAX_ACTION_BYTES {
            return refuse(
                400,
                Outcome::Invalid,
                format!("the action name is longer than {MAX_ACTION_BYTES} bytes"),
            );
        }
        if id.as_ref().is_some_and(|id| id.len() > MAX_ID_BYTES) {
            return refuse(
                400,
                Outcome::Invalid,
                format!("id is longer than {MAX_ID_BYTES} bytes"),
            );
        }
        let Some(action) = Action::parse(named) else {
            let known: Vec<_> = Action::ALL.iter().map(|a| a.name()).collect();
            return refuse(
                404,
                Outcome::UnknownAction,
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
                Outcome::UnknownAction,
                format!(
                    "the {} action is turned off here (engine.{} is empty)",
                    action.name(),
                    action.key()
                ),
            );
        }
        let window = Duration::from_millis(config.commands.repeat_window_ms);
        // Entered before the rate is asked, in one step: a repeat never uses up the budget,
        // even one arriving while the first still waits.
        let entered = id.as_ref().map(|id| {
            let key = (caller.subject().to_owned(), id.clone());
            let entry = self.repeats.enter(key.clone(), action.name(), window);
            (key, entry)
        });
        let first = match entered {
            None => None,
            Some((_, Entry::Conflict(first_action))) => {
                return refuse(
                    409,
                    Outcome::IdConflict,
                    format!(
                        "id {:?} was used for {first_action} within commands.repeat_window_ms; \
                         send this {} with a new id",
                        id.as_deref().unwrap_or_default(),
                        action.name()
                    ),
                );
            }
            Some((_, Entry::Repeat(first))) => {
                // The first always fills it, if only with why it ended unanswered (`Filling`).
                let mut answer = first.subscribe();
                let mut result = match answer.wait_for(Option::is_some).await {
                    Ok(first) => first.clone().expect("waited for a result"),
                    Err(_) => unreachable!("this repeat holds a sender"),
                };
                result.outcome = Outcome::Repeat;
                return result;
            }
            Some((key, Entry::New(first))) => Some(Filling {
                repeats: &self.repeats,
                key,
                first,
                abandoned: Some(refuse(
                    503,
                    Outcome::Unavailable,
                    "the first command with this id ended before the engine answered (its caller \
                     went away, or the daemon is shutting down); send it again"
                        .into(),
                )),
            }),
        };
        let kill_switch = matches!(action, Action::Halt | Action::Resume);
        if !kill_switch
            && self
                .limiter
                .check_key(&caller.subject().to_owned())
                .is_err()
        {
            self.trim_limiter();
            let result = refuse(
                429,
                Outcome::RateLimited,
                format!(
                    "rate limit: at most {} commands a minute (burst {}) per token subject; retry later",
                    config.commands.per_minute, config.commands.burst
                ),
            );
            if let Some(first) = first {
                // A repeat already waiting gets this answer; a later one is sent afresh.
                first.fill(&result, false);
            }
            return result;
        }
        self.trim_limiter();
        let deadline = Duration::from_millis(config.commands.timeout_ms);
        let send = || async {
            let _one_at_a_time = match kill_switch {
                true => Some(self.kill_switch.lock().await),
                false => None,
            };
            let result =
                CommandResult::answered(id.clone(), action, engine.act(action, deadline).await);
            if result.ok && kill_switch {
                self.hub.request_refresh();
            }
            result
        };
        let result = send().await;
        if let Some(first) = first {
            first.fill(&result, true);
        }
        result
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

/// The first command with an `id`, until it has its result. Dropped before that (its caller
/// went away, or shutdown cancelled it), it gives the repeats waiting for it a refusal and is
/// forgotten, so no repeat waits forever and the `id` may be sent again.
struct Filling<'a> {
    repeats: &'a Repeats<CommandResult>,
    key: repeats::Key,
    first: repeats::First<CommandResult>,
    /// What the waiting repeats get if this is dropped unfilled.
    abandoned: Option<CommandResult>,
}

impl Filling<'_> {
    /// Gives `result` to the repeats waiting, and remembers it for later ones if `remember`.
    fn fill(mut self, result: &CommandResult, remember: bool) {
        self.abandoned = None;
        self.first.send_replace(Some(result.clone()));
        if !remember {
            self.repeats.forget(&self.key, &self.first);
        }
    }
}

impl Drop for Filling<'_> {
    fn drop(&mut self) {
        if let Some(refusal) = self.abandoned.take() {
            self.first.send_replace(Some(refusal));
            self.repeats.forget(&self.key, &self.first);
        }
    }
}

/// The `action` label of a command named `named`: `unknown` for a name the engine has not, so
/// clients cannot make up labels.
fn label(named: &str) -> &'static str {
    if named.len() > MAX_ACTION_BYTES {
        return "unknown";
    }
    Action::parse(named).map_or("unknown", Action::name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_command_dropped_unanswered_answers_its_repeats_and_is_forgotten() {
        let repeats = Repeats::<CommandResult>::default();
        let key = ("ann".to_owned(), "c-1".to_owned());
        let minute = Duration::from_secs(60);
        let Entry::New(first) = repeats.enter(key.clone(), "halt", minute) else {
            panic!("a new id")
        };
        let Entry::Repeat(waiting) = repeats.enter(key.clone(), "halt", minute) else {
            panic!("a repeat")
        };
        let refusal =
            CommandResult::refused(None, "halt", 503, Outcome::Unavailable, "gone".into());
        drop(Filling {
            repeats: &repeats,
            key: key.clone(),
            first,
            abandoned: Some(refusal.clone()),
        });
        assert_eq!(*waiting.borrow(), Some(refusal));
        assert!(matches!(repeats.enter(key, "halt", minute), Entry::New(_)));
    }
}
