//! The `Command` log line (`docs/PROTOCOL.md` §6), and the limit on those of refused commands
//! (the server limits its refused connections' lines with the same [`Throttle`]):
//! anyone can send refusals as fast as the message rate allows, so past [`REFUSALS_LOGGED`] in
//! an [`INTERVAL`] they are counted (and in the metrics as always) but not logged, and the next
//! interval starts with one line saying how many were left out.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{Caller, CommandResult};
use crate::engine::action::Action;

/// The target of these lines: the command service's, as filters (`RUST_LOG`) name it.
const TARGET: &str = "bff::edge::command";

/// The stretch over which refusals are logged up to [`REFUSALS_LOGGED`].
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Refused commands logged in full per [`INTERVAL`].
pub const REFUSALS_LOGGED: u32 = 10;

/// Whether a refused command's line is written.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Write it, after a summary of the lines left out before it when `left_out` is above 0.
    Log {
        /// Refusals left out of the log since the last line written.
        left_out: u64,
    },
    /// Leave it out (it is counted for the next summary).
    Hold,
}

/// Counts refusals per interval; pure, the clock is passed in.
#[derive(Debug, Default)]
pub struct Throttle {
    /// When the current interval began; `None` before the first refusal.
    since: Option<Instant>,
    logged: u32,
    left_out: u64,
}

impl Throttle {
    /// Decides on one refusal at `now`.
    pub fn admit(&mut self, now: Instant) -> Verdict {
        match self.since {
            Some(since) if now.duration_since(since) < INTERVAL => {
                if self.logged < REFUSALS_LOGGED {
                    self.logged += 1;
                    Verdict::Log { left_out: 0 }
                } else {
                    self.left_out += 1;
                    Verdict::Hold
                }
            }
            _ => {
                let left_out = std::mem::take(&mut self.left_out);
                self.since = Some(now);
                self.logged = 1;
                Verdict::Log { left_out }
            }
        }
    }
}

/// Writes the `Command` line of `result`, unless it is a refusal beyond the limit. The mutex
/// is held only to count.
pub fn command(
    throttle: &Mutex<Throttle>,
    caller: &Caller,
    result: &CommandResult,
    took: Duration,
) {
    // Commands that reached the engine (or repeated one that did) are always logged.
    if result.outcome.is_refusal() {
        let verdict = throttle
            .lock()
            .expect("command log throttle poisoned")
            .admit(Instant::now());
        match verdict {
            Verdict::Hold => return,
            Verdict::Log { left_out: 0 } => {}
            Verdict::Log { left_out } => warn!(
                target: TARGET,
                left_out,
                interval_s = INTERVAL.as_secs(),
                "Refused commands beyond {REFUSALS_LOGGED} an interval were not logged (bff_commands_total counts them all)"
            ),
        }
    }
    let label = Action::parse(&result.action).map_or("unknown", Action::name);
    info!(
        target: TARGET,
        subject = caller.subject(),
        action = label,
        id = result.id.as_deref().unwrap_or_default(),
        peer = %caller.peer,
        outcome = result.outcome.as_str(),
        status = result.status,
        duration_ms = took.as_millis() as u64,
        error = result.error.as_deref().unwrap_or_default(),
        "Command"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_beyond_the_limit_are_held_and_summed_up_once_in_the_next_interval() {
        let mut throttle = Throttle::default();
        let start = Instant::now();
        for _ in 0..REFUSALS_LOGGED {
            assert_eq!(throttle.admit(start), Verdict::Log { left_out: 0 });
        }
        for _ in 0..25 {
            assert_eq!(throttle.admit(start + INTERVAL / 2), Verdict::Hold);
        }
        // The next interval starts with the one summary, then logs again.
        let next = start + INTERVAL;
        assert_eq!(throttle.admit(next), Verdict::Log { left_out: 25 });
        assert_eq!(throttle.admit(next), Verdict::Log { left_out: 0 });
        // A quiet interval has nothing to sum up.
        assert_eq!(
            throttle.admit(next + INTERVAL * 3),
            Verdict::Log { left_out: 0 }
        );
    }
}
