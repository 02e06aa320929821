//! The log lines operators follow: one `Telemetry` line per tick, and one warning when a source
//! goes bad and one line when it recovers, not one per second while it stays bad.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{Answer, Daemon, FakeEngine, config, next_packet, packet_where};

/// A log sink the test can read back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
    fn count(&self, needle: &[&str]) -> usize {
        self.lines()
            .iter()
            .filter(|l| needle.iter().all(|n| l.contains(n)))
            .count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_going_bad_logs_once_and_its_recovery_once() {
    let logs = Captured::default();
    let sink = logs.clone();
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .init();

    let engine = FakeEngine::start(
        Answer::File("state-current.json"),
        Answer::File("agents-summary-map.json"),
        Answer::File("models-summary-map.json"),
    )
    .await;
    let daemon = Daemon::start(config(&engine)).await;
    let mut ws = daemon.connect().await;
    next_packet(&mut ws).await;

    engine.set("agents", Answer::Status(503));
    let first_bad = packet_where(&mut ws, "agents stale", |p| {
        p["data"]["sources"]["agents"]["ok"] == false
    })
    .await;
    // Five more ticks while it stays bad.
    for _ in 0..5 {
        assert_eq!(
            next_packet(&mut ws).await["data"]["sources"]["agents"]["ok"],
            false
        );
    }
    engine.set("agents", Answer::File("agents-summary-map.json"));
    let back = packet_where(&mut ws, "agents back", |p| {
        p["data"]["sources"]["agents"]["ok"] == true
    })
    .await;
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
    assert_eq!(
        logs.count(&["Source stale"]),
        1,
        "no other source went stale"
    );
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
    assert_eq!(logs.count(&["Client Connected", "clients=1"]), 1);
}
