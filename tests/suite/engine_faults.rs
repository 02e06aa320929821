//! Every way the engine can misbehave, tried one after another on a running daemon: the failing
//! source is marked stale with a readable reason and keeps its last good values, the other
//! sources and the packet sequence carry on, and the source recovers when the engine does.

use crate::common;

use std::time::Duration;

use common::{
    Answer, CONTRACT_KEYS, Daemon, FakeEngine, Ws, config, next_packet, source_ok, within,
};
use serde_json::Value;

/// Every packet, whatever the engine did: the contract's keys, one of the three statuses.
fn assert_well_formed(packet: &Value) {
    assert_eq!(packet["type"], "TELEMETRY");
    let data = packet["data"].as_object().unwrap();
    for key in CONTRACT_KEYS {
        assert!(data.contains_key(key), "{key} missing from {packet}");
    }
    assert!(["ACTIVE", "HALT", "INITIALIZING"].contains(&data["status"].as_str().unwrap()));
    assert!(data["logs"].is_array() && data["market"].is_object() && data["agents"].is_object());
}

/// Reads packets until `done`, asserting that no seq is skipped on the way and that every
/// packet is well-formed.
async fn follow(ws: &mut Ws, seq: &mut u64, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    within(what, async {
        loop {
            let packet = next_packet(ws).await;
            *seq += 1;
            assert_eq!(
                packet["seq"], *seq,
                "a packet was skipped while waiting for {what}"
            );
            assert_well_formed(&packet);
            if done(&packet) {
                return packet;
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_engine_fault_marks_only_its_source_stale_and_recovers() {
    let good = || Answer::File("state-current.json");
    let engine = FakeEngine::start(
        good(),
        Answer::File("agents-raw-records.json"),
        Answer::File("models-raw-records.json"),
    )
    .await;
    let mut cfg = config(&engine);
    cfg.engine.max_body_bytes = 256 * 1024;
    let daemon = Daemon::start(cfg).await;
    let mut ws = daemon.connect().await;
    let mut seq = next_packet(&mut ws).await["seq"].as_u64().unwrap();
    follow(&mut ws, &mut seq, "a first good poll", |p| {
        source_ok(p, "state")
    })
    .await;

    let faults: Vec<(&str, Answer, &str)> = vec![
        (
            "HTTP 500",
            Answer::Status(500),
            "HTTP 500 Internal Server Error",
        ),
        ("HTTP 404", Answer::Status(404), "HTTP 404 Not Found"),
        (
            "closes without answering",
            Answer::Drop,
            "request failed: connection closed before message completed",
        ),
        ("never answers", Answer::Hang, "timed out after 120 ms"),
        (
            "answers too slowly",
            Answer::Slow(Duration::from_millis(400), "{}".into()),
            "timed out after 120 ms",
        ),
        (
            "malformed JSON",
            Answer::Body("{\"market\": {".into()),
            "invalid JSON: ",
        ),
        (
            "NaN",
            Answer::Body("{\"market\": {\"price\": NaN}}".into()),
            "invalid JSON: ",
        ),
        (
            "an array",
            Answer::Body("[1, 2, 3]".into()),
            "expected a JSON object, got an array",
        ),
        (
            "a string",
            Answer::Body("\"ACTIVE\"".into()),
            "expected a JSON object, got a string",
        ),
        (
            "deeply nested junk",
            Answer::Body("[".repeat(100_000)),
            "invalid JSON: recursion limit exceeded",
        ),
        (
            "a body over the cap",
            Answer::Body(" ".repeat(300_000)),
            "answer larger than 262144 bytes",
        ),
        (
            "a body that never ends",
            Answer::Endless,
            "answer larger than 262144 bytes",
        ),
    ];
    for (fault, answer, reason) in faults {
        engine.set("state", answer);
        // A slow or hung answer is first only late (the packet goes at the publish deadline
        // without it), then timed out: wait for the reason itself.
        let stale = follow(&mut ws, &mut seq, fault, |p| {
            !source_ok(p, "state")
                && p["data"]["sources"]["state"]["error"]
                    .as_str()
                    .is_some_and(|e| e.starts_with(reason))
                // Only state: a packet with the others fresh comes (one of theirs may be
                // late on a loaded machine; never all of them, tick after tick).
                && source_ok(p, "agents")
                && source_ok(p, "models")
        })
        .await;
        let error = stale["data"]["sources"]["state"]["error"].as_str().unwrap();
        assert!(
            error.starts_with(reason),
            "{fault}: {error:?} should start with {reason:?}"
        );
        assert_eq!(
            stale["data"]["market"]["price"], 450.32,
            "{fault}: last good value kept"
        );
        assert_eq!(stale["data"]["status"], "ACTIVE", "{fault}");

        engine.set("state", good());
        let back = follow(&mut ws, &mut seq, "recovery", |p| source_ok(p, "state")).await;
        assert_eq!(
            back["data"]["sources"]["state"]["error"],
            Value::Null,
            "{fault}"
        );
    }

    // Numbers as strings and junk values inside a well-formed answer are read, not fatal.
    engine.set(
        "state",
        Answer::Body(
            r#"{"status": "running", "market": {"price": "451.5", "alpha": "NaN", "symbol": 7}}"#
                .into(),
        ),
    );
    let odd = follow(&mut ws, &mut seq, "the odd values", |p| {
        p["data"]["market"]["price"] == 451.5
    })
    .await;
    assert!(source_ok(&odd, "state"));
    assert_eq!(odd["data"]["market"]["alpha"], Value::Null);
    assert_eq!(odd["data"]["market"]["symbol"], Value::Null);

    // The content type is not checked: JSON labelled text/html is still JSON.
    engine.set(
        "state",
        Answer::Html(common::fixture_text("state-spec-objects.json")),
    );
    let html = follow(&mut ws, &mut seq, "the text/html answer", |p| {
        p["data"]["market"]["symbol"] == "QQQ"
    })
    .await;
    assert!(source_ok(&html, "state"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_that_is_not_running_is_stale_with_a_reason_and_packets_flow() {
    let engine = FakeEngine::start(Answer::Hang, Answer::Hang, Answer::Hang).await;
    let mut cfg = config(&engine);
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    cfg.engine.url = format!("http://{closed}");
    let daemon = Daemon::start(cfg).await;
    let mut ws = daemon.connect().await;
    let mut seq = next_packet(&mut ws).await["seq"].as_u64().unwrap();
    let packet = follow(&mut ws, &mut seq, "a polled packet", |p| {
        p["seq"].as_u64() >= Some(2)
    })
    .await;
    for source in ["state", "agents", "models"] {
        let health = &packet["data"]["sources"][source];
        assert_eq!(health["ok"], false);
        let error = health["error"].as_str().unwrap();
        assert!(
            error.starts_with("request failed: ") && error.contains("refused"),
            "{error}"
        );
    }
    assert_eq!(packet["data"]["status"], "INITIALIZING");
}

/// An engine served under a path prefix (behind a proxy, say) is polled under it: the endpoint
/// paths go below `engine.url`'s path, not at the host's root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_under_a_path_prefix_is_polled_under_it() {
    // Only the prefixed paths answer; the host's root ones are 404s, as behind such a proxy.
    let engine = FakeEngine::start(
        Answer::Status(404),
        Answer::Status(404),
        Answer::Status(404),
    )
    .await;
    engine.set("engine/v1/state", Answer::File("state-current.json"));
    engine.set("engine/v1/agents", Answer::File("agents-raw-records.json"));
    engine.set("engine/v1/models", Answer::File("models-raw-records.json"));
    let mut cfg = config(&engine);
    cfg.engine.url = format!("http://{}/engine/v1", engine.addr);
    let daemon = Daemon::start(cfg).await;
    let mut ws = daemon.connect().await;
    let mut seq = next_packet(&mut ws).await["seq"].as_u64().unwrap();
    let packet = follow(&mut ws, &mut seq, "every source answering", |p| {
        ["state", "agents", "models"]
            .iter()
            .all(|source| source_ok(p, source))
    })
    .await;
    assert_eq!(packet["data"]["status"], "ACTIVE", "{packet}");
    assert_eq!(
        engine.hits("/state"),
        0,
        "nothing was asked at the host's root"
    );
}
