//! The engine's actions: a POST each (`/api/actions/halt`, …), answered with
//! `{"success": bool, "message": "..."}`. Only the actions named here exist; a name a client
//! makes up is never turned into a request.

use std::time::Duration;

use serde_json::Value;

use super::{Engine, FetchError, read_capped, root_cause};
use crate::config::EngineConfig;

/// The largest answer read from an action; it is a short JSON object.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// One of the engine's actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Stop trading.
    Halt,
    /// Trade again after a halt.
    Resume,
    /// Rebalance the portfolio now.
    Rebalance,
    /// Write the engine's logs out.
    ExportLogs,
}

impl Action {
    /// Every action, in the order of the config keys.
    pub const ALL: [Action; 4] = [
        Action::Halt,
        Action::Resume,
        Action::Rebalance,
        Action::ExportLogs,
    ];

    /// The name clients use, in token claims and on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Action::Halt => "halt",
            Action::Resume => "resume",
            Action::Rebalance => "rebalance",
            Action::ExportLogs => "export-logs",
        }
    }

    /// The `[engine]` key that holds its path.
    pub fn key(self) -> &'static str {
        match self {
            Action::ExportLogs => "export_logs",
            other => other.name(),
        }
    }

    /// The action a client named, in any case (`export_logs` too); `None` for any other name.
    pub fn parse(name: &str) -> Option<Action> {
        let name = name.trim().to_ascii_lowercase().replace('_', "-");
        Action::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Its setting in `config`: a path, a URL, or empty when it is off.
    pub fn setting(self, config: &EngineConfig) -> &str {
        match self {
            Action::Halt => &config.halt,
            Action::Resume => &config.resume,
            Action::Rebalance => &config.rebalance,
            Action::ExportLogs => &config.export_logs,
        }
    }
}

/// What the engine answered to an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// `success` in the answer; false when the status is not 2xx or the answer does not say.
    pub success: bool,
    /// `message` in the answer, if any.
    pub message: Option<String>,
}

impl Engine {
    /// Whether `action` is on (its setting is not empty).
    pub fn offers(&self, action: Action) -> bool {
        self.actions[action as usize].is_some()
    }

    /// POSTs `action` and reads the answer, all within `deadline`. An error status is an
    /// [`Answer`] (the engine answered); an engine that cannot be reached, does not answer in
    /// time or answers a 2xx that is not JSON is an error.
    pub async fn act(&self, action: Action, deadline: Duration) -> Result<Answer, FetchError> {
        let Some(url) = &self.actions[action as usize] else {
            return Err(FetchError::Request(format!(
                "the {} action is off (engine.{} is empty)",
                action.name(),
                action.key()
            )));
        };
        let request = async {
            let mut response = self
                .client
                .post(url.clone())
                .send()
                .await
                .map_err(|e| FetchError::Request(root_cause(&e)))?;
            let status = response.status();
            let body = read_capped(&mut response, MAX_ANSWER_BYTES).await?;
            let answer = match serde_json::from_slice::<Value>(&body) {
                Ok(answer) => answer,
                Err(err) if status.is_success() => return Err(FetchError::Json(err.to_string())),
                // An error status with a body that is not JSON (a proxy's HTML page): the
                // status says enough.
                Err(_) => Value::Null,
            };
            Ok(Answer {
                status: status.as_u16(),
                success: status.is_success() && answer["success"] == true,
                message: answer["message"].as_str().map(str::to_owned),
            })
        };
        tokio::time::timeout(deadline, request)
            .await
            .unwrap_or(Err(FetchError::Timeout(deadline.as_millis() as u64)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_four_actions_parse_in_any_case() {
        assert_eq!(Action::parse("HALT"), Some(Action::Halt));
        assert_eq!(Action::parse("export_logs"), Some(Action::ExportLogs));
        assert_eq!(Action::parse("Export-Logs"), Some(Action::ExportLogs));
        assert_eq!(Action::parse("liquidate"), None);
        assert_eq!(Action::parse(""), None);
        let names: Vec<_> = Action::ALL.iter().map(|a| a.name()).collect();
        assert_eq!(names, ["halt", "resume", "rebalance", "export-logs"]);
    }
}
