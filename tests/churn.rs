//! Connection churn: many clients coming and going leave nothing behind, and what one client
//! can make the daemon hold or do stays bounded (pongs, relay subscriptions, handshakes, idle
//! TCP connections). Its own test binary, so its load does not share the machine with the
//! latency-sensitive tests in `daemon.rs`.

mod common;

use bff::{Config, RedisUrl};
use common::{Daemon, FakeEngine, Frame, Ws, config, next_frame, next_packet, packet_where};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_disconnect_cycles_leave_no_task_or_slot_behind() {
    let engine = FakeEngine::samples().await;
    let mut cfg = config(&engine);
    // Every cycle is a handshake from 127.0.0.1, as fast as the machine goes.
    cfg.server.handshakes_per_second_per_ip = 1_000_000;
    cfg.server.handshake_burst_per_ip = 1_000_000;
    let daemon = Daemon::start(cfg).await;
    let mut watcher = daemon.connect().await;
    let mut seq = next_packet(&mut watcher).await["seq"].as_u64().unwrap();
    let baseline = daemon
        .wait_health("a settled daemon", |h| h["connections"] == 1)
        .await["tasks"]
        .as_u64()
        .unwrap();

    let done = std::sync::atomic::AtomicBool::new(false);
    let cycles = async {
        for i in 0..10_000 {
            let mut ws = daemon.connect().await;
            assert_eq!(next_packet(&mut ws).await["type"], "WELCOME");
            if i % 2 == 0 {
                ws.close(None).await.unwrap();
            } // else dropped without a close frame
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    let watch = async {
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            seq += 1;
            assert_eq!(
                next_packet(&mut watcher).await["seq"],
                seq,
                "the watcher saw every tick"
            );
        }
    };
    tokio::join!(cycles, watch);
    let after = daemon
        .wait_health("every cycle's task gone", |h| {
            h["connections"] == 1 && h["tasks"].as_u64() <= Some(baseline)
        })
        .await;
    assert_eq!(after["tasks"].as_u64(), Some(baseline), "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unsolicited_pongs_is_closed_like_any_flood() {
    let engine = FakeEngine::samples().await;
    let daemon = Daemon::start(config(&engine)).await;
    let mut watcher = daemon.watcher().await;
    let mut flood = daemon.connect().await;
    next_packet(&mut flood).await;
    // No ping was sent (the first is 20 s away): every pong is the client's own message.
    for _ in 0..200 {
        if flood.send(Message::Pong(vec![].into())).await.is_err() {
            break;
        }
    }
    assert_eq!(common::close_code(&mut flood).await, 1008);
    watcher.saw_every_tick(&daemon).await;
}

/// Pings are answered at once, each with its pong; a flood of them is closed with 1008 like any
/// other, having cost the daemon a pong for each within the rate, no more; no one else notices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_pings_is_answered_within_the_rate_then_closed() {
    let engine = FakeEngine::samples().await;
    let mut cfg = config(&engine);
    (cfg.clients.message_burst, cfg.clients.messages_per_second) = (20, 1);
    let daemon = Daemon::start(cfg).await;
    let mut watcher = daemon.watcher().await;
    let mut flood = daemon.connect().await;
    next_packet(&mut flood).await;
    let payload = vec![b'p'; 125];
    for _ in 0..200 {
        if flood
            .send(Message::Ping(payload.clone().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let (pongs, code) = common::within("the pongs, then a close", async {
        let mut pongs = 0;
        loop {
            match flood.next().await {
                Some(Ok(Message::Pong(data))) => {
                    assert_eq!(data.len(), 125);
                    pongs += 1;
                }
                Some(Ok(Message::Close(frame))) => {
                    break (pongs, frame.map(|f| u16::from(f.code)));
                }
                Some(Ok(_)) => {}
                other => panic!("expected a close, got {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(code, Some(1008));
    // The burst's 20 at least, a second's worth more at most a second later: far from 200.
    assert!((20..200).contains(&pongs), "{pongs} pongs for 200 pings");
    watcher.saw_every_tick(&daemon).await;
}

/// A config whose Redis is set but unreachable: the relay takes subscriptions, no message ever
/// comes to prune a topic.
fn unreachable_redis(engine: &FakeEngine) -> Config {
    let mut cfg = config(engine);
    cfg.redis.url = RedisUrl::new("redis://127.0.0.1:1");
    cfg
}

/// Sends `{"type": kind, "channels": channels}` and returns the answer of type `answer`.
async fn ask(ws: &mut Ws, kind: &str, channels: &[String], answer: &str) -> Value {
    let message = json!({"type": kind, "channels": channels}).to_string();
    ws.send(Message::Text(message.into())).await.unwrap();
    packet_where(ws, answer, |p| p["type"] == answer).await
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("market.tick.{prefix}{i}")).collect()
}

/// `bff_relay_topics` once it reads `expected`.
async fn relay_topics(daemon: &Daemon, expected: f64) {
    common::within("bff_relay_topics to settle", async {
        loop {
            let (samples, _) = daemon.metrics().await;
            if samples.get("bff_relay_topics") == Some(&expected) {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_topics_are_freed_when_their_last_subscriber_leaves_and_capped() {
    let engine = FakeEngine::samples().await;
    let mut cfg = unreachable_redis(&engine);
    cfg.redis.max_topics = 40;
    // The churn itself is what this test measures, not its rate.
    cfg.clients.subscriptions_per_second = 100_000;
    cfg.clients.subscription_burst = 100_000;
    let daemon = Daemon::start(cfg).await;
    let mut keeper = daemon.connect().await;
    let kept = names("kept", 3);
    let answer = ask(&mut keeper, "SUBSCRIBE", &kept, "SUBSCRIBED").await;
    assert_eq!(answer["channels"], json!(kept));

    // 32 new names, left, five times over: each name's topic goes as it is left.
    let mut churner = daemon.connect().await;
    for round in 0..5 {
        let batch = names(&format!("r{round}_"), 32);
        let answer = ask(&mut churner, "SUBSCRIBE", &batch, "SUBSCRIBED").await;
        assert_eq!(answer["channels"], json!(batch));
        ask(&mut churner, "UNSUBSCRIBE", &batch, "UNSUBSCRIBED").await;
    }
    relay_topics(&daemon, 3.0).await;

    // The daemon-wide cap: 3 + 32 held, so another client gets 5 of its 10, and why not the rest.
    let held = names("held", 32);
    let answer = ask(&mut churner, "SUBSCRIBE", &held, "SUBSCRIBED").await;
    assert_eq!(answer["channels"], json!(held));
    let mut late = daemon.connect().await;
    let asked = names("late", 10);
    let answer = ask(&mut late, "SUBSCRIBE", &asked, "SUBSCRIBED").await;
    assert_eq!(answer["channels"], json!(asked[..5]));
    let refused: Vec<Value> = asked[5..]
        .iter()
        .map(|channel| {
            json!({
                "channel": channel,
                "reason": "too many relay channels held daemon-wide (redis.max_topics = 40); \
                           retry later",
            })
        })
        .collect();
    assert_eq!(answer["rejected"], json!(refused));
    relay_topics(&daemon, 40.0).await;

    // A connection that ends gives back every topic it alone held.
    churner.close(None).await.unwrap();
    relay_topics(&daemon, 8.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_churning_through_channels_is_closed_like_a_flood() {
    let engine = FakeEngine::samples().await;
    let mut cfg = unreachable_redis(&engine);
    // Past the burst at once, however slow the machine: the messages themselves are allowed.
    cfg.clients.subscriptions_per_second = 1;
    cfg.clients.subscription_burst = 64;
    cfg.clients.messages_per_second = 1_000;
    cfg.clients.message_burst = 1_000;
    let daemon = Daemon::start(cfg).await;
    let mut watcher = daemon.watcher().await;
    let mut churner = daemon.connect().await;
    let mut round = 0;
    let closed = loop {
        let batch = names(&format!("r{round}_"), 32);
        let message = json!({"type": "SUBSCRIBE", "channels": batch}).to_string();
        churner.send(Message::Text(message.into())).await.unwrap();
        match next_reply(&mut churner).await {
            Frame::Packet(answer) => assert_eq!(answer["channels"], json!(batch)),
            Frame::Closed(frame) => break frame,
            Frame::Ended(why) => panic!("ended without a close frame: {why}"),
        }
        ask(&mut churner, "UNSUBSCRIBE", &batch, "UNSUBSCRIBED").await;
        round += 1;
        assert!(round <= 2, "still open after {round} batches of 32");
    };
    assert_eq!(round, 2, "the third batch of 32 is over the burst of 64");
    let closed = closed.expect("a close frame");
    assert_eq!(
        (u16::from(closed.code), closed.reason.as_str()),
        (1008, "subscription rate limit exceeded")
    );
    relay_topics(&daemon, 0.0).await;
    watcher.saw_every_tick(&daemon).await;
}

/// The next frame that is not a packet of the stream.
async fn next_reply(ws: &mut Ws) -> Frame {
    loop {
        match next_frame(ws).await {
            Frame::Packet(p)
                if ["TELEMETRY", "WELCOME", "REGIME", "ALERT"]
                    .contains(&p["type"].as_str().unwrap_or("")) =>
            {
                continue;
            }
            other => return other,
        }
    }
}

/// A WebSocket handshake on `/` from `source` (a loopback address): the client, or the HTTP
/// answer that refused it.
async fn handshake_from(
    daemon: &Daemon,
    source: &str,
) -> Result<Ws, tokio_tungstenite::tungstenite::http::Response<Option<Vec<u8>>>> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let stream = socket.connect(daemon.addr).await.unwrap();
    let plain = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    match tokio_tungstenite::client_async(daemon.url("/"), plain).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(*response),
        Err(other) => panic!("handshake failed without an HTTP answer: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_over_the_rate_of_one_address_get_429_with_retry_after() {
    let engine = FakeEngine::samples().await;
    let mut cfg = config(&engine);
    cfg.server.handshakes_per_second_per_ip = 1;
    cfg.server.handshake_burst_per_ip = 3;
    let daemon = Daemon::start(cfg).await;
    // The burst passes; of 17 more, at most one a second since could: the rest get 429.
    for _ in 0..3 {
        handshake_from(&daemon, "127.0.0.3").await.unwrap();
    }
    let mut refusals = Vec::new();
    for _ in 0..17 {
        if let Err(response) = handshake_from(&daemon, "127.0.0.3").await {
            refusals.push(response);
        }
    }
    let refused = refusals
        .first()
        .expect("a handshake over the rate is refused");
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body = String::from_utf8(refused.body().clone().unwrap()).unwrap();
    assert_eq!(
        body,
        "Too many handshakes from your address (limit 1 a second, \
         server.handshakes_per_second_per_ip); retry in 1 s.\n"
    );
    // Another address is not held back.
    let mut other = handshake_from(&daemon, "127.0.0.4").await.unwrap();
    assert_eq!(next_packet(&mut other).await["type"], "WELCOME");
}

/// A TCP connection to the daemon from `source` (a loopback address).
async fn tcp_from(daemon: &Daemon, source: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(daemon.addr).await.unwrap()
}

/// `GET /health` over a new connection from `source`: the whole answer as text (empty when the
/// connection was closed without one).
async fn health_from(daemon: &Daemon, source: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tcp_from(daemon, source).await;
    let request = "GET /health HTTP/1.1\r\nhost: bff\r\nconnection: close\r\n\r\n";
    // A connection turned away may be gone before the request is written.
    let _ = tcp.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = common::within("an answer", tcp.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tcp_connections_past_the_per_address_limit_are_turned_away() {
    use tokio::io::AsyncReadExt;
    let engine = FakeEngine::samples().await;
    let mut cfg = config(&engine);
    cfg.server.max_http_connections_per_ip = 4;
    // The idle ones must outlive the test, however slow the machine.
    cfg.server.header_timeout_ms = 600_000;
    let daemon = Daemon::start(cfg).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tcp_from(&daemon, "127.0.0.5").await);
    }
    // The fifth is answered without a word from it, and closed.
    let mut fifth = tcp_from(&daemon, "127.0.0.5").await;
    let mut answer = Vec::new();
    common::within("the fifth closed", fifth.read_to_end(&mut answer))
        .await
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
        "{answer}"
    );
    assert!(answer.contains("\r\nretry-after: 5\r\n"), "{answer}");
    assert!(
        answer.ends_with(
            "\r\n\r\nToo many open connections from your address (limit 4, \
             server.max_http_connections_per_ip); close one and retry.\n"
        ),
        "{answer}"
    );
    // Another address is served meanwhile.
    let health = health_from(&daemon, "127.0.0.6").await;
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
    // One idle connection closed gives its slot back.
    drop(idle.pop());
    common::within("a slot back for 127.0.0.5", async {
        while !health_from(&daemon, "127.0.0.5")
            .await
            .starts_with("HTTP/1.1 200 OK\r\n")
        {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

/// A trusted proxy carries many clients over one address: its TCP connections are held to the
/// daemon's total only, not to one address's share (its clients are counted at the handshake).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxys_connections_are_not_held_to_one_address_share() {
    let engine = FakeEngine::samples().await;
    let mut cfg = config(&engine);
    cfg.server.max_http_connections_per_ip = 2;
    cfg.server.trusted_proxies = vec!["127.0.0.7".to_owned()];
    cfg.server.header_timeout_ms = 600_000;
    let daemon = Daemon::start(cfg).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tcp_from(&daemon, "127.0.0.7").await);
    }
    // Past two idle ones, the proxy is still served; another address is not.
    let health = health_from(&daemon, "127.0.0.7").await;
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
    let mut other = Vec::new();
    for _ in 0..2 {
        other.push(tcp_from(&daemon, "127.0.0.8").await);
    }
    let refused = health_from(&daemon, "127.0.0.8").await;
    assert!(
        refused.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
        "{refused}"
    );
}

/// A flood of connections turned away is answered alike, but logged only up to the limit a
/// refusal log has: anyone can open connections faster than a log should grow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_connections_logs_a_few_lines() {
    use tokio::io::AsyncReadExt;
    let logs = common::Captured::install();
    let engine = FakeEngine::samples().await;
    let mut cfg = config(&engine);
    cfg.server.max_http_connections_per_ip = 1;
    cfg.server.header_timeout_ms = 600_000;
    let daemon = Daemon::start(cfg).await;
    let _idle = tcp_from(&daemon, "127.0.0.9").await;
    let started = std::time::Instant::now();
    for _ in 0..40 {
        let mut refused = tcp_from(&daemon, "127.0.0.9").await;
        let mut answer = Vec::new();
        common::within("turned away", refused.read_to_end(&mut answer))
            .await
            .unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 429"), "{answer:?}");
    }
    let logged = logs.count(&["Connection refused", "127.0.0.9"]);
    // Ten lines an interval of 10 s, however slow the machine made the flood.
    let intervals = started.elapsed().as_secs() / 10 + 1;
    assert!(
        logged >= 1 && logged as u64 <= 10 * intervals,
        "{logged} lines for 40 refusals in {intervals} interval(s)"
    );
}
