//! Alerts: conditions read from each packet, an event when one starts and one when it ends,
//! never one per tick. Holds the active alerts, which every WELCOME shows.
//!
//! Built in, in this order: `ENGINE_HALTED` (status `HALT`), `STALE_STATE`, `STALE_AGENTS`,
//! `STALE_MODELS` (an engine endpoint failing for `alerts.stale_after_ms`), `REDIS_LOST` (the
//! Redis subscription failing that long, when `redis.url` is set), `MARKET_CRASH` (the announced
//! mood is crash); then the `[[alerts.rules]]` in the file's order. A condition that cannot be
//! read (a `null` field, no mood yet) holds what was last decided. The caller logs and counts
//! the events; this module only decides them.

use super::{Alert, Regime};
use crate::config::{AlertLevel, AlertsConfig, BUILT_IN_ALERTS};
use crate::hub::packet::{SourceHealth, Status, Telemetry, Timestamp};
use chrono::{DateTime, Utc};

/// A packet field a rule reads.
type Read = fn(&Telemetry) -> Option<f64>;

/// The reader of a field of `config::ALERT_FIELDS`, by its path in `data`.
fn reader(field: &str) -> Option<Read> {
    Some(match field {
        "market.price" => |p| p.state.market.price,
        "market.alpha" => |p| p.state.market.alpha,
        "market.velocity" => |p| p.state.market.velocity,
        "market.acceleration" => |p| p.state.market.acceleration,
        "portfolio.nav" => |p| p.state.portfolio.nav,
        "portfolio.cash" => |p| p.state.portfolio.cash,
        "portfolio.daily_pnl" => |p| p.state.portfolio.daily_pnl,
        "portfolio.max_drawdown" => |p| p.state.portfolio.max_drawdown,
        "signal.confidence" => |p| p.state.signal.confidence,
        "governance.approved_size" => |p| p.state.governance.approved_size,
        _ => return None,
    })
}

/// A rule resolved once, so a tick reads a field without looking its name up.
#[derive(Debug, Clone)]
struct Rule {
    read: Read,
    below: Option<f64>,
    above: Option<f64>,
    level: AlertLevel,
    code: String,
    message: String,
}

/// A source watched for staleness: its name in `sources`, the alert it raises, how loud.
const SOURCES: [(&str, &str, AlertLevel); 4] = [
    ("state", "STALE_STATE", AlertLevel::Critical),
    ("agents", "STALE_AGENTS", AlertLevel::Warning),
    ("models", "STALE_MODELS", AlertLevel::Warning),
    ("redis", "REDIS_LOST", AlertLevel::Warning),
];

/// Feeds on one packet at a time and holds the active alerts.
#[derive(Debug, Clone)]
pub struct Alerts {
    stale_after_ms: u64,
    rules: Vec<Rule>,
    /// Since when each of [`SOURCES`] has been failing, in that order.
    failing_since: [Option<DateTime<Utc>>; 4],
    active: Vec<Alert>,
}

impl Alerts {
    /// The tracker for `config`, nothing active. Fails naming the first rule whose field no
    /// packet has (the config's validation refuses those first).
    pub fn new(config: &AlertsConfig) -> Result<Self, String> {
        let rules = config
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                let read = reader(&rule.field).ok_or_else(|| {
                    format!(
                        "alerts.rules[{i}].field: {:?} is not a packet field a rule can watch",
                        rule.field
                    )
                })?;
                Ok(Rule {
                    read,
                    below: rule.below,
                    above: rule.above,
                    level: rule.level,
                    code: rule.code.clone(),
                    message: rule.message.clone(),
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            stale_after_ms: config.stale_after_ms,
            rules,
            failing_since: [None; 4],
            active: Vec::new(),
        })
    }

    /// The tracker for `config` carrying on from `active`, the alerts of the last packet
    /// another daemon published (a failover), so none is raised again: a stale source's alert
    /// counts its source failing since it was raised, less `stale_after_ms`. An alert of a rule
    /// this daemon does not have is dropped: nothing here could clear it.
    pub fn seeded(config: &AlertsConfig, active: &[Alert]) -> Result<Self, String> {
        let mut alerts = Self::new(config)?;
        let stale_after = chrono::Duration::milliseconds(alerts.stale_after_ms as i64);
        for alert in active.iter().filter(|a| a.active) {
            let known = BUILT_IN_ALERTS.contains(&alert.code.as_str())
                || alerts.rules.iter().any(|rule| rule.code == alert.code);
            if !known || alerts.active.iter().any(|a| a.code == alert.code) {
                continue;
            }
            if let Some(i) = SOURCES.iter().position(|(_, code, _)| *code == alert.code) {
                alerts.failing_since[i] = Some(alert.timestamp.0 - stale_after);
            }
            alerts.active.push(alert.clone());
        }
        Ok(alerts)
    }

    /// The settings from a reload: the new rules and staleness apply from the next packet. An
    /// active rule's alert is kept when a rule of the same code remains (the next packet
    /// decides it by the new bound) and cleared at `now` otherwise: the cleared events.
    pub fn reconfigure(
        &mut self,
        config: &AlertsConfig,
        now: DateTime<Utc>,
    ) -> Result<Vec<Alert>, String> {
        let next = Self::new(config)?;
        let kept = |code: &str| {
            BUILT_IN_ALERTS.contains(&code) || next.rules.iter().any(|rule| rule.code == code)
        };
        let (active, gone): (Vec<Alert>, Vec<Alert>) =
            self.active.drain(..).partition(|alert| kept(&alert.code));
        self.active = active;
        self.stale_after_ms = next.stale_after_ms;
        self.rules = next.rules;
        Ok(gone
            .into_iter()
            .map(|alert| Alert {
                timestamp: Timestamp(now),
                active: false,
                ..alert
            })
            .collect())
    }

    /// The active alerts, oldest first: `data.alerts`.
    pub fn active(&self) -> &[Alert] {
        &self.active
    }

    /// Reads `packet`, polled at `now`, with the announced `mood` (`None` before the first):
    /// the alerts raised and cleared by it, in the order of the module's list.
    pub fn observe(
        &mut self,
        packet: &Telemetry,
        mood: Option<Regime>,
        cluster_lost: Option<bool>,
        now: DateTime<Utc>,
    ) -> Vec<Alert> {
        let mut events = Vec::new();
        let halted = packet.state.status == Status::Halt;
        self.decide(
            "ENGINE_HALTED",
            AlertLevel::Critical,
            "The engine halted trading",
            Some(halted),
            now,
            &mut events,
        );
        let sources = &packet.sources;
        let health: [Option<&SourceHealth>; 4] = [
            Some(&sources.state),
            Some(&sources.agents),
            Some(&sources.models),
            sources.redis.as_ref(),
        ];
        for (i, (name, code, level)) in SOURCES.iter().enumerate() {
            let stale = match health[i] {
                Some(health) if !health.ok => {
                    let since = *self.failing_since[i].get_or_insert(now);
                    (now - since).num_milliseconds() >= self.stale_after_ms as i64
                }
                _ => {
                    self.failing_since[i] = None;
                    false
                }
            };
            let secs = self.stale_after_ms as f64 / 1000.0;
            let message = if *name == "redis" {
                format!("Redis lost for over {secs} s")
            } else {
                format!("The engine's {name} endpoint has failed for over {secs} s")
            };
            self.decide(code, *level, &message, Some(stale), now, &mut events);
        }
        self.decide(
            "CLUSTER_LOST",
            AlertLevel::Warning,
            "The cluster's Redis is lost: each daemon polls the engine alone",
            cluster_lost,
            now,
            &mut events,
        );
        self.decide(
            "MARKET_CRASH",
            AlertLevel::Critical,
            "The market turned to crash",
            mood.map(|m| m == Regime::Crash),
            now,
            &mut events,
        );
        for i in 0..self.rules.len() {
            let rule = &self.rules[i];
            let past = (rule.read)(packet).map(|value| {
                rule.below.is_some_and(|b| value < b) || rule.above.is_some_and(|a| value > a)
            });
            let (code, level, message) = (rule.code.clone(), rule.level, rule.message.clone());
            self.decide(&code, level, &message, past, now, &mut events);
        }
        events
    }

    /// Raises `code` when `holds` and it is not active, clears it when it no longer holds;
    /// `None` (unknown) changes nothing.
    fn decide(
        &mut self,
        code: &str,
        level: AlertLevel,
        message: &str,
        holds: Option<bool>,
        now: DateTime<Utc>,
        events: &mut Vec<Alert>,
    ) {
        let position = self.active.iter().position(|a| a.code == code);
        let event = match (holds, position) {
            (Some(true), None) => {
                let alert = Alert {
                    level,
                    code: code.to_owned(),
                    message: message.to_owned(),
                    timestamp: Timestamp(now),
                    active: true,
                };
                self.active.push(alert.clone());
                alert
            }
            (Some(false), Some(i)) => {
                let raised = self.active.remove(i);
                Alert {
                    timestamp: Timestamp(now),
                    active: false,
                    ..raised
                }
            }
            _ => return,
        };
        events.push(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ALERT_FIELDS;

    #[test]
    fn every_field_a_rule_may_name_has_a_reader() {
        for field in ALERT_FIELDS {
            assert!(reader(field).is_some(), "{field}");
        }
        assert!(reader("portfolio.drawdown").is_none());
    }

    /// A daemon taking over carries on from the last packet: nothing active is raised again,
    /// a source still failing stays stale, and what ended clears once.
    #[test]
    fn a_seeded_tracker_carries_on_without_raising_again() {
        let config: AlertsConfig = toml::from_str(
            "stale_after_ms = 10000\n[[rules]]\nfield = \"portfolio.nav\"\nbelow = 10.0\nlevel = \"info\"\ncode = \"POOR\"\nmessage = \"m\"\n",
        )
        .unwrap();
        let t0 = chrono::DateTime::from_timestamp_millis(1_766_318_400_000).unwrap();
        let mut first = Alerts::new(&config).unwrap();
        let mut packet = Telemetry::initializing(t0);
        packet.state.status = Status::Halt;
        packet.state.portfolio.nav = Some(5.0);
        first.observe(&packet, None, None, t0);
        let later = t0 + chrono::Duration::seconds(11);
        let raised = first.observe(&packet, None, None, later);
        assert_eq!(
            raised.iter().map(|a| a.code.as_str()).collect::<Vec<_>>(),
            ["STALE_STATE", "STALE_AGENTS", "STALE_MODELS"]
        );
        let mut unknown = first.active()[0].clone();
        unknown.code = "GONE_RULE".into();
        let mut last = first.active().to_vec();
        last.push(unknown);

        let mut seeded = Alerts::seeded(&config, &last).unwrap();
        assert_eq!(seeded.active(), first.active(), "the unknown code dropped");
        let next = later + chrono::Duration::seconds(1);
        assert_eq!(
            seeded.observe(&packet, None, None, next),
            [],
            "nothing raised again"
        );
        let anew: Vec<_> = Alerts::new(&config)
            .unwrap()
            .observe(&packet, None, None, next);
        let anew: Vec<_> = anew.iter().map(|a| a.code.as_str()).collect();
        assert_eq!(
            anew,
            ["ENGINE_HALTED", "POOR"],
            "a fresh tracker would raise again"
        );
        packet.state.status = Status::Active;
        packet.sources.state.ok = true;
        let events = seeded.observe(&packet, None, None, next);
        let codes: Vec<_> = events.iter().map(|a| (a.code.as_str(), a.active)).collect();
        assert_eq!(codes, [("ENGINE_HALTED", false), ("STALE_STATE", false)]);
    }

    #[test]
    fn a_rule_on_an_unknown_field_is_refused_by_name() {
        let config: AlertsConfig = toml::from_str(
            "[[rules]]\nfield = \"sentiment.score\"\nbelow = 0.0\nlevel = \"info\"\ncode = \"SAD\"\nmessage = \"m\"\n",
        )
        .unwrap();
        assert_eq!(
            Alerts::new(&config).unwrap_err(),
            "alerts.rules[0].field: \"sentiment.score\" is not a packet field a rule can watch"
        );
    }

    /// A daemon of a cluster whose Redis is gone says so once, and once when it is back;
    /// alone (no cluster) or still joining, nothing is known and nothing changes.
    #[test]
    fn a_lost_cluster_is_raised_once_and_cleared_once() {
        let mut alerts = Alerts::new(&AlertsConfig::default()).unwrap();
        let packet = Telemetry::initializing(Utc::now());
        let t = Utc::now();
        let codes = |events: Vec<Alert>| -> Vec<(String, bool)> {
            events
                .into_iter()
                .filter(|a| a.code == "CLUSTER_LOST")
                .map(|a| (a.code, a.active))
                .collect()
        };
        assert_eq!(codes(alerts.observe(&packet, None, None, t)), []);
        assert_eq!(
            codes(alerts.observe(&packet, None, Some(true), t)),
            [("CLUSTER_LOST".to_owned(), true)]
        );
        assert_eq!(codes(alerts.observe(&packet, None, Some(true), t)), []);
        assert_eq!(
            codes(alerts.observe(&packet, None, None, t)),
            [],
            "unknown: held"
        );
        assert!(alerts.active().iter().any(|a| a.code == "CLUSTER_LOST"));
        assert_eq!(
            codes(alerts.observe(&packet, None, Some(false), t)),
            [("CLUSTER_LOST".to_owned(), false)]
        );
    }
}
