//! Tests of the simulation: its answers read as the engine's do and move, every message has its
//! channel's fixture shape, what is pushed between polls is what the next poll says, and `halt`
//! holds until `resume`.

use std::time::Duration;

use super::*;
use crate::demo::TICKS_PER_STEP;
use crate::hub::packet::{Status, Telemetry};
use crate::input::aggregate::{Inputs, build};
use crate::input::normalize;
use crate::input::redis::event::{self, Event};
use crate::input::redis::merge::{Overlay, answer_time};

/// The packet the daemon builds from the simulator's state answer as of now.
fn polled(sim: &Simulation) -> (Inputs, Telemetry) {
    let mut inputs = Inputs::default();
    inputs
        .state
        .record(normalize::state(&sim.state()), Utc::now());
    let packet = build(&inputs, Utc::now(), 50);
    (inputs, packet)
}

/// `messages` read as the daemon reads them: the merged events, none dropped.
fn read(messages: &[Message]) -> Vec<Event> {
    messages
        .iter()
        .filter_map(|m| event::parse(&m.channel, m.payload.to_string().as_bytes()).unwrap())
        .collect()
}

/// The packet the daemon pushes after `messages`, merged over the poll in `inputs`.
fn pushed(inputs: &Inputs, messages: &[Message]) -> Telemetry {
    let mut overlay = Overlay::default();
    for event in read(messages) {
        overlay.apply(event, Utc::now());
    }
    let mut packet = build(inputs, Utc::now(), 50);
    overlay.merge_into(&mut packet, answer_time(inputs), 50);
    packet
}

/// Sleeps past the microsecond, so a message made next is newer than the answer before it.
fn later() {
    std::thread::sleep(Duration::from_micros(20));
}

/// What the events can say of the market.
fn quote(
    market: &crate::hub::packet::Market,
) -> (Option<&str>, Option<f64>, Option<f64>, Option<&str>) {
    (
        market.symbol.as_deref(),
        market.price,
        market.alpha,
        market.regime.as_deref(),
    )
}

#[test]
fn what_is_pushed_between_polls_is_what_the_next_poll_says() {
    let mut sim = Simulation::new(11);
    let mut regimes = std::collections::BTreeSet::new();
    for step in 0..500 {
        let (inputs, before) = polled(&sim);
        later();
        let messages = if step % TICKS_PER_STEP == 0 {
            sim.step();
            sim.step_events(Utc::now())
        } else {
            sim.trade();
            vec![sim.tick_event(Utc::now())]
        };
        let merged = pushed(&inputs, &messages);
        let (_, next) = polled(&sim);
        let (merged, next) = (&merged.state, &next.state);
        assert_eq!(quote(&merged.market), quote(&next.market), "step {step}");
        if step % TICKS_PER_STEP == 0 {
            assert_eq!(merged.signal, next.signal, "step {step}");
            assert_eq!(merged.extra["forecast"], next.extra["forecast"]);
        } else {
            assert_ne!(
                merged.market.price, before.state.market.price,
                "every tick between steps moves the price shown"
            );
        }
        regimes.insert(next.market.regime.clone().unwrap());
    }
    assert!(
        regimes.len() >= 2,
        "the alpha moved across regimes: {regimes:?}"
    );
}

#[test]
fn simulated_answers_read_as_the_engine_does_and_move() {
    let mut sim = Simulation::new(7);
    let before = normalize::state(&sim.state()).unwrap();
    for _ in 0..5 {
        sim.step();
    }
    let after = normalize::state(&sim.state()).unwrap();
    assert_ne!(before.sections.market.price, after.sections.market.price);
    assert!(after.timestamp.is_some());
    assert!(!after.sections.logs.is_empty());
    let agents = normalize::agents(&sim.agents()).unwrap();
    assert_eq!(agents.len(), AGENTS.len());
    assert_eq!(agents["risk"].invocations, Some(WINDOW as u64));
    let models = normalize::models(&sim.models()).unwrap();
    assert_eq!(models["finbert"].invocations, Some(WINDOW as u64));
}

/// The keys of an object, sorted.
fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/redis")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn every_message_has_the_shape_of_its_channel_s_fixture() {
    let mut sim = Simulation::new(3);
    let mut messages = sim.step_events(Utc::now());
    assert!(sim.act("halt").1.is_some() && sim.act("halt").1.is_none());
    messages.extend(sim.act("resume").1);
    messages.push(events::system_event(true));
    let channels: Vec<&str> = messages.iter().map(|m| m.channel.as_str()).collect();
    assert_eq!(
        channels,
        [
            "market.tick.SPY",
            "physics.forces",
            "strategy.signals",
            "forecast.signals",
            "agent.updates",
            "risk.state",
            "trade.results",
            "system_events",
            "system_events",
        ]
    );
    for message in &messages {
        let file = match message.channel.as_str() {
            "system_events" if message.payload["event"] == "SYSTEM_HALT" => {
                "system_events-halt.json".to_owned()
            }
            "system_events" => "system_events-resume.json".to_owned(),
            channel => format!("{channel}.json"),
        };
        let (ours, theirs) = (&message.payload, fixture(&file));
        assert_eq!(keys(ours), keys(&theirs), "{file}");
        for nested in ["vectors", "data", "meta"] {
            if theirs.get(nested).is_some() {
                assert_eq!(
                    keys(&ours[nested]),
                    keys(&theirs[nested]),
                    "{file}: {nested}"
                );
            }
        }
    }
    let allocator = &messages[4].payload["data"]["strategies"]["physics-momentum"];
    let fixture_strategy = &fixture("agent.updates.json")["data"]["strategies"]["oracle-sniper"];
    assert_eq!(keys(allocator), keys(fixture_strategy));
    let trades = messages[6].payload["data"]["recent_trades"]
        .as_array()
        .unwrap();
    assert!(
        !trades.is_empty(),
        "the executor traded while the engine warmed up"
    );
    let fixture_trade = &fixture("trade.results.json")["data"]["recent_trades"][0];
    assert!(trades.iter().all(|t| keys(t) == keys(fixture_trade)));
    assert_eq!(
        messages[5].payload["data"]["current_value"],
        json!(format!("{:.2}", sim.nav))
    );
    // The engine's events are read as the daemon reads them, none dropped.
    let read = read(&messages);
    assert_eq!(
        read.len(),
        6,
        "tick, physics, signal, forecast, resume, halt: {read:?}"
    );
    assert!(matches!(
        &read[4],
        Event::System { status: Status::Active, reason: Some(r), .. } if r == "Manual Resume"
    ));
    assert!(matches!(
        read[5],
        Event::System {
            status: Status::Halt,
            ..
        }
    ));
}

#[test]
fn halt_stops_trading_until_resume() {
    let mut sim = Simulation::new(7);
    let (reply, event) = sim.act("halt");
    assert_eq!(reply, json!({"success": true, "message": "Trading halted"}));
    assert_eq!(event, Some(events::system_event(true)));
    assert_eq!(
        sim.act("halt"),
        (json!({"success": false, "message": "Already halted"}), None)
    );
    for _ in 0..5 {
        sim.step();
    }
    let state = normalize::state(&sim.state()).unwrap().sections;
    assert_eq!(state.status, crate::hub::packet::Status::Halt);
    assert_eq!(state.governance.approved_size, Some(0.0));
    let (reply, event) = sim.act("resume");
    assert_eq!(reply["success"], true);
    assert_eq!(event, Some(events::system_event(false)));
    assert!(!sim.operator_halt);
    assert_eq!(
        sim.act("rebalance").1,
        None,
        "only a halt or resume is an event"
    );
}
