//! Tests of the packet: the hand-written envelope is the `Packet` type serialized, and a packet
//! reads back as it was written.

use super::*;

/// The hand-written envelope is exactly the `Packet` type serialized, so the schema and the
/// TypeScript types generated from `Packet` describe the bytes on the wire.
#[test]
fn the_envelope_is_the_packet_type_serialized() {
    let data = Telemetry::initializing(Utc::now());
    let body = body(&data);
    for (kind, name, resumed) in [
        (PacketType::Telemetry, "TELEMETRY", None),
        (PacketType::Welcome, "WELCOME", None),
        (PacketType::Welcome, "WELCOME", Some(true)),
        (PacketType::Welcome, "WELCOME", Some(false)),
    ] {
        let packet = Packet {
            kind,
            seq: 3,
            data: data.clone(),
            epoch: "e-\"1\"".into(),
            resumed,
        };
        assert_eq!(
            envelope(name, 3, "e-\"1\"", &body, resumed),
            serde_json::to_string(&packet).unwrap()
        );
    }
}

/// A packet read back is the packet: a daemon that receives another's packet (several
/// daemons, one poll) shows the same data.
#[test]
fn a_packet_reads_back_as_it_was_written() {
    let mut data = Telemetry::initializing(Utc::now());
    data.state.status = Status::Halt;
    data.state.market.price = Some(450.32);
    data.state.logs.push(LogEntry {
        level: Level::Warning,
        message: "Chronos slow".into(),
        timestamp: Some(Timestamp(Utc::now())),
    });
    data.state
        .extra
        .insert("sentiment".into(), serde_json::json!({"label": "Bullish"}));
    data.agents.insert("risk".into(), AgentStats::default());
    data.sources.redis = Some(SourceHealth::default());
    let written = body(&data);
    let read: Telemetry = serde_json::from_str(&written).unwrap();
    assert_eq!(body(&read), written);
    assert_eq!(
        read.state.extra.len(),
        1,
        "only the engine's own sections are extra"
    );
}

/// The table of endpoints names every engine endpoint, each at its own field, in the order
/// `sources` is serialized; Redis follows when it is on.
#[test]
fn every_engine_endpoint_has_its_row_in_sources_in_the_serialized_order() {
    let mut sources = Sources {
        redis: Some(SourceHealth::default()),
        ..Sources::default()
    };
    for (i, kind) in crate::engine::SourceKind::ALL.into_iter().enumerate() {
        sources
            .endpoint_mut(kind.name())
            .unwrap_or_else(|| panic!("no row for {}", kind.name()))
            .age_ms = Some(i as u64);
    }
    assert!(
        sources.endpoint_mut("redis").is_none(),
        "redis is no endpoint"
    );
    sources.each_mut(|name, health| health.error = Some(name.to_owned()));
    let named: Vec<(&str, Option<u64>, Option<&str>)> = sources
        .named()
        .into_iter()
        .map(|(name, health)| (name, health.age_ms, health.error.as_deref()))
        .collect();
    assert_eq!(
        named,
        [
            ("state", Some(0), Some("state")),
            ("agents", Some(1), Some("agents")),
            ("models", Some(2), Some("models")),
            ("redis", None, Some("redis")),
        ]
    );
    // The JSON holds exactly these, in this order.
    let json = serde_json::to_string(&sources).unwrap();
    let at: Vec<usize> = named
        .iter()
        .map(|(name, ..)| json.find(&format!("\"{name}\":")).unwrap())
        .collect();
    assert!(at.is_sorted(), "{json}");
    assert_eq!(
        serde_json::to_value(&sources)
            .unwrap()
            .as_object()
            .unwrap()
            .len(),
        named.len()
    );
}
