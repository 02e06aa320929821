//! How every command and script is sent: bounded in time, with what failed said in words.

use std::time::Duration;

use tokio::time::timeout;

/// Time one command or script may take.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);

/// Why a command did not get an answer.
pub type Failed = String;

pub(super) async fn bounded<T>(
    what: &str,
    command: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, Failed> {
    match timeout(COMMAND_TIMEOUT, command).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(err)) => Err(format!("{what}: {err}")),
        Err(_) => Err(format!(
            "{what}: no answer within {} ms",
            COMMAND_TIMEOUT.as_millis()
        )),
    }
}
