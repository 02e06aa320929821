//! permessage-deflate (RFC 7692) end to end, with a raw client that does what a browser does:
//! it offers the extension, reads compressed packets (RSV1) and sends compressed messages; and
//! a deflate bomb is closed with 1009 while every other client streams on.

use std::io::Write;
use std::net::SocketAddr;

use flate2::write::DeflateEncoder;
use flate2::{Compression, Decompress, FlushDecompress};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{Daemon, FakeEngine, config, next_packet, within};

/// What a browser offers.
const BROWSER_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// What the daemon answers (`docs/PROTOCOL.md` §13.1).
const ANSWER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// A WebSocket client written by hand, to see the frames' RSV1 bits and send compressed ones.
struct Raw {
    stream: TcpStream,
    /// The handshake's response head.
    response: String,
}

impl Raw {
    /// Connects to `/`, offering `extensions` if any; panics unless the answer is `101`.
    async fn connect(addr: SocketAddr, extensions: Option<&str>) -> Self {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut request = format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        );
        if let Some(offer) = extensions {
            request.push_str(&format!("Sec-WebSocket-Extensions: {offer}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(stream.read_u8().await.unwrap());
        }
        let response = String::from_utf8(head).unwrap();
        assert!(response.starts_with("HTTP/1.1 101"), "{response}");
        Self { stream, response }
    }

    /// The response's `Sec-WebSocket-Extensions`, if any.
    fn extensions(&self) -> Option<&str> {
        self.response.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-extensions")
                .then_some(value.trim())
        })
    }

    /// The next frame: its first byte (FIN, RSV1, opcode) and its payload.
    async fn frame(&mut self) -> (u8, Vec<u8>) {
        within("a frame", async {
            let first = self.stream.read_u8().await.unwrap();
            let len = match self.stream.read_u8().await.unwrap() {
                126 => u64::from(self.stream.read_u16().await.unwrap()),
                127 => self.stream.read_u64().await.unwrap(),
                n => u64::from(n),
            };
            let mut payload = vec![0; len as usize];
            self.stream.read_exact(&mut payload).await.unwrap();
            (first, payload)
        })
        .await
    }

    /// The next text message as JSON, and whether it came compressed; skips pings.
    async fn message(&mut self) -> (Value, bool) {
        loop {
            let (first, payload) = self.frame().await;
            match first & 0x0f {
                0x9 => continue,
                0x1 => {
                    assert_eq!(first & 0x80, 0x80, "the daemon sends whole messages");
                    let compressed = first & 0x40 != 0;
                    let text = if compressed {
                        inflate(&payload)
                    } else {
                        payload
                    };
                    return (serde_json::from_slice(&text).unwrap(), compressed);
                }
                other => panic!("unexpected opcode {other:#x}: {payload:?}"),
            }
        }
    }

    /// The close frame's code, after whatever comes before it.
    async fn close_code(&mut self) -> u16 {
        within("a close frame", async {
            loop {
                let (first, payload) = self.frame().await;
                if first & 0x0f == 0x8 {
                    return u16::from_be_bytes([payload[0], payload[1]]);
                }
            }
        })
        .await
    }

    /// Sends `payload` as one masked text frame, with RSV1 when `compressed`.
    async fn send(&mut self, payload: &[u8], compressed: bool) {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut frame = vec![0x81 | if compressed { 0x40 } else { 0 }];
        match payload.len() {
            n @ 0..=125 => frame.push(0x80 | n as u8),
            n @ 126..=0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).await.unwrap();
    }
}

/// A message as RFC 7692 compresses it: raw deflate, sync-flushed, the tail stripped.
fn deflate(message: &[u8]) -> Vec<u8> {
    let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(message).unwrap();
    encoder.flush().unwrap();
    let mut out = std::mem::take(encoder.get_mut());
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(1 << 20);
    Decompress::new(false)
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    out
}

/// A client that offers permessage-deflate is answered with both `no_context_takeover`
/// parameters, gets every TELEMETRY compressed (and inflating to the packet, in order), and is
/// answered when it sends a compressed PING.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deflate_client_gets_compressed_packets_and_may_compress_its_own() {
    let engine = FakeEngine::samples().await;
    let daemon = Daemon::start(config(&engine)).await;
    let mut client = Raw::connect(daemon.addr, Some(BROWSER_OFFER)).await;
    assert_eq!(client.extensions(), Some(ANSWER), "{}", client.response);
    let (welcome, _) = client.message().await;
    assert_eq!(welcome["type"], "WELCOME", "{welcome}");
    let first = welcome["seq"].as_u64().unwrap() + 1;
    for seq in first..first + 2 {
        let (packet, compressed) = client.message().await;
        assert_eq!(packet["type"], "TELEMETRY", "{packet}");
        assert!(compressed, "a packet over the minimum is compressed");
        assert_eq!(packet["seq"], seq, "{packet}");
        assert!(packet["data"]["status"].is_string(), "{packet}");
    }
    client.send(&deflate(br#"{"type":"PING"}"#), true).await;
    within("the PONG", async {
        loop {
            let (message, compressed) = client.message().await;
            if message["type"] == "PONG" {
                assert!(!compressed, "a PONG is under the minimum");
                break;
            }
        }
    })
    .await;
    // An uncompressed message is read as ever.
    client.send(br#"{"type":"ping"}"#, false).await;
    within("the pong", async {
        while client.message().await.0["type"] != "pong" {}
    })
    .await;
}

/// A client that offers nothing, or offers deflate to a daemon with `clients.compression =
/// false`, gets today's frames, uncompressed, and no extension in the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_deflate_on_both_sides_frames_are_as_ever() {
    let engine = FakeEngine::samples().await;
    let daemon = Daemon::start(config(&engine)).await;
    let mut plain = Raw::connect(daemon.addr, None).await;
    assert_eq!(plain.extensions(), None, "{}", plain.response);
    let mut cfg = config(&engine);
    cfg.clients.compression = false;
    let off = Daemon::start(cfg).await;
    let mut declined = Raw::connect(off.addr, Some(BROWSER_OFFER)).await;
    assert_eq!(declined.extensions(), None, "{}", declined.response);
    for client in [&mut plain, &mut declined] {
        for expected in ["WELCOME", "TELEMETRY", "TELEMETRY"] {
            let (message, compressed) = client.message().await;
            assert_eq!(message["type"], expected, "{message}");
            assert!(!compressed, "{message}");
        }
    }
}

/// A deflate bomb (a few kilobytes that inflate to megabytes) is closed with 1009 once it passes
/// `clients.max_message_bytes`, without inflating the rest; no other client notices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deflate_bomb_is_closed_with_1009() {
    let engine = FakeEngine::samples().await;
    let mut cfg = config(&engine);
    cfg.clients.max_message_bytes = 4096;
    let daemon = Daemon::start(cfg).await;
    let mut watcher = daemon.watcher().await;
    let mut bomber = Raw::connect(daemon.addr, Some(BROWSER_OFFER)).await;
    let bomb = deflate(&vec![b' '; 16 << 20]);
    assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
    // Under the cap compressed, far over it inflated.
    bomber.send(&bomb[..4000], true).await;
    assert_eq!(bomber.close_code().await, 1009);
    // A message compressed to more than the cap is closed as soon as its header is read.
    let mut large = Raw::connect(daemon.addr, Some(BROWSER_OFFER)).await;
    large.send(&bomb, true).await;
    assert_eq!(large.close_code().await, 1009);
    // A compressed frame from a client that did not negotiate deflate is a protocol error.
    let mut rogue = Raw::connect(daemon.addr, None).await;
    rogue.send(&deflate(br#"{"type":"PING"}"#), true).await;
    assert_eq!(rogue.close_code().await, 1002);
    let mut fresh = daemon.connect().await;
    assert_eq!(next_packet(&mut fresh).await["type"], "WELCOME");
    watcher.saw_every_tick(&daemon).await;
}

/// Python's `websockets` (which offers permessage-deflate by default) gets both
/// `no_context_takeover` parameters, inflates the packets, and its compressed PING is answered.
#[cfg_attr(
    bff_no_python,
    ignore = "python3 with websockets not found: pip install -r examples/clients/requirements.txt"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_negotiates_deflate_both_ways() {
    if crate::common::clients::python().is_none() {
        return;
    }
    let engine = FakeEngine::samples().await;
    let daemon = Daemon::start(config(&engine)).await;
    let script = r#"
import asyncio, json, sys
from websockets.asyncio.client import connect

async def main(url):
    async with connect(url) as ws:
        for e in ws.protocol.extensions:
            print(e.name, e.remote_no_context_takeover, e.local_no_context_takeover)
        welcome = json.loads(await ws.recv())
        packet = json.loads(await ws.recv())
        print(welcome["type"], packet["type"], packet["seq"] == welcome["seq"] + 1)
        await ws.send(json.dumps({"type": "PING", "id": "p" * 300}))
        while json.loads(await ws.recv())["type"] != "PONG":
            pass
        print("PONG")

asyncio.run(main(sys.argv[1]))
"#;
    let out = within(
        "the Python client",
        tokio::process::Command::new("python3")
            .args(["-c", script, &daemon.url("/")])
            .output(),
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        "permessage-deflate True True\nWELCOME TELEMETRY True\nPONG\n"
    );
}
