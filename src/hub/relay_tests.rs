use super::*;
use crate::hub::encoding::Encoding;

/// The JSON inside a small unmasked text frame.
fn json(frame: &[u8]) -> serde_json::Value {
    let (len, at) = match frame[1] {
        126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
        n => (n as usize, 2),
    };
    serde_json::from_slice(&frame[at..at + len]).unwrap()
}

#[test]
fn subscribers_of_a_channel_or_a_matching_pattern_get_each_message_with_its_offset() {
    let relay = Relay::default();
    let mut exact = relay.subscribe("trade.results", &[], None).rx;
    let mut pattern = relay.subscribe("market.tick.*", &[], None).rx;
    assert_eq!(relay.publish("e", "trade.results", br#"{"n":1}"#), 1);
    assert_eq!(
        relay.publish("e", "market.tick.SPY", br#"{"price":450.1}"#),
        1
    );
    assert_eq!(
        relay.publish("e", "market.tick.AAPL", br#"{"price":190}"#),
        1
    );
    assert_eq!(relay.publish("e", "risk.state", b"{}"), 0, "nobody listens");
    assert_eq!(relay.publish("e", "trade.results", br#"{"n":2}"#), 1);

    let update = exact.try_recv().unwrap();
    assert_eq!(
        json(update.frame(Encoding::Stream)),
        serde_json::json!({"type": "UPDATE", "channel": "trade.results", "offset": 1, "data": {"n": 1}})
    );
    assert_eq!(
        json(update.frame(Encoding::Bridge)),
        serde_json::json!({"type": "update", "channel": "trade.results", "data": {"n": 1}})
    );
    assert_eq!(exact.try_recv().unwrap().offset, 2);
    let ticks: Vec<_> = std::iter::from_fn(|| pattern.try_recv().ok())
        .map(|u| (u.channel.to_string(), u.offset))
        .collect();
    // Offsets count per channel.
    assert_eq!(
        ticks,
        [
            ("market.tick.SPY".into(), 1),
            ("market.tick.AAPL".into(), 1)
        ]
    );
}

#[test]
fn text_that_is_not_json_is_carried_as_raw() {
    let relay = Relay::default();
    let mut rx = relay.subscribe("agent.updates", &[], None).rx;
    relay.publish("e", "agent.updates", b"not json at all: {\"price\": 1");
    let update = rx.try_recv().unwrap();
    assert_eq!(
        json(update.frame(Encoding::Stream))["data"],
        serde_json::json!({"raw": "not json at all: {\"price\": 1"})
    );
}

#[test]
fn topics_nobody_listens_to_go_away() {
    let relay = Relay::default();
    let rx = relay.subscribe("risk.state", &[], None).rx;
    assert_eq!(relay.topics(), 1);
    drop(rx);
    relay.publish("e", "risk.state", b"{}");
    assert_eq!(relay.topics(), 0);
}

/// The (channel, offset) of each update.
fn numbers(updates: &[Arc<Update>]) -> Vec<(String, u64)> {
    updates
        .iter()
        .map(|u| (u.channel.to_string(), u.offset))
        .collect()
}

fn since(list: &[(&str, u64)]) -> Vec<(String, u64)> {
    list.iter().map(|(c, o)| (c.to_string(), *o)).collect()
}

#[test]
fn a_resuming_subscriber_gets_the_kept_messages_after_its_offsets_then_the_live_ones() {
    let relay = Relay::new("e1".into(), 3);
    for n in 1..=5 {
        relay.publish("e1", "market.tick.SPY", format!("{n}").as_bytes());
        relay.publish("e1", "market.tick.QQQ", format!("{n}").as_bytes());
    }
    let asked = since(&[
        ("market.tick.SPY", 3),
        ("market.tick.QQQ", 1),
        ("risk.state", 0),
    ]);
    let mut joined = relay.subscribe("market.tick.*", &asked, Some("e1"));
    // Kept: the last 3 of each, so QQQ after 1 no longer reaches back.
    assert_eq!(
        joined.resumed,
        [
            ("market.tick.SPY".to_owned(), true),
            ("market.tick.QQQ".to_owned(), false)
        ]
    );
    assert_eq!(
        numbers(&joined.missed),
        [("market.tick.SPY".into(), 4), ("market.tick.SPY".into(), 5)]
    );
    relay.publish("e1", "market.tick.SPY", b"6");
    assert_eq!(joined.rx.try_recv().unwrap().offset, 6, "live, no repeat");

    // Up to date: resumed, nothing missed. Ahead of the relay, or another epoch: not.
    let joined = relay.subscribe("market.tick.SPY", &since(&[("market.tick.SPY", 6)]), None);
    assert_eq!((joined.resumed[0].1, joined.missed.len()), (true, 0));
    let joined = relay.subscribe("market.tick.SPY", &since(&[("market.tick.SPY", 9)]), None);
    assert_eq!((joined.resumed[0].1, joined.missed.len()), (false, 0));
    let asked = since(&[("market.tick.SPY", 4)]);
    let joined = relay.subscribe("market.tick.SPY", &asked, Some("e0"));
    assert_eq!((joined.resumed[0].1, joined.missed.len()), (false, 0));
}

#[test]
fn missed_messages_of_several_channels_come_in_the_order_they_were_heard() {
    let relay = Relay::new("e1".into(), 10);
    relay.publish("e1", "a.x", b"1");
    relay.publish("e1", "a.y", b"1");
    relay.publish("e1", "a.x", b"2");
    let joined = relay.subscribe("a.*", &since(&[("a.x", 0), ("a.y", 0)]), None);
    assert_eq!(
        numbers(&joined.missed),
        [("a.x".into(), 1), ("a.y".into(), 1), ("a.x".into(), 2)]
    );
}

#[test]
fn numbered_messages_keep_the_producers_offsets_and_a_new_epoch_starts_over() {
    let relay = Relay::new("local".into(), 10);
    let mut rx = relay.subscribe("trade.results", &[], None).rx;
    relay.publish_numbered("c1", "trade.results", 41, b"{}");
    relay.publish_numbered("c1", "trade.results", 42, b"{}");
    assert_eq!(
        relay.publish_numbered("c1", "trade.results", 42, b"{}"),
        0,
        "a repeat"
    );
    // 43 went by unheard: what is kept starts again at 44, so nobody resumes over the hole.
    relay.publish_numbered("c1", "trade.results", 44, b"{}");
    let offsets: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|u| u.offset)
        .collect();
    assert_eq!(offsets, [41, 42, 44]);
    let joined = relay.subscribe(
        "trade.results",
        &since(&[("trade.results", 42)]),
        Some("c1"),
    );
    assert_eq!((joined.resumed[0].1, joined.missed.len()), (false, 0));
    let joined = relay.subscribe(
        "trade.results",
        &since(&[("trade.results", 43)]),
        Some("c1"),
    );
    assert_eq!(numbers(&joined.missed), [("trade.results".into(), 44)]);
    // Here again, a new count: offsets from 1, the old ones gone, subscribers kept.
    relay.publish("local2", "trade.results", b"{}");
    assert_eq!(rx.try_recv().unwrap().offset, 1);
    let joined = relay.subscribe(
        "trade.results",
        &since(&[("trade.results", 0)]),
        Some("local2"),
    );
    assert_eq!(numbers(&joined.missed), [("trade.results".into(), 1)]);
}

#[test]
fn what_is_kept_stays_within_its_byte_budget() {
    let relay = Relay::new("e".into(), 1_000_000);
    let payload = vec![b'7'; 64 * 1024];
    let total = 2 * KEPT_BYTES / payload.len();
    for _ in 0..total {
        relay.publish("e", "big.one", &payload);
    }
    let inner = relay.inner.lock().unwrap();
    let kept = &inner.channels["big.one"].last;
    assert!(
        inner.kept_bytes <= KEPT_BYTES,
        "{} bytes kept",
        inner.kept_bytes
    );
    assert_eq!(inner.kept_now, kept.len());
    assert!(
        kept.len() < total / 2 + 1,
        "the oldest went: {} kept",
        kept.len()
    );
    assert_eq!(
        kept.back().unwrap().1.offset,
        total as u64,
        "the newest stay"
    );
    drop(inner);
    // Small messages over a channel's cap leave no pile of stale entries behind.
    let relay = Relay::new("e".into(), 2);
    for _ in 0..100_000 {
        relay.publish("e", "small", b"1");
    }
    let inner = relay.inner.lock().unwrap();
    assert_eq!(inner.kept_now, 2);
    assert!(
        inner.kept.len() <= 2 * 2 + 1024 + 1,
        "{} entries",
        inner.kept.len()
    );
}

/// A relayed message in each form, made once: MessagePack (a binary `UPDATE` with the same
/// fields), compressed (RSV1), both.
#[test]
fn a_relayed_message_in_each_form_is_made_once() {
    use crate::hub::deflate::Deflate;
    use crate::hub::form::Form;
    let note = "same, ".repeat(40);
    let message = format!(r#"{{"b":2,"note":"{note}"}}"#);
    let update = frames("trade.results".into(), 3, message.as_bytes());
    let msgpack = Form {
        msgpack: true,
        ..Form::default()
    };
    let frame = update.frame_as(Encoding::Stream, msgpack);
    assert_eq!(
        (frame[0], frame[1]),
        (0x82, 126),
        "a final binary frame, 16-bit length"
    );
    let decoded: serde_json::Value = rmp_serde::from_slice(&frame[4..]).unwrap();
    assert_eq!(
        decoded,
        serde_json::json!({"type": "UPDATE", "channel": "trade.results", "offset": 3,
            "data": {"b": 2, "note": note}})
    );
    let deflate = Some(Deflate {
        min_bytes: 0,
        takeover: false,
    });
    for (encoding, form, first) in [
        (Encoding::Stream, Form { deflate, ..msgpack }, 0xc2),
        (
            Encoding::Bridge,
            Form {
                deflate,
                ..Form::default()
            },
            0xc1,
        ),
    ] {
        let frame = update.frame_as(encoding, form);
        assert_eq!(frame[0], first, "{encoding:?} {form:?}: RSV1 set");
        assert_eq!(frame.as_ptr(), update.frame_as(encoding, form).as_ptr());
    }
    assert_eq!(
        update.frame_as(Encoding::Stream, Form::default()),
        update.frame(Encoding::Stream)
    );
}
