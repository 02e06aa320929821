//! Tests of reading Redis messages into events: every merged fixture, loose values, junk and
//! deep nesting dropped with a reason.

use super::*;
use chrono::{DateTime, Utc};
use serde_json::json;

macro_rules! fixture {
    ($file:literal) => {
        include_str!(concat!("../../../fixtures/redis/", $file)).as_bytes()
    };
}

fn at(rfc3339: &str) -> Option<Timestamp> {
    Some(Timestamp(
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&Utc),
    ))
}

fn read(channel: &str, payload: Value) -> Result<Option<Event>, Dropped> {
    parse(channel, payload.to_string().as_bytes())
}

#[test]
fn every_merged_fixture_reads_as_its_event() {
    let cases: [(&str, &[u8], Event); 8] = [
        (
            "market.tick.SPY",
            fixture!("market.tick.SPY.json"),
            Event::Tick {
                symbol: "SPY".into(),
                price: 450.41,
                at: at("2025-12-21T12:00:00.123456Z"),
            },
        ),
        (
            "physics.forces",
            fixture!("physics.forces.json"),
            Event::Physics {
                symbol: Some("SPY".into()),
                alpha: Some(1.72),
                price: Some(450.41),
                at: at("2025-12-21T12:00:00.123456Z"),
            },
        ),
        (
            "physics.forces",
            fixture!("physics.forces-flat.json"),
            Event::Physics {
                symbol: Some("SPY".into()),
                alpha: Some(2.31),
                price: Some(450.38),
                at: at("2025-12-21T12:00:01Z"),
            },
        ),
        (
            "physics.forces",
            fixture!("physics.forces-error.json"),
            Event::PhysicsError {
                symbol: Some("SPY".into()),
                error: "float division by zero".into(),
                // The envelope's timestamp is null: the vector's is used.
                at: at("2025-12-21T12:00:02Z"),
            },
        ),
        (
            "strategy.signals",
            fixture!("strategy.signals.json"),
            Event::Signal {
                side: Some(Side::Flat),
                confidence: Some(0.35),
                reasoning: Some("Momentum fading in a Levy regime".into()),
                at: at("2025-12-21T12:00:00.3Z"),
            },
        ),
        (
            "forecast.signals",
            fixture!("forecast.signals.json"),
            Event::Forecast {
                section: json!({
                    "p10": 449.8, "p50": 450.6, "p90": 451.5, "horizon": 10,
                    "confidence": 0.62, "is_synthetic": false,
                    "timestamp": "2025-12-21T12:00:00.200Z"
                })
                .as_object()
                .unwrap()
                .clone(),
                at: at("2025-12-21T12:00:00.2Z"),
            },
        ),
        (
            "system_events",
            fixture!("system_events-halt.json"),
            Event::System {
                status: Status::Halt,
                reason: Some("Manual Kill Switch".into()),
                at: None,
            },
        ),
        (
            "system_events",
            fixture!("system_events-resume.json"),
            Event::System {
                status: Status::Active,
                reason: Some("Manual Resume".into()),
                at: None,
            },
        ),
    ];
    for (channel, payload, want) in cases {
        assert_eq!(parse(channel, payload), Ok(Some(want)), "{channel}");
    }
}

#[test]
fn relayed_channels_are_not_merged() {
    let cases: [(&str, &[u8]); 5] = [
        ("agent.updates", fixture!("agent.updates.json")),
        ("risk.state", fixture!("risk.state.json")),
        ("trade.results", fixture!("trade.results.json")),
        ("market.quote.SPY", fixture!("market.quote.SPY.json")),
        // Junk on a relayed channel is the relay's business, not a merge drop.
        ("agent.updates", fixture!("garbage.txt")),
    ];
    for (channel, payload) in cases {
        assert_eq!(parse(channel, payload), Ok(None), "{channel}");
        assert!(!is_merged(channel), "{channel}");
    }
}

#[test]
fn garbage_is_not_json_on_every_merged_channel() {
    for channel in [
        "market.tick.SPY",
        "physics.forces",
        "strategy.signals",
        "forecast.signals",
        "system_events",
    ] {
        assert!(is_merged(channel), "{channel}");
        assert_eq!(
            parse(channel, fixture!("garbage.txt")),
            Err(Dropped("not JSON")),
            "{channel}"
        );
    }
}

#[test]
fn the_subscription_patterns_are_the_merged_channels() {
    for pattern in MERGED {
        assert!(is_merged(&pattern.replace('*', "QQQ")), "{pattern}");
    }
    assert!(!is_merged("market.ticks"));
    assert!(!is_merged("physics.forces.SPY"));
}

#[test]
fn nested_and_flat_physics_read_the_same() {
    let figures = json!({"mass": 12.5, "momentum": 0.0031, "friction": 0.02,
                         "price": "450.41", "alpha_coefficient": 1.72});
    let mut flat = figures.clone();
    flat["symbol"] = json!("SPY");
    flat["timestamp"] = json!("2025-12-21T12:00:00.123456");
    let nested = json!({"symbol": "SPY", "timestamp": "2025-12-21T12:00:00.123456",
                        "vectors": figures});
    let want = Ok(Some(Event::Physics {
        symbol: Some("SPY".into()),
        alpha: Some(1.72),
        price: Some(450.41),
        at: at("2025-12-21T12:00:00.123456Z"),
    }));
    assert_eq!(read("physics.forces", flat), want);
    assert_eq!(read("physics.forces", nested), want);
}

#[test]
fn loose_values_are_read_like_the_poll_reads_them() {
    let cases = [
        (
            "market.tick.SPY",
            json!({"price": " 450.5 ", "timestamp": "yesterday"}),
            Event::Tick {
                symbol: "SPY".into(),
                price: 450.5,
                at: None,
            },
        ),
        (
            // A channel without a symbol: the message's own.
            "market.tick.",
            json!({"symbol": "QQQ", "price": 389, "timestamp": "2025-12-21T14:00:00+02:00"}),
            Event::Tick {
                symbol: "QQQ".into(),
                price: 389.0,
                at: at("2025-12-21T12:00:00Z"),
            },
        ),
        (
            "physics.forces",
            json!({"vectors": {"alpha_coefficient": "NaN", "price": 0.0}}),
            Event::Physics {
                symbol: None,
                alpha: None,
                price: Some(0.0),
                at: None,
            },
        ),
        (
            "strategy.signals",
            json!({"side": "Side.LONG", "strength": "0.7",
                   "meta": {"score": 0.4, "physics_veto": true}}),
            Event::Signal {
                side: Some(Side::Buy),
                confidence: Some(0.7),
                reasoning: Some(r#"{"physics_veto":true,"score":0.4}"#.into()),
                at: None,
            },
        ),
        (
            "strategy.signals",
            json!({"side": "sideways", "strength": 0.2, "meta": {"reasoning": 3}}),
            Event::Signal {
                side: None,
                confidence: Some(0.2),
                reasoning: Some(r#"{"reasoning":3}"#.into()),
                at: None,
            },
        ),
        (
            "strategy.signals",
            json!({"side": "SELL", "strength": 1, "meta": null}),
            Event::Signal {
                side: Some(Side::Sell),
                confidence: Some(1.0),
                reasoning: None,
                at: None,
            },
        ),
        (
            "system_events",
            json!({"event": " system_halt ", "reason": "drawdown", "timestamp": "2025-12-21 12:00:00"}),
            Event::System {
                status: Status::Halt,
                reason: Some("drawdown".into()),
                at: at("2025-12-21T12:00:00Z"),
            },
        ),
        (
            "system_events",
            json!({"event": "SYSTEM_RESUME", "data": {"reason": 7}}),
            Event::System {
                status: Status::Active,
                reason: None,
                at: None,
            },
        ),
    ];
    for (channel, payload, want) in cases {
        assert_eq!(read(channel, payload.clone()), Ok(Some(want)), "{payload}");
    }
}

#[test]
fn a_forecast_keeps_exactly_its_seven_keys() {
    let payload = json!({"p10": "449.8", "p50": 450.6, "p90": "high", "horizon": "10",
                         "confidence": null, "is_synthetic": " TRUE ",
                         "timestamp": "2025-12-21 12:00:00.5", "symbol": "SPY", "model": "x"});
    let Ok(Some(Event::Forecast { section, at: when })) = read("forecast.signals", payload) else {
        panic!("not a forecast");
    };
    assert_eq!(
        Value::Object(section),
        json!({"p10": 449.8, "p50": 450.6, "p90": null, "horizon": 10.0, "confidence": null,
               "is_synthetic": true, "timestamp": "2025-12-21T12:00:00.500Z"})
    );
    assert_eq!(when, at("2025-12-21T12:00:00.5Z"));

    let Ok(Some(Event::Forecast { section, at: when })) = read(
        "forecast.signals",
        json!({"p50": 1, "timestamp": 5, "is_synthetic": 1}),
    ) else {
        panic!("not a forecast");
    };
    assert_eq!(
        Value::Object(section),
        json!({"p10": null, "p50": 1, "p90": null, "horizon": null, "confidence": null,
               "is_synthetic": null, "timestamp": null})
    );
    assert_eq!(when, None);
}

#[test]
fn other_system_events_merge_nothing() {
    assert_eq!(
        read(
            "system_events",
            json!({"event": "SYSTEM_STARTUP", "data": {}})
        ),
        Ok(None)
    );
}

#[test]
fn junk_shapes_are_dropped_with_a_reason() {
    let merged = [
        "market.tick.SPY",
        "physics.forces",
        "strategy.signals",
        "forecast.signals",
        "system_events",
    ];
    for channel in merged {
        for payload in [
            json!([1, 2]),
            json!("SPY"),
            json!(450.41),
            json!(null),
            json!(true),
        ] {
            assert_eq!(
                read(channel, payload.clone()),
                Err(Dropped("expected an object")),
                "{channel} {payload}"
            );
        }
        for payload in [
            &b""[..],
            b"NaN",
            b"{\"price\": NaN}",
            b"\xff\xfe{}",
            b"{} {}",
        ] {
            assert_eq!(
                parse(channel, payload),
                Err(Dropped("not JSON")),
                "{channel} {payload:?}"
            );
        }
    }
    let cases = [
        ("market.tick.SPY", json!({}), "no price"),
        ("market.tick.SPY", json!({"price": "abc"}), "no price"),
        ("market.tick.SPY", json!({"price": "NaN"}), "no price"),
        ("market.tick.SPY", json!({"price": "inf"}), "no price"),
        ("market.tick.SPY", json!({"price": null}), "no price"),
        ("market.tick.SPY", json!({"price": [450.41]}), "no price"),
        ("market.tick.", json!({"price": 1.0}), "no symbol"),
        (
            "market.tick. ",
            json!({"symbol": "", "price": 1.0}),
            "no symbol",
        ),
        ("physics.forces", json!({}), "no alpha or price"),
        (
            "physics.forces",
            json!({"vectors": {"mass": 1.0}}),
            "no alpha or price",
        ),
        (
            "physics.forces",
            json!({"vectors": [1.72]}),
            "vectors is not an object",
        ),
        (
            "physics.forces",
            json!({"vectors": "1.72"}),
            "vectors is not an object",
        ),
        ("strategy.signals", json!({}), "no side, strength or meta"),
        (
            "strategy.signals",
            json!({"side": "up", "strength": "x"}),
            "no side, strength or meta",
        ),
        ("forecast.signals", json!({}), "no p10, p50 or p90"),
        (
            "forecast.signals",
            json!({"p50": "abc", "horizon": 10}),
            "no p10, p50 or p90",
        ),
        ("system_events", json!({}), "no event"),
        ("system_events", json!({"event": 1}), "no event"),
        (
            "system_events",
            json!({"data": {"status": "HALTED"}}),
            "no event",
        ),
    ];
    for (channel, payload, reason) in cases {
        assert_eq!(
            read(channel, payload.clone()),
            Err(Dropped(reason)),
            "{channel} {payload}"
        );
    }
}

#[test]
fn deep_nesting_is_refused_without_a_crash() {
    let depth = 10_000;
    let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let inside = format!(r#"{{"price": {arrays}}}"#);
    for payload in [arrays, inside] {
        assert_eq!(
            parse("market.tick.SPY", payload.as_bytes()),
            Err(Dropped("not JSON"))
        );
    }
}

#[test]
fn a_dropped_message_says_why() {
    assert_eq!(Dropped("no price").to_string(), "no price");
}
