//! The Redis input against a real `redis-server` per test: the engine's events merged and pushed
//! at once, channels relayed, and every fault (Redis missing at start, restarted, the daemon's
//! connection killed, Redis paused, junk, a burst) leaving the 1 Hz stream whole, with
//! `sources.redis` turning stale and recovering, one warning and one recovery line, and counts.

mod common;

use std::sync::LazyLock;
use std::time::Instant;

use bff::{Config, RedisUrl};
use common::redis::RedisServer;
use common::{
    Captured, Daemon, FakeEngine, Watcher, Ws, config, next_packet, packet_where, send_text, within,
};
use serde_json::{Value, json};

/// Every log line of this test binary.
static LOGS: LazyLock<Captured> = LazyLock::new(Captured::install);

/// The test engine's config with Redis at `redis`, a fast poll, and a short silence.
fn with_redis(engine: &FakeEngine, redis: &RedisServer) -> Config {
    let mut cfg = config(engine);
    cfg.redis.url = RedisUrl::new(redis.url());
    cfg.redis.silence_ms = 1_500;
    cfg
}

/// Publishes on Redis off the runtime's threads (a paused server would block them).
async fn publish(redis: &RedisServer, channel: &str, payload: impl Into<Vec<u8>>) -> i64 {
    let (url, channel, payload) = (redis.addr(), channel.to_owned(), payload.into());
    tokio::task::spawn_blocking(move || common::redis::publish_to(url, &channel, &payload))
        .await
        .unwrap()
}

/// Waits until the daemon's packets say Redis is fresh (`true`) or stale.
async fn redis_ok(ws: &mut Ws, ok: bool) -> Value {
    packet_where(ws, &format!("sources.redis.ok == {ok}"), |p| {
        p["data"]["sources"]["redis"]["ok"] == ok
    })
    .await
}

/// A daemon on a Redis of its own, polling the test engine, and a stream client that saw Redis
/// fresh in a packet (`fresh`).
struct Subscribed {
    redis: RedisServer,
    engine: FakeEngine,
    daemon: Daemon,
    ws: Ws,
    fresh: Value,
}

/// A [`Subscribed`] daemon and client; `None` (skipped) without `redis-server`.
async fn subscribed() -> Option<Subscribed> {
    LazyLock::force(&LOGS);
    let redis = RedisServer::start()?;
    let engine = FakeEngine::samples().await;
    let daemon = Daemon::start(with_redis(&engine, &redis)).await;
    let mut ws = client(&daemon).await;
    let fresh = redis_ok(&mut ws, true).await;
    Some(Subscribed {
        redis,
        engine,
        daemon,
        ws,
        fresh,
    })
}

/// A stream client past its WELCOME.
async fn client(daemon: &Daemon) -> Ws {
    let mut ws = daemon.connect().await;
    assert_eq!(next_packet(&mut ws).await["type"], "WELCOME");
    ws
}

/// Publishes a tick of `price` for the active symbol and waits for a packet showing it.
async fn tick_shows(redis: &RedisServer, ws: &mut Ws, price: f64, what: &str) {
    let tick = json!({"price": price, "timestamp": now()}).to_string();
    publish(redis, "market.tick.SPY", tick).await;
    packet_where(ws, what, |p| p["data"]["market"]["price"] == price).await;
}

fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string()
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_events_are_merged_and_pushed_before_the_next_poll() {
    LazyLock::force(&LOGS);
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let engine = FakeEngine::samples().await;
    let mut cfg = with_redis(&engine, &redis);
    // The next poll is far away: whatever changes before it was pushed.
    cfg.engine.poll_interval_ms = 20_000;
    let daemon = Daemon::start(cfg).await;
    let mut ws = client(&daemon).await;
    // Subscribed, and the first poll in (a push for Redis's health may come before it).
    let first = packet_where(&mut ws, "Redis fresh and the first poll in", |p| {
        p["data"]["sources"]["redis"]["ok"] == true && p["data"]["sources"]["state"]["ok"] == true
    })
    .await;
    assert_eq!(first["data"]["market"]["price"], 450.32);
    let seq = first["seq"].as_u64().unwrap();

    let tick = json!({"symbol": "SPY", "price": 451.25, "size": 100.0, "timestamp": now()});
    assert_eq!(
        publish(&redis, "market.tick.SPY", tick.to_string()).await,
        1
    );
    let pushed = packet_where(&mut ws, "the tick", |p| {
        p["data"]["market"]["price"] == 451.25
    })
    .await;
    assert!(pushed["seq"].as_u64() > Some(seq));
    // Another symbol's tick is not merged.
    publish(
        &redis,
        "market.tick.AAPL",
        json!({"price": 190.0}).to_string(),
    )
    .await;
    // Another symbol's tick is not merged: the next message (one subscription, so it comes after
    // the tick) changes nothing but the signal, and the price is still the SPY tick's.
    let signal = json!({"timestamp": now(), "symbol": "SPY", "side": "HOLD", "strength": 0.35,
        "meta": {"reasoning": "Momentum fading"}});
    publish(&redis, "strategy.signals", signal.to_string()).await;
    let p = packet_where(&mut ws, "the signal", |p| {
        p["data"]["signal"]["confidence"] == 0.35
    })
    .await;
    assert_eq!(
        p["data"]["market"]["price"], 451.25,
        "the AAPL tick changed nothing"
    );
    assert_eq!(
        p["data"]["signal"],
        json!({"side": "FLAT", "confidence": 0.35, "reasoning": "Momentum fading"})
    );

    let physics = json!({"symbol": "SPY", "timestamp": now(), "vectors": {"alpha_coefficient": 1.72, "price": 451.5}});
    publish(&redis, "physics.forces", physics.to_string()).await;
    let p = packet_where(&mut ws, "physics", |p| p["data"]["market"]["alpha"] == 1.72).await;
    assert_eq!(
        (
            &p["data"]["market"]["regime"],
            &p["data"]["market"]["price"]
        ),
        (&json!("Lévy Stable"), &json!(451.5))
    );

    let forecast = common::redis_fixture("forecast.signals.json");
    publish(&redis, "forecast.signals", forecast).await;
    let p = packet_where(&mut ws, "the forecast", |p| {
        p["data"]["forecast"].is_object()
    })
    .await;
    assert_eq!(p["data"]["forecast"]["p50"], 450.6);

    publish(
        &redis,
        "physics.forces",
        common::redis_fixture("physics.forces-error.json"),
    )
    .await;
    let p = packet_where(&mut ws, "the physics warning", |p| {
        p["data"]["logs"].as_array().unwrap().iter().any(|l| {
            l["level"] == "WARNING"
                && l["message"]
                    .as_str()
                    .unwrap()
                    .contains("float division by zero")
        })
    })
    .await;
    assert_eq!(
        p["data"]["market"]["alpha"], 1.72,
        "the error vector is not merged"
    );

    publish(
        &redis,
        "system_events",
        common::redis_fixture("system_events-halt.json"),
    )
    .await;
    let p = packet_where(&mut ws, "HALT", |p| p["data"]["status"] == "HALT").await;
    let last = p["data"]["logs"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["level"], "INFO");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("Manual Kill Switch"),
        "{last}"
    );

    // All of this before the second poll.
    let (samples, _) = daemon.metrics().await;
    assert_eq!(samples["bff_redis_merged_total"], 7.0);
    assert!(samples["bff_redis_pushes_total"] >= 1.0);
    assert_eq!(engine.hits("/state"), 1, "no poll since the first");
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_poll_wins_over_an_older_event() {
    let Some(Subscribed {
        redis,
        engine,
        daemon: _daemon,
        mut ws,
        ..
    }) = subscribed().await
    else {
        return;
    };
    let tick = json!({"price": 460.0, "timestamp": now()});
    publish(&redis, "market.tick.SPY", tick.to_string()).await;
    packet_where(&mut ws, "the tick", |p| {
        p["data"]["market"]["price"] == 460.0
    })
    .await;
    // The engine answers a state newer than the tick: its price is the authority again.
    let mut state: Value =
        serde_json::from_str(&common::fixture_text("state-current.json")).unwrap();
    state["timestamp"] = json!((chrono::Utc::now() + chrono::TimeDelta::seconds(1)).to_rfc3339());
    engine.set("state", common::Answer::Body(state.to_string()));
    packet_where(&mut ws, "the polled price", |p| {
        p["data"]["market"]["price"] == 450.32
    })
    .await;
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_are_relayed_to_the_clients_that_subscribe() {
    let Some(Subscribed {
        redis,
        engine: _engine,
        daemon: _daemon,
        mut ws,
        ..
    }) = subscribed().await
    else {
        return;
    };
    send_text(
        &mut ws,
        r#"{"type":"SUBSCRIBE","channels":["trade.results","market.tick.*","secret.keys"]}"#,
    )
    .await;
    let answer = packet_where(&mut ws, "SUBSCRIBED", |p| p["type"] == "SUBSCRIBED").await;
    assert_eq!(
        answer,
        json!({"type": "SUBSCRIBED", "channels": ["trade.results", "market.tick.*"],
            "rejected": [{"channel": "secret.keys", "reason": "not relayed: no entry of redis.relay matches it"}]})
    );
    let trade = common::redis_fixture("trade.results.json");
    publish(&redis, "trade.results", trade.clone()).await;
    publish(&redis, "trade.results", "not json at all").await;
    publish(&redis, "market.tick.AAPL", r#"{"price":190.5}"#).await;
    publish(&redis, "risk.state", "{}").await;
    let mut updates = Vec::new();
    while updates.len() < 3 {
        let p = next_packet(&mut ws).await;
        if p["type"] == "UPDATE" {
            updates.push(p);
        }
    }
    // In order per channel, as received (nothing sorted); across channels either way.
    let channel = |name: &str| -> Vec<Value> {
        updates
            .iter()
            .filter(|u| u["channel"] == name)
            .cloned()
            .collect()
    };
    assert_eq!(
        channel("trade.results"),
        [
            json!({"type": "UPDATE", "channel": "trade.results", "offset": 1, "data": serde_json::from_str::<Value>(&trade).unwrap()}),
            json!({"type": "UPDATE", "channel": "trade.results", "offset": 2, "data": {"raw": "not json at all"}}),
        ],
        "{updates:#?}"
    );
    assert_eq!(
        channel("market.tick.AAPL"),
        [
            json!({"type": "UPDATE", "channel": "market.tick.AAPL", "offset": 1, "data": {"price": 190.5}})
        ],
        "{updates:#?}"
    );
    // The older form, and leaving.
    send_text(
        &mut ws,
        r#"{"type":"UNSUBSCRIBE","channels":["market.tick.*"]}"#,
    )
    .await;
    packet_where(&mut ws, "UNSUBSCRIBED", |p| p["type"] == "UNSUBSCRIBED").await;
    send_text(&mut ws, r#"{"type":"SUBSCRIBE","symbol":"AAPL"}"#).await;
    let answer = packet_where(&mut ws, "SUBSCRIBED", |p| p["type"] == "SUBSCRIBED").await;
    assert_eq!(answer["channels"], json!(["market.tick.AAPL"]));
    publish(&redis, "market.tick.SPY", r#"{"price":451}"#).await;
    publish(&redis, "market.tick.AAPL", r#"{"price":191}"#).await;
    let p = packet_where(&mut ws, "an UPDATE", |p| p["type"] == "UPDATE").await;
    assert_eq!(
        (&p["channel"], &p["offset"]),
        (&json!("market.tick.AAPL"), &json!(2))
    );
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_path_speaks_the_agents_dashboards_dialect() {
    LazyLock::force(&LOGS);
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let engine = FakeEngine::samples().await;
    let daemon = Daemon::start(with_redis(&engine, &redis)).await;
    daemon
        .wait_health("Redis subscribed", |h| h["sources"]["redis"]["ok"] == true)
        .await;
    let (mut ws, _) = tokio_tungstenite::connect_async(daemon.url("/ws"))
        .await
        .unwrap();
    // Nothing until it subscribes: a pong is the first thing it gets.
    send_text(&mut ws, r#"{"type":"ping"}"#).await;
    assert_eq!(next_packet(&mut ws).await, json!({"type": "pong"}));
    send_text(
        &mut ws,
        r#"{"type":"subscribe","channels":["risk.state","telemetry"]}"#,
    )
    .await;
    assert_eq!(
        next_packet(&mut ws).await,
        json!({"type": "subscribed", "channels": ["risk.state", "telemetry"], "rejected": []})
    );
    let first = next_packet(&mut ws).await;
    assert_eq!(
        (&first["type"], &first["channel"]),
        (&json!("update"), &json!("telemetry"))
    );
    assert_eq!(first["data"]["market"]["symbol"], "SPY");
    publish(
        &redis,
        "risk.state",
        common::redis_fixture("risk.state.json"),
    )
    .await;
    let p = packet_where(&mut ws, "the risk update", |p| p["channel"] == "risk.state").await;
    assert_eq!(p["type"], "update");
    assert_eq!(p["data"]["data"]["halted"], false);
    assert!(
        p.get("offset").is_none(),
        "the bridge dialect carries no offset"
    );
    let health = daemon.health().await;
    assert_eq!(health["status"], "healthy");
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[cfg_attr(
    bff_no_python,
    ignore = "python3 with websockets not found: pip install -r examples/clients/requirements.txt"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_written_for_the_bridge_works_unchanged() {
    LazyLock::force(&LOGS);
    let python = std::process::Command::new("python3")
        .args(["-c", "import websockets"])
        .status()
        .is_ok_and(|s| s.success());
    if !common::tool_available(
        python,
        "python3 with websockets",
        "pip install -r examples/clients/requirements.txt",
    ) {
        return;
    }
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let engine = FakeEngine::samples().await;
    let daemon = Daemon::start(with_redis(&engine, &redis)).await;
    daemon
        .wait_health("Redis subscribed", |h| h["sources"]["redis"]["ok"] == true)
        .await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/clients/bridge_dashboard.py");
    let mut child = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(daemon.url("/ws"))
        .arg("3")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut seen = Vec::new();
    within("the dashboard's lines", async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("subscribed") {
                for (channel, file) in [
                    ("agent.updates", "agent.updates.json"),
                    ("risk.state", "risk.state.json"),
                    ("trade.results", "trade.results.json"),
                ] {
                    publish(&redis, channel, common::redis_fixture(file)).await;
                }
            }
            seen.push(line);
        }
    })
    .await;
    let status = child.wait().await.unwrap();
    assert!(status.success(), "{seen:?}");
    // Order is kept per channel; across channels, messages published together may swap.
    seen[1..].sort();
    assert_eq!(
        seen,
        [
            "subscribed agent.updates,risk.state,trade.results",
            "update agent.updates capital-allocator",
            "update risk.state risk-guardian",
            "update trade.results paper-executor",
        ]
    );
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_missing_restarted_or_cut_off_never_stops_the_stream() {
    let logs = &*LOGS;
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    // Not running when the daemon starts.
    redis.stop();
    let engine = FakeEngine::samples().await;
    let daemon = Daemon::start(with_redis(&engine, &redis)).await;
    let mut watcher = daemon.watcher().await;
    let mut ws = client(&daemon).await;
    // Redis stale while the engine's polls are fresh.
    let down = packet_where(&mut ws, "redis stale, the poll fresh", |p| {
        p["data"]["sources"]["redis"]["ok"] == false && p["data"]["sources"]["state"]["ok"] == true
    })
    .await;
    let error = down["data"]["sources"]["redis"]["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.starts_with("cannot connect"), "{error}");
    assert!(
        down["data"]["sources"]["state"]["ok"] == true,
        "the poll goes on"
    );
    watcher.saw_every_tick(&daemon).await;

    // It comes up: subscribed without a restart of the daemon, and events flow.
    redis.restart();
    redis_ok(&mut ws, true).await;
    tick_shows(&redis, &mut ws, 452.0, "the tick after the start").await;

    // Stopped and restarted on the same port.
    redis.stop();
    redis_ok(&mut ws, false).await;
    redis.restart();
    redis_ok(&mut ws, true).await;
    tick_shows(&redis, &mut ws, 453.0, "the tick after the restart").await;

    // Its pub/sub connection killed from Redis.
    let killed = tokio::task::spawn_blocking({
        let addr = redis.addr();
        move || common::redis::command_at(addr, &[b"CLIENT", b"KILL", b"TYPE", b"pubsub"]).integer()
    })
    .await
    .unwrap();
    assert_eq!(killed, 1);
    redis_ok(&mut ws, false).await;
    redis_ok(&mut ws, true).await;
    tick_shows(&redis, &mut ws, 454.0, "the tick after the kill").await;
    watcher.saw_every_tick(&daemon).await;

    let url = format!("url={}", redis.url());
    // One warning per outage (there were three), one recovery line each.
    assert_eq!(logs.count(&["WARN", "Redis stale", &url]), 3);
    assert_eq!(logs.count(&["Redis recovered", &url]), 3);
    let (samples, _) = daemon.metrics().await;
    assert!(samples["bff_redis_reconnects_total"] >= 3.0);
    assert_eq!(samples["bff_redis_connected"], 1.0);
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_is_noticed_by_its_silence_and_recovers() {
    let logs = &*LOGS;
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let engine = FakeEngine::samples().await;
    let daemon = Daemon::start(with_redis(&engine, &redis)).await;
    let mut watcher = daemon.watcher().await;
    let mut ws = client(&daemon).await;
    redis_ok(&mut ws, true).await;
    redis.pause();
    let stale = redis_ok(&mut ws, false).await;
    redis.resume();
    let error = stale["data"]["sources"]["redis"]["error"].as_str().unwrap();
    assert!(error.contains("nothing heard for 1500 ms"), "{error}");
    redis_ok(&mut ws, true).await;
    tick_shows(&redis, &mut ws, 455.0, "the tick after the pause").await;
    watcher.saw_every_tick(&daemon).await;
    let url = format!("url={}", redis.url());
    assert_eq!(logs.count(&["WARN", "Redis stale", &url]), 1);
    assert_eq!(logs.count(&["Redis recovered", &url]), 1);
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_is_counted_and_dropped_and_a_burst_is_coalesced() {
    LazyLock::force(&LOGS);
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let engine = FakeEngine::samples().await;
    let daemon = Daemon::start(with_redis(&engine, &redis)).await;
    let mut watcher: Watcher = daemon.watcher().await;
    let mut ws = client(&daemon).await;
    redis_ok(&mut ws, true).await;
    for (channel, junk) in [
        ("market.tick.SPY", "not json".as_bytes().to_vec()),
        ("market.tick.SPY", b"[1,2]".to_vec()),
        ("physics.forces", b"\"a string\"".to_vec()),
        ("strategy.signals", b"{}".to_vec()),
        ("market.tick.SPY", br#"{"price":"abc"}"#.to_vec()),
        ("market.tick.SPY", vec![b'x'; 10 * 1024 * 1024]),
    ] {
        publish(&redis, channel, junk).await;
    }
    // The stream and the subscription carry on.
    tick_shows(&redis, &mut ws, 456.0, "a good tick after the junk").await;
    let (samples, _) = daemon.metrics().await;
    assert_eq!(
        samples[r#"bff_redis_dropped_total{reason="not_json"}"#],
        1.0
    );
    assert_eq!(samples[r#"bff_redis_dropped_total{reason="shape"}"#], 4.0);
    assert_eq!(
        samples[r#"bff_redis_dropped_total{reason="too_large"}"#],
        1.0
    );

    // A burst of 10,000 ticks: folded into a few packets; the last price wins.
    let pushes_before = samples["bff_redis_pushes_total"];
    let started = Instant::now();
    tokio::task::spawn_blocking({
        let addr = redis.addr();
        move || {
            let ticks: Vec<Vec<u8>> = (1..=10_000)
                .map(|i| {
                    json!({"price": 400.0 + i as f64 / 100.0, "timestamp": now()})
                        .to_string()
                        .into_bytes()
                })
                .collect();
            common::redis::publish_many(addr, "market.tick.SPY", &ticks);
        }
    })
    .await
    .unwrap();
    packet_where(&mut ws, "the burst's last price", |p| {
        p["data"]["market"]["price"] == 500.0
    })
    .await;
    let took = started.elapsed();
    let (samples, _) = daemon.metrics().await;
    let pushes = samples["bff_redis_pushes_total"] - pushes_before;
    // At most max_push_hz (5) pushes in any second of the time it took.
    let allowed = 5.0 * (took.as_secs_f64().ceil() + 1.0);
    assert!(pushes <= allowed, "{pushes} pushes in {took:?}");
    assert!(samples["bff_redis_merged_total"] >= 10_000.0);
    watcher.saw_every_tick(&daemon).await;
}

/// Reads until `n` UPDATEs came; each channel's `(offset, data)` in the order they came.
async fn updates(ws: &mut Ws, n: usize) -> std::collections::BTreeMap<String, Vec<(u64, Value)>> {
    let mut by_channel = std::collections::BTreeMap::<String, Vec<(u64, Value)>>::new();
    for _ in 0..n {
        let update = packet_where(ws, "an UPDATE", |p| p["type"] == "UPDATE").await;
        by_channel
            .entry(update["channel"].as_str().unwrap().to_owned())
            .or_default()
            .push((update["offset"].as_u64().unwrap(), update["data"].clone()));
    }
    by_channel
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_client_resumes_its_channels_where_it_left_off() {
    let Some(Subscribed {
        redis,
        engine: _engine,
        daemon,
        mut ws,
        fresh,
    }) = subscribed().await
    else {
        return;
    };
    let epoch = fresh["epoch"].clone();
    let channels = r#""channels":["trade.results","market.tick.*"]"#;
    send_text(&mut ws, &format!(r#"{{"type":"SUBSCRIBE",{channels}}}"#)).await;
    let answer = packet_where(&mut ws, "SUBSCRIBED", |p| p["type"] == "SUBSCRIBED").await;
    assert_eq!(
        answer.get("resumed"),
        None,
        "nothing asked back, nothing said"
    );
    publish(&redis, "trade.results", r#"{"n":1}"#).await;
    publish(&redis, "trade.results", r#"{"n":2}"#).await;
    publish(&redis, "market.tick.AAPL", r#"{"price":1}"#).await;
    let got = updates(&mut ws, 3).await;
    assert_eq!(got["trade.results"].last().unwrap().0, 2);
    assert_eq!(got["market.tick.AAPL"].last().unwrap().0, 1);
    drop(ws);

    // Gone a while: these go by.
    publish(&redis, "trade.results", r#"{"n":3}"#).await;
    publish(&redis, "trade.results", r#"{"n":4}"#).await;
    publish(&redis, "market.tick.AAPL", r#"{"price":2}"#).await;
    publish(&redis, "market.tick.QQQ", r#"{"price":9}"#).await;

    let mut ws = client(&daemon).await;
    let since = r#""since":{"trade.results":2,"market.tick.AAPL":1,"market.tick.QQQ":0}"#;
    send_text(
        &mut ws,
        &format!(r#"{{"type":"SUBSCRIBE",{channels},{since},"epoch":{epoch}}}"#),
    )
    .await;
    let answer = packet_where(&mut ws, "SUBSCRIBED", |p| p["type"] == "SUBSCRIBED").await;
    assert_eq!(
        answer["resumed"],
        json!({"trade.results": true, "market.tick.AAPL": true, "market.tick.QQQ": true})
    );
    // Exactly what it missed, each channel in order, then the live ones with no repeat.
    publish(&redis, "trade.results", r#"{"n":5}"#).await;
    let got = updates(&mut ws, 5).await;
    assert_eq!(
        got,
        [
            (
                "market.tick.AAPL".to_owned(),
                vec![(2, json!({"price": 2}))]
            ),
            ("market.tick.QQQ".to_owned(), vec![(1, json!({"price": 9}))]),
            (
                "trade.results".to_owned(),
                vec![
                    (3, json!({"n": 3})),
                    (4, json!({"n": 4})),
                    (5, json!({"n": 5}))
                ]
            ),
        ]
        .into()
    );

    // Offsets of another epoch mean nothing here: live ones only.
    let mut other = client(&daemon).await;
    send_text(
        &mut other,
        r#"{"type":"SUBSCRIBE","channels":["trade.results"],"since":{"trade.results":1},"epoch":"0000000000000000"}"#,
    )
    .await;
    let answer = packet_where(&mut other, "SUBSCRIBED", |p| p["type"] == "SUBSCRIBED").await;
    assert_eq!(answer["resumed"], json!({"trade.results": false}));
    publish(&redis, "trade.results", r#"{"n":6}"#).await;
    let got = updates(&mut other, 1).await;
    assert_eq!(got["trade.results"], [(6, json!({"n": 6}))]);
}
