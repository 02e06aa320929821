//! The Redis harness (`tests/common/redis.rs`) against a real `redis-server`: it starts and
//! answers, its pub/sub reaches a plain subscriber (a 10 MB message whole), and each fault it
//! makes is the fault it claims: subscribers cut off, a paused server silent until resumed, a
//! stopped one back on the same port, a killed one refusing connections.

use crate::common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::redis::{RedisServer, Resp, encode_command, read_reply};

fn bulk(text: &str) -> Resp {
    Resp::Bulk(Some(text.as_bytes().to_vec()))
}

fn pong() -> Resp {
    Resp::Simple("PONG".into())
}

/// A plain connection that sent `SUBSCRIBE channel` and read its confirmation.
fn subscriber(redis: &RedisServer, channel: &str) -> BufReader<TcpStream> {
    let mut stream = redis.connect();
    stream
        .write_all(&encode_command(&[b"SUBSCRIBE", channel.as_bytes()]))
        .unwrap();
    let mut reader = BufReader::new(stream);
    assert_eq!(
        read_reply(&mut reader).unwrap(),
        Resp::Array(Some(vec![
            bulk("subscribe"),
            bulk(channel),
            Resp::Integer(1)
        ]))
    );
    reader
}

/// The next message a subscriber reads: its channel and payload.
fn message(reader: &mut impl BufRead) -> (String, Vec<u8>) {
    let reply = read_reply(reader).unwrap();
    let [kind, channel, payload] = reply.array() else {
        panic!("expected a 3-item message, got {reply:?}");
    };
    assert_eq!(kind, &bulk("message"));
    (channel.text(), payload.bulk().to_vec())
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[test]
fn it_starts_on_a_free_port_and_answers_ping() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    assert_ne!(redis.port(), 0);
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}", redis.port()));
    assert_eq!(redis.command(&[b"PING"]), pong());
    assert_eq!(
        redis.command(&[b"ECHO", b"a\r\nb"]),
        Resp::Bulk(Some(b"a\r\nb".to_vec()))
    );
    assert_eq!(redis.command(&[b"GET", b"missing"]), Resp::Bulk(None));
    assert!(matches!(
        redis.command(&[b"NO-SUCH-COMMAND"]),
        Resp::Error(e) if e.starts_with("ERR unknown command")
    ));
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[test]
fn a_subscriber_receives_what_is_published_until_its_connection_is_killed() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut sub = subscriber(&redis, "ch");
    assert_eq!(redis.pubsub_channels("*"), ["ch"]);
    assert_eq!(redis.pubsub_numpat(), 0);
    let subscribed = redis
        .client_list()
        .lines()
        .filter(|line| line.contains(" sub=1 ") && line.contains(" cmd=subscribe "))
        .count();
    assert_eq!(subscribed, 1, "{}", redis.client_list());

    assert_eq!(redis.publish("ch", "hello"), 1);
    assert_eq!(message(&mut sub), ("ch".to_owned(), b"hello".to_vec()));
    assert_eq!(redis.publish("other", "unheard"), 0);

    assert_eq!(redis.client_kill_pubsub(), 1);
    let mut rest = Vec::new();
    assert_eq!(sub.read_to_end(&mut rest).unwrap(), 0, "EOF, nothing more");
    redis.wait_until("the channel to have no subscriber", |r| {
        r.pubsub_channels("*").is_empty()
    });
    assert_eq!(redis.publish("ch", "nobody"), 0);
    assert_eq!(redis.client_kill_pubsub(), 0);
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[test]
fn pattern_subscriptions_are_counted() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut stream = redis.connect();
    stream
        .write_all(&encode_command(&[b"PSUBSCRIBE", b"bff.*"]))
        .unwrap();
    let mut reader = BufReader::new(stream);
    assert_eq!(
        read_reply(&mut reader).unwrap(),
        Resp::Array(Some(vec![
            bulk("psubscribe"),
            bulk("bff.*"),
            Resp::Integer(1)
        ]))
    );
    assert_eq!(redis.pubsub_numpat(), 1);
    assert!(redis.pubsub_channels("*").is_empty());
    assert_eq!(redis.publish("bff.x", "p"), 1);
    assert_eq!(
        read_reply(&mut reader).unwrap(),
        Resp::Array(Some(vec![
            bulk("pmessage"),
            bulk("bff.*"),
            bulk("bff.x"),
            bulk("p")
        ]))
    );
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[test]
fn a_paused_server_answers_nothing_until_resumed() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let pid = redis.pid();
    redis.pause();
    let silent = redis.try_command(&[b"PING"], Duration::from_millis(300));
    match silent {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("expected a read timeout from a paused server, got {other:?}"),
    }
    redis.resume();
    assert_eq!(redis.command(&[b"PING"]), pong());
    assert_eq!(redis.pid(), pid);
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[test]
fn a_stopped_server_restarts_on_the_same_port() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let (port, pid) = (redis.port(), redis.pid());
    // A connection open across the stop, so the old socket's side of it lingers.
    let _sub = subscriber(&redis, "ch");
    redis.stop();
    assert_eq!(refusal(&redis), ErrorKind::ConnectionRefused);
    redis.restart();
    assert_eq!(redis.command(&[b"PING"]), pong());
    assert_eq!(redis.port(), port);
    assert_ne!(redis.pid(), pid);
    assert!(redis.pubsub_channels("*").is_empty(), "a new, empty server");
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[test]
fn a_ten_megabyte_message_is_delivered_whole() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut sub = subscriber(&redis, "big");
    let payload: Vec<u8> = (0..10 * 1024 * 1024)
        .map(|i: u32| (i % 251) as u8)
        .collect();
    assert_eq!(redis.publish("big", &payload), 1);
    let (channel, received) = message(&mut sub);
    assert_eq!(channel, "big");
    assert_eq!(received.len(), 10 * 1024 * 1024);
    assert!(received == payload, "the payload came back changed");
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[test]
fn a_killed_server_refuses_connections_and_can_be_restarted() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let mut sub = subscriber(&redis, "ch");
    redis.kill();
    assert_eq!(refusal(&redis), ErrorKind::ConnectionRefused);
    // The subscriber's connection ended with the process: EOF or a reset, never a message.
    let mut rest = Vec::new();
    match sub.read_to_end(&mut rest) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("expected EOF or a reset, got {other:?} after {rest:?}"),
    }
    redis.restart();
    assert_eq!(redis.command(&[b"PING"]), pong());
}

/// Why a new connection to the server's port fails; fails the test if it succeeds.
fn refusal(redis: &RedisServer) -> ErrorKind {
    match TcpStream::connect(redis.addr()) {
        Ok(_) => panic!("port {} accepted a connection", redis.port()),
        Err(e) => e.kind(),
    }
}
