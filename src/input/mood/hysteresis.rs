//! The mood a wall screen shows: a reading becomes the mood only after it has held for
//! `regime.min_dwell_ms`, so a price wobbling at a threshold never flaps it.

use super::{MoodChange, MoodNow, Persona, Regime};
use crate::config::RegimeConfig;
use crate::hub::packet::{Market, Timestamp};
use chrono::{DateTime, Utc};

/// Feeds on one reading per packet and holds the announced mood.
#[derive(Debug, Clone)]
pub struct Mood {
    config: RegimeConfig,
    current: Option<MoodNow>,
    /// A reading different from the mood, and when it started; a break starts it again.
    pending: Option<(Regime, DateTime<Utc>)>,
}

impl Mood {
    /// No mood until the first reading; then `neutral` until another has held long enough.
    pub fn new(config: &RegimeConfig) -> Self {
        Self {
            config: config.clone(),
            current: None,
            pending: None,
        }
    }

    /// Carries on from `current`, the mood of the last packet another daemon published (a
    /// failover), in this daemon's words: nothing is announced again.
    pub fn seeded(config: &RegimeConfig, current: &MoodNow) -> Self {
        Self {
            config: config.clone(),
            current: Some(describe(config, current.regime, current.since)),
            pending: None,
        }
    }

    /// The settings from a reload: the words change the mood shown at once (not announced,
    /// the regime is the same); the thresholds and dwell apply from the next reading.
    pub fn reconfigure(&mut self, config: &RegimeConfig) {
        self.config = config.clone();
        if let Some(current) = &mut self.current {
            *current = describe(&self.config, current.regime, current.since);
        }
    }

    /// The mood announced so far; `None` before the first reading.
    pub fn current(&self) -> Option<&MoodNow> {
        self.current.as_ref()
    }

    /// Takes the reading of the packet polled at `now` (`None`: stale, which holds the mood and
    /// drops any pending change, so only fresh readings count toward the dwell). Returns the
    /// change when this reading completes one.
    pub fn observe(
        &mut self,
        reading: Option<Regime>,
        market: &Market,
        now: DateTime<Utc>,
    ) -> Option<MoodChange> {
        let current = self
            .current
            .get_or_insert_with(|| describe(&self.config, Regime::Neutral, Timestamp(now)));
        let Some(reading) = reading else {
            self.pending = None;
            return None;
        };
        if reading == current.regime {
            self.pending = None;
            return None;
        }
        let started = match self.pending {
            Some((pending, started)) if pending == reading => started,
            _ => now,
        };
        let held = (now - started).num_milliseconds().max(0) as u64;
        if held < self.config.min_dwell_ms {
            self.pending = Some((reading, started));
            return None;
        }
        self.pending = None;
        let previous = current.regime;
        *current = describe(&self.config, reading, Timestamp(started));
        Some(MoodChange {
            mood: current.clone(),
            previous,
            market: market.clone(),
        })
    }
}

/// `regime` in the configured words.
fn describe(config: &RegimeConfig, regime: Regime, since: Timestamp) -> MoodNow {
    let (label, name, headline) = match regime {
        Regime::Crash => (
            &config.crash_label,
            &config.crash_persona,
            &config.crash_headline,
        ),
        Regime::Bull => (
            &config.bull_label,
            &config.bull_persona,
            &config.bull_headline,
        ),
        Regime::Neutral => (
            &config.neutral_label,
            &config.neutral_persona,
            &config.neutral_headline,
        ),
    };
    MoodNow {
        regime,
        label: label.clone(),
        persona: Persona {
            name: name.clone(),
            headline: headline.clone(),
        },
        since,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_766_318_400_000 + ms).unwrap()
    }

    #[test]
    fn a_change_is_announced_once_after_the_dwell_with_the_wire_shape() {
        let mut mood = Mood::new(&RegimeConfig::default());
        let m = Market::default();
        assert_eq!(mood.observe(Some(Regime::Neutral), &m, at(0)), None);
        for t in [1000, 2000, 3000] {
            assert_eq!(mood.observe(Some(Regime::Crash), &m, at(t)), None, "at {t}");
        }
        let change = mood.observe(Some(Regime::Crash), &m, at(4000)).unwrap();
        assert_eq!(
            serde_json::to_value(&change).unwrap(),
            json!({
                "regime": "crash",
                "label": "Crash/Panic",
                "persona": {"name": "Big Pickle", "headline": "SELL EVERYTHING"},
                "since": "2025-12-21T12:00:01.000Z",
                "previous": "neutral",
                "market": {"symbol": null, "price": null, "alpha": null, "regime": null, "velocity": null, "acceleration": null},
            })
        );
        assert_eq!(mood.observe(Some(Regime::Crash), &m, at(5000)), None);
        assert_eq!(mood.current().unwrap().regime, Regime::Crash);
    }

    #[test]
    fn a_seeded_mood_holds_and_announces_only_a_change() {
        let config = RegimeConfig::default();
        let mut first = Mood::new(&config);
        let m = Market::default();
        first.observe(Some(Regime::Crash), &m, at(0));
        for t in [1000, 2000, 3000] {
            first.observe(Some(Regime::Crash), &m, at(t));
        }
        let crash = first.current().unwrap().clone();
        assert_eq!(crash.regime, Regime::Crash);
        let mut seeded = Mood::seeded(&config, &crash);
        let mut fresh = Mood::new(&config);
        let (mut from_seeded, mut from_fresh) = (Vec::new(), Vec::new());
        for t in [4000, 5000, 6000, 7000, 8000] {
            from_seeded.extend(seeded.observe(Some(Regime::Crash), &m, at(t)));
            from_fresh.extend(fresh.observe(Some(Regime::Crash), &m, at(t)));
        }
        assert_eq!(from_seeded, [], "the crash is not announced again");
        assert_eq!(from_fresh.len(), 1, "a fresh one would announce it again");
        assert_eq!(seeded.current(), Some(&crash), "since kept");
    }

    #[test]
    fn a_zero_dwell_announces_at_once_and_a_reload_renames_without_announcing() {
        let mut config = RegimeConfig {
            min_dwell_ms: 0,
            ..Default::default()
        };
        let mut mood = Mood::new(&config);
        let m = Market::default();
        let change = mood.observe(Some(Regime::Bull), &m, at(0)).unwrap();
        assert_eq!(
            (change.previous, change.mood.label.as_str()),
            (Regime::Neutral, "Bull/Euphoria")
        );
        config.bull_headline = "HODL".into();
        mood.reconfigure(&config);
        assert_eq!(mood.current().unwrap().persona.headline, "HODL");
        assert_eq!(mood.current().unwrap().since, Timestamp(at(0)));
    }
}
