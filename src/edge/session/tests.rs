//! Sessions over in-memory pipes, on a paused clock: keepalive, idle timeout, stalled and
//! lagging clients.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

use super::{KEEPALIVE_GRID, Session};
use crate::config::{ClientConfig, Config};
use crate::edge::connection::ending::Ending;
use crate::edge::connection::socket::{LINGER, Socket};
use crate::hub::packet::Telemetry;
use crate::hub::{Encoding, Form, Hub};

/// Builds a session over in-memory halves, for these tests.
async fn over<R, T>(
    read: R,
    write: tokio::io::WriteHalf<T>,
    config: Config,
    hub: &Hub,
) -> Session<R, std::sync::Mutex<tokio::io::WriteHalf<T>>>
where
    R: AsyncRead + Unpin,
    T: AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let write = std::sync::Mutex::new(write);
    let socket = Socket::new(
        read,
        write,
        Vec::new(),
        &config.clients,
        metrics,
        (Encoding::Stream, Form::default()),
    )
    .await;
    Session::new(socket, Arc::new(config), hub.clone())
}

fn hub(queue_size: usize) -> Hub {
    Hub::new(Telemetry::initializing(Utc::now()), queue_size, 10)
}

fn packet_data() -> Telemetry {
    Telemetry::initializing(Utc::now())
}

/// The server's read and write halves and a client, joined by an in-memory pipe of `buffer` bytes.
async fn pair(
    buffer: usize,
) -> (
    (ReadHalf<DuplexStream>, WriteHalf<DuplexStream>),
    WebSocketStream<DuplexStream>,
) {
    let (server, client) = tokio::io::duplex(buffer);
    (
        tokio::io::split(server),
        WebSocketStream::from_raw_socket(client, Role::Client, None).await,
    )
}

async fn run(
    server: (ReadHalf<DuplexStream>, WriteHalf<DuplexStream>),
    hub: &Hub,
    config: &Config,
    shutdown: &CancellationToken,
) -> Ending {
    over(server.0, server.1, config.clone(), hub)
        .await
        .run(shutdown)
        .await
}

fn config(ping_ms: u64, idle_ms: u64, send_ms: u64) -> Config {
    let clients = ClientConfig {
        ping_interval_ms: ping_ms,
        idle_timeout_ms: idle_ms,
        send_timeout_ms: send_ms,
        ..ClientConfig::default()
    };
    Config {
        clients,
        ..Config::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_pinged_then_dropped_at_the_idle_timeout() {
    let config = config(1_000, 3_000, 5_000);
    let (server, client) = pair(64 * 1024).await;
    let mut client = client.into_inner();
    let started = Instant::now();
    let ending = run(server, &hub(4), &config, &CancellationToken::new()).await;
    assert_eq!(ending, Ending::IdleTimeout);
    // Detected on the third ping tick (put off to the keepalive grid), then at most LINGER
    // spent closing.
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(3)
            && waited <= Duration::from_secs(3) + KEEPALIVE_GRID + LINGER,
        "{waited:?}"
    );

    let opcodes = written_to(&mut client).await;
    let kinds: Vec<u8> = opcodes.iter().map(|(op, _)| *op).collect();
    // WELCOME, pings at 1 s and 2 s (at 3 s the peer is already overdue), then close 1001.
    assert_eq!(kinds, [0x1, 0x9, 0x9, 0x8]);
    assert_eq!(opcodes[3].1[..2], 1001u16.to_be_bytes());
}

/// Pongs the client sends on its own, within the message rate, are not a sign of life: only
/// one that answers a ping is. A peer that pongs before any ping and never after is dropped at
/// the idle timeout counted from the start, not from its last pong.
#[tokio::test(start_paused = true)]
async fn unsolicited_pongs_do_not_keep_a_peer_alive() {
    use tokio::io::AsyncWriteExt;
    let config = config(10_000, 15_000, 5_000);
    let (server, client) = pair(64 * 1024).await;
    let (_read, mut write) = tokio::io::split(client.into_inner());
    // A pong a second (masked, empty, zero key) for 9 s, all before the first ping at 10 s;
    // then silence.
    tokio::spawn(async move {
        for _ in 0..9 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            write.write_all(&[0x8a, 0x80, 0, 0, 0, 0]).await.unwrap();
        }
        std::future::pending::<()>().await;
    });
    let started = Instant::now();
    let ending = run(server, &hub(4), &config, &CancellationToken::new()).await;
    assert_eq!(ending, Ending::IdleTimeout);
    // Found at the ping tick of 20 s (15 s after the start); had the pongs counted, the one at
    // 9 s would have kept it until the tick of 30 s.
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(20)
            && waited <= Duration::from_secs(20) + KEEPALIVE_GRID + LINGER,
        "{waited:?}"
    );
}

/// A client taking packets shows itself alive without a word: it is sent no ping and outlives
/// the idle timeout many times over; once the packets stop, the keepalive pings it, and a
/// client that never answers is dropped an idle timeout after the last packet it took.
#[tokio::test(start_paused = true)]
async fn a_peer_taking_packets_is_not_pinged_and_outlives_the_idle_timeout() {
    let config = config(1_000, 3_000, 5_000);
    let (server, client) = pair(256 * 1024).await;
    let mut client = client.into_inner();
    let hub = hub(4);
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            while hub.subscribers() == 0 {
                tokio::task::yield_now().await;
            }
            // A packet every 500 ms for 10 s, then none.
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                hub.publish(packet_data());
            }
        })
    };
    let started = Instant::now();
    let ending = run(server, &hub, &config, &CancellationToken::new()).await;
    let waited = started.elapsed();
    assert_eq!(ending, Ending::IdleTimeout);
    publisher.await.unwrap();
    // Dropped 3 s after the keepalive last saw packets taken (at 10 or 11 s), on its grid.
    assert!(
        waited >= Duration::from_secs(13)
            && waited <= Duration::from_secs(14) + KEEPALIVE_GRID + LINGER,
        "{waited:?}"
    );

    let kinds: Vec<u8> = written_to(&mut client)
        .await
        .iter()
        .map(|(op, _)| *op)
        .collect();
    // The WELCOME and 20 packets without a ping among them; then two or three pings (a
    // keepalive tick may have seen the last packet taken), and the close.
    let pings = kinds.len() - 22;
    assert!((2..=3).contains(&pings), "{kinds:?}");
    let expected: Vec<u8> = [vec![0x1; 21], vec![0x9; pings], vec![0x8]].concat();
    assert_eq!(kinds, expected);
}

/// Everything the server wrote to `client`, read to its end as raw frames (opcode, payload): a
/// WebSocket client would answer the pings.
async fn written_to(client: &mut DuplexStream) -> Vec<(u8, Vec<u8>)> {
    let mut wire = Vec::new();
    client.read_to_end(&mut wire).await.unwrap();
    raw_frames(&wire)
}

/// Splits unmasked server frames into (opcode, payload).
fn raw_frames(mut wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while wire.len() >= 2 {
        let (opcode, len7) = (wire[0] & 0x0f, (wire[1] & 0x7f) as usize);
        let (len, header) = match len7 {
            126 => (u16::from_be_bytes([wire[2], wire[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(wire[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n, 2),
        };
        frames.push((opcode, wire[header..header + len].to_vec()));
        wire = &wire[header + len..];
    }
    frames
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_answers_pings_stays_connected() {
    let config = config(1_000, 3_000, 5_000);
    let (server, mut client) = pair(64 * 1024).await;
    // Reading is enough: the client's WebSocket answers each ping with a pong.
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = client.next().await {} });
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        stop.cancel();
    });
    assert_eq!(
        run(server, &hub(4), &config, &shutdown).await,
        Ending::Shutdown
    );
    reader.abort();
}

#[tokio::test(start_paused = true)]
async fn a_client_that_does_not_read_is_dropped_after_the_send_timeout() {
    let config = config(60_000, 120_000, 2_000);
    // Smaller than the WELCOME frame: the first send cannot complete.
    let (server, _client) = pair(128).await;
    let started = Instant::now();
    assert_eq!(
        run(server, &hub(4), &config, &CancellationToken::new()).await,
        Ending::Stalled
    );
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

#[tokio::test]
async fn a_client_that_falls_more_than_its_queue_behind_gets_1008() {
    let config = config(60_000, 120_000, 60_000);
    let (server, mut client) = pair(128).await;
    let hub = hub(2);
    let task = {
        let hub = hub.clone();
        tokio::spawn(async move { run(server, &hub, &config, &CancellationToken::new()).await })
    };
    while hub.subscribers() == 0 {
        tokio::task::yield_now().await;
    }
    // The WELCOME is stuck in the pipe; meanwhile more snapshots than the queue holds go by.
    for _ in 0..5 {
        hub.publish(packet_data());
    }
    assert!(
        matches!(client.next().await, Some(Ok(Message::Text(t))) if t.starts_with(r#"{"type":"WELCOME","seq":0,"#))
    );
    match client.next().await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Policy),
        other => panic!("expected close 1008, got {other:?}"),
    }
    drop(client);
    assert_eq!(task.await.unwrap(), Ending::TooSlow(3));
}

#[test]
fn keepalives_fall_due_on_a_grid_shared_by_every_connection() {
    let at = Instant::now() + Duration::from_secs(20);
    let first = super::on_the_grid(at);
    assert!(
        first >= at && first - at < KEEPALIVE_GRID,
        "put off by less than a step"
    );
    // A connection made a little later falls due at the same point, or the next one.
    let later = super::on_the_grid(at + Duration::from_millis(100));
    let apart = later - first;
    let near = |d: Duration| apart.abs_diff(d) < Duration::from_millis(1);
    assert!(
        near(Duration::ZERO) || near(KEEPALIVE_GRID),
        "{apart:?} apart"
    );
}

/// Every connection keeps its session's future for its whole life, so its size is memory paid
/// ten thousand times over. An `async fn` that took the session by value kept it twice (as
/// passed and as bound), 2,064 bytes; a `Notify` wait for trouble and a send timeout kept in
/// place took 800 over the session. The loop's own state is 720 bytes over it now.
#[tokio::test]
async fn a_sessions_long_lived_state_stays_small() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let (read, write) = server.into_split();
    let config = Config::default();
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
    let socket = Socket::new(
        read,
        write,
        Vec::new(),
        &config.clients,
        metrics,
        (Encoding::Stream, Form::default()),
    )
    .await;
    let session = Session::new(socket, std::sync::Arc::new(config), hub(8));
    let session_bytes = std::mem::size_of_val(&session);
    let shutdown = CancellationToken::new();
    let running = session.run(&shutdown);
    let state = std::mem::size_of_val(&running);
    assert!(
        state <= session_bytes + 768,
        "a running session keeps {state} bytes over a {session_bytes}-byte session"
    );
    drop(client);
}
