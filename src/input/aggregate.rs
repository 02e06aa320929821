//! Builds one packet from the last answer of each source: fresh values where the fetch worked,
//! the last good value where it did not, and `sources` saying which is which.
//!
//! Pure: [`build`] is a function of the [`Inputs`] and the poll time it is handed.

use chrono::{DateTime, Utc};

use super::normalize::EngineState;
use crate::hub::packet::{
    Agents, Models, MoodNow, SourceHealth, Sources, StateSections, Telemetry, Timestamp,
};

/// What one source last gave: its last good value, when that arrived, and its last failure.
#[derive(Debug, Clone)]
pub struct Source<T> {
    /// The last good value, kept while the source fails.
    pub value: Option<T>,
    /// When `value` arrived.
    pub updated: Option<DateTime<Utc>>,
    /// Why the latest fetch failed; `None` after a success.
    pub error: Option<String>,
}

impl<T> Default for Source<T> {
    fn default() -> Self {
        Self {
            value: None,
            updated: None,
            error: None,
        }
    }
}

/// A change in a source's health, so the poller logs once per transition rather than per tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Same health as before.
    None,
    /// It was fine (or new) and now fails.
    Failed,
    /// It failed and now answers again.
    Recovered,
}

impl<T> Source<T> {
    /// Records one fetch outcome at `at`; a failure keeps the last good value.
    pub fn record<E: ToString>(&mut self, outcome: Result<T, E>, at: DateTime<Utc>) -> Change {
        let was_failing = self.error.is_some();
        match outcome {
            Ok(value) => {
                self.value = Some(value);
                self.updated = Some(at);
                self.error = None;
                if was_failing {
                    Change::Recovered
                } else {
                    Change::None
                }
            }
            Err(err) => {
                self.error = Some(err.to_string());
                if was_failing {
                    Change::None
                } else {
                    Change::Failed
                }
            }
        }
    }

    /// The source's freshness as of `now`.
    pub fn health(&self, now: DateTime<Utc>) -> SourceHealth {
        let updated = self.updated.map(Timestamp);
        SourceHealth {
            ok: self.error.is_none() && updated.is_some(),
            updated,
            age_ms: updated.map(|t| t.age_ms(now)),
            error: self.error.clone(),
        }
    }
}

/// The three sources, each with its last good value.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The state endpoint's last answer.
    pub state: Source<EngineState>,
    /// The agent-metrics endpoint's last answer.
    pub agents: Source<Agents>,
    /// The model-metrics endpoint's last answer.
    pub models: Source<Models>,
}

impl Inputs {
    /// Every source's freshness as of `now`.
    pub fn sources(&self, now: DateTime<Utc>) -> Sources {
        Sources {
            state: self.state.health(now),
            agents: self.agents.health(now),
            models: self.models.health(now),
            redis: None,
        }
    }
}

/// The packet for poll time `now`, keeping the newest `max_logs` log entries.
pub fn build(inputs: &Inputs, now: DateTime<Utc>, max_logs: usize) -> Telemetry {
    let (timestamp, mut state) = match &inputs.state.value {
        Some(engine) => (engine.timestamp, engine.sections.clone()),
        None => (None, StateSections::default()),
    };
    let first_kept = state.logs.len().saturating_sub(max_logs);
    state.logs.drain(..first_kept);
    Telemetry {
        timestamp: timestamp.unwrap_or(Timestamp(now)),
        state,
        agents: inputs.agents.value.clone().unwrap_or_default(),
        models: inputs.models.value.clone().unwrap_or_default(),
        sources: inputs.sources(now),
        // The assembler's mood and alerts replace these (`super::mood`).
        mood: MoodNow::neutral(Timestamp(now)),
        alerts: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::packet::{Level, LogEntry, Status};

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_766_318_400_000 + ms).unwrap()
    }

    #[test]
    fn failure_keeps_last_good_value_and_reports_transitions_once() {
        let mut src = Source::<u32>::default();
        assert_eq!(src.record(Ok::<_, String>(7), at(0)), Change::None);
        assert_eq!(
            src.record(Err::<u32, _>("timed out"), at(1000)),
            Change::Failed
        );
        assert_eq!(
            src.record(Err::<u32, _>("timed out"), at(2000)),
            Change::None
        );
        assert_eq!(src.value, Some(7));
        let h = src.health(at(2500));
        assert_eq!(
            (h.ok, h.age_ms, h.error.as_deref()),
            (false, Some(2500), Some("timed out"))
        );
        assert_eq!(src.record(Ok::<_, String>(8), at(3000)), Change::Recovered);
        assert!(src.health(at(3000)).ok);
    }

    #[test]
    fn a_new_source_that_fails_reports_it() {
        let mut src = Source::<u32>::default();
        assert_eq!(src.record(Err::<u32, _>("refused"), at(0)), Change::Failed);
        let h = src.health(at(0));
        assert_eq!((h.ok, h.updated, h.age_ms), (false, None, None));
    }

    #[test]
    fn logs_keep_the_newest() {
        let mut inputs = Inputs::default();
        let logs = (0..5)
            .map(|i| LogEntry {
                level: Level::Info,
                message: i.to_string(),
                timestamp: None,
            })
            .collect();
        inputs.state.record(
            Ok::<_, String>(EngineState {
                timestamp: None,
                sections: StateSections {
                    logs,
                    ..Default::default()
                },
            }),
            at(0),
        );
        let packet = build(&inputs, at(0), 2);
        let kept: Vec<_> = packet
            .state
            .logs
            .iter()
            .map(|l| l.message.as_str())
            .collect();
        assert_eq!(kept, ["3", "4"]);
    }

    #[test]
    fn nothing_yet_is_initializing_at_poll_time() {
        let packet = build(&Inputs::default(), at(500), 50);
        assert_eq!(packet.state.status, Status::Initializing);
        assert_eq!(packet.timestamp, Timestamp(at(500)));
        assert!(!packet.sources.state.ok);
        // The daemon's first snapshot, before any poll, is this same packet.
        assert_eq!(packet, Telemetry::initializing(at(500)));
    }
}
