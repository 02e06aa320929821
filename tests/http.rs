//! The plain-HTTP routes beside the WebSocket: `/metrics`, the live page at `/`, `/schema.json`.

mod common;

use std::collections::BTreeMap;

use common::{Answer, Daemon, FakeEngine, config, reqwest_get, within};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// The samples of an exposition, by `name{labels}`.
fn samples(exposition: &str) -> BTreeMap<String, f64> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (key, value) = line.rsplit_once(' ').unwrap();
            (key.to_owned(), value.parse().unwrap())
        })
        .collect()
}

/// The WELCOME's text as the client received it.
async fn welcome_text(ws: &mut common::Ws) -> String {
    within("a WELCOME", async {
        loop {
            if let Some(Ok(Message::Text(text))) = ws.next().await {
                return text.to_string();
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_connections_frames_bytes_refusals_and_polls_exactly() {
    let engine = FakeEngine::start(
        Answer::File("state-current.json"),
        Answer::File("agents-raw-records.json"),
        Answer::Status(500),
    )
    .await;
    let mut cfg = config(&engine);
    // One poll at start, then none for the length of the test: every count is exact.
    cfg.engine.poll_interval_ms = 60_000;
    let daemon = Daemon::start(cfg).await;
    daemon
        .wait_health("the first poll", |h| h["seq"] == 1)
        .await;

    let mut stays = daemon.connect().await;
    let mut leaves = daemon.connect().await;
    let welcome = welcome_text(&mut stays).await;
    assert_eq!(welcome_text(&mut leaves).await, welcome);
    leaves
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })))
        .await
        .unwrap();
    while leaves.next().await.is_some() {}
    daemon
        .wait_health("one connection left", |h| h["connections"] == 1)
        .await;
    let (status, _) = reqwest_get(&format!("http://{}/ws/stream", daemon.addr)).await;
    assert_eq!(status, 426);

    let response = reqwest::get(format!("http://{}/metrics", daemon.addr))
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        bff::metrics::CONTENT_TYPE
    );
    let text = response.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    let got = samples(&text);
    // A WELCOME of this size has a 4-byte frame header; the close reply is 2 + 2 bytes.
    assert!((126..65_536).contains(&welcome.len()));
    let welcome_frame = (welcome.len() + 4) as f64;
    for (key, value) in [
        ("bff_connections", 1.0),
        ("bff_connects_total", 2.0),
        (
            r#"bff_disconnects_total{reason="client_closed",code="1000"}"#,
            1.0,
        ),
        (r#"bff_frames_sent_total{kind="welcome"}"#, 2.0),
        (r#"bff_frames_sent_total{kind="telemetry"}"#, 0.0),
        (r#"bff_frames_sent_total{kind="reply"}"#, 1.0),
        ("bff_bytes_sent_total", 2.0 * welcome_frame + 4.0),
        ("bff_send_failures_total", 0.0),
        ("bff_slow_client_disconnects_total", 0.0),
        (r#"bff_handshakes_refused_total{status="426"}"#, 1.0),
        ("bff_ticks_published_total", 1.0),
        (
            r#"bff_poll_errors_total{source="models",kind="status"}"#,
            1.0,
        ),
        (r#"bff_poll_duration_seconds_count{source="state"}"#, 1.0),
        (r#"bff_poll_duration_seconds_count{source="models"}"#, 1.0),
    ] {
        assert_eq!(got.get(key), Some(&value), "{key} in\n{text}");
    }
    assert!(!got.keys().any(|k| k.contains(r#"kind="json""#)), "{text}");
    let age = got[r#"bff_last_good_poll_age_seconds{source="state"}"#];
    assert!((0.0..60.0).contains(&age), "{age}");
    assert!(
        !got.contains_key(r#"bff_last_good_poll_age_seconds{source="models"}"#),
        "models never answered well: {text}"
    );
}
