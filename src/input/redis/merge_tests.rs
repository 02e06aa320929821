//! Tests of the overlay: which events show over the poll and when, the active symbol, the
//! regime from alpha, the merged logs, and the bounds.

use super::*;
use crate::hub::packet::Side;
use crate::input::aggregate::build;
use crate::input::normalize;
use crate::input::redis::event::parse;
use crate::input::redis::stamped::MAX_SYMBOLS;
use serde_json::json;

/// 2025-12-21T12:00:00Z plus `ms`.
fn t(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_766_318_400_000 + ms).unwrap()
}

/// The fixture's own event, parsed.
fn event(channel: &str, payload: &str) -> Event {
    parse(channel, payload.as_bytes()).unwrap().unwrap()
}

const TICK: &str = include_str!("../../../fixtures/redis/market.tick.SPY.json");
const PHYSICS: &str = include_str!("../../../fixtures/redis/physics.forces.json");
const PHYSICS_FLAT: &str = include_str!("../../../fixtures/redis/physics.forces-flat.json");
const PHYSICS_ERROR: &str = include_str!("../../../fixtures/redis/physics.forces-error.json");
const SIGNAL: &str = include_str!("../../../fixtures/redis/strategy.signals.json");
const FORECAST_MSG: &str = include_str!("../../../fixtures/redis/forecast.signals.json");
const HALT: &str = include_str!("../../../fixtures/redis/system_events-halt.json");
const RESUME: &str = include_str!("../../../fixtures/redis/system_events-resume.json");
/// SPY at 450.32, alpha 2.8, ACTIVE, BUY, four logs without timestamps; its own timestamp is
/// 2025-12-21T11:59:59.812345, before every Redis fixture.
const STATE: &str = include_str!("../../../fixtures/engine/state-current.json");

/// The inputs after one state answer received at `polled`.
fn inputs(state: &Value, polled: DateTime<Utc>) -> Inputs {
    let mut inputs = Inputs::default();
    inputs.state.record(normalize::state(state), polled);
    inputs
}

fn state_current() -> Value {
    serde_json::from_str(STATE).unwrap()
}

/// The packet of `inputs` with the overlay merged, and the packet without it.
fn merged(overlay: &Overlay, inputs: &Inputs, max_logs: usize) -> (Telemetry, Telemetry) {
    let polled = build(inputs, t(500), max_logs);
    let mut packet = polled.clone();
    overlay.merge_into(&mut packet, answer_time(inputs), max_logs);
    (packet, polled)
}

fn tick(symbol: &str, price: f64, at: Option<DateTime<Utc>>) -> Event {
    Event::Tick {
        symbol: symbol.into(),
        price,
        at: at.map(Timestamp),
    }
}

fn physics(symbol: Option<&str>, alpha: Option<f64>, price: Option<f64>, at: i64) -> Event {
    Event::Physics {
        symbol: symbol.map(str::to_owned),
        alpha,
        price,
        at: Some(Timestamp(t(at))),
    }
}

fn system(status: Status, at: i64) -> Event {
    Event::System {
        status,
        reason: Some(format!("at {at}")),
        at: Some(Timestamp(t(at))),
    }
}

fn messages(packet: &Telemetry) -> Vec<&str> {
    packet
        .state
        .logs
        .iter()
        .map(|l| l.message.as_str())
        .collect()
}

#[test]
fn the_answer_time_is_the_engines_timestamp_else_when_it_arrived() {
    let state = state_current();
    assert_eq!(
        answer_time(&inputs(&state, t(500))),
        DateTime::parse_from_rfc3339("2025-12-21T11:59:59.812345Z").unwrap()
    );
    let mut untimed = state;
    untimed.as_object_mut().unwrap().remove("timestamp");
    assert_eq!(answer_time(&inputs(&untimed, t(500))), t(500));
    assert_eq!(answer_time(&Inputs::default()), DateTime::<Utc>::MIN_UTC);
}

#[test]
fn a_tick_of_the_active_symbol_sets_the_price_and_nothing_else() {
    let mut overlay = Overlay::default();
    overlay.apply(event("market.tick.SPY", TICK), t(200));
    let (packet, polled) = merged(&overlay, &inputs(&state_current(), t(500)), 50);
    let mut want = polled;
    assert_eq!(want.state.market.price, Some(450.32));
    want.state.market.price = Some(450.41);
    assert_eq!(packet, want);
}

#[test]
fn a_tick_of_another_symbol_is_not_merged() {
    let mut overlay = Overlay::default();
    overlay.apply(tick("QQQ", 389.1, Some(t(100))), t(200));
    let (packet, polled) = merged(&overlay, &inputs(&state_current(), t(500)), 50);
    assert_eq!(packet, polled);
}

#[test]
fn with_no_symbol_yet_the_latest_tick_names_it() {
    let mut overlay = Overlay::default();
    overlay.apply(tick("QQQ", 389.1, None), t(100));
    overlay.apply(tick("SPY", 450.41, None), t(200));
    overlay.apply(tick("IWM", 201.0, Some(t(50))), t(300));
    // Before any poll answer, and after the offline notice (a state that names no symbol).
    let offline = json!({"error": "No state available", "status": "offline"});
    for inputs in [Inputs::default(), inputs(&offline, t(0))] {
        let (packet, polled) = merged(&overlay, &inputs, 50);
        let mut want = polled;
        want.state.market.symbol = Some("SPY".into());
        want.state.market.price = Some(450.41);
        assert_eq!(packet, want);
    }
}

#[test]
fn a_poll_newer_than_an_event_wins() {
    let mut overlay = Overlay::default();
    for (channel, payload) in [
        ("market.tick.SPY", TICK),
        ("physics.forces", PHYSICS),
        ("strategy.signals", SIGNAL),
        ("forecast.signals", FORECAST_MSG),
        ("system_events", HALT),
    ] {
        overlay.apply(event(channel, payload), t(400));
    }
    let mut newer = state_current();
    newer["timestamp"] = json!("2025-12-21T12:00:01");
    newer["market"]["price"] = json!(451.0);
    newer["forecast"] = json!({"p50": 452.0});
    let inputs = inputs(&newer, t(1100));

    // Even before `polled`, the merge leaves the newer poll as it is…
    let (packet, polled) = merged(&overlay, &inputs, 50);
    let mut want = polled.clone();
    // …but for the log entry the halt left, which is an event of its own: at 12:00:00.400, it
    // goes before the engine's entries, which have no time and count as at the answer's.
    want.state.logs.insert(
        0,
        LogEntry {
            level: Level::Info,
            message: "System halt: Manual Kill Switch".into(),
            timestamp: Some(Timestamp(t(400))),
        },
    );
    assert_eq!(packet, want);
    assert_eq!(packet.state.market.price, Some(451.0));
    assert_eq!(packet.state.status, Status::Active);
    assert_eq!(packet.state.extra["forecast"], json!({"p50": 452.0}));

    // …and `polled` forgets every value it overtook.
    overlay.polled(answer_time(&inputs));
    let (after, _) = merged(&overlay, &inputs, 50);
    assert_eq!(after, packet);
    overlay.logs.clear();
    assert!(overlay.is_empty());
}

#[test]
fn events_newer_than_the_poll_win() {
    let mut overlay = Overlay::default();
    for (channel, payload) in [
        ("physics.forces", PHYSICS),
        ("strategy.signals", SIGNAL),
        ("forecast.signals", FORECAST_MSG),
    ] {
        overlay.apply(event(channel, payload), t(400));
    }
    overlay.apply(event("system_events", HALT), t(450));
    let inputs = inputs(&state_current(), t(500));
    overlay.polled(answer_time(&inputs));
    let (packet, polled) = merged(&overlay, &inputs, 50);

    let mut want = polled;
    want.state.market.price = Some(450.41);
    want.state.market.alpha = Some(1.72);
    want.state.market.regime = Some("Lévy Stable".into());
    want.state.signal = Signal {
        side: Some(Side::Flat),
        confidence: Some(0.35),
        reasoning: Some("Momentum fading in a Levy regime".into()),
    };
    want.state.extra.insert(
        "forecast".into(),
        json!({"p10": 449.8, "p50": 450.6, "p90": 451.5, "horizon": 10, "confidence": 0.62,
               "is_synthetic": false, "timestamp": "2025-12-21T12:00:00.200Z"}),
    );
    want.state.status = Status::Halt;
    want.state.logs.push(LogEntry {
        level: Level::Info,
        message: "System halt: Manual Kill Switch".into(),
        timestamp: Some(Timestamp(t(450))),
    });
    assert_eq!(packet, want);
    // The packet's JSON carries the section as the contract says.
    let data = serde_json::to_value(&packet).unwrap();
    assert_eq!(
        data["forecast"]["timestamp"],
        json!("2025-12-21T12:00:00.200Z")
    );
    assert_eq!(data["signal"]["side"], json!("FLAT"));
}

#[test]
fn physics_derives_the_regime_from_alpha() {
    let cases = [
        (1.72, "Lévy Stable"),
        (2.31, "Gaussian"),
        (1.2, "Critical"),
        (2.0, "Lévy Stable"),
        (1.5, "Critical"),
        (0.0, "Critical"),
    ];
    let inputs = inputs(&state_current(), t(500));
    for (alpha, regime) in cases {
        let mut overlay = Overlay::default();
        overlay.apply(physics(Some("SPY"), Some(alpha), None, 100), t(100));
        let (packet, polled) = merged(&overlay, &inputs, 50);
        let mut want = polled;
        want.state.market.alpha = Some(alpha);
        want.state.market.regime = Some(regime.into());
        assert_eq!(packet, want, "{alpha}");
    }
    // The fixtures, nested and flat.
    for (payload, alpha, regime, price) in [
        (PHYSICS, 1.72, "Lévy Stable", 450.41),
        (PHYSICS_FLAT, 2.31, "Gaussian", 450.38),
    ] {
        let mut overlay = Overlay::default();
        overlay.apply(event("physics.forces", payload), t(5000));
        let (packet, _) = merged(&overlay, &inputs, 50);
        let market = &packet.state.market;
        assert_eq!(
            (market.alpha, market.regime.as_deref(), market.price),
            (Some(alpha), Some(regime), Some(price))
        );
    }
}

#[test]
fn physics_of_another_symbol_is_not_merged_but_unnamed_physics_is() {
    let inputs = inputs(&state_current(), t(500));
    let mut overlay = Overlay::default();
    overlay.apply(physics(Some("QQQ"), Some(1.2), Some(389.0), 100), t(100));
    let (packet, polled) = merged(&overlay, &inputs, 50);
    assert_eq!(packet, polled);

    overlay.apply(physics(None, Some(2.31), None, 200), t(200));
    let (packet, _) = merged(&overlay, &inputs, 50);
    assert_eq!(packet.state.market.alpha, Some(2.31));
    assert_eq!(packet.state.market.price, Some(450.32));
}

#[test]
fn the_later_of_tick_and_physics_gives_the_price() {
    let inputs = inputs(&state_current(), t(500));
    let cases = [
        (100, 200, 2.0),
        (200, 100, 1.0),
        // Same time: the later arrival (physics, applied second) wins.
        (100, 100, 2.0),
    ];
    for (tick_at, physics_at, price) in cases {
        let mut overlay = Overlay::default();
        overlay.apply(tick("SPY", 1.0, Some(t(tick_at))), t(300));
        overlay.apply(physics(Some("SPY"), None, Some(2.0), physics_at), t(300));
        let (packet, _) = merged(&overlay, &inputs, 50);
        assert_eq!(
            packet.state.market.price,
            Some(price),
            "{tick_at} {physics_at}"
        );
        // The physics vector had no alpha: the polled alpha and regime stay.
        assert_eq!(packet.state.market.alpha, Some(2.8));
        assert_eq!(packet.state.market.regime.as_deref(), Some("Lévy Stable"));
    }
}

#[test]
fn a_late_event_older_than_the_held_one_is_ignored() {
    let mut overlay = Overlay::default();
    overlay.apply(system(Status::Halt, 300), t(300));
    overlay.apply(system(Status::Active, 200), t(400));
    overlay.apply(tick("SPY", 2.0, Some(t(300))), t(300));
    overlay.apply(tick("SPY", 1.0, Some(t(200))), t(400));
    let (packet, _) = merged(&overlay, &inputs(&state_current(), t(500)), 50);
    assert_eq!(packet.state.status, Status::Halt);
    assert_eq!(packet.state.market.price, Some(2.0));
    // Both left their log entry, in time order.
    assert_eq!(
        messages(&packet)[4..],
        ["System resume: at 200", "System halt: at 300"]
    );
}

#[test]
fn the_error_vector_adds_one_warning_and_changes_nothing_else() {
    let mut overlay = Overlay::default();
    overlay.apply(event("physics.forces", PHYSICS_ERROR), t(2100));
    let (packet, polled) = merged(&overlay, &inputs(&state_current(), t(500)), 50);
    let mut want = polled;
    want.state.logs.push(LogEntry {
        level: Level::Warning,
        message: "physics.forces: float division by zero".into(),
        timestamp: Some(Timestamp(t(2000))),
    });
    assert_eq!(packet, want);

    // About another symbol, it is not shown.
    let mut other = state_current();
    other["market"]["symbol"] = json!("QQQ");
    let (packet, polled) = merged(&overlay, &inputs(&other, t(500)), 50);
    assert_eq!(packet, polled);
}

#[test]
fn halt_and_resume_set_the_status_with_an_info_log() {
    let inputs = inputs(&state_current(), t(500));
    let mut overlay = Overlay::default();
    overlay.apply(event("system_events", HALT), t(100));
    let (packet, polled) = merged(&overlay, &inputs, 50);
    let halt = LogEntry {
        level: Level::Info,
        message: "System halt: Manual Kill Switch".into(),
        timestamp: Some(Timestamp(t(100))),
    };
    let mut want = polled.clone();
    want.state.status = Status::Halt;
    want.state.logs.push(halt.clone());
    assert_eq!(packet, want);

    overlay.apply(event("system_events", RESUME), t(200));
    let (packet, _) = merged(&overlay, &inputs, 50);
    let mut want = polled;
    want.state.logs.push(halt);
    want.state.logs.push(LogEntry {
        level: Level::Info,
        message: "System resume: Manual Resume".into(),
        timestamp: Some(Timestamp(t(200))),
    });
    assert_eq!(packet, want);
}

#[test]
fn logs_are_in_time_order_and_capped_newest_last() {
    // An engine entry with its own time, and two without (at the answer time, 12:00:01).
    let mut state = state_current();
    state["timestamp"] = json!("2025-12-21T12:00:01");
    state["logs"] = json!([
        {"message": "engine -2s", "timestamp": "2025-12-21T11:59:58"},
        "engine untimed a",
        "WARNING: engine untimed b",
    ]);
    let inputs = inputs(&state, t(1500));
    let mut overlay = Overlay::default();
    for at in [2000, -3000, 1000, 0] {
        overlay.apply(system(Status::Active, at), t(2500));
    }
    let (packet, _) = merged(&overlay, &inputs, 50);
    assert_eq!(
        messages(&packet),
        [
            "System resume: at -3000",
            "engine -2s",
            "System resume: at 0",
            "engine untimed a",
            "engine untimed b",
            // At the same time as the engine's entries: after them.
            "System resume: at 1000",
            "System resume: at 2000",
        ]
    );
    let (packet, _) = merged(&overlay, &inputs, 3);
    assert_eq!(
        messages(&packet),
        [
            "engine untimed b",
            "System resume: at 1000",
            "System resume: at 2000"
        ]
    );
    assert_eq!(packet.state.logs[0].level, Level::Warning);
    let (packet, _) = merged(&overlay, &inputs, 0);
    assert!(packet.state.logs.is_empty());
}

#[test]
fn the_overlay_stays_bounded() {
    let mut overlay = Overlay::default();
    let symbols = MAX_SYMBOLS + 500;
    for i in 0..symbols {
        let at = t(i as i64);
        overlay.apply(tick(&format!("S{i}"), i as f64, Some(at)), at);
        overlay.apply(
            physics(Some(&format!("S{i}")), Some(2.0), Some(1.0), i as i64),
            at,
        );
    }
    assert_eq!(overlay.ticks.len(), MAX_SYMBOLS);
    assert_eq!(overlay.alphas.len(), MAX_SYMBOLS);
    assert_eq!(overlay.physics_prices.len(), MAX_SYMBOLS);
    // The symbols heard from longest ago went first.
    assert!(!overlay.ticks.named.contains_key("S0"));
    assert!(!overlay.ticks.named.contains_key("S499"));
    assert!(overlay.ticks.named.contains_key("S500"));
    assert!(
        overlay
            .ticks
            .named
            .contains_key(&format!("S{}", symbols - 1))
    );

    for i in 0..1000 {
        overlay.apply(system(Status::Active, i), t(i));
    }
    assert_eq!(overlay.logs.len(), MAX_EVENT_LOGS);
    assert_eq!(
        overlay.logs.back().unwrap().entry.message,
        "System resume: at 999"
    );
    // Entries age out against the latest arrival, whatever time they claim.
    let later = LOG_AGE.num_milliseconds() + 1000;
    overlay.apply(system(Status::Halt, -60_000), t(later));
    assert_eq!(overlay.logs.len(), 1);
    assert_eq!(overlay.logs[0].entry.message, "System halt: at -60000");
}

#[test]
fn in_a_burst_of_ticks_the_latest_wins() {
    let inputs = inputs(&state_current(), t(500));
    // Without times of their own (all received at once), and with rising times.
    for own_time in [false, true] {
        let mut overlay = Overlay::default();
        for i in 0..10_000 {
            let price = 100.0 + i as f64;
            overlay.apply(tick("SPY", price, own_time.then(|| t(600 + i))), t(1000));
        }
        let (packet, _) = merged(&overlay, &inputs, 50);
        assert_eq!(
            packet.state.market.price,
            Some(10_099.0),
            "own time: {own_time}"
        );
    }
}

#[test]
fn an_empty_overlay_changes_nothing() {
    let overlay = Overlay::default();
    assert!(overlay.is_empty());
    let (packet, polled) = merged(&overlay, &inputs(&state_current(), t(500)), 50);
    assert_eq!(packet, polled);
}
