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

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use crate::common::process::BffProcess;
use crate::common::{Daemon, FakeEngine, Ws, config, next_packet, within};

mod json_patch;
mod replay;
mod wire_bytes;

/// What a browser offers.
const BROWSER_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// What the daemon answers it (`docs/PROTOCOL.md` §13.1): it keeps no window of the client's,
/// and may compress a packet after the one before in the window the client keeps.
const ANSWER: &str = "permessage-deflate; client_no_context_takeover";

/// An offer that asks the daemon to compress every message on its own.
const NO_TAKEOVER_OFFER: &str = "permessage-deflate; server_no_context_takeover";

/// What the daemon answers that.
const NO_TAKEOVER_ANSWER: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// A WebSocket client written by hand, to see the frames' RSV1 bits and send compressed ones.
struct Raw {
    stream: TcpStream,
    /// The handshake's response head.
    response: String,
    /// Its inflater, kept for the whole connection as a browser keeps it: the daemon may
    /// compress a message after the ones before it.
    window: Decompress,
}

impl Raw {
    /// Connects to `/`, offering `extensions` if any; panics unless the answer is `101`.
    async fn connect(addr: SocketAddr, extensions: Option<&str>) -> Self {
        Self::connect_to(addr, "/", extensions).await
    }

    /// Connects to `path`, offering `extensions` if any; panics unless the answer is `101`.
    async fn connect_to(addr: SocketAddr, path: &str, extensions: Option<&str>) -> Self {
        let (stream, response) = Self::handshake(addr, path, extensions).await;
        assert!(response.starts_with("HTTP/1.1 101"), "{response}");
        Self {
            stream,
            response,
            window: Decompress::new(false),
        }
    }

    /// A handshake to `path` that is refused: its status and body.
    async fn refused(addr: SocketAddr, path: &str) -> (u16, String) {
        let (mut stream, response) = Self::handshake(addr, path, None).await;
        let status = response[9..12].parse().unwrap();
        let length = response
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().unwrap())
            })
            .unwrap();
        let mut body = vec![0; length];
        within("the refusal's body", stream.read_exact(&mut body))
            .await
            .unwrap();
        (status, String::from_utf8(body).unwrap())
    }

    async fn handshake(
        addr: SocketAddr,
        path: &str,
        extensions: Option<&str>,
    ) -> (TcpStream, String) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
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
        (stream, String::from_utf8(head).unwrap())
    }

    /// The next data frame (skipping pings): its first byte and payload.
    async fn data_frame(&mut self) -> (u8, Vec<u8>) {
        loop {
            let (first, payload) = self.frame().await;
            if first & 0x0f != 0x9 {
                return (first, payload);
            }
        }
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
        let (message, compressed, _) = self.sized_message().await;
        (message, compressed)
    }

    /// [`Raw::message`], and its payload's size on the wire.
    async fn sized_message(&mut self) -> (Value, bool, usize) {
        loop {
            let (first, payload) = self.frame().await;
            match first & 0x0f {
                0x9 => continue,
                0x1 => {
                    assert_eq!(first & 0x80, 0x80, "the daemon sends whole messages");
                    let compressed = first & 0x40 != 0;
                    let payload_len = payload.len();
                    let text = if compressed {
                        self.inflate(&payload)
                    } else {
                        payload
                    };
                    let value = serde_json::from_slice(&text).unwrap();
                    return (value, compressed, payload_len);
                }
                other => panic!("unexpected opcode {other:#x}: {payload:?}"),
            }
        }
    }

    /// A compressed message's payload inflated in the connection's window.
    fn inflate(&mut self, payload: &[u8]) -> Vec<u8> {
        let mut input = payload.to_vec();
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut out = Vec::with_capacity(1 << 20);
        self.window
            .decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .unwrap();
        out
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

/// A client that offers permessage-deflate is answered with both `no_context_takeover`
/// parameters, gets every TELEMETRY compressed (and inflating to the packet, in order), and is
/// answered when it sends a compressed PING.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deflate_client_gets_compressed_packets_and_may_compress_its_own() {
    let engine = FakeEngine::samples().await;
    let daemon = Daemon::start(config(&engine)).await;
    let mut client = Raw::connect(daemon.addr, Some(BROWSER_OFFER)).await;
    assert_eq!(client.extensions(), Some(ANSWER), "{}", client.response);
    let (welcome, compressed) = client.message().await;
    assert_eq!(welcome["type"], "WELCOME", "{welcome}");
    assert!(compressed, "the shared WELCOME is compressed too");
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
    // A resuming client's WELCOME is made for it alone, and goes uncompressed.
    let resume = format!(
        "/?since={}&epoch={}",
        first,
        welcome["epoch"].as_str().unwrap()
    );
    let mut resuming = Raw::connect_to(daemon.addr, &resume, Some(BROWSER_OFFER)).await;
    let (again, compressed) = resuming.message().await;
    assert_eq!(
        (
            again["type"].as_str(),
            again["resumed"].as_bool(),
            compressed
        ),
        (Some("WELCOME"), Some(true), false),
        "{again}"
    );
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

/// A client that keeps its window gets each packet compressed after the one before, a fraction
/// of what a client that asked for every message on its own gets, inflating to the same
/// packets; after a message of its own in between (a PONG), it gets the next packet compressed
/// on its own, then after the one before again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_keeps_its_window_gets_packets_compressed_after_the_one_before() {
    let daemon = quick_demo("takeover", "");
    let mut keeper = Raw::connect(daemon.addr(), Some(BROWSER_OFFER)).await;
    let mut alone = Raw::connect(daemon.addr(), Some(NO_TAKEOVER_OFFER)).await;
    assert_eq!(keeper.extensions(), Some(ANSWER), "{}", keeper.response);
    assert_eq!(
        alone.extensions(),
        Some(NO_TAKEOVER_ANSWER),
        "{}",
        alone.response
    );
    // TELEMETRY by seq: (its compressed size, the packet).
    async fn packets(
        client: &mut Raw,
        count: usize,
    ) -> std::collections::BTreeMap<u64, (usize, Value)> {
        let mut seen = std::collections::BTreeMap::new();
        while seen.len() < count {
            let (packet, compressed, size) = client.sized_message().await;
            if packet["type"] == "TELEMETRY" {
                assert!(compressed, "{packet}");
                seen.insert(packet["seq"].as_u64().unwrap(), (size, packet));
            }
        }
        seen
    }
    let kept = packets(&mut keeper, 6).await;
    // A message of its own between two packets: a PONG.
    keeper.send(&deflate(br#"{"type":"PING"}"#), true).await;
    within("the PONG", async {
        while keeper.message().await.0["type"] != "PONG" {}
    })
    .await;
    let after = packets(&mut keeper, 3).await;
    let last = *after.keys().last().unwrap();
    let first = *kept.keys().next().unwrap();
    let each = packets(&mut alone, 1).await;
    let mut each = each;
    while !each.contains_key(&last) {
        each.extend(packets(&mut alone, 1).await);
    }
    // The first packet after the WELCOME is compressed on its own; the rest after the one before.
    let (mut kept_bytes, mut alone_bytes) = (0, 0);
    for (seq, (size, packet)) in kept.iter().skip(1) {
        if let Some((other, same)) = each.get(seq) {
            assert_eq!(packet, same, "seq {seq}");
            kept_bytes += size;
            alone_bytes += other;
        }
    }
    assert!(
        alone_bytes > 0 && kept_bytes * 2 < alone_bytes,
        "from seq {first}: {kept_bytes} bytes against {alone_bytes}"
    );
    for (seq, (_, packet)) in &after {
        if let Some((_, same)) = each.get(seq) {
            assert_eq!(packet, same, "seq {seq}");
        }
    }
}

/// On a bridge path too, the `telemetry` updates of a client that keeps its window come
/// compressed after the one before: the same updates, a fraction of the bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_client_that_keeps_its_window_gets_updates_compressed_after_the_one_before() {
    let daemon = quick_demo("bridge-takeover", "");
    // Each `telemetry` update by its data's timestamp: (its size on the wire, the update).
    async fn updates(
        client: &mut Raw,
        count: usize,
    ) -> std::collections::BTreeMap<String, (usize, Value)> {
        client
            .send(br#"{"type":"subscribe","channels":["telemetry"]}"#, false)
            .await;
        let mut seen = std::collections::BTreeMap::new();
        while seen.len() < count {
            let (message, _, size) = client.sized_message().await;
            if message["type"] == "update" && message["channel"] == "telemetry" {
                let at = message["data"]["timestamp"].as_str().unwrap().to_owned();
                seen.insert(at, (size, message));
            }
        }
        seen
    }
    let mut keeper = Raw::connect_to(daemon.addr(), "/ws", Some(BROWSER_OFFER)).await;
    let mut alone = Raw::connect_to(daemon.addr(), "/ws", Some(NO_TAKEOVER_OFFER)).await;
    assert_eq!(keeper.extensions(), Some(ANSWER), "{}", keeper.response);
    let (kept, each) = tokio::join!(updates(&mut keeper, 8), updates(&mut alone, 8));
    let (mut kept_bytes, mut alone_bytes, mut both) = (0, 0, 0);
    // The first update is the latest, sent at once on its own.
    for (at, (size, update)) in kept.iter().skip(1) {
        if let Some((other, same)) = each.get(at) {
            assert_eq!(update, same, "{at}");
            (kept_bytes, alone_bytes, both) = (kept_bytes + size, alone_bytes + other, both + 1);
        }
    }
    assert!(both >= 4, "{both} updates seen by both");
    assert!(
        kept_bytes * 2 < alone_bytes,
        "{kept_bytes} bytes against {alone_bytes}"
    );
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

/// Python's `websockets` (which offers permessage-deflate by default) is answered
/// `client_no_context_takeover` only, inflates packets compressed after the one before (with a
/// compressed PONG in between), and its compressed PING is answered.
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
        seqs = [json.loads(await ws.recv())["seq"] for _ in range(3)]
        print(seqs == list(range(seqs[0], seqs[0] + 3)))

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
        "permessage-deflate False True\nWELCOME TELEMETRY True\nPONG\nTrue\n"
    );
}

/// `data` as its bytes appear in a packet's text: after the envelope's first `"data":`, up to
/// its last `,"epoch":` (`docs/PROTOCOL.md` §13.2): what a delta applies to.
fn raw_data(text: &str) -> &str {
    let start = text.find(r#""data":"#).unwrap() + r#""data":"#.len();
    let end = text.rfind(r#","epoch":"#).unwrap();
    &text[start..end]
}

/// A demo daemon polling every 250 ms, so 30 packets take a few seconds, with `extra` config.
fn quick_demo(name: &str, extra: &str) -> BffProcess {
    let config = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}.toml", std::process::id()));
    let text = format!("{extra}\n[engine]\npoll_interval_ms = 250\ntimeout_ms = 200\n");
    std::fs::write(&config, text).unwrap();
    BffProcess::demo(&["--config", config.to_str().unwrap()])
}

/// The next text frame's text, skipping pings.
async fn next_text(ws: &mut Ws) -> String {
    within("a text frame", async {
        loop {
            match ws.next().await.unwrap().unwrap() {
                Message::Text(text) => return text.to_string(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await
}

/// The plain client's packet `seq`, reading on until it comes.
async fn plain_packet(plain: &mut Ws, seq: u64) -> String {
    loop {
        let text = next_text(plain).await;
        let packet: Value = serde_json::from_str(&text).unwrap();
        // What a packet announces (REGIME, ALERT) carries no seq.
        let Some(at) = packet["seq"].as_u64() else {
            continue;
        };
        match at {
            s if s < seq => continue,
            s if s == seq => return text,
            s => panic!("the plain client skipped from before {seq} to {s}"),
        }
    }
}

/// A `?delta=fossil` client gets a whole WELCOME, then TELEMETRY as fossil deltas of the data
/// (`"delta": true`, as the published schema says): applied one after the other (the fossil algorithm, as the crate
/// implements it), 30 consecutive demo packets come out byte for byte as a plain client gets
/// them; a full one says `"delta": false`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fossil_deltas_rebuild_thirty_consecutive_demo_packets() {
    let daemon = quick_demo("deltas", "");
    let url = |query: &str| format!("ws://{}/{query}", daemon.addr());
    let (mut plain, _) = tokio_tungstenite::connect_async(url("")).await.unwrap();
    // Past the first packet (INITIALIZING, before the first poll), which the next differs
    // from too much for a delta to be smaller.
    crate::common::packet_where(&mut plain, "an ACTIVE packet", |p| {
        p["data"]["status"] == "ACTIVE"
    })
    .await;
    let (mut delta, _) = tokio_tungstenite::connect_async(url("?delta=fossil"))
        .await
        .unwrap();
    let welcome = next_text(&mut delta).await;
    let head: Value = serde_json::from_str(&welcome).unwrap();
    assert_eq!(head["type"], "WELCOME");
    assert!(head.get("delta").is_none(), "a WELCOME is always whole");
    let mut base = raw_data(&welcome).as_bytes().to_vec();
    let mut seq = head["seq"].as_u64().unwrap();
    let schema: Value = serde_json::from_str(bff::SCHEMA).unwrap();
    let schema = jsonschema::validator_for(&schema).unwrap();
    let (mut deltas, mut packets) = (0, 0);
    while packets < 30 {
        let text = next_text(&mut delta).await;
        let packet: Value = serde_json::from_str(&text).unwrap();
        assert!(
            schema.is_valid(&packet),
            "the published schema describes it: {text}"
        );
        // The demo's moods come and go: what a packet announces goes before it, whole.
        if crate::common::is_announcement(&packet) {
            continue;
        }
        assert_eq!(packet["type"], "TELEMETRY", "{text}");
        assert_eq!(packet["seq"], seq + 1, "{text}");
        seq += 1;
        packets += 1;
        let data = match packet["delta"].as_bool() {
            Some(true) => {
                deltas += 1;
                let delta = packet["data"].as_str().unwrap();
                fossil_delta::apply(&base, delta).unwrap()
            }
            Some(false) => raw_data(&text).as_bytes().to_vec(),
            None => panic!("a delta client's TELEMETRY says whether it is a delta: {text}"),
        };
        let expected = plain_packet(&mut plain, seq).await;
        assert_eq!(
            String::from_utf8(data.clone()).unwrap(),
            raw_data(&expected),
            "seq {seq}"
        );
        assert!(text.len() < expected.len(), "seq {seq}: not smaller");
        base = data;
    }
    assert_eq!(
        deltas, 30,
        "every packet after the WELCOME follows the one before"
    );
}

/// A `?format=msgpack` client gets the same envelope and data as a plain client, as
/// MessagePack binary frames: WELCOME and TELEMETRY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msgpack_frames_carry_the_same_packets() {
    let engine = FakeEngine::samples().await;
    let daemon = Daemon::start(config(&engine)).await;
    // The plain client first: every packet the MessagePack one gets, it gets too.
    let mut plain = daemon.connect().await;
    let (mut binary, _) = tokio_tungstenite::connect_async(daemon.url("/?format=msgpack"))
        .await
        .unwrap();
    for expected in ["WELCOME", "TELEMETRY", "TELEMETRY"] {
        let frame = within("a binary frame", async {
            loop {
                match binary.next().await.unwrap().unwrap() {
                    Message::Binary(bytes) => return bytes,
                    Message::Ping(_) => continue,
                    other => panic!("a MessagePack client's packets are binary: {other:?}"),
                }
            }
        })
        .await;
        let packet: Value = rmp_serde::from_slice(&frame).unwrap();
        assert_eq!(packet["type"], expected, "{packet}");
        let seq = packet["seq"].as_u64().unwrap();
        let mut json: Value = serde_json::from_str(&plain_packet(&mut plain, seq).await).unwrap();
        // The same snapshot, whichever the plain client got it as.
        json["type"] = packet["type"].clone();
        assert_eq!(packet, json, "seq {seq}");
    }
}

/// The combinations offered, through one raw client each that offers permessage-deflate: a
/// delta and a MessagePack packet come compressed (RSV1) and inflate to their form; delta and
/// MessagePack together, a form on a bridge path or an unknown one, are refused with `400`
/// and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_form_is_compressed_and_what_is_not_offered_is_refused() {
    // Deltas of packets a quarter of a second apart are under the default minimum.
    let daemon = quick_demo("forms", "[clients]\ncompression_min_bytes = 0");
    let mut delta = Raw::connect_to(daemon.addr(), "/?delta=fossil", Some(BROWSER_OFFER)).await;
    assert_eq!(delta.extensions(), Some(ANSWER));
    let (welcome, _) = delta.message().await;
    assert_eq!(welcome["type"], "WELCOME");
    // The demo's market may turn in between: what it announces comes whole, before the packet.
    let (packet, compressed) = loop {
        let (message, compressed) = delta.message().await;
        if !crate::common::is_announcement(&message) {
            break (message, compressed);
        }
    };
    assert_eq!(
        (packet["type"].as_str(), packet["delta"].as_bool()),
        (Some("TELEMETRY"), Some(true))
    );
    assert!(packet["data"].is_string() && compressed, "{packet}");
    let mut binary = Raw::connect_to(daemon.addr(), "/?format=msgpack", Some(BROWSER_OFFER)).await;
    for expected in ["WELCOME", "TELEMETRY"] {
        let (first, packet) = loop {
            let (first, payload) = binary.data_frame().await;
            let bytes = if first & 0x40 != 0 {
                binary.inflate(&payload)
            } else {
                payload
            };
            // What the demo's market announces when it turns comes as JSON text, whole.
            if first & 0x0f == 0x1 {
                let message: Value = serde_json::from_slice(&bytes).unwrap();
                assert!(crate::common::is_announcement(&message), "{message}");
                continue;
            }
            assert_eq!(first & 0x0f, 0x2, "binary");
            break (first, rmp_serde::from_slice::<Value>(&bytes).unwrap());
        };
        assert_eq!(packet["type"], expected);
        assert_eq!(first & 0x40, 0x40, "{expected} compressed");
    }
    for (path, why) in [
        ("/?delta=fossil&format=msgpack", "not offered together"),
        ("/ws?delta=fossil", "stream paths"),
        ("/?delta=xdelta", "Unknown delta `xdelta`"),
        ("/?format=cbor", "Unknown format `cbor`"),
    ] {
        let (status, body) = Raw::refused(daemon.addr(), path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains(why), "{path}: {body}");
    }
}
