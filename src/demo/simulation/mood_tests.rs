//! The mood switch as the daemon sees it: each step's state answer read by the daemon's own
//! classifier with the default `[regime]`. A mood is read within a few steps of the switch and
//! held; `auto` goes back to the market's drift, which reads neutral most of the time.

use chrono::{DateTime, TimeDelta, Utc};

use super::*;
use crate::config::RegimeConfig;
use crate::input::aggregate::{Inputs, build};
use crate::input::mood::{Mood, Regime, classify};
use crate::input::normalize;

/// Steps (seconds) within which a switched mood must be read.
const WITHIN: usize = 5;
/// Steps it must then keep being read.
const HOLD: usize = 60;

/// The packet the daemon builds from the simulator's state answer as of now.
fn packet(sim: &Simulation) -> crate::hub::packet::Telemetry {
    let mut inputs = Inputs::default();
    inputs
        .state
        .record(normalize::state(&sim.state()), Utc::now());
    build(&inputs, Utc::now(), 50)
}

/// The mood the daemon reads from the simulator as it is now.
fn reading(sim: &Simulation) -> Regime {
    classify(&packet(sim), &RegimeConfig::default()).expect("a fresh state is always read")
}

/// Switches `sim` to `mood` and steps until it reads `want`, within [`WITHIN`] steps, then
/// [`HOLD`] more steps each reading `want`. Returns the steps it took to be read.
fn switch_reads_and_holds(sim: &mut Simulation, mood: DemoMood, want: Regime, what: &str) -> usize {
    sim.set_mood(mood);
    let mut taken = None;
    for step in 1..=WITHIN {
        sim.step();
        if reading(sim) == want {
            taken = Some(step);
            break;
        }
    }
    let taken = taken.unwrap_or_else(|| {
        panic!(
            "{what}: not read as {want:?} within {WITHIN} steps (velocity {}, side {}, drawdown {})",
            sim.velocity,
            sim.side(),
            sim.drawdown()
        )
    });
    for step in 1..=HOLD {
        sim.step();
        assert_eq!(
            reading(sim),
            want,
            "{what}: {step} steps after it was read (velocity {}, alpha {}, side {}, drawdown {})",
            sim.velocity,
            sim.alpha,
            sim.side(),
            sim.drawdown()
        );
    }
    taken
}

#[test]
fn each_mood_is_read_within_five_steps_and_held_from_any_other() {
    use DemoMood::*;
    let moods = [
        (Crash, Regime::Crash),
        (Bull, Regime::Bull),
        (Neutral, Regime::Neutral),
        (Crash, Regime::Crash),
        (Neutral, Regime::Neutral),
        (Bull, Regime::Bull),
        (Crash, Regime::Crash),
    ];
    let mut slowest = 0;
    for seed in 0..20 {
        let mut sim = Simulation::new(seed);
        // Some drift first, as a demo that has been running a while.
        for _ in 0..seed * 10 {
            sim.step();
        }
        let mut from = "auto".to_owned();
        for (mood, want) in moods {
            let what = format!("seed {seed}, {from} to {mood}");
            slowest = slowest.max(switch_reads_and_holds(&mut sim, mood, want, &what));
            from = mood.to_string();
        }
    }
    assert!(
        slowest >= 2,
        "steered, not jumped: read after {slowest} steps at most"
    );
}

#[test]
fn bull_and_neutral_get_out_of_a_halted_engine_and_a_crash_drawdown() {
    for seed in 0..20 {
        // The worst start for a rally: falling fast, the engine in the critical regime with no
        // confidence, and the book 15 % under water (crash by drawdown alone, and halted).
        let worst = |seed| {
            let mut sim = Simulation::new(seed);
            sim.velocity = -0.02;
            sim.alpha = 1.2;
            sim.confidence = 0.0;
            sim.nav = sim.peak_nav * 0.85;
            assert_eq!(reading(&sim), Regime::Crash);
            assert!(sim.halted());
            sim
        };
        let mut sim = worst(seed);
        switch_reads_and_holds(&mut sim, DemoMood::Bull, Regime::Bull, "worst to bull");
        let mut sim = worst(seed);
        switch_reads_and_holds(
            &mut sim,
            DemoMood::Neutral,
            Regime::Neutral,
            "worst to neutral",
        );
        sim.velocity = 0.02;
        sim.nav = sim.peak_nav * 0.85;
        switch_reads_and_holds(&mut sim, DemoMood::Crash, Regime::Crash, "rising to crash");
    }
}

#[test]
fn an_operator_halt_still_halts_a_switched_market() {
    let mut sim = Simulation::new(5);
    switch_reads_and_holds(&mut sim, DemoMood::Crash, Regime::Crash, "crash");
    sim.act("halt");
    sim.step();
    let state = normalize::state(&sim.state()).unwrap().sections;
    assert_eq!(state.status, crate::hub::packet::Status::Halt);
    assert_eq!(reading(&sim), Regime::Crash, "the market still falls");
}

#[test]
fn auto_after_a_crash_goes_back_to_its_drift() {
    for seed in 0..20 {
        let mut sim = Simulation::new(seed);
        switch_reads_and_holds(&mut sim, DemoMood::Crash, Regime::Crash, "crash");
        sim.set_mood(DemoMood::Auto);
        let back = (1..=60).find(|_| {
            sim.step();
            reading(&sim) == Regime::Neutral
        });
        assert!(
            back.is_some(),
            "seed {seed}: auto still reads crash after 60 steps (velocity {})",
            sim.velocity
        );
        // Left to itself again: the velocity moves by the random walk's shocks, no longer held.
        let velocities: Vec<f64> = (0..120)
            .map(|_| {
                sim.step();
                sim.velocity
            })
            .collect();
        let spread = velocities.iter().cloned().fold(f64::MIN, f64::max)
            - velocities.iter().cloned().fold(f64::MAX, f64::min);
        assert!(
            spread > 0.002,
            "seed {seed}: the velocity drifts again, spread {spread}"
        );
    }
}

/// What half an hour of `auto` reads as: the share of readings each mood had, and how many
/// moods the daemon announced (with the default dwell).
#[derive(Debug, Default)]
struct Drift {
    readings: [usize; 3],
    /// Times a reading differed from the one before.
    turns: usize,
    announced: [usize; 3],
    halted: usize,
}

fn index(regime: Regime) -> usize {
    match regime {
        Regime::Crash => 0,
        Regime::Bull => 1,
        Regime::Neutral => 2,
    }
}

/// `steps` seconds of `sim` left to itself, read and announced as the daemon would, on the
/// simulation's own clock (one step a second from `start`, no waiting).
fn drift(sim: &mut Simulation, steps: usize, start: DateTime<Utc>) -> Drift {
    let config = RegimeConfig::default();
    let mut mood = Mood::new(&config);
    let mut seen = Drift::default();
    let mut last = None;
    for second in 0..steps {
        sim.step();
        let packet = packet(sim);
        let read = classify(&packet, &config);
        seen.readings[index(read.unwrap())] += 1;
        seen.turns += usize::from(last.is_some_and(|last| last != read));
        last = Some(read);
        seen.halted += usize::from(sim.halted());
        let now = start + TimeDelta::seconds(second as i64);
        if let Some(change) = mood.observe(read, &packet.state.market, now) {
            seen.announced[index(change.mood.regime)] += 1;
        }
    }
    seen
}

/// `auto` is mostly neutral, with a mood now and then: the pull toward zero ([`AUTO_PULL`])
/// keeps the random walk from settling past a threshold. Measured over half an hour of each of
/// 10 seeds; `cargo test --lib auto_is_mostly_neutral -- --nocapture` prints the figures.
#[test]
fn auto_is_mostly_neutral_with_an_occasional_mood() {
    const STEPS: usize = 1800;
    let start = DateTime::UNIX_EPOCH;
    let mut total = Drift::default();
    for seed in 0..10 {
        let mut sim = Simulation::new(seed);
        let seen = drift(&mut sim, STEPS, start);
        println!("seed {seed}: {seen:?}");
        let neutral = seen.readings[2] as f64 / STEPS as f64;
        assert!(
            neutral >= 0.7,
            "seed {seed}: neutral only {neutral:.2} of the time: {seen:?}"
        );
        for i in 0..3 {
            total.readings[i] += seen.readings[i];
            total.announced[i] += seen.announced[i];
        }
        total.halted += seen.halted;
        total.turns += seen.turns;
    }
    println!("10 × {STEPS} s: {total:?}");
    let neutral = total.readings[2] as f64 / (10 * STEPS) as f64;
    assert!(
        neutral >= 0.85,
        "neutral {neutral:.3} of the time: {total:?}"
    );
    assert!(
        total.announced[0] >= 10 && total.announced[1] >= 5,
        "crash and bull announced now and then: {total:?}"
    );
}
