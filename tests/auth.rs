//! Token authentication: with `auth.secret` set, only a handshake carrying a valid, unexpired
//! HS256 JWT gets through, by subprotocol (echoed) or bearer header; `nbf`, and `iss` and `aud`
//! when configured, are checked; a reload that rotates the secret closes the connections whose
//! tokens no longer verify (4401), except for the rollover window of `auth.previous_secret_file`;
//! `auth.watch = "open"` lets a connection without a token watch but not act. The token never
//! reaches the log.

mod common;

use std::sync::{Arc, LazyLock};

use bff::mint;
use bff::{Config, Secret, Watch};
use common::{
    Answer, Captured, Daemon, FakeEngine, Frame, Ws, config, next_frame, next_packet, packet_where,
    refused, send_text, within,
};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const SECRET: &str = "0123456789abcdef0123456789abcdef";
/// The secret a rotation moves to.
const NEW_SECRET: &str = "fedcba9876543210fedcba9876543210";

/// Every log line of this test binary.
static LOGS: LazyLock<Captured> = LazyLock::new(Captured::install);

/// The tests of this file one at a time: they count log lines with the same reasons.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn token(secret: &str, expires_in_s: i64) -> String {
    let exp = chrono::Utc::now().timestamp() + expires_in_s;
    signed(secret, json!({"sub": "dashboard", "exp": exp}))
}

fn signed(secret: &str, claims: Value) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn operator(secret: &str) -> String {
    mint(secret, "olga", 3600, Some("operator"), &[])
}

/// An engine whose `halt` answers `{"success": true}`.
async fn engine_with_halt() -> FakeEngine {
    let engine = FakeEngine::start(
        Answer::File("state-current.json"),
        Answer::File("agents-list.json"),
        Answer::File("models-list.json"),
    )
    .await;
    engine.set(
        "api/actions/halt",
        Answer::Body(json!({"success": true, "message": "Trading halted"}).to_string()),
    );
    engine
}

fn secured(engine: &FakeEngine, secret: &str) -> Config {
    let mut cfg = config(engine);
    cfg.auth.secret = Secret::new(secret);
    cfg
}

/// A handshake on `/` presenting `token` as a browser does.
fn request(
    daemon: &Daemon,
    token: Option<&str>,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut request = daemon.url("/").into_client_request().unwrap();
    if let Some(token) = token {
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(&format!("token, {token}")).unwrap(),
        );
    }
    request
}

/// A client presenting `token`, past its WELCOME.
async fn client(daemon: &Daemon, token: Option<&str>) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(request(daemon, token))
        .await
        .unwrap();
    assert_eq!(next_packet(&mut ws).await["type"], "WELCOME");
    ws
}

/// Sends a HALT and reads up to its COMMAND_RESULT.
async fn halt(ws: &mut Ws) -> Value {
    send_text(
        ws,
        &json!({"type": "COMMAND", "action": "halt"}).to_string(),
    )
    .await;
    packet_where(ws, "a COMMAND_RESULT", |p| p["type"] == "COMMAND_RESULT").await
}

/// Sends a HALT and reads what comes back until the connection closes: the close code and
/// reason, failing on a COMMAND_RESULT.
async fn halt_is_closed(ws: &mut Ws) -> (u16, String) {
    send_text(
        ws,
        &json!({"type": "COMMAND", "action": "halt"}).to_string(),
    )
    .await;
    closed(ws).await
}

/// Reads packets (none of them a COMMAND_RESULT) until the close frame: its code and reason.
async fn closed(ws: &mut Ws) -> (u16, String) {
    within("a close frame", async {
        loop {
            match next_frame(ws).await {
                Frame::Packet(p) if p["type"] == "COMMAND_RESULT" => {
                    panic!("the command was answered, not refused by a close: {p}")
                }
                Frame::Packet(_) => continue,
                Frame::Closed(Some(frame)) => {
                    return (u16::from(frame.code), frame.reason.to_string());
                }
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
}

/// `config` with `previous` as the previous secret until `until_s` seconds from now, read from
/// a file as the daemon does.
fn with_previous(mut config: Config, previous: &str, until_s: i64, name: &str) -> Config {
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, format!("{previous}\n")).unwrap();
    config.auth.previous_secret_file = Some(path);
    let until = chrono::Utc::now() + chrono::Duration::seconds(until_s);
    config.auth.previous_secret_until = Some(until.to_rfc3339());
    config.read_secret_file("test config").unwrap();
    config.validate("test config").unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_valid_tokens_get_through_and_none_is_logged() {
    let _serial = SERIAL.lock().await;
    let logs = &*LOGS;
    let before = logs.lines().len();
    let engine = FakeEngine::start(
        Answer::File("state-current.json"),
        Answer::File("agents-list.json"),
        Answer::File("models-list.json"),
    )
    .await;
    let mut cfg = config(&engine);
    cfg.auth.secret = bff::Secret::new(SECRET);
    let daemon = Daemon::start(cfg).await;
    let request = |header: &'static str, value: String| {
        let mut request = daemon.url("/").into_client_request().unwrap();
        request
            .headers_mut()
            .insert(header, HeaderValue::from_str(&value).unwrap());
        request
    };

    // As a browser sends it: the subprotocol pair, with `token` echoed back.
    let good = token(SECRET, 60);
    let (mut ws, response) = tokio_tungstenite::connect_async(request(
        "Sec-WebSocket-Protocol",
        format!("token, {good}"),
    ))
    .await
    .unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "token");
    assert_eq!(next_packet(&mut ws).await["type"], "WELCOME");

    // As a server-side client sends it.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(request("Authorization", format!("Bearer {good}")))
            .await
            .unwrap();
    assert_eq!(next_packet(&mut ws).await["type"], "WELCOME");

    let refusals = [
        (None, "no token"),
        (
            Some(token("another-secret-another-secret-xx", 60)),
            "token signature does not match",
        ),
        (Some(token(SECRET, -5)), "token expired"),
        (Some("not.a.jwt".to_string()), "token is not a valid JWT"),
    ];
    for (bad, reason) in refusals {
        let attempt = match &bad {
            Some(bad) => request("Authorization", format!("Bearer {bad}")),
            None => daemon.url("/").into_client_request().unwrap(),
        };
        assert_eq!(refused(attempt).await, 401, "{reason}");
        let reason_field = format!("reason=\"{reason}\"");
        let lines = logs.lines();
        let refusals = lines[before..]
            .iter()
            .filter(|l| l.contains("Client refused: unauthorized") && l.contains(&reason_field))
            .count();
        assert_eq!(refusals, 1, "{lines:#?}");
        if let Some(bad) = bad {
            assert!(
                logs.lines().iter().all(|l| !l.contains(&bad)),
                "the token reached the log"
            );
        }
    }
    assert!(
        logs.lines()
            .iter()
            .all(|l| !l.contains(&good) && !l.contains(SECRET))
    );
}

/// `nbf` in the future is refused, and with `auth.issuer` and `auth.audience` set, so is a token
/// without them or with others; each refusal is a 401 whose log line names the claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbf_iss_and_aud_are_checked_and_each_refusal_names_its_claim() {
    let _serial = SERIAL.lock().await;
    let logs = &*LOGS;
    let before = logs.lines().len();
    let engine = engine_with_halt().await;
    let mut cfg = secured(&engine, SECRET);
    cfg.auth.issuer = Some("ops.example.com".into());
    cfg.auth.audience = Some("bff".into());
    let daemon = Daemon::start(cfg).await;
    let now = chrono::Utc::now().timestamp();
    let claims = |extra: Value| {
        let mut claims = json!({"sub": "wall", "exp": now + 600});
        claims
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        signed(SECRET, claims)
    };

    let good = claims(json!({"iss": "ops.example.com", "aud": ["bff", "grafana"], "nbf": now - 5}));
    client(&daemon, Some(&good)).await;

    let refusals = [
        (
            claims(json!({"iss": "ops.example.com", "aud": "bff", "nbf": now + 3600})),
            "token not valid yet (nbf is in the future)",
        ),
        (
            claims(json!({"iss": "evil.example.com", "aud": "bff"})),
            "token issuer (iss) does not match auth.issuer",
        ),
        (claims(json!({"aud": "bff"})), "token has no iss"),
        (
            claims(json!({"iss": "ops.example.com", "aud": "other"})),
            "token audience (aud) does not match auth.audience",
        ),
        (
            claims(json!({"iss": "ops.example.com"})),
            "token has no aud",
        ),
    ];
    for (bad, reason) in &refusals {
        assert_eq!(refused(request(&daemon, Some(bad))).await, 401, "{reason}");
        let reason_field = format!("reason=\"{reason}\"");
        let lines = logs.lines();
        assert_eq!(
            lines[before..]
                .iter()
                .filter(|l| l.contains("Client refused: unauthorized") && l.contains(&reason_field))
                .count(),
            1,
            "{lines:#?}"
        );
    }
    // An HTTP command is held to the same claims.
    let status = reqwest_status(&daemon, &refusals[0].0).await;
    assert_eq!(status, 401);
    assert_eq!(engine.hits("/api/actions/halt"), 0);
    let lines = logs.lines();
    for (bad, _) in &refusals {
        assert!(
            lines.iter().all(|l| !l.contains(bad.as_str())),
            "a token reached the log"
        );
    }
}

/// `POST /api/actions/halt` with `token` as its bearer: the HTTP status.
async fn reqwest_status(daemon: &Daemon, token: &str) -> u16 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
        .post(format!("http://{}/api/actions/halt", daemon.addr))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A reload that rotates the secret closes, with 4401, every connection whose token the new
/// secret does not verify, and a command it sends right after the reload never reaches the
/// engine; a connection whose token still verifies stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_closes_connections_holding_old_tokens_before_they_act() {
    let _serial = SERIAL.lock().await;
    let logs = &*LOGS;
    let engine = engine_with_halt().await;
    let cfg = secured(&engine, SECRET);
    let (daemon, reload) = Daemon::start_reloadable(cfg.clone()).await;
    let mut leaked = client(&daemon, Some(&operator(SECRET))).await;
    let mut watcher = client(&daemon, Some(&token(SECRET, 600))).await;

    let mut rotated = cfg.clone();
    rotated.auth.secret = Secret::new(NEW_SECRET);
    // A reload that leaves `[auth]` alone keeps every connection.
    let mut unrelated = cfg.clone();
    unrelated.packet.max_logs = 3;
    reload.send_replace(Arc::new(unrelated));
    assert_eq!(halt(&mut leaked).await["ok"], true);
    assert_eq!(engine.hits("/api/actions/halt"), 1);

    reload.send_replace(Arc::new(rotated));
    assert_eq!(
        halt_is_closed(&mut leaked).await,
        (4401, "token no longer valid".to_string())
    );
    assert_eq!(closed(&mut watcher).await.0, 4401);
    assert_eq!(
        engine.hits("/api/actions/halt"),
        1,
        "the HALT after the reload was sent"
    );
    assert_eq!(
        refused(request(&daemon, Some(&operator(SECRET)))).await,
        401
    );
    let mut renewed = client(&daemon, Some(&operator(NEW_SECRET))).await;
    assert_eq!(halt(&mut renewed).await["ok"], true);
    let lines = logs.lines();
    assert!(
        lines.iter().any(
            |l| l.contains("Token no longer valid: closing the connection")
                && l.contains("reason=\"token signature does not match\"")
        ),
        "{lines:#?}"
    );
}

/// With `auth.previous_secret_file`, a rotation keeps the connections holding tokens of the old
/// secret, which still act and still connect, until `auth.previous_secret_until`: then they are
/// closed with 4401, with no reload, and the old tokens are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_rollover_old_tokens_act_until_the_window_ends() {
    let _serial = SERIAL.lock().await;
    let engine = engine_with_halt().await;
    let cfg = secured(&engine, SECRET);
    let (daemon, reload) = Daemon::start_reloadable(cfg.clone()).await;
    let mut old = client(&daemon, Some(&operator(SECRET))).await;

    let mut rotated = cfg.clone();
    rotated.auth.secret = Secret::new(NEW_SECRET);
    reload.send_replace(Arc::new(with_previous(
        rotated.clone(),
        SECRET,
        3600,
        "prev-1h",
    )));
    assert_eq!(
        halt(&mut old).await["ok"],
        true,
        "within the window, the old token acts"
    );
    let mut reconnected = client(&daemon, Some(&operator(SECRET))).await;
    assert_eq!(halt(&mut reconnected).await["ok"], true);
    assert_eq!(engine.hits("/api/actions/halt"), 2);

    // A window that ends in a moment: the connections close by themselves when it does.
    reload.send_replace(Arc::new(with_previous(
        rotated.clone(),
        SECRET,
        2,
        "prev-2s",
    )));
    assert_eq!(
        closed(&mut old).await,
        (4401, "token no longer valid".to_string())
    );
    assert_eq!(closed(&mut reconnected).await.0, 4401);
    assert_eq!(
        refused(request(&daemon, Some(&operator(SECRET)))).await,
        401
    );
    assert_eq!(engine.hits("/api/actions/halt"), 2);
    client(&daemon, Some(&operator(NEW_SECRET))).await;
}

/// `auth.watch = "open"`: a connection without a token watches, and its commands are refused
/// (`unauthorized`); a presented token must still be valid, and one allowing it still acts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_open_lets_a_wall_screen_watch_without_a_token_but_not_act() {
    let _serial = SERIAL.lock().await;
    let engine = engine_with_halt().await;
    let mut cfg = secured(&engine, SECRET);
    cfg.auth.watch = Watch::Open;
    let daemon = Daemon::start(cfg).await;

    let before = LOGS.lines().len();
    let mut wall = client(&daemon, None).await;
    let refusal = halt(&mut wall).await;
    assert_eq!(
        (refusal["ok"].clone(), refusal["error"].clone()),
        (json!(false), json!("no token")),
        "{refusal}"
    );
    let lines = LOGS.lines();
    assert_eq!(
        lines[before..]
            .iter()
            .filter(|l| l.contains("Command") && l.contains("outcome=\"unauthorized\""))
            .count(),
        1,
        "{lines:#?}"
    );
    assert_eq!(engine.hits("/api/actions/halt"), 0);
    assert_eq!(
        refused(request(
            &daemon,
            Some(&token("another-secret-another-secret-xx", 60))
        ))
        .await,
        401
    );
    let mut desk = client(&daemon, Some(&operator(SECRET))).await;
    assert_eq!(halt(&mut desk).await["ok"], true);
    assert_eq!(engine.hits("/api/actions/halt"), 1);
}

/// The same through the binary: `SIGHUP` after the secret's file is replaced closes the socket
/// holding a token of the old secret with 4401; with the old file as `previous_secret_file`
/// until later, a token of the old secret still connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_new_secret_file_closes_old_tokens_unless_in_the_rollover() {
    let _serial = SERIAL.lock().await;
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let (old_file, new_file) = (dir.join("sighup-old.secret"), dir.join("sighup-new.secret"));
    std::fs::write(&old_file, format!("{SECRET}\n")).unwrap();
    std::fs::write(&new_file, format!("{NEW_SECRET}\n")).unwrap();
    let config = dir.join("sighup-rotation.toml");
    let auth = |secret: &std::path::Path, rest: &str| {
        std::fs::write(
            &config,
            format!(
                "[auth]\nsecret_file = {:?}\n{rest}",
                secret.display().to_string()
            ),
        )
        .unwrap();
    };
    auth(&old_file, "");
    let mut daemon = common::process::BffProcess::demo(&["--config", config.to_str().unwrap()]);
    let url = format!("ws://{}/", daemon.addr());
    let connect = |token: String| {
        let mut request = url.as_str().into_client_request().unwrap();
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(&format!("token, {token}")).unwrap(),
        );
        request
    };
    let (mut ws, _) = tokio_tungstenite::connect_async(connect(operator(SECRET)))
        .await
        .unwrap();
    assert_eq!(next_packet(&mut ws).await["type"], "WELCOME");

    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    auth(
        &new_file,
        &format!(
            "previous_secret_file = {:?}\nprevious_secret_until = {later:?}\n",
            old_file.display().to_string()
        ),
    );
    daemon.signal(libc::SIGHUP);
    daemon.line_containing("Config reloaded");
    let (mut during, _) = tokio_tungstenite::connect_async(connect(operator(SECRET)))
        .await
        .unwrap();
    assert_eq!(next_packet(&mut during).await["type"], "WELCOME");

    auth(&new_file, "");
    daemon.signal(libc::SIGHUP);
    daemon.line_containing("Config reloaded");
    assert_eq!(closed(&mut ws).await.0, 4401);
    assert_eq!(closed(&mut during).await.0, 4401);
    assert_eq!(refused(connect(operator(SECRET))).await, 401);
    let (mut renewed, _) = tokio_tungstenite::connect_async(connect(operator(NEW_SECRET)))
        .await
        .unwrap();
    assert_eq!(next_packet(&mut renewed).await["type"], "WELCOME");
    assert!(
        daemon
            .log()
            .iter()
            .all(|l| !l.contains(SECRET) && !l.contains(NEW_SECRET)),
        "a secret reached the log"
    );
}
