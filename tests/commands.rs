//! Commands from dashboards to the engine: nobody acts without a token allowing it, every
//! refusal says why and sends nothing, a repeated id acts once, a hung engine never holds the
//! stream, a halt shows at once, and no token reaches the log.

mod common;

use std::sync::LazyLock;
use std::time::Duration;

use bff::mint;
use bff::{Config, Secret};
use common::{
    Answer, Captured, Daemon, FakeEngine, Frame, Ws, config, next_frame, next_packet, packet_where,
    send_text, within,
};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

/// Every log line of this test binary.
static LOGS: LazyLock<Captured> = LazyLock::new(Captured::install);

fn operator() -> String {
    mint(SECRET, "olga", 3600, Some("operator"), &[])
}

fn watcher() -> String {
    mint(SECRET, "wanda", 3600, None, &[])
}

/// This engine's config with tokens checked against [`SECRET`].
fn secured(engine: &FakeEngine) -> Config {
    let mut cfg = config(engine);
    cfg.auth.secret = Secret::new(SECRET);
    cfg
}

/// An engine whose actions all answer `{"success": true, …}`.
async fn engine_with_actions() -> FakeEngine {
    let engine = FakeEngine::samples().await;
    for (action, message) in [
        ("halt", "Trading halted"),
        ("resume", "Trading resumed"),
        ("rebalance", "Rebalance Started"),
        ("export-logs", "Exported"),
    ] {
        engine.set(
            &format!("api/actions/{action}"),
            Answer::Body(json!({"success": true, "message": message}).to_string()),
        );
    }
    engine
}

fn posts(engine: &FakeEngine) -> usize {
    ["halt", "resume", "rebalance", "export-logs"]
        .iter()
        .map(|a| engine.hits(&format!("/api/actions/{a}")))
        .sum()
}

/// A WebSocket client presenting `token` as a browser does, past its WELCOME.
async fn client(daemon: &Daemon, token: Option<&str>) -> Ws {
    let mut request = daemon.url("/").into_client_request().unwrap();
    if let Some(token) = token {
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(&format!("token, {token}")).unwrap(),
        );
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(next_packet(&mut ws).await["type"], "WELCOME");
    ws
}

/// Sends `command` and reads up to its COMMAND_RESULT, skipping packets.
async fn command(ws: &mut Ws, command: Value) -> Value {
    send_text(ws, &command.to_string()).await;
    packet_where(ws, "a COMMAND_RESULT", |p| p["type"] == "COMMAND_RESULT").await
}

/// `POST path` with an optional bearer token and body: the status and the JSON answer.
async fn post(daemon: &Daemon, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut request = reqwest::Client::new()
        .post(format!("http://{}{path}", daemon.addr))
        .header("Content-Type", "application/json")
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn error(result: &Value) -> &str {
    result["error"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secret_nobody_acts() {
    LazyLock::force(&LOGS);
    let engine = engine_with_actions().await;
    let daemon = Daemon::start(config(&engine)).await;
    let mut ws = client(&daemon, None).await;
    let result = command(&mut ws, json!({"type": "HALT", "id": "h-1"})).await;
    assert_eq!(
        (
            &result["ok"],
            &result["id"],
            &result["action"],
            &result["status"]
        ),
        (&json!(false), &json!("h-1"), &json!("halt"), &Value::Null)
    );
    assert!(error(&result).contains("no auth.secret"), "{result}");
    let (status, answer) = post(&daemon, "/api/actions/halt", None, "").await;
    assert_eq!(status, 403, "{answer}");
    assert!(error(&answer).contains("no auth.secret"), "{answer}");
    assert_eq!(posts(&engine), 0, "nothing reached the engine");
    // The connection stays and keeps streaming.
    assert_eq!(next_packet(&mut ws).await["type"], "TELEMETRY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_says_why_and_sends_nothing() {
    LazyLock::force(&LOGS);
    let engine = engine_with_actions().await;
    let mut cfg = secured(&engine);
    cfg.commands.per_minute = 1;
    cfg.commands.burst = 2;
    let daemon = Daemon::start(cfg).await;

    // A token that only watches can still watch, but not act.
    let mut ws = client(&daemon, Some(&watcher())).await;
    let result = command(&mut ws, json!({"type": "COMMAND", "action": "halt"})).await;
    assert!(error(&result).contains("does not allow halt"), "{result}");
    let result = command(
        &mut ws,
        json!({"type": "COMMAND", "action": "liquidate", "id": 1}),
    )
    .await;
    assert_eq!(result["id"], "1");
    assert!(
        error(&result).starts_with("unknown action \"liquidate\""),
        "{result}"
    );

    let expired = mint(SECRET, "olga", -10, Some("operator"), &[]);
    let forged = mint(
        "another-secret-another-secret-00",
        "olga",
        60,
        Some("operator"),
        &[],
    );
    let only_export = mint(SECRET, "erin", 60, None, &["export-logs".into()]);
    for (path, token, status, why) in [
        ("/api/actions/halt", None, 401, "no token"),
        (
            "/api/actions/halt",
            Some(expired.as_str()),
            401,
            "token expired",
        ),
        (
            "/api/actions/halt",
            Some(forged.as_str()),
            401,
            "token signature does not match",
        ),
        (
            "/api/actions/halt",
            Some(only_export.as_str()),
            403,
            "does not allow halt",
        ),
        (
            "/api/actions/liquidate",
            Some(operator().as_str()),
            404,
            "unknown action",
        ),
    ] {
        let (got, answer) = post(&daemon, path, token, "").await;
        assert_eq!(got, status, "{path}: {answer}");
        assert_eq!(answer["ok"], false);
        assert!(
            error(&answer).contains(why),
            "{path}: expected {why:?} in {answer}"
        );
    }
    assert_eq!(posts(&engine), 0, "no refused command reached the engine");

    // The rate: a burst of 2 for one subject, then refused; another subject is not held back.
    let erin = only_export.as_str();
    for _ in 0..2 {
        assert_eq!(
            post(&daemon, "/api/actions/export-logs", Some(erin), "")
                .await
                .0,
            200
        );
    }
    let (status, answer) = post(&daemon, "/api/actions/export-logs", Some(erin), "").await;
    assert_eq!(status, 429, "{answer}");
    assert!(error(&answer).starts_with("rate limit"), "{answer}");
    assert_eq!(engine.hits("/api/actions/export-logs"), 2);
    let (status, _) = post(&daemon, "/api/actions/export-logs", Some(&operator()), "").await;
    assert_eq!(status, 200);

    let (samples, _) = daemon.metrics().await;
    for (labels, count) in [
        (r#"action="halt",outcome="forbidden""#, 2.0),
        (r#"action="halt",outcome="unauthorized""#, 3.0),
        (r#"action="unknown",outcome="unknown_action""#, 2.0),
        (r#"action="export-logs",outcome="rate_limited""#, 1.0),
        (r#"action="export-logs",outcome="ok""#, 3.0),
    ] {
        let key = format!("bff_commands_total{{{labels}}}");
        assert_eq!(samples.get(&key), Some(&count), "{key}");
    }
}

/// The `exp` claim of `token`, read from its payload.
fn expiry(token: &str) -> i64 {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["exp"].as_i64().expect("the token has an exp")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_expires_on_an_open_connection_stops_acting() {
    LazyLock::force(&LOGS);
    let engine = engine_with_actions().await;
    let daemon = Daemon::start(secured(&engine)).await;
    let short = mint(SECRET, "olga", 1, Some("operator"), &[]);
    let mut ws = client(&daemon, Some(&short)).await;
    // Its `exp` is a whole second: wait until the clock reaches it (the connection itself stays
    // open), the moment the daemon counts it expired.
    let exp = expiry(&short);
    within("the token's exp to pass", async {
        while chrono::Utc::now().timestamp() < exp {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let result = command(&mut ws, json!({"type": "RESUME"})).await;
    assert_eq!(error(&result), "token expired");
    assert_eq!(posts(&engine), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_id_acts_once() {
    LazyLock::force(&LOGS);
    let engine = engine_with_actions().await;
    let daemon = Daemon::start(secured(&engine)).await;
    let mut ws = client(&daemon, Some(&operator())).await;
    let twice = json!({"type": "COMMAND", "action": "rebalance", "id": "c-42"});
    // Both sent before either is answered: the second waits for the first's answer.
    send_text(&mut ws, &twice.to_string()).await;
    let second = command(&mut ws, twice.clone()).await;
    let first = packet_where(&mut ws, "the other result", |p| {
        p["type"] == "COMMAND_RESULT"
    })
    .await;
    let expected = json!({
        "type": "COMMAND_RESULT", "id": "c-42", "action": "rebalance", "ok": true,
        "status": 200, "message": "Rebalance Started", "error": null
    });
    assert_eq!((first, second), (expected.clone(), expected));
    // Later, and over HTTP with the same subject: still the first result.
    let (status, answer) = post(
        &daemon,
        "/api/actions/rebalance",
        Some(&operator()),
        r#"{"id":"c-42"}"#,
    )
    .await;
    assert_eq!(
        (status, answer["message"].as_str()),
        (200, Some("Rebalance Started"))
    );
    assert_eq!(
        engine.hits("/api/actions/rebalance"),
        1,
        "the engine saw one rebalance"
    );
    // A new id is a new command.
    command(
        &mut ws,
        json!({"type": "COMMAND", "action": "rebalance", "id": "c-43"}),
    )
    .await;
    assert_eq!(engine.hits("/api/actions/rebalance"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_engine_never_delays_the_stream() {
    LazyLock::force(&LOGS);
    let engine = engine_with_actions().await;
    engine.set("api/actions/rebalance", Answer::Hang);
    let mut cfg = secured(&engine);
    cfg.commands.timeout_ms = 1500;
    let daemon = Daemon::start(cfg).await;
    let mut ws = client(&daemon, Some(&operator())).await;
    let mut seq = next_packet(&mut ws).await["seq"].as_u64().unwrap();
    send_text(
        &mut ws,
        &json!({"type": "COMMAND", "action": "rebalance", "id": "r"}).to_string(),
    )
    .await;
    let mut ticks_while_waiting = 0;
    let result = within("the timeout's COMMAND_RESULT", async {
        loop {
            let packet = next_packet(&mut ws).await;
            if packet["type"] == "COMMAND_RESULT" {
                return packet;
            }
            // Every tick arrives, in order, while the engine hangs.
            seq += 1;
            assert_eq!(
                packet["seq"], seq,
                "a tick was missed while the command waited"
            );
            ticks_while_waiting += 1;
        }
    })
    .await;
    assert_eq!(result["ok"], false);
    assert_eq!(
        error(&result),
        "the engine did not answer: timed out after 1500 ms"
    );
    // At 150 ms a tick, 1.5 s of waiting holds several ticks, all of which came through in
    // order (checked above); however slow the machine, at least one did.
    assert!(
        ticks_while_waiting >= 1,
        "{ticks_while_waiting} ticks while waiting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_shows_at_once_not_at_the_next_tick() {
    LazyLock::force(&LOGS);
    let engine = engine_with_actions().await;
    let mut cfg = secured(&engine);
    // The next regular tick is half a minute away, far beyond the test's patience.
    cfg.engine.poll_interval_ms = 30_000;
    let daemon = Daemon::start(cfg).await;
    let mut ws = client(&daemon, Some(&operator())).await;
    daemon
        .wait_health("the first poll", |h| h["seq"] == 1)
        .await;
    let mut halted =
        serde_json::from_str::<Value>(&common::fixture_text("state-current.json")).unwrap();
    halted["status"] = json!("HALTED");
    engine.set("state", Answer::Body(halted.to_string()));
    send_text(&mut ws, &json!({"type": "HALT"}).to_string()).await;
    // The command's result and the fresh packet, in whichever order they come.
    let (mut result, mut packet, mut alert) = (None, None, None);
    within("the result and the packet after the HALT", async {
        while result.is_none() || packet.is_none() {
            match next_frame(&mut ws).await {
                Frame::Packet(p) if p["type"] == "COMMAND_RESULT" => {
                    assert!(result.replace(p).is_none(), "one result per command");
                }
                // Packets of the first poll may still be on their way.
                Frame::Packet(p) if p["type"] == "TELEMETRY" && p["seq"].as_u64() > Some(1) => {
                    packet.get_or_insert(p);
                }
                Frame::Packet(p) if p["type"] == "TELEMETRY" => {}
                // The halt raises its alert, once, before the packet that shows it (§12.5).
                Frame::Packet(p) if p["type"] == "ALERT" && packet.is_none() => {
                    assert_eq!(p["data"]["code"], "ENGINE_HALTED", "{p}");
                    assert!(alert.replace(p).is_none(), "one alert per halt");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(result.unwrap()["ok"], true);
    let packet = packet.unwrap();
    assert_eq!(
        (packet["seq"].as_u64(), &packet["data"]["status"]),
        (Some(2), &json!("HALT"))
    );
    assert_eq!(alert.unwrap()["data"]["active"], true);
    assert_eq!(engine.hits("/api/actions/halt"), 1);
    // Logged for the operator, with its code and level (PROTOCOL §6).
    assert!(
        LOGS.count(&["Alert raised", "ENGINE_HALTED", "critical"]) >= 1,
        "{:#?}",
        LOGS.lines()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_failures_come_back_readable() {
    LazyLock::force(&LOGS);
    let engine = engine_with_actions().await;
    engine.set(
        "api/actions/halt",
        Answer::Body(json!({"success": false, "message": "Already halted"}).to_string()),
    );
    engine.set("api/actions/resume", Answer::Status(500));
    engine.set("api/actions/rebalance", Answer::Drop);
    engine.set(
        "api/actions/export-logs",
        Answer::Html("<html>proxy</html>".into()),
    );
    let mut cfg = secured(&engine);
    cfg.commands.burst = 10;
    let daemon = Daemon::start(cfg).await;
    let mut ws = client(&daemon, Some(&operator())).await;
    for (action, status, why) in [
        ("halt", json!(200), "the engine refused: Already halted"),
        ("resume", json!(500), "the engine answered HTTP 500"),
        (
            "rebalance",
            Value::Null,
            "the engine could not be reached: request failed",
        ),
        (
            "export-logs",
            Value::Null,
            "the engine could not be reached: invalid JSON",
        ),
    ] {
        let result = command(&mut ws, json!({"type": "COMMAND", "action": action})).await;
        assert_eq!(
            (&result["ok"], &result["status"]),
            (&json!(false), &status),
            "{result}"
        );
        assert!(error(&result).starts_with(why), "{action}: {result}");
    }
    assert_eq!(
        next_packet(&mut ws).await["type"],
        "TELEMETRY",
        "the connection stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_gateway_route_rebalances_and_other_methods_are_refused() {
    LazyLock::force(&LOGS);
    let engine = engine_with_actions().await;
    let mut cfg = secured(&engine);
    cfg.server.allowed_origins = vec!["https://dash.example.com".into()];
    let daemon = Daemon::start(cfg).await;
    let (status, answer) = post(&daemon, "/trade/force", Some(&operator()), "").await;
    assert_eq!(
        (status, &answer["action"], &answer["message"]),
        (200, &json!("rebalance"), &json!("Rebalance Started"))
    );
    assert_eq!(engine.hits("/api/actions/rebalance"), 1);

    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{}{path}", daemon.addr);
    let response = http.get(url("/api/actions/halt")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST, OPTIONS");
    // A browser page from an origin not on the list is refused; one on it may read the answer.
    let response = http
        .post(url("/api/actions/halt"))
        .bearer_auth(operator())
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(engine.hits("/api/actions/halt"), 0);
    let response = http
        .get(url("/api/actions"))
        .bearer_auth(operator())
        .header("Origin", "https://dash.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://dash.example.com"
    );
    let allowed: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(
        allowed["allowed"],
        json!(["halt", "resume", "rebalance", "export-logs"])
    );
    let response = http
        .get(url("/api/actions"))
        .bearer_auth(watcher())
        .send()
        .await
        .unwrap();
    let watch_only: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(watch_only["allowed"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_may_act_without_a_token_only_when_told_to_and_it_is_logged() {
    let logs = &*LOGS;
    let engine = engine_with_actions().await;
    let mut cfg = config(&engine);
    cfg.commands.allow_without_auth = true;
    let daemon = Daemon::start(cfg).await;
    let mut ws = client(&daemon, None).await;
    let result = command(
        &mut ws,
        json!({"type": "COMMAND", "action": "export-logs", "id": "x-1"}),
    )
    .await;
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(engine.hits("/api/actions/export-logs"), 1);
    assert!(
        logs.count(&["WARN", "allow_without_auth is on"]) >= 1,
        "a warning at start-up"
    );
    assert!(
        logs.count(&["WARN", "Command allowed without a token"]) >= 1,
        "a warning on use"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_command_is_one_log_line_and_no_token_is_logged() {
    let logs = &*LOGS;
    let engine = engine_with_actions().await;
    let daemon = Daemon::start(secured(&engine)).await;
    let token = mint(SECRET, "lena", 3600, None, &["halt".into()]);
    let mut ws = client(&daemon, Some(&token)).await;
    command(&mut ws, json!({"type": "HALT", "id": "log-1"})).await;
    command(&mut ws, json!({"type": "RESUME", "id": "log-2"})).await;
    post(
        &daemon,
        "/api/actions/halt",
        Some(&token),
        r#"{"id":"log-3"}"#,
    )
    .await;
    let forged = mint("another-secret-another-secret-00", "lena", 60, None, &[]);
    post(&daemon, "/api/actions/halt", Some(&forged), "").await;
    let mine: Vec<String> = logs
        .lines()
        .into_iter()
        .filter(|l| l.contains("Command") && l.contains("lena"))
        .collect();
    assert_eq!(mine.len(), 3, "one line per command: {mine:#?}");
    for (id, outcome) in [("log-1", "ok"), ("log-2", "forbidden"), ("log-3", "ok")] {
        let line = mine.iter().find(|l| l.contains(id)).unwrap();
        for field in [
            "action=",
            "peer=127.0.0.1:",
            &format!("outcome=\"{outcome}\""),
            "duration_ms=",
        ] {
            assert!(line.contains(field), "{field} missing from {line}");
        }
    }
    for secret in [&token, &forged, &SECRET.to_owned()] {
        assert_eq!(
            logs.count(&[secret]),
            0,
            "a token or the secret reached the log"
        );
    }
}

/// An engine whose `halt` and `resume` take `delay` to answer, each with success.
async fn slow_kill_switch(delay: Duration) -> FakeEngine {
    let engine = engine_with_actions().await;
    for (action, message) in [("halt", "Trading halted"), ("resume", "Trading resumed")] {
        engine.set(
            &format!("api/actions/{action}"),
            Answer::Slow(
                delay,
                json!({"success": true, "message": message}).to_string(),
            ),
        );
    }
    engine
}

/// This engine's config, secured, with room for `commands` queued on one connection, sent as
/// fast as a client can: the order, not the rate, is under test.
fn roomy(engine: &FakeEngine, commands: usize) -> Config {
    let mut cfg = secured(engine);
    cfg.commands.max_in_flight = commands;
    cfg.commands.per_minute = 10_000;
    cfg.commands.burst = 10_000;
    cfg.clients.messages_per_second = 10_000;
    cfg.clients.message_burst = 10_000;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halt_and_resume_reach_the_engine_in_the_order_sent() {
    LazyLock::force(&LOGS);
    let engine = slow_kill_switch(Duration::from_millis(20)).await;
    let daemon = Daemon::start(roomy(&engine, 200)).await;
    let mut ws = client(&daemon, Some(&operator())).await;
    let mut sent = Vec::new();
    for i in 0..100 {
        for kind in ["HALT", "RESUME"] {
            let id = format!("{kind}-{i}");
            send_text(&mut ws, &json!({"type": kind, "id": id}).to_string()).await;
            sent.push(id);
        }
    }
    let mut answered = Vec::new();
    while answered.len() < sent.len() {
        let result = packet_where(&mut ws, "a COMMAND_RESULT", |p| {
            p["type"] == "COMMAND_RESULT"
        })
        .await;
        assert_eq!(result["ok"], true, "{result}");
        answered.push(result["id"].as_str().unwrap().to_owned());
    }
    let expected: Vec<String> = (0..100)
        .flat_map(|_| ["halt".to_owned(), "resume".to_owned()])
        .collect();
    assert_eq!(
        engine.action_order(),
        expected,
        "the engine got them in the order sent"
    );
    assert_eq!(answered, sent, "results come back in the order sent");
    assert_eq!(engine.action_order().last().unwrap(), "resume");
    assert_eq!(engine.most_actions_at_once(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halt_and_resume_from_everyone_reach_the_engine_one_at_a_time() {
    LazyLock::force(&LOGS);
    let engine = slow_kill_switch(Duration::from_millis(20)).await;
    let daemon = Daemon::start(roomy(&engine, 20)).await;
    let mut sockets = Vec::new();
    for _ in 0..2 {
        sockets.push(client(&daemon, Some(&operator())).await);
    }
    let websockets = sockets.into_iter().map(|mut ws| {
        tokio::spawn(async move {
            for _ in 0..10 {
                send_text(&mut ws, r#"{"type":"HALT"}"#).await;
                send_text(&mut ws, r#"{"type":"RESUME"}"#).await;
            }
            for _ in 0..20 {
                let result = packet_where(&mut ws, "a COMMAND_RESULT", |p| {
                    p["type"] == "COMMAND_RESULT"
                })
                .await;
                assert_eq!(result["ok"], true, "{result}");
            }
        })
    });
    let addr = daemon.addr;
    let http = (0..4).map(|n| {
        tokio::spawn(async move {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let client = reqwest::Client::new();
            for i in 0..10 {
                let action = if (i + n) % 2 == 0 { "halt" } else { "resume" };
                let response = client
                    .post(format!("http://{addr}/api/actions/{action}"))
                    .bearer_auth(operator())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
            }
        })
    });
    let tasks: Vec<_> = websockets.chain(http).collect();
    within("every caller's halts and resumes", async {
        for task in tasks {
            task.await.unwrap();
        }
    })
    .await;
    assert_eq!(engine.action_order().len(), 2 * 20 + 4 * 10);
    assert_eq!(
        engine.most_actions_at_once(),
        1,
        "two halts or resumes were with the engine at once, so either could end up last"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_switch_is_never_refused_for_the_rate() {
    LazyLock::force(&LOGS);
    let engine = engine_with_actions().await;
    let mut cfg = secured(&engine);
    cfg.commands.per_minute = 1;
    cfg.commands.burst = 3;
    let daemon = Daemon::start(cfg).await;
    let mut ws = client(&daemon, Some(&operator())).await;
    // Two rebalances, a repeat and the old gateway's route: the repeat uses up no budget.
    for (id, outcome_ok) in [("r-1", true), ("r-2", true), ("r-2", true)] {
        let result = command(
            &mut ws,
            json!({"type": "COMMAND", "action": "rebalance", "id": id}),
        )
        .await;
        assert_eq!(result["ok"], outcome_ok, "{result}");
    }
    let (status, answer) = post(&daemon, "/trade/force", Some(&operator()), "").await;
    assert_eq!(
        status, 200,
        "the repeat left the third of the burst: {answer}"
    );
    assert_eq!(engine.hits("/api/actions/rebalance"), 3);
    // The budget is spent now...
    let (status, answer) = post(&daemon, "/trade/force", Some(&operator()), "").await;
    assert_eq!(status, 429, "{answer}");
    // ... and still the operator halts and resumes, over both ways in.
    for kind in ["RESUME", "HALT", "RESUME"] {
        let result = command(&mut ws, json!({"type": kind})).await;
        assert_eq!(result["ok"], true, "{kind}: {result}");
    }
    for action in ["halt", "resume"] {
        let (status, answer) = post(
            &daemon,
            &format!("/api/actions/{action}"),
            Some(&operator()),
            "",
        )
        .await;
        assert_eq!(status, 200, "{action}: {answer}");
    }
    assert_eq!(
        engine.action_order()[3..],
        ["resume", "halt", "resume", "halt", "resume"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_reused_for_another_action_is_refused_not_answered_with_the_first() {
    LazyLock::force(&LOGS);
    let engine = engine_with_actions().await;
    let daemon = Daemon::start(secured(&engine)).await;
    let mut ws = client(&daemon, Some(&operator())).await;
    let halt = command(&mut ws, json!({"type": "HALT", "id": "1"})).await;
    assert_eq!(
        (&halt["ok"], &halt["action"]),
        (&json!(true), &json!("halt"))
    );
    let resume = command(&mut ws, json!({"type": "RESUME", "id": "1"})).await;
    assert_eq!(
        resume,
        json!({
            "type": "COMMAND_RESULT", "id": "1", "action": "resume", "ok": false,
            "status": null, "message": null,
            "error": "id \"1\" was used for halt within commands.repeat_window_ms; send this resume with a new id"
        })
    );
    let (status, answer) = post(
        &daemon,
        "/api/actions/resume",
        Some(&operator()),
        r#"{"id":"1"}"#,
    )
    .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["action"], "resume");
    assert_eq!(engine.hits("/api/actions/resume"), 0, "no resume was sent");
    // The same action with that id is still a repeat of the first.
    let again = command(&mut ws, json!({"type": "HALT", "id": "1"})).await;
    assert_eq!(again, halt);
    assert_eq!(engine.hits("/api/actions/halt"), 1);
    let (samples, _) = daemon.metrics().await;
    assert_eq!(
        samples.get(r#"bff_commands_total{action="resume",outcome="id_conflict"}"#),
        Some(&2.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_sub_watches_but_does_not_act() {
    LazyLock::force(&LOGS);
    let engine = engine_with_actions().await;
    let daemon = Daemon::start(secured(&engine)).await;
    let claims = json!({"exp": chrono::Utc::now().timestamp() + 600, "role": "operator"});
    let nameless = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let mut ws = client(&daemon, Some(&nameless)).await;
    let result = command(&mut ws, json!({"type": "HALT", "id": "h-1"})).await;
    assert_eq!(result["ok"], false);
    assert_eq!(
        error(&result),
        "the token has no sub: commands need a token naming its holder (bff token --sub NAME)"
    );
    let (status, answer) = post(&daemon, "/api/actions/halt", Some(&nameless), "").await;
    assert_eq!(status, 403, "{answer}");
    assert!(
        error(&answer).starts_with("the token has no sub"),
        "{answer}"
    );
    assert_eq!(posts(&engine), 0);
    // It still watches.
    assert_eq!(next_packet(&mut ws).await["type"], "TELEMETRY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_action_name_gets_a_short_answer_and_a_short_log_line() {
    let logs = &*LOGS;
    let engine = engine_with_actions().await;
    let mut cfg = secured(&engine);
    cfg.clients.max_message_bytes = 128 * 1024;
    let daemon = Daemon::start(cfg).await;
    let huge = "x".repeat(60_000);
    let mut ws = client(&daemon, Some(&operator())).await;
    let over_ws = command(
        &mut ws,
        json!({"type": "COMMAND", "action": huge, "id": "huge-ws"}),
    )
    .await;
    let (status, over_http) = post(
        &daemon,
        &format!("/api/actions/{huge}"),
        Some(&operator()),
        r#"{"id":"huge-http"}"#,
    )
    .await;
    assert_eq!(status, 400, "{:.300}", over_http.to_string());
    for (result, id) in [(over_ws, "huge-ws"), (over_http, "huge-http")] {
        let bytes = result.to_string().len();
        assert!(bytes < 300, "a {bytes}-byte answer");
        assert_eq!(result["id"], id);
        assert_eq!(result["action"], "x".repeat(32));
        assert_eq!(error(&result), "the action name is longer than 32 bytes");
    }
    assert_eq!(posts(&engine), 0);
    for id in ["huge-ws", "huge-http"] {
        let lines: Vec<_> = logs
            .lines()
            .into_iter()
            .filter(|l| l.contains(&format!("id=\"{id}\"")))
            .collect();
        assert_eq!(lines.len(), 1, "{id}: one Command line");
        assert!(lines[0].len() < 500, "a {}-byte log line", lines[0].len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_commands_logs_a_few_lines_and_counts_them_all() {
    let logs = &*LOGS;
    let engine = engine_with_actions().await;
    let daemon = Daemon::start(roomy(&engine, 4)).await;
    let watcher = mint(SECRET, "flora", 3600, None, &[]);
    let mut ws = client(&daemon, Some(&watcher)).await;
    let started = std::time::Instant::now();
    for i in 0..100 {
        let result = command(&mut ws, json!({"type": "HALT", "id": format!("flood-{i}")})).await;
        assert_eq!(result["ok"], false);
    }
    let took = started.elapsed();
    let (samples, _) = daemon.metrics().await;
    assert_eq!(
        samples.get(r#"bff_commands_total{action="halt",outcome="forbidden"}"#),
        Some(&100.0),
        "every refusal is counted"
    );
    let logged = logs.count(&["Command", "subject=\"flora\""]);
    // Ten a ten-second interval: however slow the machine, far fewer than a hundred.
    let intervals = took.as_secs() / 10 + 1;
    assert!(logged >= 10, "{logged} lines");
    assert!(
        logged as u64 <= 10 * intervals,
        "{logged} lines in {intervals} intervals"
    );
}

/// A WebSocket client on `/` sending these extra headers, past its WELCOME.
async fn client_with(daemon: &Daemon, headers: &[(&'static str, &str)]) -> Ws {
    let mut request = daemon.url("/").into_client_request().unwrap();
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(*name, HeaderValue::from_str(value).unwrap());
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(next_packet(&mut ws).await["type"], "WELCOME");
    ws
}

/// `POST /api/actions/halt` with these headers and a `{}` body: the status and the body.
async fn post_halt(daemon: &Daemon, headers: &[(&str, &str)]) -> (u16, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut request = reqwest::Client::new()
        .post(format!("http://{}/api/actions/halt", daemon.addr))
        .body("{}");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_site_never_commands_through_the_loopback_exemption() {
    let logs = &*LOGS;
    let engine = engine_with_actions().await;
    let mut cfg = config(&engine);
    cfg.commands.allow_without_auth = true;
    let daemon = Daemon::start(cfg.clone()).await;
    let own = format!("http://{}", daemon.addr);
    // What a form or a `no-cors` fetch from another site sends: refused for its origin.
    let simple = [
        ("Origin", "http://evil.example"),
        ("Content-Type", "text/plain"),
    ];
    let (status, body) = post_halt(&daemon, &simple).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.starts_with("Origin not allowed"), "{body}");
    // A "simple" request is refused whatever its origin: a browser sends one without asking.
    for headers in [
        vec![("Content-Type", "text/plain")],
        vec![("Origin", own.as_str()), ("Content-Type", "text/plain")],
        vec![("Content-Type", "application/x-www-form-urlencoded")],
    ] {
        let (status, body) = post_halt(&daemon, &headers).await;
        assert_eq!(status, 415, "{headers:?}: {body}");
        assert!(body.contains("Content-Type: application/json"), "{body}");
    }
    assert_eq!(
        engine.hits("/api/actions/halt"),
        0,
        "no halt reached the engine"
    );
    assert!(logs.count(&["WARN", "Command refused: neither a JSON body"]) >= 3);
    // A script on this machine, or the daemon's own page, still acts on the exemption.
    let json = [("Content-Type", "application/json; charset=utf-8")];
    let (status, body) = post_halt(&daemon, &json).await;
    assert_eq!(status, 200, "{body}");
    let json = [
        ("Origin", own.as_str()),
        ("Content-Type", "application/json"),
    ];
    assert_eq!(post_halt(&daemon, &json).await.0, 200);
    assert_eq!(engine.hits("/api/actions/halt"), 2);

    // With "*", another site's page may watch, but its commands need a token.
    cfg.server.allowed_origins = vec!["*".into()];
    let open = Daemon::start(cfg).await;
    let mut ws = client_with(&open, &[("Origin", "http://evil.example")]).await;
    // Logged before the daemon accepts anyone, so before this connection.
    assert_eq!(
        logs.count(&["WARN", "server.allowed_origins holds \"*\""]),
        1,
        "a warning at start-up"
    );
    let result = command(&mut ws, json!({"type": "HALT", "id": "x-1"})).await;
    assert_eq!(result["ok"], false, "{result}");
    assert!(error(&result).contains("another site's page"), "{result}");
    let json = [
        ("Origin", "http://evil.example"),
        ("Content-Type", "application/json"),
    ];
    let (status, body) = post_halt(&open, &json).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("another site's page"), "{body}");
    // A page from the daemon's own origin is vouched for and acts.
    let own = format!("http://{}", open.addr);
    let mut ws = client_with(&open, &[("Origin", own.as_str())]).await;
    let result = command(&mut ws, json!({"type": "HALT", "id": "x-2"})).await;
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(engine.hits("/api/actions/halt"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_trusted_proxy_no_command_is_from_loopback_and_the_client_is_logged() {
    let logs = &*LOGS;
    let engine = engine_with_actions().await;
    let mut cfg = config(&engine);
    cfg.commands.allow_without_auth = true;
    cfg.server.trusted_proxies = vec!["127.0.0.1".into()];
    let daemon = Daemon::start(cfg).await;
    // The proxy on loopback forwards a client from anywhere, or one claiming to be on loopback.
    for forwarded in ["203.0.113.77", "127.0.0.1", "127.0.0.1, 203.0.113.78"] {
        let headers = [
            ("X-Forwarded-For", forwarded),
            ("Content-Type", "application/json"),
        ];
        let (status, body) = post_halt(&daemon, &headers).await;
        assert_eq!(status, 403, "{forwarded}: {body}");
        assert!(body.contains("never through a proxy"), "{body}");
    }
    let mut ws = client_with(&daemon, &[("Forwarded", "for=\"[2001:db8::7]:4711\"")]).await;
    let result = command(&mut ws, json!({"type": "HALT", "id": "p-1"})).await;
    assert_eq!(result["ok"], false, "{result}");
    assert!(error(&result).contains("never through a proxy"), "{result}");
    assert_eq!(
        engine.hits("/api/actions/halt"),
        0,
        "nothing reached the engine"
    );
    // The log names the client the proxy forwarded for, not the proxy.
    assert!(logs.count(&["Command", "peer=203.0.113.77:0"]) >= 1);
    assert!(logs.count(&["Command", "peer=203.0.113.78:0"]) >= 1);
    assert!(logs.count(&["Command", "peer=[2001:db8::7]:4711"]) >= 1);
}

/// `POST` as a script does: the status and the `Retry-After` header, if any.
async fn post_status(daemon: &Daemon, path: &str, token: &str) -> (u16, Option<String>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::Client::new()
        .post(format!("http://{}{path}", daemon.addr))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), retry_after)
}

/// A script checking the status (`curl -f`) never takes a refused command for a done one, and
/// one held to the rate is told how long to wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_only_a_done_command_is_a_success_and_a_429_says_when_to_retry() {
    LazyLock::force(&LOGS);
    let engine = engine_with_actions().await;
    engine.set(
        "api/actions/halt",
        Answer::Body(json!({"success": false, "message": "Already halted"}).to_string()),
    );
    let mut cfg = secured(&engine);
    // One a minute: the rate refuses the second rebalance however slowly the test runs.
    cfg.commands.per_minute = 1;
    cfg.commands.burst = 1;
    let daemon = Daemon::start(cfg).await;
    let token = operator();

    assert_eq!(
        post_status(&daemon, "/api/actions/halt", &token).await,
        (422, None),
        "the engine refused the halt"
    );
    assert_eq!(engine.hits("/api/actions/halt"), 1);
    assert_eq!(
        post_status(&daemon, "/api/actions/rebalance", &token).await,
        (200, None),
        "done"
    );
    assert_eq!(
        post_status(&daemon, "/api/actions/rebalance", &token).await,
        (429, Some("60".to_owned())),
        "over the rate"
    );
    assert_eq!(engine.hits("/api/actions/rebalance"), 1);
}
