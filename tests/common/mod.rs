//! Test harness: a real HTTP engine answering from `fixtures/engine/`, the real daemon started
//! through its library entry point on 127.0.0.1:0, and a real WebSocket client; `process` runs the
//! `bff` binary, `redis` a real `redis-server`, `clients` the example clients and a balancer.
#![allow(dead_code)]

pub mod clients;
pub mod process;
pub mod redis;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bff::Config;
use futures_util::{SinkExt, StreamExt};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame as BodyFrame;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// How long any awaited condition may take before the test fails. Generous: it bounds a hang,
/// it does not measure speed.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The keys every packet's `data` has, whatever the engine did (PROTOCOL.md §2), written out
/// here rather than taken from the library so the tests check the contract, not the code.
pub const CONTRACT_KEYS: [&str; 12] = [
    "agents",
    "alerts",
    "governance",
    "logs",
    "market",
    "models",
    "mood",
    "portfolio",
    "signal",
    "sources",
    "status",
    "timestamp",
];

/// Whether `packet` says `source` (`state`, `agents`, `models`) is fresh.
pub fn source_ok(packet: &Value, source: &str) -> bool {
    packet["data"]["sources"][source]["ok"] == true
}

/// A source's error when its answer came after the packet went, at the publish deadline of the
/// tests' 150 ms poll: on a loaded machine any poll may be late so.
pub const LATE: &str =
    "no answer within 37 ms (engine.publish_deadline_ms); the last good value is shown";

/// Whether `packet` says `source` is fresh, or only [`LATE`] this once.
pub fn source_ok_or_late(packet: &Value, source: &str) -> bool {
    source_ok(packet, source) || packet["data"]["sources"][source]["error"] == LATE
}

/// What the fake engine answers on one endpoint.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A file from `fixtures/engine/`, as JSON with status 200.
    File(&'static str),
    /// This body with status 200.
    Body(String),
    /// This HTTP status with an empty body.
    Status(u16),
    /// Accept the request and never answer.
    Hang,
    /// Status 200 and a body that never ends.
    Endless,
    /// This body, after a delay.
    Slow(Duration, String),
    /// This body, labelled `text/html`.
    Html(String),
    /// Close the connection without answering.
    Drop,
    /// The n-th request on its path since the engine started gets the n-th body, status 200;
    /// the last one once they run out. One request per path per poll makes it one body a tick.
    Sequence(Arc<[String]>),
}

/// A real HTTP server standing in for the engine; its answers can be changed while it runs.
#[derive(Clone)]
pub struct FakeEngine {
    pub addr: SocketAddr,
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    /// Requests received, by path.
    hits: Arc<Mutex<HashMap<String, usize>>>,
    /// Action POSTs, in the order they arrived, and how many were open at once.
    actions: Arc<Mutex<ActionLog>>,
}

/// What the fake engine saw of actions (`/api/actions/<name>`).
#[derive(Debug, Default)]
struct ActionLog {
    order: Vec<String>,
    open: usize,
    most_open: usize,
}

/// Counts an action request as open until its answer is made or the request is dropped.
struct OpenAction(Arc<Mutex<ActionLog>>);

impl OpenAction {
    fn start(log: &Arc<Mutex<ActionLog>>, action: &str) -> Self {
        let mut seen = log.lock().unwrap();
        seen.order.push(action.to_owned());
        seen.open += 1;
        seen.most_open = seen.most_open.max(seen.open);
        Self(log.clone())
    }
}

impl Drop for OpenAction {
    fn drop(&mut self) {
        self.0.lock().unwrap().open -= 1;
    }
}

impl FakeEngine {
    /// Serves `state`, `agents` and `models` on `/state`, `/agents` and `/models`.
    pub async fn start(state: Answer, agents: Answer, models: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let engine = Self {
            addr: listener.local_addr().unwrap(),
            answers: Arc::new(Mutex::new(HashMap::from([
                ("/state".to_string(), state),
                ("/agents".to_string(), agents),
                ("/models".to_string(), models),
            ]))),
            hits: Arc::default(),
            actions: Arc::default(),
        };
        let (answers, hits) = (engine.answers.clone(), engine.hits.clone());
        let actions = engine.actions.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (answers, hits) = (answers.clone(), hits.clone());
                let actions = actions.clone();
                let service = service_fn(move |req| {
                    let earlier = {
                        let mut hits = hits.lock().unwrap();
                        let count = hits.entry(req.uri().path().to_owned()).or_default();
                        *count += 1;
                        *count - 1
                    };
                    let open = req
                        .uri()
                        .path()
                        .strip_prefix("/api/actions/")
                        .map(|action| OpenAction::start(&actions, action));
                    let answer = respond(req, answers.clone(), earlier);
                    async move {
                        let answer = answer.await;
                        drop(open);
                        answer
                    }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        engine
    }

    /// The engine's sample answers: the current state, raw agent records, raw model records.
    pub async fn samples() -> Self {
        Self::start(
            Answer::File("state-current.json"),
            Answer::File("agents-raw-records.json"),
            Answer::File("models-raw-records.json"),
        )
        .await
    }

    /// Requests received on `path` (`/state`, `/api/actions/halt`, …) so far.
    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// The actions POSTed so far (`halt`, `resume`, …), in the order they arrived.
    pub fn action_order(&self) -> Vec<String> {
        self.actions.lock().unwrap().order.clone()
    }

    /// The most action requests the engine was answering at one time.
    pub fn most_actions_at_once(&self) -> usize {
        self.actions.lock().unwrap().most_open
    }

    /// Changes what one endpoint (`state`, `agents`, `models`, or an action such as
    /// `api/actions/halt`) answers from now on.
    pub fn set(&self, source: &str, answer: Answer) {
        self.answers
            .lock()
            .unwrap()
            .insert(format!("/{source}"), answer);
    }
}

/// Returned by the fake engine's handler to make hyper close the connection unanswered.
#[derive(Debug)]
pub struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dropped on purpose")
    }
}

impl std::error::Error for DropConnection {}

/// The answer to `req`, the request on its path after `earlier` others.
async fn respond(
    req: Request<Incoming>,
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    earlier: usize,
) -> Result<Response<BoxBody<Bytes, Infallible>>, DropConnection> {
    let answer = answers.lock().unwrap().get(req.uri().path()).cloned();
    let (status, body) = match answer {
        Some(Answer::File(name)) => (200, Full::from(fixture_text(name)).boxed()),
        Some(Answer::Body(body)) => (200, Full::from(body).boxed()),
        Some(Answer::Sequence(bodies)) => {
            let body = bodies[earlier.min(bodies.len() - 1)].clone();
            (200, Full::from(body).boxed())
        }
        Some(Answer::Status(code)) => (code, Full::default().boxed()),
        Some(Answer::Hang) => std::future::pending().await,
        Some(Answer::Endless) => {
            let opening = futures_util::stream::once(async {
                Ok(BodyFrame::data(Bytes::from_static(b"{\"pad\": \"")))
            });
            let padding = futures_util::stream::repeat_with(|| {
                Ok(BodyFrame::data(Bytes::from(vec![b' '; 16 * 1024])))
            });
            (200, BodyExt::boxed(StreamBody::new(opening.chain(padding))))
        }
        Some(Answer::Slow(delay, body)) => {
            tokio::time::sleep(delay).await;
            (200, Full::from(body).boxed())
        }
        Some(Answer::Html(body)) => {
            let mut response = Response::new(Full::from(body).boxed());
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/html"),
            );
            return Ok(response);
        }
        Some(Answer::Drop) => return Err(DropConnection),
        None => (404, Full::default().boxed()),
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    Ok(response)
}

/// The text of `fixtures/engine/NAME`.
pub fn fixture_text(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/engine")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text of `fixtures/redis/NAME`: a real message of a Redis channel.
pub fn redis_fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/redis")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A config for tests: this engine, a fast poll, and everything else at its default.
pub fn config(engine: &FakeEngine) -> Config {
    let mut config = Config::default();
    config.engine.url = format!("http://{}", engine.addr);
    config.engine.state = "/state".into();
    config.engine.agents = "/agents".into();
    config.engine.models = "/models".into();
    config.engine.poll_interval_ms = 150;
    config.engine.timeout_ms = 120;
    config
}

/// The daemon, running in this test's runtime.
pub struct Daemon {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl Daemon {
    /// Validates `config` and runs the daemon on 127.0.0.1:0.
    pub async fn start(config: Config) -> Self {
        config.validate("test config").unwrap();
        Self::run(bff::fixed(config)).await
    }

    /// [`Daemon::start`], with a sender to reload the config through, as `SIGHUP` does.
    pub async fn start_reloadable(config: Config) -> (Self, watch::Sender<Arc<Config>>) {
        config.validate("test config").unwrap();
        let (reload, settings) = watch::channel(Arc::new(config));
        (Self::run(settings).await, reload)
    }

    async fn run(settings: watch::Receiver<Arc<Config>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(bff::run(settings, listener, shutdown.clone()));
        Self {
            addr,
            shutdown,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// A WebSocket client on `/`.
    pub async fn connect(&self) -> Ws {
        tokio_tungstenite::connect_async(self.url("/"))
            .await
            .unwrap()
            .0
    }

    /// A WebSocket client on `/` whose connection comes from `source` (a loopback address), so
    /// it does not share 127.0.0.1's per-IP limit.
    pub async fn connect_from(&self, source: &str) -> Ws {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        let stream = socket.connect(self.addr).await.unwrap();
        tokio_tungstenite::client_async(self.url("/"), MaybeTlsStream::Plain(stream))
            .await
            .unwrap()
            .0
    }

    /// A client that watches the stream while a test misbehaves elsewhere.
    pub async fn watcher(&self) -> Watcher {
        let mut ws = self.connect_from("127.0.0.9").await;
        let seq = next_packet(&mut ws).await["seq"].as_u64().unwrap();
        Watcher { ws, seq }
    }

    /// `GET /health` as JSON.
    pub async fn health(&self) -> Value {
        reqwest_get(&format!("http://{}/health", self.addr)).await.1
    }

    /// `GET /metrics`: the samples by `name{labels}`, and the exposition text for messages.
    pub async fn metrics(&self) -> (std::collections::BTreeMap<String, f64>, String) {
        let (_, text) = reqwest_get(&format!("http://{}/metrics", self.addr)).await;
        let text = text.as_str().expect("metrics are text").to_owned();
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(|line| {
                let (key, value) = line.rsplit_once(' ').unwrap();
                (key.to_owned(), value.parse().unwrap())
            })
            .collect();
        (samples, text)
    }

    /// Polls `/health` until `done` holds for it.
    pub async fn wait_health(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        within(what, async {
            loop {
                let health = self.health().await;
                if done(&health) {
                    return health;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }
}

/// A GET with a plain HTTP client: the status and the body (as JSON when it parses, else a string).
pub async fn reqwest_get(url: &str) -> (u16, Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Whether an external tool a test needs is here. Under CI (`CI` set) it must be, or the test
/// fails. Elsewhere a test whose tool was missing when it was built is already compiled as
/// ignored, with the reason (`build.rs` and the test's `cfg_attr(bff_no_*, ignore = …)`), so
/// `cargo test` counts it as ignored; this check only covers a tool removed since the build: the
/// test then says loudly that it did nothing, and how to install the tool.
pub fn tool_available(found: bool, tool: &str, install: &str) -> bool {
    if !found {
        assert!(
            std::env::var("CI").is_err(),
            "{tool} is required under CI ({install})"
        );
        eprintln!("SKIPPED: {tool} not found; {install} to run this test");
    }
    found
}

/// Fails the test with `what` if `fut` takes longer than [`PATIENCE`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// The HTTP status a WebSocket handshake to `request` (a URL, or a request with headers) was
/// refused with. Fails the test if the handshake succeeds, or fails without an HTTP answer.
pub async fn refused(request: impl IntoClientRequest + Unpin) -> u16 {
    match within(
        "the handshake's answer",
        tokio_tungstenite::connect_async(request),
    )
    .await
    {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Ok((_, response)) => panic!(
            "expected the handshake to be refused, it was accepted with {}",
            response.status()
        ),
        Err(other) => {
            panic!("expected the handshake to be refused with an HTTP status, got {other}")
        }
    }
}

/// What a client read next, skipping WebSocket pings and pongs.
#[derive(Debug)]
pub enum Frame {
    Packet(Value),
    Closed(Option<CloseFrame>),
    Ended(String),
}

/// The next text or close frame.
pub async fn next_frame(ws: &mut Ws) -> Frame {
    within("a frame", async {
        loop {
            return match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    Frame::Packet(serde_json::from_str(&text).unwrap())
                }
                Some(Ok(Message::Close(frame))) => Frame::Closed(frame),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => panic!("unexpected frame {other:?}"),
                Some(Err(e)) => Frame::Ended(e.to_string()),
                None => Frame::Ended("end of stream".into()),
            };
        }
    })
    .await
}

/// The next JSON packet; panics on a close.
pub async fn next_packet(ws: &mut Ws) -> Value {
    match next_frame(ws).await {
        Frame::Packet(packet) => packet,
        other => panic!("expected a packet, got {other:?}"),
    }
}

/// Whether `message` is what a packet announces (REGIME, ALERT). A demo's market turns
/// whenever it does, and these come then, between two packets, with no seq.
pub fn is_announcement(message: &Value) -> bool {
    message["type"] == "REGIME" || message["type"] == "ALERT"
}

/// The next WELCOME or TELEMETRY, reading past whatever the market announces before it.
pub async fn next_telemetry(ws: &mut Ws) -> Value {
    loop {
        let packet = next_packet(ws).await;
        if !is_announcement(&packet) {
            return packet;
        }
    }
}

/// Reads packets until one satisfies `done`.
pub async fn packet_where(ws: &mut Ws, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    within(what, async {
        loop {
            let packet = next_packet(ws).await;
            if done(&packet) {
                return packet;
            }
        }
    })
    .await
}

/// The close code the server sent, after reading past any packets still queued.
pub async fn close_code(ws: &mut Ws) -> u16 {
    within("a close frame", async {
        loop {
            match next_frame(ws).await {
                Frame::Packet(_) => continue,
                Frame::Closed(Some(frame)) => return u16::from(frame.code),
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
}

pub async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.into())).await.unwrap();
}

/// A log sink the test can read back.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Makes this process's log go to a new sink (once per test binary) and returns it.
    pub fn install() -> Self {
        let logs = Captured::default();
        let sink = logs.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .init();
        logs
    }

    pub fn lines(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
    pub fn count(&self, needle: &[&str]) -> usize {
        self.lines()
            .iter()
            .filter(|l| needle.iter().all(|n| l.contains(n)))
            .count()
    }
}

/// A client that reads the stream after the fact and checks it missed nothing.
pub struct Watcher {
    ws: Ws,
    seq: u64,
}

impl Watcher {
    /// Reads every packet published since the last check and at least one more, asserting that
    /// none was skipped.
    pub async fn saw_every_tick(&mut self, daemon: &Daemon) {
        let latest = daemon.health().await["seq"].as_u64().unwrap();
        let target = latest.max(self.seq + 1);
        while self.seq < target {
            let packet = next_packet(&mut self.ws).await;
            // The mood's and the alerts' messages come between packets (PROTOCOL §12.5).
            if packet["type"] == "REGIME" || packet["type"] == "ALERT" {
                continue;
            }
            self.seq += 1;
            assert_eq!(packet["seq"], self.seq, "the watching client missed a tick");
        }
    }
}
