//! The plain-HTTP routes beside the WebSocket: `/metrics`, the live page at `/`, `/schema.json`.

use crate::common;

use common::{Answer, Daemon, FakeEngine, config, reqwest_get, within};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

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
        bff::METRICS_CONTENT_TYPE
    );
    assert!(response.text().await.unwrap().ends_with("# EOF\n"));
    let (got, text) = daemon.metrics().await;
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
        // One pass of the fan-out a packet.
        ("bff_fanout_duration_seconds_count", 1.0),
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

/// A GET's status, headers and body text.
async fn get(url: &str) -> (u16, reqwest::header::HeaderMap, String) {
    // reqwest is built without a crypto provider; whichever test runs first installs it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::get(url).await.unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    (status, headers, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_is_served_at_root_while_root_still_upgrades() {
    let engine = FakeEngine::samples().await;
    let daemon = Daemon::start(config(&engine)).await;
    let (status, headers, html) = get(&format!("http://{}/", daemon.addr)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("connect-src 'self' ws: wss:")
    );
    assert!(html.contains(r#"<meta name="bff-ws-path" content="/">"#));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external resources"
    );
    let mut ws = daemon.connect().await;
    assert_eq!(common::next_packet(&mut ws).await["type"], "WELCOME");

    // With `/` not a WebSocket path, the page points at the first one, and `/` does not upgrade.
    let mut cfg = config(&engine);
    cfg.server.ws_paths = vec!["/ws/stream".into()];
    let daemon = Daemon::start(cfg).await;
    let (_, _, html) = get(&format!("http://{}/", daemon.addr)).await;
    assert!(html.contains(r#"<meta name="bff-ws-path" content="/ws/stream">"#));
    assert_eq!(common::refused(daemon.url("/")).await, 404);
}

/// The answer to a request written by hand on a new connection, read to its end: a path sent
/// exactly as written (a client library would tidy `..` away).
async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    within("the answer", tcp.read_to_end(&mut answer))
        .await
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// The page runs no inline code: its two scripts are served next to it, as JavaScript, each the
/// repository's one copy (the client library is `clients/js/bff.js` itself); to GET and HEAD, at
/// their exact paths and nowhere else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_scripts_are_served_next_to_it_and_nothing_else() {
    let engine = FakeEngine::samples().await;
    let daemon = Daemon::start(config(&engine)).await;
    let base = format!("http://{}", daemon.addr);
    let (_, headers, html) = get(&format!("{base}/")).await;
    assert_eq!(
        headers["content-security-policy"],
        "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src data:; \
         connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'"
    );
    assert_eq!(html.matches("<script").count(), 1, "one script tag");
    assert!(html.contains(r#"<script src="page.js"></script>"#));

    let scripts = [
        ("/page.js", include_str!("../../src/edge/http/page/page.js")),
        ("/bff.js", include_str!("../../clients/js/bff.js")),
    ];
    let http = reqwest::Client::new();
    for (path, file) in scripts {
        let (status, headers, body) = get(&format!("{base}{path}?v=1")).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(headers["content-type"], "text/javascript; charset=utf-8");
        assert_eq!(headers["cache-control"], "no-cache", "{path}: as the page");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(body == file, "{path} is the repository's file");

        let head = http.head(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(head.status(), 200, "HEAD {path}");
        assert_eq!(
            head.headers()["content-length"],
            file.len().to_string().as_str()
        );
        assert_eq!(head.text().await.unwrap(), "");

        let post = http.post(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(post.status(), 405, "POST {path}");
        assert_eq!(post.headers()["allow"], "GET, HEAD");
        assert_eq!(
            post.text().await.unwrap(),
            format!("{path} is a script of the live page: GET or HEAD it.\n")
        );
    }
    // Exact paths only: nothing near them, nothing of the repository beside them.
    for path in [
        "/bff.js/",
        "//bff.js",
        "/%62ff.js",
        "/BFF.JS",
        "/js/../bff.js",
        "/clients/js/bff.js",
        "/node_modules/fossil-delta/fossil-delta.js",
        "/package.json",
        "/index.html",
        "/page/page.js",
    ] {
        let answer = raw(
            daemon.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 404 "), "{path}: {answer}");
    }
}

/// Real packets, and every case of the fixture table, validate against the served schema; a
/// packet that breaks the contract does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_validate_against_the_served_schema() {
    let engine = FakeEngine::start(
        Answer::File("state-enum-words.json"),
        Answer::File("agents-mixed.json"),
        Answer::Status(503),
    )
    .await;
    let daemon = Daemon::start(config(&engine)).await;
    let (status, headers, text) = get(&format!("http://{}/schema.json", daemon.addr)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/schema+json");
    assert_eq!(text, bff::SCHEMA);
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let check = |packet: &serde_json::Value| {
        let errors: Vec<String> = validator
            .iter_errors(packet)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}\nin {packet}");
    };

    let mut ws = daemon.connect().await;
    let welcome = common::next_packet(&mut ws).await;
    check(&welcome);
    let telemetry = common::packet_where(
        &mut ws,
        "a packet with extra sections and a stale source",
        |p| p["type"] == "TELEMETRY" && p["data"]["sources"]["models"]["error"].is_string(),
    )
    .await;
    check(&telemetry);
    assert!(
        telemetry["data"].as_object().unwrap().len() > common::CONTRACT_KEYS.len(),
        "the engine's extra sections are in the packet: {telemetry}"
    );

    let cases = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/packets");
    for entry in std::fs::read_dir(cases).unwrap() {
        let case: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        check(
            &serde_json::json!({"type": "TELEMETRY", "seq": 7, "epoch": "0123456789abcdef", "data": case["expected"]}),
        );
    }

    let mut broken = telemetry.clone();
    broken["data"]["status"] = "RUNNING".into();
    assert!(
        !validator.is_valid(&broken),
        "an unmapped status breaks the contract"
    );
    let mut broken = telemetry;
    broken["data"]["timestamp"] = "2025-12-21 12:00:00".into();
    assert!(
        !validator.is_valid(&broken),
        "a timestamp in another format breaks it"
    );
}
