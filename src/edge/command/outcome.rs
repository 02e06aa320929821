//! How a command ended, as one closed set: the `outcome` label of
//! `bff_commands_total{action, outcome}` and of the `Command` log line (`docs/PROTOCOL.md`
//! §10.4–§10.6). The names are written here once.

/// How one command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The engine did it.
    Ok,
    /// The engine answered 2xx without `"success": true`.
    EngineRefused,
    /// The engine answered an error status.
    EngineError,
    /// The engine did not answer within `commands.timeout_ms`.
    Timeout,
    /// The engine could not be reached, or its answer could not be read.
    Unreachable,
    /// No token, a refused token, or an expired one.
    Unauthorized,
    /// The token (or the caller, without one) may not send this action.
    Forbidden,
    /// Beyond the subject's `commands.per_minute`.
    RateLimited,
    /// An action bff does not know, or one turned off.
    UnknownAction,
    /// An action name or `id` longer than the daemon reads.
    Invalid,
    /// The `id` was used for another action within the repeat window.
    IdConflict,
    /// A repeat of an `id` within the repeat window: answered with the first one's result.
    Repeat,
    /// `commands.max_in_flight` already waiting on this connection.
    Busy,
    /// Commands cannot be taken here, or the first with this `id` ended unanswered.
    Unavailable,
    /// Still waiting when the daemon shut down.
    Shutdown,
}

impl Outcome {
    /// Every outcome, for the tests that check each is listed and documented.
    #[cfg(test)]
    pub const ALL: [Outcome; 15] = [
        Outcome::Ok,
        Outcome::EngineRefused,
        Outcome::EngineError,
        Outcome::Timeout,
        Outcome::Unreachable,
        Outcome::Unauthorized,
        Outcome::Forbidden,
        Outcome::RateLimited,
        Outcome::UnknownAction,
        Outcome::Invalid,
        Outcome::IdConflict,
        Outcome::Repeat,
        Outcome::Busy,
        Outcome::Unavailable,
        Outcome::Shutdown,
    ];

    /// The label in the metrics and the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::EngineRefused => "engine_refused",
            Outcome::EngineError => "engine_error",
            Outcome::Timeout => "timeout",
            Outcome::Unreachable => "unreachable",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Forbidden => "forbidden",
            Outcome::RateLimited => "rate_limited",
            Outcome::UnknownAction => "unknown_action",
            Outcome::Invalid => "invalid",
            Outcome::IdConflict => "id_conflict",
            Outcome::Repeat => "repeat",
            Outcome::Busy => "busy",
            Outcome::Unavailable => "unavailable",
            Outcome::Shutdown => "shutdown",
        }
    }

    /// Whether the daemon refused the command itself (its log lines are limited); commands that
    /// reached the engine, or repeated one that did, are not refusals.
    pub fn is_refusal(self) -> bool {
        match self {
            Outcome::Invalid
            | Outcome::UnknownAction
            | Outcome::Unauthorized
            | Outcome::Forbidden
            | Outcome::RateLimited
            | Outcome::IdConflict
            | Outcome::Busy
            | Outcome::Unavailable => true,
            Outcome::Ok
            | Outcome::EngineRefused
            | Outcome::EngineError
            | Outcome::Timeout
            | Outcome::Unreachable
            | Outcome::Repeat
            | Outcome::Shutdown => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_is_listed_once_in_all() {
        for (at, outcome) in Outcome::ALL.into_iter().enumerate() {
            // Fails to compile when an outcome is added: then add it here and to `ALL`.
            let place = match outcome {
                Outcome::Ok => 0,
                Outcome::EngineRefused => 1,
                Outcome::EngineError => 2,
                Outcome::Timeout => 3,
                Outcome::Unreachable => 4,
                Outcome::Unauthorized => 5,
                Outcome::Forbidden => 6,
                Outcome::RateLimited => 7,
                Outcome::UnknownAction => 8,
                Outcome::Invalid => 9,
                Outcome::IdConflict => 10,
                Outcome::Repeat => 11,
                Outcome::Busy => 12,
                Outcome::Unavailable => 13,
                Outcome::Shutdown => 14,
            };
            assert_eq!(place, at, "{outcome:?} out of place in ALL");
        }
    }

    #[test]
    fn every_outcome_is_named_in_the_protocol() {
        let protocol =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md"))
                .unwrap();
        for outcome in Outcome::ALL {
            let named = format!("`{}`", outcome.as_str());
            assert!(protocol.contains(&named), "docs/PROTOCOL.md lacks {named}");
        }
    }
}
