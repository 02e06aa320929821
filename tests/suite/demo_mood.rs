//! The demo engine's mood switch, `POST /demo/mood`, under `bff --demo`: reached at the address
//! the daemon logs for its demo engine, it steers the market the daemon streams; a body that is
//! not a mood is refused with the accepted words; the daemon's own port does not serve it; and a
//! halt still shows as `HALT`.

use crate::common;

use common::process::BffProcess;
use common::{next_packet, packet_where};
use serde_json::{Value, json};

/// The default `regime.crash_velocity`: at or below it, a packet reads crash.
const CRASH_VELOCITY: f64 = -0.005;

/// The demo engine's address, from the line the daemon logs when it starts it.
fn demo_engine_addr(bff: &BffProcess) -> String {
    let line = bff
        .log()
        .iter()
        .find(|line| line.contains("Demo engine simulator running"))
        .unwrap_or_else(|| panic!("no demo engine line in {:#?}", bff.log()));
    let (_, rest) = line
        .split_once("addr=")
        .unwrap_or_else(|| panic!("no addr in {line:?}"));
    rest.split_whitespace().next().unwrap().to_owned()
}

/// POSTs `body` to `url`: the status, the `Allow` header and the body as JSON.
async fn post(url: &str, body: &str) -> (u16, Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_mood_steers_the_market_the_daemon_streams() {
    let bff = BffProcess::demo(&[]);
    let mood_url = format!("http://{}/demo/mood", demo_engine_addr(&bff));
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/", bff.addr()))
        .await
        .unwrap();
    assert_eq!(next_packet(&mut ws).await["type"], "WELCOME");

    assert_eq!(
        post(&mood_url, r#"{"mood":"crash"}"#).await,
        (200, json!({"mood": "crash"}))
    );
    let crashing = |p: &Value| {
        p["data"]["market"]["velocity"]
            .as_f64()
            .is_some_and(|v| v <= CRASH_VELOCITY)
    };
    packet_where(&mut ws, "velocity at or below the crash bound", crashing).await;
    // Held there: the next packets read crash too.
    for _ in 0..3 {
        let packet =
            packet_where(&mut ws, "the next TELEMETRY", |p| p["type"] == "TELEMETRY").await;
        assert!(crashing(&packet), "held: {}", packet["data"]["market"]);
    }

    // An operator's halt still halts the engine, mood or not.
    let halt = format!("http://{}/api/actions/halt", demo_engine_addr(&bff));
    assert_eq!(post(&halt, "").await.1["success"], true);
    packet_where(&mut ws, "status HALT after the halt", |p| {
        let logs = p["data"]["logs"].to_string();
        p["data"]["status"] == "HALT" && logs.contains("Action halt: Trading halted")
    })
    .await;

    assert_eq!(
        post(&mood_url, r#"{"mood":"auto"}"#).await,
        (200, json!({"mood": "auto"}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_mood_refuses_what_is_not_a_mood_and_is_not_on_the_daemons_port() {
    let bff = BffProcess::demo(&[]);
    let mood_url = format!("http://{}/demo/mood", demo_engine_addr(&bff));
    for body in [
        r#"{"mood":"panic"}"#,
        "crash",
        r#"{"mood":"bull","x":1}"#,
        "",
    ] {
        let (status, answer) = post(&mood_url, body).await;
        assert_eq!(status, 400, "{body:?}: {answer}");
        let why = answer["error"].as_str().unwrap();
        assert!(
            why.contains(r#""crash", "bull", "neutral" or "auto""#),
            "{body:?}: the reason names the accepted values: {why}"
        );
    }
    let response = reqwest::get(&mood_url).await.unwrap();
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    // The switch is the demo engine's alone: the daemon's own port does not know it.
    let (status, _) = post(
        &format!("http://{}/demo/mood", bff.addr()),
        r#"{"mood":"crash"}"#,
    )
    .await;
    assert_eq!(status, 404);
    // After the refusals, a good body is taken.
    assert_eq!(
        post(&mood_url, r#"{"mood":"neutral"}"#).await,
        (200, json!({"mood": "neutral"}))
    );
}
