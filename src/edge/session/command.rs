//! A session's commands: each starts in a task of the command service, apart from the
//! session's loop, which writes its COMMAND_RESULT when it comes.

use tokio::io::AsyncRead;
use tokio::sync::mpsc;

use super::Session;
use crate::edge::command::CommandResult;
use crate::edge::ending::Ending;
use crate::edge::outlet::Outbox;

impl<R, W> Session<R, W>
where
    R: AsyncRead + Unpin,
    W: Outbox,
{
    /// Starts one command apart from this loop, or answers at once when it cannot start.
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
                "unavailable",
                "commands are not available on this connection".into(),
            );
            return self.send_result(&result).await;
        };
        let max = self.config.commands.max_in_flight;
        if self.in_flight >= max {
            let result = CommandResult::refused(
                id,
                &action,
                429,
                "busy",
                format!(
                    "{} commands are already waiting for the engine on this connection",
                    self.in_flight
                ),
            );
            commands.count(&result);
            return self.send_result(&result).await;
        }
        self.in_flight += 1;
        let (results, _) = self.results.get_or_insert_with(|| mpsc::channel(max));
        commands.start(caller.clone(), action, id, results.clone());
        Ok(())
    }

    /// Writes one COMMAND_RESULT.
    pub(super) async fn send_result(&mut self, result: &CommandResult) -> Result<(), Ending> {
        self.send_json(result).await
    }
}
