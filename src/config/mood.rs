//! `[regime]` and `[alerts]`: when the market's mood reads crash, bull or neutral, how long a new
//! one must hold before it is announced, what each mood is called, and which conditions raise an
//! alert. The settings only; the classifier and the trackers are `input::mood`.

use serde::{Deserialize, Serialize};

/// The mood's thresholds, its dwell and its words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegimeConfig {
    /// A new mood is announced only after the readings have shown it this long without a break,
    /// so a price wobbling at a threshold does not flap a wall screen; 0 announces at once.
    pub min_dwell_ms: u64,
    /// `market.velocity` at or below this reads crash: the price falling fast.
    pub crash_velocity: f64,
    /// `market.alpha` at or below this is the heavy-tailed regime (the engine's `Critical`), in
    /// which a smaller fall already reads crash.
    pub critical_alpha: f64,
    /// In that regime, `market.velocity` at or below this reads crash.
    pub critical_crash_velocity: f64,
    /// `portfolio.max_drawdown` at or below this reads crash, whatever the price does.
    pub crash_drawdown: f64,
    /// `market.velocity` at or above this, with the signal `BUY`, reads bull.
    pub bull_velocity: f64,
    /// What a dashboard shows for `crash`.
    pub crash_label: String,
    /// The persona speaking for `crash`.
    pub crash_persona: String,
    /// Its one-line headline.
    pub crash_headline: String,
    /// What a dashboard shows for `bull`.
    pub bull_label: String,
    /// The persona speaking for `bull`.
    pub bull_persona: String,
    /// Its one-line headline.
    pub bull_headline: String,
    /// What a dashboard shows for `neutral`.
    pub neutral_label: String,
    /// The persona speaking for `neutral`.
    pub neutral_persona: String,
    /// Its one-line headline.
    pub neutral_headline: String,
}

/// Three readings at the default 1 s poll: a one- or two-tick spike never flips the mood, and a
/// real turn shows within about three seconds.
fn default_min_dwell_ms() -> u64 {
    3_000
}

/// Half a percent a tick: far outside the samples' ±0.2 % and the demo's per-tick shocks
/// (0.08 %), a fall that is a rout at any poll rate.
fn default_crash_velocity() -> f64 {
    -0.005
}

/// The engine's own boundary between `Lévy Stable` and `Critical`.
fn default_critical_alpha() -> f64 {
    1.5
}

/// Half the plain threshold: with heavy tails the next move may be many times this one.
fn default_critical_crash_velocity() -> f64 {
    -0.0025
}

/// A tenth of the book gone from its peak. The samples' 5 % is a bad day, not a crash; the
/// alert rules are the place for tighter limits.
fn default_crash_drawdown() -> f64 {
    -0.10
}

/// The mirror of `crash_velocity`.
fn default_bull_velocity() -> f64 {
    0.005
}

impl Default for RegimeConfig {
    fn default() -> Self {
        Self {
            min_dwell_ms: default_min_dwell_ms(),
            crash_velocity: default_crash_velocity(),
            critical_alpha: default_critical_alpha(),
            critical_crash_velocity: default_critical_crash_velocity(),
            crash_drawdown: default_crash_drawdown(),
            bull_velocity: default_bull_velocity(),
            crash_label: "Crash/Panic".into(),
            crash_persona: "Big Pickle".into(),
            crash_headline: "SELL EVERYTHING".into(),
            bull_label: "Bull/Euphoria".into(),
            bull_persona: "MiniMax".into(),
            bull_headline: "TO THE MOON".into(),
            neutral_label: "Neutral".into(),
            neutral_persona: "Steady Hand".into(),
            neutral_headline: "STAY THE COURSE".into(),
        }
    }
}

/// The longest dwell accepted: past ten minutes a mood would be news of the past.
const MAX_DWELL_MS: u64 = 600_000;

impl RegimeConfig {
    /// Every problem with the section, each with its key path.
    pub(super) fn validate(&self, bad: &mut impl FnMut(&str, String)) {
        if self.min_dwell_ms > MAX_DWELL_MS {
            bad(
                "regime.min_dwell_ms",
                format!(
                    "{} is too long: a mood would show minutes after the market turned; use at most {MAX_DWELL_MS}",
                    self.min_dwell_ms
                ),
            );
        }
        let below_zero = [
            ("regime.crash_velocity", self.crash_velocity),
            (
                "regime.critical_crash_velocity",
                self.critical_crash_velocity,
            ),
        ];
        for (key, value) in below_zero {
            if !(value.is_finite() && value < 0.0) {
                bad(key, format!("{value} must be a fall: below 0, e.g. -0.005"));
            }
        }
        if self.critical_crash_velocity < self.crash_velocity {
            bad(
                "regime.critical_crash_velocity",
                format!(
                    "{} must not be below regime.crash_velocity ({}): in the critical regime a smaller fall reads crash, not a larger one",
                    self.critical_crash_velocity, self.crash_velocity
                ),
            );
        }
        if !(self.bull_velocity.is_finite() && self.bull_velocity > 0.0) {
            bad(
                "regime.bull_velocity",
                format!("{} must be a rise: above 0, e.g. 0.005", self.bull_velocity),
            );
        }
        if !(self.critical_alpha.is_finite() && self.critical_alpha > 0.0) {
            bad(
                "regime.critical_alpha",
                format!(
                    "{} must be above 0 (alpha is a tail index, 2 for a normal market), e.g. 1.5",
                    self.critical_alpha
                ),
            );
        }
        if !(self.crash_drawdown > -1.0 && self.crash_drawdown < 0.0) {
            bad(
                "regime.crash_drawdown",
                format!(
                    "{} must be a fraction between -1 and 0, e.g. -0.10 for a tenth of the book",
                    self.crash_drawdown
                ),
            );
        }
        let words = [
            ("regime.crash_label", &self.crash_label),
            ("regime.crash_persona", &self.crash_persona),
            ("regime.crash_headline", &self.crash_headline),
            ("regime.bull_label", &self.bull_label),
            ("regime.bull_persona", &self.bull_persona),
            ("regime.bull_headline", &self.bull_headline),
            ("regime.neutral_label", &self.neutral_label),
            ("regime.neutral_persona", &self.neutral_persona),
            ("regime.neutral_headline", &self.neutral_headline),
        ];
        for (key, value) in words {
            if value.trim().is_empty() {
                bad(key, "is empty; a wall screen would show nothing".into());
            }
        }
    }
}

/// How loud an alert is; a dashboard colours it by this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema, ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum AlertLevel {
    /// Act now: the engine halted, the market crashed, the state is old.
    Critical,
    /// Look soon.
    Warning,
    /// Worth knowing.
    Info,
}

impl AlertLevel {
    /// The word as it appears on the wire, in logs and in `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertLevel::Critical => "critical",
            AlertLevel::Warning => "warning",
            AlertLevel::Info => "info",
        }
    }
}

/// The alerts the daemon raises itself and a rule's code may not take.
pub const BUILT_IN_ALERTS: &[&str] = &[
    "ENGINE_HALTED",
    "STALE_STATE",
    "STALE_AGENTS",
    "STALE_MODELS",
    "REDIS_LOST",
    "CLUSTER_LOST",
    "MARKET_CRASH",
];

/// The packet fields a rule may watch, as a dashboard reads them in `data`: the numbers the
/// contract defines, so a rule cannot name a field that never comes.
pub const ALERT_FIELDS: &[&str] = &[
    "market.price",
    "market.alpha",
    "market.velocity",
    "market.acceleration",
    "portfolio.nav",
    "portfolio.cash",
    "portfolio.daily_pnl",
    "portfolio.max_drawdown",
    "signal.confidence",
    "governance.approved_size",
];

/// The built-in alerts' timing, and the operator's rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// An engine endpoint failing this long raises its `STALE_*` alert; one failed poll is
    /// already shown in `sources`, an alert is for an outage. Shorter than the poll interval,
    /// the first failed poll raises it.
    pub stale_after_ms: u64,
    /// Thresholds on packet fields, each raising its own alert while it holds.
    pub rules: Vec<AlertRule>,
}

/// Ten missed polls at the default 1 s: past a hiccup or a restart, short of a dashboard
/// showing old prices unnoticed.
fn default_stale_after_ms() -> u64 {
    10_000
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            stale_after_ms: default_stale_after_ms(),
            rules: Vec::new(),
        }
    }
}

/// `[[alerts.rules]]`: an alert active while a packet field is past a bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// The field, one of [`ALERT_FIELDS`] (`portfolio.max_drawdown`).
    pub field: String,
    /// Active while the field is below this; give this or `above`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    /// Active while the field is above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    /// How loud.
    pub level: AlertLevel,
    /// The alert's name for programs (`DRAWDOWN`): letters, digits and `_`.
    pub code: String,
    /// What a person reads.
    pub message: String,
}

impl AlertsConfig {
    /// Every problem with the section, each with its key path (`alerts.rules[0].field`).
    pub(super) fn validate(&self, bad: &mut impl FnMut(&str, String)) {
        let mut codes: Vec<&str> = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let key = |name: &str| format!("alerts.rules[{i}].{name}");
            if !ALERT_FIELDS.contains(&rule.field.as_str()) {
                bad(
                    &key("field"),
                    format!(
                        "{:?} is not a packet field a rule can watch; use one of {}",
                        rule.field,
                        ALERT_FIELDS.join(", ")
                    ),
                );
            }
            match (rule.below, rule.above) {
                (None, None) | (Some(_), Some(_)) => bad(
                    &format!("alerts.rules[{i}]"),
                    "needs exactly one of below or above, e.g. below = -0.05".into(),
                ),
                (Some(bound), None) | (None, Some(bound)) if !bound.is_finite() => bad(
                    &key(if rule.below.is_some() {
                        "below"
                    } else {
                        "above"
                    }),
                    format!("{bound} is not a number a field can pass"),
                ),
                _ => {}
            }
            let code = rule.code.as_str();
            if code.is_empty() || !code.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                bad(
                    &key("code"),
                    format!("{code:?} must be letters, digits and _, e.g. \"DRAWDOWN\""),
                );
            } else if BUILT_IN_ALERTS.contains(&code) {
                bad(
                    &key("code"),
                    format!("{code:?} is a built-in alert's; choose another"),
                );
            } else if codes.contains(&code) {
                bad(
                    &key("code"),
                    format!("{code:?} is an earlier rule's too; each rule needs its own"),
                );
            }
            codes.push(code);
            if rule.message.trim().is_empty() {
                bad(
                    &key("message"),
                    "is empty; say what a person should know".into(),
                );
            }
        }
    }
}

#[cfg(test)]
#[path = "mood_tests.rs"]
mod tests;
