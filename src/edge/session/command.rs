//! A session's commands: queued in order for one task of the command service, apart from the
//! session's loop, which writes each COMMAND_RESULT when it comes. The queue holds at most
//! `commands.max_in_flight`; past that a command is answered `busy` at once.

use std::time::Duration;

use tokio::io::AsyncRead;
use tokio::sync::mpsc;

use super::Session;
use crate::edge::command::{CommandResult, Outcome, Queued};
use crate::edge::connection::ending::Ending;
use crate::edge::connection::outbox::Outbox;

/// A connection's command queue and the results coming back from it. Made at its first
/// command: most connections never send one, and the two channels cost a few KB.
pub(super) struct Pending {
    queue: mpsc::Sender<Queued>,
    pub(super) results: mpsc::Receiver<CommandResult>,
}

impl<R, W> Session<R, W>
where
    R: AsyncRead + Unpin,
    W: Outbox,
{
    /// Queues one command behind this connection's earlier ones, or answers at once when it
    /// cannot be queued.
    pub(super) async fn command(
        &mut self,
        action: String,
        id: Option<String>,
    ) -> Result<(), Ending> {
        self.recheck_if_reloaded()?;
        let Some((commands, caller)) = &self.commands else {
            let result = CommandResult::refused(
                id,
                &action,
                503,
                Outcome::Unavailable,
                "commands are not available on this connection".into(),
            );
            return self.send_result(&result).await;
        };
        let max = self.config.commands.max_in_flight;
        let pending = self.pending.get_or_insert_with(|| {
            let (results_tx, results) = mpsc::channel(max);
            let queue = commands.queue(caller.clone(), max, results_tx);
            Box::new(Pending { queue, results })
        });
        // Counted up to the result, not only while queued: the results channel holds as many.
        let refusal = if self.in_flight >= max {
            Some((
                Outcome::Busy,
                format!(
                    "{} commands are already waiting for the engine on this connection",
                    self.in_flight
                ),
            ))
        } else {
            match pending.queue.try_send((action.clone(), id.clone())) {
                Ok(()) => None,
                Err(_) => Some((Outcome::Shutdown, "the daemon is shutting down".into())),
            }
        };
        let Some((outcome, why)) = refusal else {
            self.in_flight += 1;
            return Ok(());
        };
        let status = if outcome == Outcome::Busy { 429 } else { 503 };
        let result = CommandResult::refused(id, &action, status, outcome, why);
        commands.record(caller, &result, Duration::ZERO);
        self.send_result(&result).await
    }

    /// Writes one COMMAND_RESULT.
    pub(super) async fn send_result(&mut self, result: &CommandResult) -> Result<(), Ending> {
        self.send_json(result).await
    }
}

/// The next command result, once there is a channel for them; until then, never.
pub(super) async fn next_result(pending: &mut Option<Box<Pending>>) -> Option<CommandResult> {
    match pending {
        Some(pending) => pending.results.recv().await,
        None => std::future::pending().await,
    }
}
