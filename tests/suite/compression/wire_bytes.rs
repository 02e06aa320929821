//! The figures of `docs/BENCHMARKS.md` ("Fewer bytes"): bytes on the wire per client per tick
//! in each form a client may ask for, on the demo's stream and on a sequence replayed from the
//! engine's answer shapes ([`super::replay`]). Measurements, run by hand, not checks:
//! `cargo test --test suite compression::wire_bytes -- --ignored --nocapture`.

use std::net::SocketAddr;

use serde_json::Value;

use super::json_patch;
use super::replay::Replay;
use super::{BROWSER_OFFER, NO_TAKEOVER_OFFER, Raw, raw_data};
use crate::common::process::BffProcess;
use crate::common::{Answer, Daemon, FakeEngine, config};

/// A frame's header bytes for a payload of `len` (unmasked, server to client).
fn header(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xffff => 4,
        _ => 10,
    }
}

/// The table's rows for a JSON-aware delta, not offered: [`json_patch`] of each of the 30
/// `packets` (the first at seq `from`, in `epoch`) against the one before, bare and deflated
/// after the patch before, each checked to rebuild its packet; over the 29 after the first,
/// against the full JSON of the same 29 (`full`: the full client's bytes by seq).
fn json_patch_rows(
    packets: &[Value],
    from: u64,
    epoch: &Value,
    full: &std::collections::BTreeMap<u64, (usize, Value)>,
) {
    let (mut bare, mut deflated, mut window) = (0, 0, Vec::new());
    for (seq, pair) in (from + 1..).zip(packets.windows(2)) {
        let ops = json_patch::diff(&pair[0], &pair[1]);
        assert_eq!(
            json_patch::apply(pair[0].clone(), &ops),
            pair[1],
            "seq {seq}: the patch rebuilds the packet"
        );
        let message = json_patch::message(seq, epoch, &ops);
        bare += message.len() + header(message.len());
        let compressed = json_patch::deflated_after(&window, &message);
        deflated += compressed + header(compressed);
        window = message;
    }
    let full: usize = full.range(from + 1..from + 30).map(|(_, (w, _))| w).sum();
    for (name, total) in [
        ("JSON Patch (RFC 6902), not offered", bare),
        (
            "JSON Patch + deflate after the one before, not offered",
            deflated,
        ),
    ] {
        println!(
            "| {name} | | {} | {:.1}% |",
            total / 29,
            100.0 * total as f64 / full as f64
        );
    }
}

/// The figures in `docs/BENCHMARKS.md` ("Fewer bytes"): bytes on the wire, frame headers
/// included, per client for 30 consecutive TELEMETRY of `--demo` (its own one-second poll), in
/// each form a client may ask for, every packet decoded and checked against the plain one.
/// A measurement, not a check: `cargo test --test suite compression::wire_bytes -- --ignored
/// --nocapture`.
#[ignore = "a measurement for docs/BENCHMARKS.md; takes 30 s"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_thirty_demo_packets() {
    let daemon = BffProcess::demo(&[]);
    measure(daemon.addr(), "--demo").await;
}

/// Each form a client may ask for: its name, its path and what it offers.
const FORMS: [(&str, &str, Option<&str>); 8] = [
    ("full JSON", "/", None),
    ("deflate", "/", Some(BROWSER_OFFER)),
    ("deflate, each on its own", "/", Some(NO_TAKEOVER_OFFER)),
    ("fossil delta", "/?delta=fossil", None),
    ("delta + deflate", "/?delta=fossil", Some(BROWSER_OFFER)),
    (
        "delta + deflate, each on its own",
        "/?delta=fossil",
        Some(NO_TAKEOVER_OFFER),
    ),
    ("MessagePack", "/?format=msgpack", None),
    (
        "MessagePack + deflate",
        "/?format=msgpack",
        Some(BROWSER_OFFER),
    ),
];

/// Connects one raw client per form to the daemon at `addr`, reads until each has the 30
/// TELEMETRY after the first ACTIVE packet, checks every one decodes to the full JSON client's
/// data, and prints the markdown table of bytes on the wire per client per tick; `label` names
/// the stream in its heading; returns the 30 packets' data.
async fn measure(addr: SocketAddr, label: &str) -> Vec<Value> {
    let mut clients = Vec::new();
    for (_, path, offer) in FORMS {
        clients.push(Raw::connect_to(addr, path, offer).await);
    }
    // Each client's TELEMETRY by seq: (bytes on the wire, the data it decodes to).
    let mut seen: Vec<std::collections::BTreeMap<u64, (usize, Value)>> =
        vec![Default::default(); FORMS.len()];
    let mut bases: Vec<Vec<u8>> = vec![Vec::new(); FORMS.len()];
    let (mut first_active, mut epoch) = (None, Value::Null);
    loop {
        for (i, client) in clients.iter_mut().enumerate() {
            let (first, payload) = client.data_frame().await;
            let wire = payload.len() + header(payload.len());
            let bytes = if first & 0x40 != 0 {
                client.inflate(&payload)
            } else {
                payload
            };
            let packet: Value = if first & 0x0f == 0x2 {
                rmp_serde::from_slice(&bytes).unwrap()
            } else {
                serde_json::from_slice(&bytes).unwrap()
            };
            // What a packet announces (REGIME, ALERT) comes whole between packets, and is no
            // delta's base.
            if packet["type"] != "TELEMETRY" && packet["type"] != "WELCOME" {
                continue;
            }
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let data = match packet["delta"].as_bool() {
                Some(true) => {
                    let applied =
                        fossil_delta::apply(&bases[i], packet["data"].as_str().unwrap()).unwrap();
                    bases[i] = applied.clone();
                    serde_json::from_slice(&applied).unwrap()
                }
                _ if first & 0x0f == 0x1 => {
                    bases[i] = raw_data(&text).as_bytes().to_vec();
                    packet["data"].clone()
                }
                _ => packet["data"].clone(),
            };
            let seq = packet["seq"].as_u64().unwrap();
            epoch = packet["epoch"].clone();
            if packet["type"] == "TELEMETRY" {
                seen[i].insert(seq, (wire, data));
            }
            if first_active.is_none() && packet["data"]["status"] == "ACTIVE" {
                first_active = Some(seq + 1);
            }
        }
        let Some(from) = first_active else { continue };
        let done = seen.iter().all(|s| s.range(from..from + 30).count() == 30);
        if done {
            let full: usize = seen[0].range(from..from + 30).map(|(_, (w, _))| w).sum();
            println!("30 TELEMETRY of {label} from seq {from}; bytes per client per tick:");
            for (i, (name, path, offer)) in FORMS.iter().enumerate() {
                let total: usize = seen[i].range(from..from + 30).map(|(_, (w, _))| w).sum();
                for (seq, (_, data)) in seen[i].range(from..from + 30) {
                    assert_eq!(
                        data, &seen[0][seq].1,
                        "{name}: seq {seq} decodes to the packet"
                    );
                }
                println!(
                    "| {name} | `{path}`{} | {} | {:.1}% |",
                    match offer {
                        Some(NO_TAKEOVER_OFFER) =>
                            " + `permessage-deflate; server_no_context_takeover`",
                        Some(_) => " + permessage-deflate",
                        None => "",
                    },
                    total / 30,
                    100.0 * total as f64 / full as f64
                );
            }
            let packets: Vec<Value> = seen[0]
                .range(from..from + 30)
                .map(|(_, (_, data))| data.clone())
                .collect();
            json_patch_rows(&packets, from, &epoch, &seen[0]);
            return packets;
        }
    }
}

/// The table "On a replayed engine sequence" in `docs/BENCHMARKS.md`: [`measure`] on 30
/// consecutive TELEMETRY of a daemon polling every second (the default) a fake engine that
/// replays [`Replay`]'s ticks, one per poll ([`Answer::Sequence`]: the n-th request on each path
/// gets tick n, so no answer is set in a race with a poll). The sequence: tick 0 is
/// `fixtures/engine/state-current.json`, `agents-raw-records.json` and
/// `models-raw-records.json` as they are; each tick after, from a generator seeded with 23,
/// advances the engine's clock by one second; walks price, velocity, acceleration, alpha,
/// nav, cash (on a trade one tick in ten), daily P&L, drawdown and the signal's confidence (its
/// side following the velocity), each at the fixture's precision; pushes one or two log lines
/// of the fixture's four kinds with the tick's figures and drops as many of the oldest; and
/// appends one call record per agent and one invocation per model (random latency around the
/// fixture's, one agent call in ten failing, a forecast band around the price), dropping the
/// oldest so each list keeps the fixture's length (an empty one, `execution` and `finbert`,
/// stays empty). The state fixture has no `forecast` section; the forecast moves in the model's
/// invocations. Every packet measured carries the next tick: its `data.timestamp` is the
/// engine's, one second after the one before, and every source is fresh. A measurement, not a
/// check: `cargo test --test suite compression::wire_bytes -- --ignored --nocapture`.
#[ignore = "a measurement for docs/BENCHMARKS.md; takes 35 s"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_replayed_engine_sequence() {
    const TICKS: usize = 200;
    let mut replay = Replay::from_fixtures();
    let ticks: Vec<[String; 3]> = (0..TICKS).map(|_| replay.tick()).collect();
    let each = |i: usize| Answer::Sequence(ticks.iter().map(|t| t[i].clone()).collect());
    let engine = FakeEngine::start(each(0), each(1), each(2)).await;
    let mut cfg = config(&engine);
    cfg.engine.poll_interval_ms = 1000;
    cfg.engine.timeout_ms = 800;
    let daemon = Daemon::start(cfg).await;
    let packets = measure(daemon.addr, "a replayed engine sequence").await;
    assert!(
        engine.hits("/state") < TICKS,
        "the sequence ran out: make TICKS larger"
    );
    let at = |data: &Value| {
        chrono::DateTime::parse_from_rfc3339(data["timestamp"].as_str().unwrap()).unwrap()
    };
    for pair in packets.windows(2) {
        assert_eq!(
            at(&pair[1]) - at(&pair[0]),
            chrono::TimeDelta::seconds(1),
            "each packet carries the next tick: {} then {}",
            pair[0],
            pair[1]
        );
    }
    for data in &packets {
        for source in ["state", "agents", "models"] {
            assert_eq!(data["sources"][source]["ok"], true, "{source}: {data}");
        }
    }
}
