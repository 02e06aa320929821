//! What leaves the daemon on the wire, read as raw frames: the `101` and the WELCOME together,
//! in one TCP segment (a send and a wake-up of the client saved per connection; the client's own
//! count of the data segments it received, `TCP_INFO`, shows it), and packets without keepalive
//! pings to a client that takes them.

use crate::common;

use std::io::Cursor;
use std::os::fd::AsRawFd;

use common::{Daemon, FakeEngine, config, within};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// A WebSocket handshake over a plain TCP stream, whose frames the test reads itself.
async fn upgrade(addr: std::net::SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    tcp
}

/// Reads what has arrived onto the end of `got`, all of it at once (up to 64 KB).
async fn read_more(tcp: &mut TcpStream, got: &mut Vec<u8>, what: &str) {
    got.reserve(65536);
    let n = within(what, tcp.read_buf(got)).await.unwrap();
    assert!(n > 0, "closed while waiting for {what}");
}

/// The data segments `tcp` has received so far.
fn data_segments_in(tcp: &TcpStream) -> u32 {
    // SAFETY: TCP_INFO fills at most `len` bytes of a zeroed `tcp_info` owned here.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            tcp.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        info.tcpi_data_segs_in
    }
}

/// One server frame: its opcode and payload.
#[derive(Debug)]
enum Frame {
    Ping,
    Text(Value),
}

/// The whole frames at the start of `buf` (after the handshake's head, when `buf` holds it),
/// read by tungstenite's frame header parser, with how many bytes they took.
fn frames(buf: &[u8]) -> (Vec<Frame>, usize) {
    let mut at = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |head| head + 4);
    let mut out = Vec::new();
    loop {
        let mut cursor = Cursor::new(&buf[at..]);
        let Some((header, len)) = FrameHeader::parse(&mut cursor).unwrap() else {
            break;
        };
        let start = at + cursor.position() as usize;
        let end = start + len as usize;
        if buf.len() < end {
            break;
        }
        out.push(match header.opcode {
            OpCode::Control(Control::Ping) => Frame::Ping,
            OpCode::Data(Data::Text) => {
                Frame::Text(serde_json::from_slice(&buf[start..end]).unwrap())
            }
            other => panic!("unexpected opcode {other:?}"),
        });
        at = end;
    }
    (out, at)
}

/// The `101` is held back to leave with the WELCOME: the client receives the two in one TCP
/// segment, not two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_101_and_the_welcome_arrive_in_one_segment() {
    let engine = FakeEngine::samples().await;
    let mut cfg = config(&engine);
    // Only the WELCOME is counted: no TELEMETRY may follow it before the count is read.
    cfg.engine.poll_interval_ms = 60_000;
    let daemon = Daemon::start(cfg).await;
    daemon
        .wait_health("the first poll", |h| h["seq"].as_u64() >= Some(1))
        .await;
    let mut tcp = upgrade(daemon.addr).await;
    let mut got = Vec::new();
    let welcome = loop {
        read_more(&mut tcp, &mut got, "the 101 and the WELCOME").await;
        if let (mut read, _) = frames(&got)
            && !read.is_empty()
        {
            break read.remove(0);
        }
    };
    assert!(got.starts_with(b"HTTP/1.1 101 "));
    assert!(
        matches!(&welcome, Frame::Text(w) if w["type"] == "WELCOME"),
        "{welcome:?}"
    );
    assert_eq!(data_segments_in(&tcp), 1, "segments that carried data");
}

/// A stream client that takes the packets is sent no keepalive ping, and stays connected
/// without a word (it answers nothing) through several idle timeouts: taking the packets shows
/// it alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_taking_packets_is_not_pinged_and_stays_without_a_word() {
    let engine = FakeEngine::samples().await;
    let mut cfg = config(&engine);
    // Packets every 150 ms; a ping would be due every 600 ms, and silence ends a client at
    // 1.5 s (room for a poll late by a few hundred ms on a loaded machine).
    cfg.clients.ping_interval_ms = 600;
    cfg.clients.idle_timeout_ms = 1500;
    let daemon = Daemon::start(cfg).await;
    let mut tcp = upgrade(daemon.addr).await;
    let (mut got, mut seqs) = (Vec::new(), Vec::new());
    // 20 packets: 3 s, five ping intervals, two idle timeouts.
    while seqs.len() < 21 {
        read_more(&mut tcp, &mut got, "the packets").await;
        let (read, used) = frames(&got);
        got.drain(..used);
        for frame in read {
            match frame {
                Frame::Text(packet) => seqs.push(packet["seq"].as_u64().unwrap()),
                Frame::Ping => panic!("pinged after {} packets", seqs.len()),
            }
        }
    }
    // WELCOME, then each packet in turn: none missed while the client said nothing.
    let first = seqs[0];
    assert_eq!(seqs, (first..first + seqs.len() as u64).collect::<Vec<_>>());
}
