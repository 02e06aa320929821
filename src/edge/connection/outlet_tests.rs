//! The outlet's tests: a client behind found by the socket's cap, the keepalive's question,
//! the cap in steps, and order kept behind a full socket.

use super::*;
use std::task::Context;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

fn metrics() -> Arc<Metrics> {
    Arc::new(Metrics::new())
}

#[tokio::test]
async fn a_packet_that_does_not_fit_whole_marks_a_client_that_stopped_reading_behind() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    // A small receive buffer: the client's window fills at once.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let client = socket
        .connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let (_read, write) = server.into_split();
    let outlet = SocketOutlet::new(write, 4, metrics(), Encoding::Stream, Form::default());
    assert!(outlet.direct(), "a TCP socket caps its unsent bytes");

    let packet = vec![b'x'; 16 * 1024];
    let mut sent = 0;
    let refused_at = loop {
        match outlet.offer(&packet) {
            Offered::Sent => sent += 1,
            Offered::Refused => break sent,
            Offered::Queued => panic!("a packet is written whole or the client is behind"),
        }
        assert!(sent < 1000, "a client that never reads is found behind");
    };
    assert!(
        refused_at >= 4,
        "the queue's worth goes out first ({refused_at})"
    );
    assert_eq!(outlet.trouble_found(), Some(Trouble::Behind));
    assert_eq!(
        outlet.offer(&packet),
        Offered::Refused,
        "and no packet after it"
    );
    drop(client);
}

/// A transport that takes every write whole and keeps a copy of each.
#[derive(Default)]
struct Recording(Mutex<Vec<Vec<u8>>>);

impl Outbox for Recording {
    fn poll_write(&self, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.0.lock().unwrap().push(buf.to_vec());
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_shutdown(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn cap_unsent(&self, _: usize) -> bool {
        true
    }
}

/// The keepalive learns whether packets were taken since it last asked: taken ones count
/// (from the fan-out and the session alike), refused ones do not, and each is told once.
#[test]
fn the_keepalive_learns_whether_packets_were_taken_since_it_last_asked() {
    let outlet = SocketOutlet::new(
        Recording::default(),
        4,
        metrics(),
        Encoding::Stream,
        Form::default(),
    );
    assert!(!outlet.took_packets(), "nothing written yet");
    assert!(outlet.direct());
    let snapshot = Snapshot::new(
        1,
        "e1".into(),
        crate::hub::packet::Telemetry::initializing(chrono::Utc::now()),
        "{}".into(),
    );
    assert!(hub::Outlet::offer(&outlet, &snapshot));
    assert!(outlet.took_packets(), "the fan-out wrote one");
    assert!(!outlet.took_packets(), "none since it was told");
    assert_eq!(outlet.offer(&snapshot.telemetry), Offered::Sent);
    assert!(outlet.took_packets(), "the session wrote one");
    assert!(outlet.push(b"reply", Frame::Reply).is_ok());
    assert!(!outlet.took_packets(), "a reply is not a packet");
    outlet.close();
    assert_eq!(outlet.offer(&snapshot.telemetry), Offered::Refused);
    assert!(!outlet.took_packets(), "a refused packet was not taken");
    assert_eq!(
        *outlet.out.0.lock().unwrap(),
        [
            snapshot.telemetry.to_vec(),
            snapshot.telemetry.to_vec(),
            b"reply".to_vec()
        ],
        "no ping in the bytes"
    );
}

/// A transport that takes `whole` writes, then `last` bytes of the next, then nothing; it
/// notes every cap it is given.
struct Filling {
    writes: Mutex<usize>,
    whole: usize,
    last: usize,
    caps: Mutex<Vec<usize>>,
}

impl Outbox for Filling {
    fn poll_write(&self, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut writes = self.writes.lock().unwrap();
        *writes += 1;
        match *writes {
            n if n <= self.whole => Poll::Ready(Ok(buf.len())),
            n if n == self.whole + 1 && self.last > 0 => Poll::Ready(Ok(self.last)),
            _ => Poll::Pending,
        }
    }

    fn poll_shutdown(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn cap_unsent(&self, bytes: usize) -> bool {
        self.caps.lock().unwrap().push(bytes);
        true
    }
}

#[test]
fn the_first_packet_caps_the_socket_at_the_queues_worth_of_it() {
    let out = Filling {
        writes: Mutex::new(0),
        whole: usize::MAX,
        last: 0,
        caps: Mutex::new(Vec::new()),
    };
    let outlet = SocketOutlet::new(out, 4, metrics(), Encoding::Stream, Form::default());
    assert!(outlet.direct());
    for size in [1000, 1200, 1100, 900] {
        assert_eq!(outlet.offer(&vec![b'x'; size]), Offered::Sent);
    }
    let caps = outlet.out.caps.lock().unwrap().clone();
    assert_eq!(
        caps,
        [CLOSING_ROOM, 4 * 1024, 4 * 1536],
        "grown with the largest packet only, a step at a time"
    );
}

#[test]
fn a_client_found_behind_gets_room_for_the_rest_of_the_packet_and_its_close() {
    // Found behind at a packet's start (nothing of it written) and in its middle.
    for last in [0, 100] {
        let out = Filling {
            writes: Mutex::new(0),
            whole: 4,
            last,
            caps: Mutex::new(Vec::new()),
        };
        let outlet = SocketOutlet::new(out, 4, metrics(), Encoding::Stream, Form::default());
        assert!(outlet.direct());
        let packet = vec![b'x'; 20_000];
        for _ in 0..4 {
            assert_eq!(outlet.offer(&packet), Offered::Sent);
        }
        assert_eq!(outlet.offer(&packet), Offered::Refused);
        assert_eq!(outlet.trouble_found(), Some(Trouble::Behind));
        let caps = outlet.out.caps.lock().unwrap().clone();
        assert_eq!(
            caps.last(),
            Some(&(4 * 20_480 + 20_000 + CLOSING_ROOM)),
            "cap raised when behind after {last} bytes: {caps:?}"
        );
        let pending = outlet.flow().pending.len();
        assert_eq!(pending, if last == 0 { 0 } else { 20_000 - last });
    }
}

#[tokio::test]
async fn what_waits_for_the_socket_goes_out_first_and_in_order() {
    let (server, mut client) = tokio::io::duplex(64);
    let (_read, write) = tokio::io::split(server);
    let outlet = SocketOutlet::new(
        Mutex::new(write),
        4,
        metrics(),
        Encoding::Stream,
        Form::default(),
    );
    assert!(!outlet.direct(), "a pipe is not fed by the hub");

    let first = vec![b'a'; 200];
    assert!(
        outlet.push(&first, Frame::Update).unwrap(),
        "the rest waits"
    );
    assert_eq!(outlet.offer(b"packet"), Offered::Queued);
    assert!(outlet.push(b"ping", Frame::Ping).unwrap());

    let reader = async {
        let mut got = vec![0; 210];
        client.read_exact(&mut got).await.unwrap();
        got
    };
    let (flushed, got) = tokio::join!(outlet.flush(), reader);
    flushed.unwrap();
    assert_eq!(got, [first, b"packet".to_vec(), b"ping".to_vec()].concat());
    assert!(
        !outlet.push(b"next", Frame::Ping).unwrap(),
        "empty again: written at once"
    );
}

/// A client that keeps its deflate window gets a packet compressed after the one before only
/// when that packet was the last thing written to it: after a frame of the session's own, the
/// next packet comes compressed on its own.
#[test]
fn a_packet_comes_compressed_after_the_one_before_only_when_nothing_came_between() {
    use crate::hub::deflate::Deflate;
    use crate::hub::packet::Telemetry;
    let form = Form {
        deflate: Some(Deflate {
            min_bytes: 0,
            takeover: true,
        }),
        ..Form::default()
    };
    let outlet = SocketOutlet::new(Recording::default(), 4, metrics(), Encoding::Stream, form);
    let mut previous: Option<Arc<Snapshot>> = None;
    let mut snapshot = |seq: u64| {
        let body = format!(r#"{{"seq":{seq},"pad":"{}"}}"#, "steady ".repeat(100));
        let next = Snapshot::new(
            seq,
            "e1".into(),
            Telemetry::initializing(chrono::Utc::now()),
            body,
        );
        let next = Arc::new(match &previous {
            Some(before) => next.after(before),
            None => next,
        });
        previous = Some(next.clone());
        next
    };
    let last_written =
        |outlet: &SocketOutlet<Recording>| outlet.out.0.lock().unwrap().last().unwrap().clone();
    let (first, second) = (snapshot(1), snapshot(2));
    assert!(hub::Outlet::offer(&outlet, &first));
    assert!(hub::Outlet::offer(&outlet, &second));
    let chained = second
        .packet_after(Encoding::Stream, form, first.serial)
        .clone();
    assert_ne!(
        chained,
        *second.packet_as(Encoding::Stream, form),
        "two variants"
    );
    assert_eq!(last_written(&outlet), chained, "after the one before");
    outlet.push(b"\x81\x02{}", Frame::Welcome).unwrap();
    let third = snapshot(3);
    assert!(hub::Outlet::offer(&outlet, &third));
    assert_eq!(
        last_written(&outlet),
        *third.packet_as(Encoding::Stream, form),
        "on its own after a frame of the session's"
    );
    let fourth = snapshot(4);
    assert!(hub::Outlet::offer(&outlet, &fourth));
    assert_eq!(
        last_written(&outlet),
        *fourth.packet_after(Encoding::Stream, form, third.serial),
        "after the one before again"
    );
    // A packet that went uncompressed (here: made under another connection's larger minimum,
    // as after a reload) is not in the window: the next one comes on its own.
    let fifth = snapshot(5);
    let uncompressed = Form {
        deflate: Some(Deflate {
            min_bytes: 1 << 20,
            takeover: true,
        }),
        ..Form::default()
    };
    let _ = fifth.packet_as(Encoding::Stream, uncompressed);
    let _ = fifth.packet_after(Encoding::Stream, uncompressed, fourth.serial);
    assert!(hub::Outlet::offer(&outlet, &fifth));
    assert_eq!(
        last_written(&outlet)[0],
        0x81,
        "uncompressed, as the slot was made"
    );
    let sixth = snapshot(6);
    assert!(hub::Outlet::offer(&outlet, &sixth));
    assert_eq!(
        last_written(&outlet),
        *sixth.packet_as(Encoding::Stream, form),
        "on its own after a packet that did not enter the window"
    );
}
