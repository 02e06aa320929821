//! The log lines operators follow: one `Telemetry` line per tick, and one warning when a source
//! goes bad and one line when it recovers, not one per second while it stays bad.

mod common;

use common::{Answer, Captured, Daemon, FakeEngine, config, next_packet, packet_where, source_ok};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_going_bad_logs_once_and_its_recovery_once() {
    let logs = Captured::install();

    let engine = FakeEngine::start(
        Answer::File("state-current.json"),
        Answer::File("agents-summary-map.json"),
        Answer::File("models-summary-map.json"),
    )
    .await;
    let daemon = Daemon::start(config(&engine)).await;
    let mut ws = daemon.connect().await;
    // Good first, so it goes stale with a value to keep (a source that never answered says so
    // in another line); on a loaded machine the first packets may come before its answer.
    packet_where(&mut ws, "agents answered", |p| source_ok(p, "agents")).await;

    engine.set("agents", Answer::Status(503));
    let first_bad = packet_where(&mut ws, "agents stale", |p| !source_ok(p, "agents")).await;
    // Five more ticks while it stays bad.
    for _ in 0..5 {
        assert_eq!(
            next_packet(&mut ws).await["data"]["sources"]["agents"]["ok"],
            false
        );
    }
    engine.set("agents", Answer::File("agents-summary-map.json"));
    let back = packet_where(&mut ws, "agents back", |p| source_ok(p, "agents")).await;
    next_packet(&mut ws).await;

    assert_eq!(
        logs.count(&["WARN", "Source stale", "source=\"agents\"", "HTTP 503"]),
        1,
        "{:#?}",
        logs.lines()
    );
    assert_eq!(
        logs.count(&["Source recovered", "source=\"agents\""]),
        1,
        "{:#?}",
        logs.lines()
    );
    // Nothing else went stale (a poll timed out on a loaded machine is no failure of its own).
    let stale: Vec<String> = logs
        .lines()
        .into_iter()
        .filter(|l| l.contains("Source stale") && !l.contains("timed out"))
        .collect();
    assert_eq!(stale.len(), 1, "nothing else went stale: {stale:#?}");
    // One Telemetry line per published packet, each naming its seq.
    let (from, to) = (
        first_bad["seq"].as_u64().unwrap(),
        back["seq"].as_u64().unwrap(),
    );
    for seq in from..=to {
        assert_eq!(
            logs.count(&["Telemetry published", &format!("seq={seq} ")]),
            1,
            "seq {seq}"
        );
    }
    // The client's own address is on its line, as a field rather than in a span.
    let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = ws.get_ref() else {
        panic!("a plain TCP client");
    };
    let peer = format!("peer={}", tcp.local_addr().unwrap());
    assert_eq!(
        logs.count(&["Client Connected", &peer, "clients=1"]),
        1,
        "{:#?}",
        logs.lines()
    );
    // The connection's span is at debug: kept for the connection's whole life, it is not paid
    // for at info.
    assert_eq!(logs.count(&["http{"]), 0, "{:#?}", logs.lines());
}
