//! The daemon end to end: a real engine over HTTP, the real daemon, real WebSocket clients.

use crate::common;

use common::{
    Answer, CONTRACT_KEYS, Daemon, FakeEngine, Frame, config, next_frame, next_packet,
    packet_where, refused, send_text, source_ok, source_ok_or_late, within,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

fn data_keys(packet: &Value) -> Vec<String> {
    let mut keys: Vec<String> = packet["data"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcome_before_the_first_poll_is_a_full_shaped_initializing_packet() {
    let engine = FakeEngine::start(Answer::Hang, Answer::Hang, Answer::Hang).await;
    let mut cfg = config(&engine);
    // The first poll cannot finish before the client is welcomed.
    cfg.engine.poll_interval_ms = 60_000;
    cfg.engine.timeout_ms = 30_000;
    let daemon = Daemon::start(cfg).await;
    let mut ws = daemon.connect().await;
    let welcome = next_packet(&mut ws).await;
    assert_eq!(welcome["type"], "WELCOME");
    assert_eq!(welcome["seq"], 0);
    assert_eq!(welcome["data"]["status"], "INITIALIZING");
    assert_eq!(data_keys(&welcome), CONTRACT_KEYS);
    assert_eq!(
        welcome["data"]["market"],
        serde_json::json!({"symbol": null, "price": null, "alpha": null, "regime": null, "velocity": null, "acceleration": null})
    );
    assert_eq!(
        welcome["data"]["sources"]["state"],
        serde_json::json!({"ok": false, "updated": null, "age_ms": null, "error": null})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcome_comes_first_then_telemetry_every_tick_with_growing_seq() {
    let engine = FakeEngine::samples().await;
    let daemon = Daemon::start(config(&engine)).await;
    daemon
        .wait_health("the first poll", |h| h["seq"].as_u64() >= Some(1))
        .await;

    let mut ws = daemon.connect().await;
    let welcome = next_packet(&mut ws).await;
    assert_eq!(welcome["type"], "WELCOME");
    let first = welcome["seq"].as_u64().unwrap();
    assert!(first >= 1);
    // The latest snapshot, normalised from the engine's answers.
    assert_eq!(welcome["data"]["market"]["price"], 450.32);
    assert_eq!(welcome["data"]["timestamp"], "2025-12-21T11:59:59.812Z");
    assert_eq!(welcome["data"]["agents"]["analyst"]["success_rate"], 0.75);
    assert_eq!(welcome["data"]["logs"][1]["level"], "WARNING");

    for expected_seq in first + 1..first + 6 {
        let packet = next_packet(&mut ws).await;
        assert_eq!(packet["type"], "TELEMETRY");
        assert_eq!(
            packet["seq"], expected_seq,
            "seq grows by one per tick, none skipped"
        );
        assert_eq!(data_keys(&packet), CONTRACT_KEYS);
        // Fresh, or late past the publish deadline on a loaded machine: never another error.
        assert!(
            source_ok_or_late(&packet, "models"),
            "{}",
            packet["data"]["sources"]["models"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_source_is_stale_with_its_last_values_while_the_rest_flows() {
    let engine = FakeEngine::samples().await;
    let daemon = Daemon::start(config(&engine)).await;
    let mut ws = daemon.connect().await;
    packet_where(&mut ws, "all sources fresh", |p| source_ok(p, "agents")).await;

    engine.set("agents", Answer::Status(500));
    // The rest flows: a packet with agents stale and state fresh (not the first with agents
    // stale, whose state poll may itself have been late on a loaded machine).
    let stale = packet_where(&mut ws, "agents stale, state fresh", |p| {
        p["data"]["sources"]["agents"]["error"] == "HTTP 500 Internal Server Error"
            && source_ok(p, "state")
    })
    .await;
    assert_eq!(
        stale["data"]["sources"]["agents"]["error"],
        "HTTP 500 Internal Server Error"
    );
    assert_eq!(
        stale["data"]["agents"]["analyst"]["latency_ms"], 45.0,
        "last good value kept"
    );

    // The engine hangs on models: timed out each tick, but the packets keep coming in sequence.
    // (From models fresh: a poll timed out before, on a loaded machine, is not this one.)
    packet_where(&mut ws, "models fresh", |p| source_ok(p, "models")).await;
    engine.set("models", Answer::Hang);
    // Late at the first tick: the packet went out at the publish deadline without it, not
    // after its timeout. Then timed out, from the next tick on.
    let late = packet_where(&mut ws, "models late", |p| !source_ok(p, "models")).await;
    assert_eq!(late["data"]["sources"]["models"]["error"], common::LATE);
    let hung = packet_where(&mut ws, "models timed out", |p| {
        p["data"]["sources"]["models"]["error"] == "timed out after 120 ms"
    })
    .await;
    assert_eq!(
        hung["data"]["sources"]["models"]["error"],
        "timed out after 120 ms"
    );
    assert_eq!(hung["data"]["models"]["chronos_t5_small"]["invocations"], 2);
    let mut seq = hung["seq"].as_u64().unwrap();
    let mut state_updated = hung["data"]["sources"]["state"]["updated"].clone();
    // State is still polled: its `updated` moves (every tick, unless a poll of it was late on
    // a loaded machine, so at least once in six).
    let mut state_polls = 0;
    for _ in 0..6 {
        let packet = next_packet(&mut ws).await;
        seq += 1;
        assert_eq!(packet["seq"], seq);
        if packet["data"]["sources"]["state"]["updated"] != state_updated {
            state_polls += 1;
        }
        assert!(
            packet["data"]["sources"]["models"]["age_ms"]
                .as_u64()
                .unwrap()
                > 0
        );
        state_updated = packet["data"]["sources"]["state"]["updated"].clone();
    }
    assert!(state_polls >= 1, "state's updated never moved in six ticks");

    // Malformed JSON and a wrong shape are stale too, with a readable reason.
    engine.set("state", Answer::Body("{not json".into()));
    let bad = packet_where(&mut ws, "state stale", |p| !source_ok(p, "state")).await;
    assert!(
        bad["data"]["sources"]["state"]["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON")
    );
    assert_eq!(bad["data"]["market"]["price"], 450.32);

    // The engine comes back.
    engine.set("agents", Answer::File("agents-summary-map.json"));
    let back = packet_where(&mut ws, "agents recovered", |p| source_ok(p, "agents")).await;
    assert_eq!(back["data"]["agents"]["MacroAgent"]["invocations"], 1200);
    assert_eq!(back["data"]["sources"]["agents"]["error"], Value::Null);

    let health = daemon.health().await;
    assert_eq!(
        (&health["status"], &health["state"]),
        (
            &serde_json::json!("healthy"),
            &serde_json::json!("degraded")
        )
    );
    // The hung source is listed (another may be too, if a poll under load ran late).
    assert!(
        health["stale"]
            .as_array()
            .unwrap()
            .contains(&Value::from("models"))
    );
    assert_eq!(health["sources"]["models"]["ok"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_gets_pong_and_garbage_is_ignored() {
    let engine = FakeEngine::samples().await;
    let daemon = Daemon::start(config(&engine)).await;
    let mut ws = daemon.connect().await;
    assert_eq!(next_packet(&mut ws).await["type"], "WELCOME");

    for garbage in [
        "not json",
        "{\"type\": 5}",
        "{\"type\":\"DANCE\"}",
        "{\"type\":null}",
        "[]",
    ] {
        send_text(&mut ws, garbage).await;
    }
    ws.send(Message::Binary(vec![0, 159, 146, 150].into()))
        .await
        .unwrap();
    // The reply's type follows the request's case.
    send_text(&mut ws, "{\"type\":\"ping\"}").await;
    let pong = packet_where(&mut ws, "pong", |p| p["type"] != "TELEMETRY").await;
    assert_eq!(pong, serde_json::json!({"type": "pong"}));
    send_text(&mut ws, "{\"type\":\"Ping\"}").await;
    let pong = packet_where(&mut ws, "PONG", |p| p["type"] != "TELEMETRY").await;
    assert_eq!(pong, serde_json::json!({"type": "PONG"}));
    // Still subscribed after all that.
    assert_eq!(next_packet(&mut ws).await["type"], "TELEMETRY");
}

/// A WebSocket ping is answered with its pong at once, not when the client next says
/// something: Python's `websockets` pings every 20 s and ends a connection whose pong has not
/// come 20 s later (close 1011, "keepalive ping timeout"). The client here sends nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_ping_is_answered_at_once() {
    let engine = FakeEngine::samples().await;
    let daemon = Daemon::start(config(&engine)).await;
    let mut ws = daemon.connect().await;
    assert_eq!(next_packet(&mut ws).await["type"], "WELCOME");
    for payload in [&b"are you there"[..], b"still there"] {
        ws.send(Message::Ping(payload.to_vec().into()))
            .await
            .unwrap();
        within("the pong", async {
            loop {
                match ws.next().await.unwrap().unwrap() {
                    Message::Pong(data) => break assert_eq!(&data[..], payload),
                    Message::Text(_) => continue,
                    other => panic!("unexpected {other:?}"),
                }
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_path_and_root_both_serve_and_plain_gets_are_told_why_not() {
    let engine = FakeEngine::samples().await;
    let daemon = Daemon::start(config(&engine)).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(daemon.url("/ws/stream"))
        .await
        .unwrap();
    assert_eq!(next_packet(&mut ws).await["type"], "WELCOME");

    let (status, body) = common::reqwest_get(&format!("http://{}/ws/stream", daemon.addr)).await;
    assert_eq!(status, 426);
    assert!(body.as_str().unwrap().contains("WebSocket endpoint"));
    let (status, _) = common::reqwest_get(&format!("http://{}/nope", daemon.addr)).await;
    assert_eq!(status, 404);

    // Once polled, and with no poll late just then on a loaded machine.
    let health = daemon
        .wait_health("one connection, the data fresh", |h| {
            h["connections"] == 1 && h["state"] == "ok"
        })
        .await;
    assert_eq!(health["status"], "healthy");
    assert!(health["seq"].as_u64().unwrap() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_and_total_limits_refuse_before_the_upgrade() {
    let engine = FakeEngine::samples().await;
    let mut cfg = config(&engine);
    cfg.server.max_connections_per_ip = 2;
    let daemon = Daemon::start(cfg).await;
    let mut watcher = daemon.watcher().await;
    let _a = daemon.connect().await;
    let _b = daemon.connect().await;
    assert_eq!(refused(daemon.url("/")).await, 429);
    drop(_a);
    daemon
        .wait_health("a slot freed (the watcher holds another)", |h| {
            h["connections"] == 2
        })
        .await;
    let _c = daemon.connect().await;
    watcher.saw_every_tick(&daemon).await;

    let mut cfg = config(&engine);
    cfg.server.max_connections = 1;
    let full = Daemon::start(cfg).await;
    let _only = full.connect().await;
    assert_eq!(refused(full.url("/")).await, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disallowed_origin_is_refused() {
    let engine = FakeEngine::samples().await;
    let mut cfg = config(&engine);
    cfg.server.allowed_origins = vec!["https://dash.example.com".into()];
    let daemon = Daemon::start(cfg).await;
    let mut watcher = daemon.watcher().await;
    let with_origin = |origin: &'static str| {
        let mut request = daemon.url("/").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Origin", HeaderValue::from_static(origin));
        request
    };
    assert_eq!(refused(with_origin("https://evil.example")).await, 403);
    let (mut ws, _) = tokio_tungstenite::connect_async(with_origin("https://dash.example.com"))
        .await
        .unwrap();
    assert_eq!(next_packet(&mut ws).await["type"], "WELCOME");
    watcher.saw_every_tick(&daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_clients_get_the_right_close_code() {
    let engine = FakeEngine::samples().await;
    let mut cfg = config(&engine);
    cfg.clients.max_message_bytes = 1024;
    cfg.clients.messages_per_second = 5;
    cfg.clients.message_burst = 10;
    let daemon = Daemon::start(cfg).await;
    let mut watcher = daemon.connect().await;
    let first = next_packet(&mut watcher).await["seq"].as_u64().unwrap();

    // Over the size cap: 1009.
    let mut big = daemon.connect().await;
    send_text(&mut big, &"x".repeat(10_000)).await;
    assert_eq!(common::close_code(&mut big).await, 1009);

    // A text frame that is not UTF-8, written raw (masked, zero key): 1007.
    let mut utf8 = daemon.connect().await;
    next_packet(&mut utf8).await;
    let raw = match utf8.get_mut() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp,
        _ => unreachable!("plain ws://"),
    };
    raw.write_all(&[0x81, 0x83, 0, 0, 0, 0, 0xff, 0xfe, 0xfd])
        .await
        .unwrap();
    assert_eq!(common::close_code(&mut utf8).await, 1007);

    // A flood past the burst: 1008.
    let mut flood = daemon.connect().await;
    for _ in 0..50 {
        if flood
            .send(Message::Text("{\"type\":\"PING\"}".into()))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(common::close_code(&mut flood).await, 1008);

    // The watcher saw none of it: every seq, in order.
    for expected in first + 1..first + 4 {
        assert_eq!(next_packet(&mut watcher).await["seq"], expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_and_others_keep_their_cadence() {
    let engine = FakeEngine::samples().await;
    let mut cfg = config(&engine);
    cfg.engine.poll_interval_ms = 50;
    cfg.engine.timeout_ms = 40;
    cfg.clients.queue_size = 4;
    let daemon = Daemon::start(cfg).await;

    // A small receive buffer, so the stalled client's socket fills within a few ticks.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(daemon.addr).await.unwrap();
    let (mut stalled, _) = tokio_tungstenite::client_async(
        daemon.url("/"),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
    )
    .await
    .unwrap();
    let mut reader = daemon.connect().await;
    let mut seq = next_packet(&mut reader).await["seq"].as_u64().unwrap();

    let cut = async {
        daemon
            .wait_health("the stalled client cut off", |h| h["connections"] == 1)
            .await;
    };
    let keep_reading = async {
        for _ in 0..40 {
            let packet = next_packet(&mut reader).await;
            seq += 1;
            assert_eq!(packet["seq"], seq, "the reading client missed nothing");
        }
    };
    tokio::join!(cut, keep_reading);
    // What was queued for the stalled client ends with the reason it was cut off.
    assert_eq!(common::close_code(&mut stalled).await, 1008);
    let (metrics, text) = daemon.metrics().await;
    for (key, value) in [
        ("bff_slow_client_disconnects_total", 1.0),
        (
            r#"bff_disconnects_total{reason="too_slow",code="1008"}"#,
            1.0,
        ),
        ("bff_connections", 1.0),
    ] {
        assert_eq!(metrics.get(key), Some(&value), "{key} in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_close_is_answered_and_its_slot_freed() {
    let engine = FakeEngine::samples().await;
    let daemon = Daemon::start(config(&engine)).await;
    let mut ws = daemon.connect().await;
    next_packet(&mut ws).await;
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    loop {
        match next_frame(&mut ws).await {
            Frame::Packet(_) => continue,
            Frame::Closed(Some(reply)) => break assert_eq!(reply.code, CloseCode::Normal),
            other => panic!("no close reply: {other:?}"),
        }
    }
    daemon
        .wait_health("the slot freed", |h| h["connections"] == 0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_every_client_with_1001_and_returns() {
    let engine = FakeEngine::samples().await;
    let daemon = Daemon::start(config(&engine)).await;
    let mut a = daemon.connect().await;
    let mut b = daemon.connect().await;
    next_packet(&mut a).await;
    next_packet(&mut b).await;
    daemon.shutdown.cancel();
    assert_eq!(common::close_code(&mut a).await, 1001);
    assert_eq!(common::close_code(&mut b).await, 1001);
    within("run() to return", daemon.task)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(next_frame(&mut a).await, Frame::Ended(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_cap_holds_while_an_endless_answer_streams_in() {
    let engine = FakeEngine::samples().await;
    let mut cfg = config(&engine);
    cfg.engine.max_body_bytes = 64 * 1024;
    let daemon = Daemon::start(cfg).await;
    let mut ws = daemon.connect().await;
    packet_where(&mut ws, "models fresh", |p| source_ok(p, "models")).await;

    engine.set("models", Answer::Endless);
    let capped = packet_where(&mut ws, "models stale", |p| !source_ok(p, "models")).await;
    assert_eq!(
        capped["data"]["sources"]["models"]["error"],
        "answer larger than 65536 bytes"
    );
    // Refused by its declared length too, before reading it.
    engine.set("state", Answer::Body(" ".repeat(200_000)));
    let declared = packet_where(&mut ws, "state stale", |p| !source_ok(p, "state")).await;
    assert_eq!(
        declared["data"]["sources"]["state"]["error"],
        "answer larger than 65536 bytes"
    );
    let seq = declared["seq"].as_u64().unwrap();
    assert_eq!(
        next_packet(&mut ws).await["seq"],
        seq + 1,
        "the cadence carries on"
    );
}

/// Sends raw bytes to the daemon and returns what it answers until it closes or goes quiet.
async fn raw_exchange(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = within("an HTTP answer", tcp.read(&mut answer))
        .await
        .unwrap();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_handshakes_get_400_and_a_slow_one_is_dropped() {
    let engine = FakeEngine::samples().await;
    let mut cfg = config(&engine);
    cfg.server.header_timeout_ms = 300;
    let daemon = Daemon::start(cfg).await;
    let mut watcher = daemon.watcher().await;
    let handshake = |version: &str, key: &str| {
        format!(
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: {version}\r\nSec-WebSocket-Key: {key}\r\n\r\n"
        )
    };
    let answer = raw_exchange(daemon.addr, &handshake("12", "dGhlIHNhbXBsZSBub25jZQ==")).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{answer}"
    );
    let answer = raw_exchange(daemon.addr, &handshake("13", "not-base64-of-16")).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let answer = raw_exchange(daemon.addr, &handshake("13", "dGhlIHNhbXBsZSBub25jZQ==")).await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    assert!(
        answer.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "RFC 6455's example accept key: {answer}"
    );

    // Headers that never finish: the socket is closed after server.header_timeout_ms.
    let answer = raw_exchange(daemon.addr, "GET / HTTP/1.1\r\nHost: x\r\n").await;
    assert!(!answer.starts_with("HTTP/1.1 101"), "{answer}");
    assert_eq!(daemon.health().await["connections"], 1, "only the watcher");
    watcher.saw_every_tick(&daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_moves_the_poller_to_the_new_engine_without_dropping_clients() {
    let old = FakeEngine::samples().await;
    let new = FakeEngine::start(
        Answer::File("state-offline.json"),
        Answer::File("agents-summary-map.json"),
        Answer::File("models-summary-map.json"),
    )
    .await;
    let (daemon, reload) = Daemon::start_reloadable(config(&old)).await;
    let mut ws = daemon.connect().await;
    let before = packet_where(&mut ws, "the old engine's state", |p| {
        p["data"]["status"] == "ACTIVE"
    })
    .await;
    reload.send_replace(std::sync::Arc::new(config(&new)));
    let mut seq = before["seq"].as_u64().unwrap();
    loop {
        let packet = next_packet(&mut ws).await;
        seq += 1;
        assert_eq!(packet["seq"], seq, "the same connection, no tick missed");
        if packet["data"]["status"] == "INITIALIZING" {
            assert!(source_ok(&packet, "state"), "{packet}");
            break;
        }
    }
}

/// A handshake request to `daemon`'s `/` with these extra headers.
fn request_with(
    daemon: &Daemon,
    headers: &[(&'static str, &str)],
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut request = daemon.url("/").into_client_request().unwrap();
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(*name, HeaderValue::from_str(value).unwrap());
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_only_the_daemons_own_pages_may_open_the_stream() {
    let engine = FakeEngine::samples().await;
    let daemon = Daemon::start(config(&engine)).await;
    let mut watcher = daemon.watcher().await;
    let port = daemon.addr.port();
    // Another site, another port, another name for the host: each is another origin.
    for origin in [
        "http://evil.example".to_string(),
        format!("http://127.0.0.1:{}", port.wrapping_add(1)),
        format!("http://localhost:{port}"),
        "null".to_string(),
    ] {
        let request = request_with(&daemon, &[("Origin", &origin)]);
        let response = match tokio_tungstenite::connect_async(request).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response,
            other => panic!("{origin}: expected a refusal, got {other:?}"),
        };
        assert_eq!(response.status(), 403, "{origin}");
        let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default());
        assert!(body.starts_with("Origin not allowed"), "{origin}: {body}");
    }
    // The daemon's own page, and clients that are not browsers, connect.
    let own = format!("http://{}", daemon.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(request_with(&daemon, &[("Origin", &own)]))
        .await
        .unwrap();
    assert_eq!(next_packet(&mut ws).await["type"], "WELCOME");
    let mut plain = daemon.connect().await;
    assert_eq!(next_packet(&mut plain).await["type"], "WELCOME");
    watcher.saw_every_tick(&daemon).await;
    let (metrics, text) = daemon.metrics().await;
    assert_eq!(
        metrics.get(r#"bff_handshakes_refused_total{status="403"}"#),
        Some(&4.0),
        "{text}"
    );

    // "*" is the explicit opt-out: every page may watch.
    let mut cfg = config(&engine);
    cfg.server.allowed_origins = vec!["*".into()];
    let open = Daemon::start(cfg).await;
    let request = request_with(&open, &[("Origin", "http://evil.example")]);
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(next_packet(&mut ws).await["type"], "WELCOME");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_share() {
    let engine = FakeEngine::samples().await;
    let mut cfg = config(&engine);
    cfg.server.max_connections_per_ip = 1;
    cfg.server.trusted_proxies = vec!["127.0.0.0/8".into()];
    let daemon = Daemon::start(cfg.clone()).await;
    let connect = |forwarded: &'static str| {
        tokio_tungstenite::connect_async(request_with(&daemon, &[("X-Forwarded-For", forwarded)]))
    };
    let (_a, _) = connect("198.51.100.1").await.unwrap();
    let (_b, _) = connect("198.51.100.2").await.unwrap();
    // The right-most hop that is not a proxy counts, not what the client wrote before it.
    let (_c, _) = connect("198.51.100.1, 198.51.100.3, 127.0.0.5")
        .await
        .unwrap();
    let again = request_with(&daemon, &[("X-Forwarded-For", "203.0.113.9, 198.51.100.1")]);
    assert_eq!(refused(again).await, 429);
    // An IPv6 client is counted by its /64.
    let (_d, _) = connect("2001:db8:1:2::1").await.unwrap();
    let same_64 = request_with(&daemon, &[("Forwarded", "for=\"[2001:db8:1:2::99]:443\"")]);
    assert_eq!(refused(same_64).await, 429);
    let (_e, _) = connect("2001:db8:1:3::1").await.unwrap();

    // A peer that is not a trusted proxy is the client, whatever it forwards.
    cfg.server.trusted_proxies = vec!["10.0.0.0/8".into()];
    let direct = Daemon::start(cfg).await;
    let forged = |forwarded: &str| request_with(&direct, &[("X-Forwarded-For", forwarded)]);
    let (_f, _) = tokio_tungstenite::connect_async(forged("198.51.100.1"))
        .await
        .unwrap();
    assert_eq!(refused(forged("198.51.100.2")).await, 429);
}
