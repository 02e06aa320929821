//! Recorded sequences, one answer a second through the real reading and aggregation: a crash, a
//! rally, a wobble at a threshold, an engine gone stale, a halt, an operator's rule.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::*;
use crate::config::{AlertLevel, Config, RegimeConfig};
use crate::hub::packet::Timestamp;
use crate::input::aggregate::{Inputs, build};
use crate::input::normalize;

/// SPY at 450.32, alpha 2.8, ACTIVE, BUY, velocity 0.0012, max_drawdown -0.05.
const STATE: &str = include_str!("../../../fixtures/engine/state-current.json");
const AGENTS: &str = include_str!("../../../fixtures/engine/agents-list.json");
const MODELS: &str = include_str!("../../../fixtures/engine/models-list.json");

/// 2025-12-21T12:00:00Z plus `ms`.
fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_766_318_400_000 + ms).unwrap()
}

/// What happened at one tick: a mood announced, an alert raised (`+CODE`) or cleared (`-CODE`).
#[derive(Debug, PartialEq)]
enum Heard {
    Mood(Regime, Regime),
    Raised(String),
    Cleared(String),
}

fn raised(code: &str) -> Heard {
    Heard::Raised(code.into())
}

fn cleared(code: &str) -> Heard {
    Heard::Cleared(code.into())
}

/// The engine answering once a second, and the daemon's mood and alerts fed each packet.
struct Feed {
    inputs: Inputs,
    mood: Mood,
    alerts: Alerts,
    regime: RegimeConfig,
    tick: i64,
    /// Every tick's events, with the second it happened in.
    heard: Vec<(i64, Heard)>,
}

impl Feed {
    fn new(config: &Config) -> Self {
        let mut inputs = Inputs::default();
        inputs
            .agents
            .record(normalize::agents(&parse(AGENTS)), at(0));
        inputs
            .models
            .record(normalize::models(&parse(MODELS)), at(0));
        Self {
            inputs,
            mood: Mood::new(&config.regime),
            alerts: Alerts::new(&config.alerts).unwrap(),
            regime: config.regime.clone(),
            tick: 0,
            heard: Vec::new(),
        }
    }

    /// One second: the state endpoint answers `state-current.json` changed by `change`.
    fn answer(&mut self, change: impl FnOnce(&mut Value)) {
        let mut state = parse(STATE);
        change(&mut state);
        let now = at(self.tick * 1000);
        self.inputs.state.record(normalize::state(&state), now);
        self.step(now);
    }

    /// One second: the state endpoint fails (the packet keeps its last good answer).
    fn fail(&mut self) {
        let now = at(self.tick * 1000);
        self.inputs
            .state
            .record(Err::<normalize::EngineState, _>("timed out"), now);
        self.step(now);
    }

    fn step(&mut self, now: DateTime<Utc>) {
        let packet = build(&self.inputs, now, 50);
        let reading = classify(&packet, &self.regime);
        if let Some(change) = self.mood.observe(reading, &packet.state.market, now) {
            self.heard
                .push((self.tick, Heard::Mood(change.previous, change.mood.regime)));
        }
        let mood = self.mood.current().map(|m| m.regime);
        for alert in self.alerts.observe(&packet, mood, None, now) {
            let heard = if alert.active {
                Heard::Raised(alert.code)
            } else {
                Heard::Cleared(alert.code)
            };
            self.heard.push((self.tick, heard));
        }
        self.tick += 1;
    }

    fn regime(&self) -> Regime {
        self.mood.current().unwrap().regime
    }
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn velocity(v: f64) -> impl FnOnce(&mut Value) {
    move |state| state["market"]["velocity"] = json!(v)
}

#[test]
fn the_fixtures_read_as_documented() {
    let config = RegimeConfig::default();
    let cases = [
        // Rising slowly, BUY, 5 % drawdown: a normal day.
        ("state-current.json", Some(Regime::Neutral)),
        ("state-spec-objects.json", Some(Regime::Neutral)),
        ("state-offset-zone.json", Some(Regime::Neutral)),
        ("state-many-logs.json", Some(Regime::Neutral)),
        // HALT, alpha 0, `Critical`, but not falling: the engine's zeros, not a crash.
        ("state-current-zeros.json", Some(Regime::Neutral)),
        // A drawdown of 12.5 %.
        ("state-enum-words.json", Some(Regime::Crash)),
        // Nothing readable: nothing past a threshold.
        ("state-numbers-as-strings.json", Some(Regime::Neutral)),
        ("state-missing-sections.json", Some(Regime::Neutral)),
    ];
    for (file, want) in cases {
        let path = format!("{}/fixtures/engine/{file}", env!("CARGO_MANIFEST_DIR"));
        let answer = parse(&std::fs::read_to_string(&path).unwrap());
        let mut inputs = Inputs::default();
        inputs.state.record(normalize::state(&answer), at(0));
        assert_eq!(
            classify(&build(&inputs, at(0), 50), &config),
            want,
            "{file}"
        );
    }
}

#[test]
fn a_crash_is_announced_once_after_the_dwell_with_its_alert() {
    let mut feed = Feed::new(&Config::default());
    for v in [
        0.0012, 0.0005, -0.001, -0.003, -0.0055, -0.007, -0.009, -0.011, -0.012, -0.012, -0.01,
    ] {
        feed.answer(velocity(v));
    }
    // The first crash reading is second 4; it has held 3 s at second 7.
    assert_eq!(
        feed.heard,
        [
            (7, Heard::Mood(Regime::Neutral, Regime::Crash)),
            (7, raised("MARKET_CRASH"))
        ]
    );
    assert_eq!(feed.mood.current().unwrap().since, Timestamp(at(4000)));
    assert_eq!(feed.alerts.active()[0].level, AlertLevel::Critical);
    // The recovery is announced once too, and clears the alert.
    for _ in 0..5 {
        feed.answer(velocity(0.0));
    }
    assert_eq!(
        &feed.heard[2..],
        [
            (14, Heard::Mood(Regime::Crash, Regime::Neutral)),
            (14, cleared("MARKET_CRASH"))
        ]
    );
    assert!(feed.alerts.active().is_empty());
}

#[test]
fn a_rally_with_the_engine_buying_is_announced_once() {
    let mut feed = Feed::new(&Config::default());
    for v in [0.001, 0.003, 0.005, 0.006, 0.008, 0.009, 0.009, 0.01] {
        feed.answer(velocity(v));
    }
    assert_eq!(
        feed.heard,
        [(5, Heard::Mood(Regime::Neutral, Regime::Bull))]
    );
    let mood = feed.mood.current().unwrap();
    assert_eq!(
        (
            mood.label.as_str(),
            mood.persona.name.as_str(),
            mood.persona.headline.as_str()
        ),
        ("Bull/Euphoria", "MiniMax", "TO THE MOON")
    );
    // The engine turning to SELL ends the euphoria, after the dwell.
    for _ in 0..4 {
        feed.answer(|state| {
            state["market"]["velocity"] = json!(0.01);
            state["signal"]["side"] = json!("SELL");
        });
    }
    assert_eq!(
        feed.heard[1..],
        [(11, Heard::Mood(Regime::Bull, Regime::Neutral))]
    );
}

#[test]
fn a_price_wobbling_at_the_threshold_never_flaps() {
    let mut feed = Feed::new(&Config::default());
    // Across the crash threshold every second, then in runs of two seconds: never 3 s held.
    for i in 0..20 {
        feed.answer(velocity(if i % 2 == 0 { -0.0051 } else { -0.0049 }));
    }
    for i in 0..20 {
        feed.answer(velocity(if i % 3 < 2 { -0.006 } else { -0.004 }));
    }
    assert_eq!(feed.heard, []);
    assert_eq!(feed.regime(), Regime::Neutral);
}

#[test]
fn a_stale_state_holds_the_mood_and_raises_its_alert_once() {
    let mut feed = Feed::new(&Config::default());
    feed.answer(velocity(0.0));
    // The last answer before the engine goes quiet is a crash's; the packets keep showing it.
    feed.answer(velocity(-0.02));
    for _ in 0..14 {
        feed.fail();
    }
    assert_eq!(feed.regime(), Regime::Neutral, "{:?}", feed.heard);
    // Failing from second 2, stale for 10 s at second 12.
    assert_eq!(feed.heard, [(12, raised("STALE_STATE"))]);
    // Back, calm: one clear, and the stale seconds did not count toward a crash.
    feed.answer(velocity(-0.02));
    feed.answer(velocity(0.0));
    assert_eq!(feed.heard[1..], [(16, cleared("STALE_STATE"))]);
    assert_eq!(feed.regime(), Regime::Neutral);
}

#[test]
fn a_halt_is_raised_once_and_cleared_once_across_ten_ticks() {
    let mut feed = Feed::new(&Config::default());
    let statuses = [
        "ACTIVE",
        "ACTIVE",
        "TradingStatus.HALT",
        "HALT",
        "HALTED",
        "TradingStatus.HALT",
        "HALT",
        "ACTIVE",
        "ACTIVE",
        "ACTIVE",
    ];
    for status in statuses {
        feed.answer(|state| state["status"] = json!(status));
    }
    assert_eq!(
        feed.heard,
        [(2, raised("ENGINE_HALTED")), (7, cleared("ENGINE_HALTED"))]
    );
}

#[test]
fn a_user_rule_raises_past_its_bound_holds_on_null_and_clears_once() {
    let config = Config::parse(
        "[[alerts.rules]]\nfield = \"portfolio.max_drawdown\"\nbelow = -0.05\nlevel = \"warning\"\ncode = \"DRAWDOWN\"\nmessage = \"Drawdown past 5%\"\n",
    )
    .unwrap();
    let mut feed = Feed::new(&config);
    let drawdowns = [
        json!(-0.05),
        json!(-0.06),
        json!(-0.07),
        Value::Null,
        json!(-0.065),
        json!(-0.04),
        json!(-0.03),
    ];
    for dd in drawdowns {
        feed.answer(|state| state["portfolio"]["max_drawdown"] = dd);
        if feed.tick == 4 {
            assert_eq!(feed.alerts.active().len(), 1, "null holds the rule");
        }
    }
    assert_eq!(
        feed.heard,
        [(1, raised("DRAWDOWN")), (5, cleared("DRAWDOWN"))]
    );
    let events = {
        let mut again = Feed::new(&config);
        again.answer(|state| state["portfolio"]["max_drawdown"] = json!(-0.06));
        again.alerts.active().to_vec()
    };
    assert_eq!(
        serde_json::to_value(&events[0]).unwrap(),
        json!({
            "level": "warning",
            "code": "DRAWDOWN",
            "message": "Drawdown past 5%",
            "timestamp": "2025-12-21T12:00:00.000Z",
            "active": true,
        })
    );
}

#[test]
fn a_reload_clears_the_alert_of_a_rule_taken_out_and_keeps_the_others() {
    let rule = |code: &str| {
        format!(
            "[[alerts.rules]]\nfield = \"portfolio.max_drawdown\"\nbelow = -0.01\nlevel = \"info\"\ncode = \"{code}\"\nmessage = \"m\"\n"
        )
    };
    let config = Config::parse(&format!("{}{}", rule("KEPT"), rule("GONE"))).unwrap();
    let mut feed = Feed::new(&config);
    feed.answer(|state| state["status"] = json!("HALT"));
    let codes = |alerts: &[Alert]| -> Vec<(String, bool)> {
        alerts.iter().map(|a| (a.code.clone(), a.active)).collect()
    };
    assert_eq!(
        codes(feed.alerts.active()),
        [
            ("ENGINE_HALTED".into(), true),
            ("KEPT".into(), true),
            ("GONE".into(), true)
        ]
    );
    let cleared = feed
        .alerts
        .reconfigure(&Config::parse(&rule("KEPT")).unwrap().alerts, at(1000))
        .unwrap();
    assert_eq!(codes(&cleared), [("GONE".into(), false)]);
    assert_eq!(cleared[0].timestamp, Timestamp(at(1000)));
    assert_eq!(
        codes(feed.alerts.active()),
        [("ENGINE_HALTED".into(), true), ("KEPT".into(), true)]
    );
    // Nothing is raised again: the kept alerts were already active.
    feed.answer(|state| state["status"] = json!("HALT"));
    assert_eq!(feed.heard.len(), 3, "{:?}", feed.heard);
}
