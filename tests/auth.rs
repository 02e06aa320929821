//! Token authentication: with `auth.secret` set, only a handshake carrying a valid, unexpired
//! HS256 JWT gets through, by subprotocol (echoed) or bearer header; the token never reaches
//! the log.

mod common;

use common::{Answer, Captured, Daemon, FakeEngine, config, next_packet, refused};
use jsonwebtoken::{EncodingKey, Header, encode};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn token(secret: &str, expires_in_s: i64) -> String {
    let exp = chrono::Utc::now().timestamp() + expires_in_s;
    let claims = serde_json::json!({"sub": "dashboard", "exp": exp});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_valid_tokens_get_through_and_none_is_logged() {
    let logs = Captured::install();
    let engine = FakeEngine::start(
        Answer::File("state-current.json"),
        Answer::File("agents-list.json"),
        Answer::File("models-list.json"),
    )
    .await;
    let mut cfg = config(&engine);
    cfg.auth.secret = bff::config::Secret::new(SECRET);
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
        assert_eq!(
            logs.count(&[
                "Client refused: unauthorized",
                &format!("reason=\"{reason}\"")
            ]),
            1,
            "{:#?}",
            logs.lines()
        );
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
