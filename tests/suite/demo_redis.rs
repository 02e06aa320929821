//! `bff --demo --redis-url URL` against a real `redis-server`: the demo engine publishes its
//! events there, the daemon pushes them between polls (the price moves several times a second)
//! and relays the agents' channels; a halt is published on `system_events`; the demo's publisher
//! rides out a Redis that is away; a Redis named only in the config file gets nothing from the
//! demo; and `bff demo-engine --redis-url` publishes on its own.

use crate::common;

use common::process::BffProcess;
use common::redis::RedisServer;
use common::{Ws, next_packet, packet_where, send_text, within};
use serde_json::{Value, json};

/// A stream client of `bff`, past its WELCOME.
async fn client(bff: &BffProcess) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/", bff.addr()))
        .await
        .unwrap();
    assert_eq!(next_packet(&mut ws).await["type"], "WELCOME");
    ws
}

/// The log line containing `needle`, whether it came before the daemon was ready or comes
/// within the harness's patience.
fn logged(bff: &mut BffProcess, needle: &str) -> String {
    match bff.log().iter().find(|line| line.contains(needle)) {
        Some(line) => line.clone(),
        None => bff.line_containing(needle),
    }
}

/// A file under the tests' temporary directory holding `text`.
fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Subscribes `ws` to `channels` and returns the `SUBSCRIBED` answer.
async fn subscribe(ws: &mut Ws, channels: &[&str]) -> Value {
    let request = json!({"type": "SUBSCRIBE", "channels": channels});
    send_text(ws, &request.to_string()).await;
    packet_where(ws, "SUBSCRIBED", |p| p["type"] == "SUBSCRIBED").await
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_publishes_its_events_and_the_daemon_pushes_them_between_polls() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut bff = BffProcess::demo(&["--redis-url", &redis.url()]);
    let line = logged(&mut bff, "Demo engine publishing to Redis");
    assert!(
        line.contains(&redis.url()) && line.contains("market.tick.SPY 5 times a second"),
        "{line}"
    );

    let mut ws = client(&bff).await;
    packet_where(&mut ws, "sources.redis.ok", |p| {
        p["data"]["sources"]["redis"]["ok"] == true
    })
    .await;
    // The stream until the price has moved six times (ticks come five times a second, polls
    // once): no packet missed, and the moves pushed between the polls, not only at them.
    let mut packets = Vec::new();
    let mut moves = 0;
    within("the price to move six times", async {
        while moves < 6 {
            let packet = next_packet(&mut ws).await;
            if packet["type"] != "TELEMETRY" {
                continue;
            }
            if let Some(last) = packets.last() {
                let last: &Value = last;
                if last["data"]["market"]["price"] != packet["data"]["market"]["price"] {
                    moves += 1;
                }
            }
            packets.push(packet);
        }
    })
    .await;
    for pair in packets.windows(2) {
        assert_eq!(
            pair[1]["seq"].as_u64(),
            pair[0]["seq"].as_u64().map(|s| s + 1),
            "no packet missed"
        );
    }
    assert!(
        packets
            .iter()
            .all(|p| p["data"]["sources"]["redis"]["ok"] == true
                && p["data"]["market"]["symbol"] == "SPY"),
        "{packets:#?}"
    );
    let (_, metrics) = common::reqwest_get(&format!("http://{}/metrics", bff.addr())).await;
    let pushes: f64 = metrics
        .as_str()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("bff_redis_pushes_total "))
        .expect("bff_redis_pushes_total")
        .parse()
        .unwrap();
    // Without pushes the price could only move at a poll (and one push is for Redis's health).
    assert!(
        pushes >= f64::from(moves / 2),
        "{pushes} packets pushed between polls for {moves} moves: {metrics}"
    );

    // The agents' channels are relayed as the demo publishes them.
    let answer = subscribe(&mut ws, &["agent.updates", "risk.state"]).await;
    assert_eq!(
        answer,
        json!({"type": "SUBSCRIBED", "channels": ["agent.updates", "risk.state"], "rejected": []})
    );
    let update = packet_where(&mut ws, "an agent.updates UPDATE", |p| {
        p["type"] == "UPDATE" && p["channel"] == "agent.updates"
    })
    .await;
    assert!(update["offset"].as_u64() >= Some(1), "{update}");
    assert_eq!(update["data"]["agent"], "capital-allocator", "{update}");
    assert_eq!(update["data"]["type"], "state_update", "{update}");
    assert!(
        update["data"]["data"]["total_capital"].is_string(),
        "numbers as strings, as the agents send them: {update}"
    );
    let next = packet_where(&mut ws, "the next agent.updates UPDATE", |p| {
        p["type"] == "UPDATE" && p["channel"] == "agent.updates"
    })
    .await;
    assert_eq!(
        next["offset"].as_u64(),
        update["offset"].as_u64().map(|o| o + 1),
        "one a second, none lost"
    );
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_sent_by_a_dashboard_is_published_on_system_events() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let bff = BffProcess::start(
        &[
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--redis-url",
            &redis.url(),
            "--config",
            temp_file(
                "demo-redis-commands.toml",
                "[commands]\nallow_without_auth = true\n",
            )
            .to_str()
            .unwrap(),
        ],
        &[],
    );
    let mut ws = client(&bff).await;
    packet_where(&mut ws, "sources.redis.ok", |p| {
        p["data"]["sources"]["redis"]["ok"] == true
    })
    .await;
    subscribe(&mut ws, &["system_events"]).await;
    send_text(&mut ws, r#"{"type":"HALT","id":"demo-halt"}"#).await;
    let event = packet_where(&mut ws, "the SYSTEM_HALT event", |p| {
        p["type"] == "UPDATE" && p["channel"] == "system_events"
    })
    .await;
    assert_eq!(
        event["data"],
        json!({"event": "SYSTEM_HALT", "data": {"status": "HALTED", "reason": "Manual Kill Switch"}})
    );
    // The event merged: its log entry in a packet that says HALT.
    packet_where(&mut ws, "HALT with the event's log entry", |p| {
        p["type"] == "TELEMETRY"
            && p["data"]["status"] == "HALT"
            && p["data"]["logs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["message"] == "System halt: Manual Kill Switch")
    })
    .await;
    send_text(&mut ws, r#"{"type":"RESUME","id":"demo-resume"}"#).await;
    let event = packet_where(&mut ws, "the SYSTEM_RESUME event", |p| {
        p["type"] == "UPDATE" && p["channel"] == "system_events"
    })
    .await;
    assert_eq!(event["data"]["event"], "SYSTEM_RESUME");
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_keeps_publishing_after_redis_comes_back() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    redis.stop();
    let mut bff = BffProcess::demo(&["--redis-url", &redis.url()]);
    let warning = logged(&mut bff, "Demo events not published");
    assert!(warning.contains("WARN"), "{warning}");
    redis.restart();
    bff.line_containing("Demo events published to Redis again");
    let mut ws = client(&bff).await;
    packet_where(&mut ws, "sources.redis.ok", |p| {
        p["data"]["sources"]["redis"]["ok"] == true
    })
    .await;
    subscribe(&mut ws, &["market.tick.*"]).await;
    let tick = packet_where(&mut ws, "a tick relayed", |p| p["type"] == "UPDATE").await;
    assert_eq!(tick["channel"], "market.tick.SPY");
    assert!(tick["data"]["price"].is_f64(), "{tick}");
    assert_eq!(
        bff.log()
            .iter()
            .filter(|l| l.contains("Demo events not published"))
            .count(),
        1,
        "one warning for the whole outage"
    );
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_url_from_the_config_file_gets_nothing_from_the_demo() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let config = temp_file(
        &format!("redis-in-file-{}.toml", redis.port()),
        &format!("[redis]\nurl = \"{}\"\n", redis.url()),
    );
    let mut bff = BffProcess::demo(&["--config", config.to_str().unwrap()]);
    logged(
        &mut bff,
        "publishes nothing to redis.url from the config file",
    );
    let mut ws = client(&bff).await;
    packet_where(&mut ws, "sources.redis.ok", |p| {
        p["data"]["sources"]["redis"]["ok"] == true
    })
    .await;
    subscribe(&mut ws, &["agent.updates", "market.tick.*"]).await;
    // Two polls' worth of the stream, and not one message from the demo.
    within("two more polls", async {
        let mut polls = 0;
        while polls < 2 {
            let packet = next_packet(&mut ws).await;
            assert_ne!(packet["type"], "UPDATE", "{packet}");
            if packet["type"] == "TELEMETRY" {
                polls += 1;
            }
        }
    })
    .await;
    assert!(
        !bff.log()
            .iter()
            .any(|l| l.contains("Demo engine publishing to Redis")),
        "{:#?}",
        bff.log()
    );
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[test]
fn demo_engine_alone_publishes_with_redis_url_too() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut subscriber = redis.connect();
    std::io::Write::write_all(
        &mut subscriber,
        &common::redis::encode_command(&[b"SUBSCRIBE", b"market.tick.SPY"]),
    )
    .unwrap();
    let mut replies = std::io::BufReader::new(subscriber);
    let confirmed = common::redis::read_reply(&mut replies).unwrap();
    assert_eq!(confirmed.array()[0].text(), "subscribe");
    let _engine = BffProcess::start_until(
        &[
            "demo-engine",
            "--on",
            "127.0.0.1:0",
            "--redis-url",
            &redis.url(),
        ],
        &[],
        "Demo engine simulator running",
    );
    let message = common::redis::read_reply(&mut replies).unwrap();
    let message = message.array();
    assert_eq!(
        (message[0].text(), message[1].text()),
        ("message".to_owned(), "market.tick.SPY".to_owned())
    );
    let tick: Value = serde_json::from_slice(message[2].bulk()).unwrap();
    assert_eq!(tick["symbol"], "SPY");
    assert!(tick["price"].is_f64(), "{tick}");
    assert!(
        tick["timestamp"].as_str().unwrap().ends_with("+00:00"),
        "{tick}"
    );
}
