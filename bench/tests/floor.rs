//! `bff-floor` as a dashboard sees it: a real process, real sockets, a WebSocket client.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::DateTime;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// The floor process, killed if a test fails before stopping it.
struct Floor(Child);

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `bff-floor` on a free port with `args`; returns it and the address it printed.
fn start(args: &[&str]) -> (Floor, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bff-floor"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("bff-floor starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("a line on stdout");
    let addr = line
        .trim()
        .strip_prefix("Listening addr=")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (Floor(child), addr)
}

async fn next_text(ws: &mut WebSocketStream<TcpStream>) -> String {
    match ws.next().await {
        Some(Ok(Message::Text(text))) => text.to_string(),
        Some(Ok(other)) => panic!("unexpected {other:?}"),
        Some(Err(err)) => panic!("{err}"),
        None => panic!("the stream ended"),
    }
}

/// The type and seq of a packet, checked to be in the daemon's envelope and size.
fn envelope(text: &str) -> (String, u64) {
    assert_eq!(text.len(), 4200);
    let value: serde_json::Value = serde_json::from_str(text).expect("JSON");
    let timestamp = value["data"]["timestamp"].as_str().expect("data.timestamp");
    assert_eq!(timestamp.len(), 24, "{timestamp}");
    DateTime::parse_from_rfc3339(timestamp).expect("RFC 3339");
    assert!(text.contains(r#","data":{"timestamp":""#));
    assert_eq!(value["epoch"], "0000000000000000");
    let kind = value["type"].as_str().expect("type").to_string();
    assert!(text.starts_with(&format!(r#"{{"type":"{kind}","seq":"#)));
    (kind, value["seq"].as_u64().expect("seq"))
}

#[tokio::test]
async fn every_client_gets_a_welcome_then_every_tick() {
    let (mut floor, addr) = start(&["--hz", "20", "--packet-bytes", "4200"]);
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut clients = Vec::new();
        for _ in 0..3 {
            let tcp = TcpStream::connect(&addr).await.expect("connect");
            let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
                .await
                .expect("upgrade");
            clients.push(ws);
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        for ws in &mut clients {
            let (kind, mut last) = envelope(&next_text(ws).await);
            assert_eq!(kind, "WELCOME");
            for _ in 0..5 {
                let (kind, seq) = envelope(&next_text(ws).await);
                assert_eq!((kind.as_str(), seq), ("TELEMETRY", last + 1));
                last = seq;
            }
        }
        // A client's close is answered, and the connection ends.
        let mut ws = clients.pop().expect("a client");
        ws.send(Message::Close(None)).await.expect("close sent");
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(Message::Text(_))) => {}
                Some(other) => panic!("unexpected {other:?}"),
            }
        }
    })
    .await
    .expect("within 10 s");
    // SAFETY: signals our own child, which has not been waited for yet.
    unsafe { libc::kill(floor.0.id() as i32, libc::SIGTERM) };
    let status = floor.0.wait().expect("wait");
    assert!(status.success(), "{status}");
}

#[test]
fn a_request_without_a_key_is_closed() {
    use std::io::{Read, Write};
    let (_floor, addr) = start(&[]);
    let mut tcp = std::net::TcpStream::connect(&addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut got = Vec::new();
    tcp.read_to_end(&mut got).expect("closed, not timed out");
    assert!(got.is_empty(), "{got:?}");
}

/// `bff-load` asking for every form it can (deflate, deltas) works against the floor, which
/// negotiates nothing and sends plain JSON: the packets are read and verified as they are.
#[test]
fn a_client_asking_for_forms_reads_the_floors_plain_packets() {
    let (_floor, addr) = start(&["--hz", "5", "--packet-bytes", "1000"]);
    let json = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("floor-forms-{}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_bff-load"))
        .args(["--url", &format!("ws://{addr}/"), "--clients", "3"])
        .args(["--duration", "2", "--deflate", "--delta"])
        .args(["--json", json.to_str().unwrap()])
        .output()
        .expect("bff-load runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let form = &report["form"];
    assert_eq!(form["deflate_taken"], 0, "{form}");
    assert_eq!(form["delta_packets"], 0, "{form}");
    // The floor's packet and a 4-byte header.
    assert_eq!(form["wire_bytes_per_packet"], 1004.0, "{form}");
    assert!(form["verify"]["verified"].as_u64().unwrap() > 0, "{form}");
    assert_eq!(form["verify"]["mismatched"], 0, "{form}");
}
