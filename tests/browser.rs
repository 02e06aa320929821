//! The live page and the browser snippet in a real headless Chromium, driven over WebDriver:
//! Debian's `chromium` and `chromium-driver` (which `.ci/run` installs; CI requires them).

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use common::process::{BffProcess, KillOnDrop};
use common::redis::RedisServer;
use common::{Answer, Captured, Daemon, FakeEngine};
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Long enough for the page's backoff (1, 2, 4, 8 s) to come round after a restart.
const PATIENCE: Duration = Duration::from_secs(30);

/// Every log line of the daemons this test binary runs in-process.
static LOGS: LazyLock<Captured> = LazyLock::new(Captured::install);

/// A plain HTTP server on a free loopback port (another origin than any daemon's) that answers
/// every request with `html`: where a page from another site comes from.
async fn serve_page(html: String) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let html = html.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0; 1024];
                while !request.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    html.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(html.as_bytes()).await;
            });
        }
    });
    addr
}

/// A static HTTP server on a free loopback port for the files under `root` (GET only, no `..`):
/// where a page that imports ES modules comes from, with the types browsers require of them.
async fn serve_dir(root: PathBuf) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let root = root.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0; 1024];
                while !request.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let request = String::from_utf8_lossy(&request);
                let path = request.split(' ').nth(1).unwrap_or("/");
                let path = path
                    .split('?')
                    .next()
                    .unwrap_or("/")
                    .trim_start_matches('/');
                let file = (!path.split('/').any(|part| part == ".."))
                    .then(|| std::fs::read(root.join(path)).ok())
                    .flatten();
                let kind = match Path::new(path).extension().and_then(|e| e.to_str()) {
                    Some("html") => "text/html; charset=utf-8",
                    Some("js" | "mjs") => "text/javascript; charset=utf-8",
                    _ => "application/octet-stream",
                };
                let (status, body) = match file {
                    Some(body) => ("200 OK", body),
                    None => ("404 Not Found", format!("no {path} here").into_bytes()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
            });
        }
    });
    addr
}

/// `bff --demo` on `addr`, once it has logged that it listens there.
fn daemon(addr: SocketAddr) -> BffProcess {
    let bff = BffProcess::start(&["--demo", "--listen", &addr.to_string()], &[]);
    assert_eq!(bff.addr(), addr);
    bff
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A `--demo` daemon on a free port, and a headless Chromium on its live page.
async fn on_the_live_page() -> (BffProcess, SocketAddr, KillOnDrop, Client) {
    let addr = free_port();
    let bff = daemon(addr);
    let (driver, client) = browser().await;
    client.goto(&format!("http://{addr}/")).await.unwrap();
    (bff, addr, driver, client)
}

/// Whether Chromium and its driver are installed (required under CI).
fn browser_installed() -> bool {
    common::tool_available(
        Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists(),
        "chromium or chromedriver",
        "apt-get install chromium chromium-driver",
    )
}

/// chromedriver on a free port, and a headless Chromium session through it.
async fn browser() -> (KillOnDrop, Client) {
    let port = free_port().port();
    let driver = KillOnDrop(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let profile = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("chromium-{port}"));
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let started = Instant::now();
    loop {
        match ClientBuilder::new(HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => return (driver, client),
            Err(err) if started.elapsed() > PATIENCE => panic!("no WebDriver session: {err}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The text of the element with `id`.
async fn text(client: &Client, id: &str) -> String {
    let value = client
        .execute(
            "const e = document.getElementById(arguments[0]); return e ? e.textContent : null;",
            vec![json!(id)],
        )
        .await
        .unwrap();
    match value {
        Value::String(text) => text,
        other => panic!("no element #{id}: {other}"),
    }
}

/// Waits until `done` holds for the text of `id`; returns that text.
async fn wait_text(client: &Client, id: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let text = text(client, id).await;
        if done(&text) {
            return text;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "timed out waiting for {what}: #{id} is {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg_attr(
    bff_no_browser,
    ignore = "chromium or chromedriver not found: apt-get install chromium chromium-driver"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_streams_shows_disconnected_and_reconnects() {
    if !browser_installed() {
        return;
    }
    let (mut bff, addr, _driver, client) = on_the_live_page().await;

    wait_text(&client, "conn", "the page to connect", |t| t == "Live").await;
    let seq = wait_text(&client, "seq", "a seq", |t| t.parse::<u64>().is_ok()).await;
    let price = wait_text(&client, "price", "a price", |t| t.parse::<f64>().is_ok()).await;
    wait_text(&client, "seq", "seq to change on screen", |t| t != seq).await;
    wait_text(&client, "price", "the price to change on screen", |t| {
        t != price
    })
    .await;
    // The demo halts itself now and then, as a real engine would.
    let status = text(&client, "status").await;
    assert!(status == "ACTIVE" || status == "HALT", "{status}");
    let screenshot = client.screenshot().await.unwrap();
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("live-page.png");
    std::fs::write(&shot, screenshot).unwrap();
    eprintln!("screenshot: {}", shot.display());

    // The daemon goes away: the page says so and counts down to its next try.
    bff.signal(libc::SIGTERM);
    let exit = bff.wait_exit();
    assert!(exit.success(), "{exit:?}");
    wait_text(&client, "conn", "Disconnected", |t| t == "Disconnected").await;
    // Each failed try doubles the wait: 1 s, then 2 s, then 4 s (capped at 30 s).
    for wait in [1, 2, 4] {
        let countdown = format!("retrying in {wait} s");
        wait_text(&client, "retry", &countdown, |t| t == countdown).await;
    }

    // It comes back on the same address: the page reconnects by itself and streams again.
    let _bff = daemon(addr);
    wait_text(&client, "conn", "the page to reconnect", |t| t == "Live").await;
    let seq = text(&client, "seq").await;
    wait_text(&client, "seq", "seq to move after reconnecting", |t| {
        t != seq
    })
    .await;
    client.close().await.unwrap();
}

/// The page runs on the client library the daemon serves next to it (`/bff.js`, the
/// repository's `clients/js/bff.js` itself) and on no inline code: the page fetched its two
/// scripts, and a dropped socket comes back by the library's reconnect, asking to resume where
/// the page left off (`since`/`epoch`) and resumed with no gap.
#[cfg_attr(
    bff_no_browser,
    ignore = "chromium or chromedriver not found: apt-get install chromium chromium-driver"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_runs_on_the_client_library_served_next_to_it() {
    if !browser_installed() {
        return;
    }
    let (_bff, addr, _driver, client) = on_the_live_page().await;
    wait_text(&client, "conn", "the page to connect", |t| t == "Live").await;
    let scripts = client
        .execute(
            "return performance.getEntriesByType('resource').map((e) => new URL(e.name).pathname)\
             .filter((p) => p.endsWith('.js'));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(scripts, json!(["/page.js", "/bff.js"]));
    let served = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('/bff.js').then(async (r) => done([r.status, r.headers.get('content-type'), await r.text()]));",
            vec![],
        )
        .await
        .unwrap();
    let library = include_str!("../clients/js/bff.js");
    assert_eq!(
        served,
        json!([200, "text/javascript; charset=utf-8", library])
    );

    wait_script(
        &client,
        "return window.bff.seqs.length >= 2;",
        "two packets",
    )
    .await;
    let first = client.execute("return ws.url;", vec![]).await.unwrap();
    assert_eq!(
        first,
        json!(format!("ws://{addr}/")),
        "the first socket asks for no resume"
    );
    let last = client
        .execute("ws.close(); return window.bff.seqs.at(-1);", vec![])
        .await
        .unwrap();
    wait_script(
        &client,
        "return window.bff.resumed === true && window.bff.connected;",
        "the library to reconnect and resume",
    )
    .await;
    let url = client.execute("return ws.url;", vec![]).await.unwrap();
    let (_, query) = url.as_str().unwrap().split_once('?').unwrap();
    let query: std::collections::HashMap<&str, &str> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let (epoch, seq) = last.as_str().unwrap().split_once(':').unwrap();
    let since: u64 = query["since"].parse().unwrap();
    assert!(since >= seq.parse().unwrap(), "since={since} after {last}");
    assert_eq!(query["epoch"], epoch);
    wait_script(
        &client,
        &format!("return window.bff.seqs.length >= 2 && Number(window.bff.seqs.at(-1).split(':')[1]) > {since};"),
        "a packet after the resume",
    )
    .await;
    let seqs = page_seqs(&client).await;
    let numbers: Vec<u64> = seqs
        .iter()
        .map(|s| s.split_once(':').unwrap().1.parse().unwrap())
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "no gap, no repeat: {seqs:?}"
    );
    client.close().await.unwrap();
}

/// Chromium offers permessage-deflate and the daemon takes it (`client_no_context_takeover`
/// only in the answer, as `WebSocket.extensions` shows: the browser keeps its window, and
/// packets come compressed after the one before): the live page streams over it, the packets
/// inflate to JSON, and a long message the browser compresses is answered.
#[cfg_attr(
    bff_no_browser,
    ignore = "chromium or chromedriver not found: apt-get install chromium chromium-driver"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_streams_with_permessage_deflate() {
    if !browser_installed() {
        return;
    }
    let (_bff, addr, _driver, client) = on_the_live_page().await;
    let seq = wait_text(&client, "seq", "a seq", |t| t.parse::<u64>().is_ok()).await;
    wait_text(&client, "seq", "the next seq", |t| t != seq).await;
    let script = r#"
        const done = arguments[arguments.length - 1];
        const ws = new WebSocket(arguments[0]);
        const seen = [];
        ws.onmessage = (event) => {
            const message = JSON.parse(event.data);
            seen.push(message.type);
            if (seen.length === 3) {
                ws.send(JSON.stringify({ type: 'PING', id: 'p'.repeat(300) }));
            }
            if (message.type === 'PONG') {
                // Packets may come between the PING and its PONG.
                const between = seen.slice(3, -1).every((type) => type === 'TELEMETRY');
                done({ extensions: ws.extensions, first: seen.slice(0, 3), between });
                ws.close();
            }
        };
        ws.onclose = (event) => done({ closed: event.code });
    "#;
    let answer = client
        .execute_async(script, vec![json!(format!("ws://{addr}/"))])
        .await
        .unwrap();
    assert_eq!(
        answer,
        json!({
            "extensions": "permessage-deflate; client_no_context_takeover",
            "first": ["WELCOME", "TELEMETRY", "TELEMETRY"],
            "between": true,
        })
    );
    client.close().await.unwrap();
}

/// Waits until `script` returns `true` in the page.
async fn wait_script(client: &Client, script: &str, what: &str) {
    let started = Instant::now();
    while client.execute(script, vec![]).await.unwrap() != json!(true) {
        assert!(started.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn click(client: &Client, id: &str) {
    client
        .find(fantoccini::Locator::Id(id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[cfg_attr(
    bff_no_browser,
    ignore = "chromium or chromedriver not found: apt-get install chromium chromium-driver"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_shows_pushed_prices_and_relayed_channels() {
    if !browser_installed() {
        return;
    }
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let addr = free_port();
    let _bff = BffProcess::start(
        &[
            "--demo",
            "--listen",
            &addr.to_string(),
            "--redis-url",
            &redis.url(),
        ],
        &[],
    );
    let (_driver, client) = browser().await;
    client.goto(&format!("http://{addr}/")).await.unwrap();
    wait_text(&client, "conn", "the page to connect", |t| t == "Live").await;
    wait_script(
        &client,
        "return window.bff.packet?.data?.sources?.redis?.ok === true;",
        "sources.redis.ok",
    )
    .await;
    wait_text(&client, "sources", "redis in the sources list", |t| {
        t.contains("redis")
    })
    .await;

    // The demo publishes a tick every 200 ms and the daemon pushes each: between two polls of
    // the state (one a second), the price on screen takes more than one value. Sampled until
    // seen, however slow the machine.
    let mut shown: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    let started = Instant::now();
    loop {
        // Both read in one script, so they belong to the same moment.
        let seen = client
            .execute(
                "return [String(window.bff.packet?.data?.sources?.state?.updated), \
                 document.getElementById('price').textContent];",
                vec![],
            )
            .await
            .unwrap();
        let prices = shown.entry(seen[0].to_string()).or_default();
        prices.insert(seen[1].to_string());
        if prices.len() >= 2 {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "never two prices within one poll: {shown:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rate = client
        .execute("return window.bff.rate;", vec![])
        .await
        .unwrap();
    assert!(rate.as_f64() > Some(1.5), "packets/s: {rate}");
    let shown: f64 = text(&client, "rate").await.parse().unwrap();
    assert!(shown > 1.5, "{shown}");

    // The channel panel: agent.updates by default, its updates listed as they come.
    click(&client, "subscribe").await;
    wait_text(&client, "channel-result", "the subscription", |t| {
        t == "subscribed to agent.updates"
    })
    .await;
    wait_text(&client, "updates", "an agent.updates UPDATE", |t| {
        t.contains("agent.updates") && t.contains("capital-allocator")
    })
    .await;
    let first = client
        .execute("return window.bff.updates[0];", vec![])
        .await
        .unwrap();
    assert_eq!(first["channel"], "agent.updates", "{first}");
    assert!(first["offset"].as_u64() >= Some(1), "{first}");
    assert_eq!(
        client
            .execute("return window.bff.subscribed;", vec![])
            .await
            .unwrap(),
        json!(["agent.updates"])
    );
    // A channel the daemon does not relay is refused with its reason.
    client
        .execute(
            "document.getElementById('channel').value = arguments[0];",
            vec![json!("secret.keys")],
        )
        .await
        .unwrap();
    click(&client, "subscribe").await;
    wait_text(&client, "channel-result", "the refusal", |t| {
        t == "refused secret.keys: not relayed: no entry of redis.relay matches it"
    })
    .await;
    client
        .execute(
            "document.getElementById('updates').scrollIntoView({block: 'end'});",
            vec![],
        )
        .await
        .unwrap();
    // The connection drops: back again, the page asks for what its channel published
    // meanwhile and gets it, so the offsets it lists have no gap.
    let offsets = "return window.bff.updates.filter((u) => u.channel === 'agent.updates')\
                   .map((u) => u.offset);";
    let before = client.execute(offsets, vec![]).await.unwrap();
    let last = before.as_array().unwrap().last().unwrap().as_u64().unwrap();
    client
        .execute("ws.close(); return true;", vec![])
        .await
        .unwrap();
    wait_script(
        &client,
        "return window.bff.channelsResumed?.['agent.updates'] === true;",
        "the channel resumed",
    )
    .await;
    let wanted = format!(
        "return window.bff.updates.some((u) => u.offset > {} && u.channel === 'agent.updates');",
        last + 2
    );
    wait_script(&client, &wanted, "updates from after the drop").await;
    let after: Vec<u64> =
        serde_json::from_value(client.execute(offsets, vec![]).await.unwrap()).unwrap();
    assert!(
        after.windows(2).all(|w| w[1] == w[0] + 1),
        "no gap, no repeat: {after:?}"
    );
    assert!(after.contains(&(last + 1)), "{after:?} after {last}");
    let screenshot = client.screenshot().await.unwrap();
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("live-page-redis.png");
    std::fs::write(&shot, screenshot).unwrap();
    eprintln!("screenshot: {}", shot.display());
    client.close().await.unwrap();
}

#[cfg_attr(
    bff_no_browser,
    ignore = "chromium or chromedriver not found: apt-get install chromium chromium-driver"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_snippet_shows_the_stream() {
    if !browser_installed() {
        return;
    }
    let addr = free_port();
    // The snippet is a dashboard on another origin, so the daemon lists that origin.
    let snippet = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/clients/browser.html");
    let page = serve_page(std::fs::read_to_string(snippet).unwrap()).await;
    let config = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("snippet-{page}.toml"));
    let listed = format!("[server]\nallowed_origins = [\"http://{page}\"]\n");
    std::fs::write(&config, listed).unwrap();
    let args = ["--demo", "--listen", &addr.to_string(), "--config"];
    let _bff = BffProcess::start(&[&args[..], &[config.to_str().unwrap()]].concat(), &[]);
    let (_driver, client) = browser().await;
    client
        .goto(&format!("http://{page}/?url=ws://{addr}/"))
        .await
        .unwrap();
    let seq = wait_text(&client, "seq", "a seq", |t| t.parse::<u64>().is_ok()).await;
    wait_text(&client, "seq", "the next seq", |t| t != seq).await;
    // The first packets may come before the engine's first state answer (INITIALIZING) on a
    // loaded machine; the snippet shows the status once one has come (the demo's halts itself
    // now and then, as a real engine would).
    wait_text(&client, "status", "ACTIVE or HALT", |t| {
        t == "ACTIVE" || t == "HALT"
    })
    .await;
    assert!(text(&client, "price").await.parse::<f64>().is_ok());
    client.close().await.unwrap();
}

/// `bff token` with these arguments: the token it prints.
fn token(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_bff"))
        .arg("token")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A path for a secret file no test has written yet (`bff token` creates it at its first call).
fn fresh_secret(tag: &str) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("demo.secret");
    let _ = std::fs::remove_file(&secret);
    secret
}

/// `bff --demo` on a free port, checking tokens against the secret in `file`.
fn demo_with_secret(file: &str) -> (SocketAddr, BffProcess) {
    let addr = free_port();
    let bff = BffProcess::start(
        &[
            "--demo",
            "--listen",
            &addr.to_string(),
            "--auth-secret-file",
            file,
        ],
        &[],
    );
    (addr, bff)
}

/// Whether the element with `id` is hidden.
async fn hidden(client: &Client, id: &str) -> bool {
    let script = "return document.getElementById(arguments[0]).hidden;";
    client.execute(script, vec![json!(id)]).await.unwrap() == json!(true)
}

#[cfg_attr(
    bff_no_browser,
    ignore = "chromium or chromedriver not found: apt-get install chromium chromium-driver"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_offers_halt_and_resume_only_to_a_token_that_allows_them() {
    if !browser_installed() {
        return;
    }
    let secret = fresh_secret("page");
    let file = secret.to_str().unwrap();
    // The first call creates the secret file; both tokens are signed with it.
    let operator = token(&[
        "--secret-file",
        file,
        "--sub",
        "olga",
        "--role",
        "operator",
        "--ttl",
        "10m",
    ]);
    let viewer = token(&["--secret-file", file, "--sub", "viewer"]);
    let (addr, bff) = demo_with_secret(file);
    assert_eq!(bff.addr(), addr);
    let (_driver, client) = browser().await;

    client
        .goto(&format!("http://{addr}/?token={viewer}"))
        .await
        .unwrap();
    wait_text(&client, "conn", "the viewer's page to connect", |t| {
        t == "Live"
    })
    .await;
    // The buttons start hidden, so looking at them proves nothing until the page has applied
    // the daemon's answer: run its own permission check to the end, then look.
    client
        .execute_async("loadAllowed().then(arguments[0]);", vec![])
        .await
        .unwrap();
    let allowed = client
        .execute("return window.bff.allowed;", vec![])
        .await
        .unwrap();
    assert!(
        !allowed
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "halt" || a == "resume"),
        "{allowed}"
    );
    assert!(
        hidden(&client, "halt").await && hidden(&client, "resume").await,
        "the viewer is offered HALT or RESUME"
    );

    client
        .goto(&format!("http://{addr}/?token={operator}"))
        .await
        .unwrap();
    wait_text(&client, "conn", "the operator's page to connect", |t| {
        t == "Live"
    })
    .await;
    let started = Instant::now();
    while hidden(&client, "halt").await {
        assert!(started.elapsed() < PATIENCE, "the HALT button never showed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!hidden(&client, "resume").await);
    // HALT asks first: declined, nothing is sent.
    client
        .execute("window.confirm = () => false;", vec![])
        .await
        .unwrap();
    client
        .find(fantoccini::Locator::Id("halt"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(text(&client, "command-result").await, "");
    client
        .execute("window.confirm = () => true;", vec![])
        .await
        .unwrap();
    client
        .find(fantoccini::Locator::Id("halt"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&client, "command-result", "the halt's result", |t| {
        t == "halt: Trading halted"
    })
    .await;
    // Counted once the confirmed halt is answered: a halt the declined click sent went over
    // the same connection before it, so it is counted by now. The daemon took one, this one.
    let (_, metrics) = common::reqwest_get(&format!("http://{addr}/metrics")).await;
    let halts: Vec<&str> = metrics
        .as_str()
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("bff_commands_total{") && l.contains(r#"action="halt""#))
        .collect();
    assert_eq!(
        halts,
        [r#"bff_commands_total{action="halt",outcome="ok"} 1"#],
        "the declined HALT was sent"
    );
    // The demo engine really halts, and the page shows it without waiting for the next tick.
    wait_text(&client, "status", "HALT on screen", |t| t == "HALT").await;
    client
        .find(fantoccini::Locator::Id("resume"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&client, "command-result", "the resume's result", |t| {
        t == "resume: Trading resumed"
    })
    .await;
    client.close().await.unwrap();
}

/// `window.bff.seqs`: the `epoch:seq` of every packet the page received, in order.
async fn page_seqs(client: &Client) -> Vec<String> {
    let value = client
        .execute("return window.bff.seqs;", vec![])
        .await
        .unwrap();
    serde_json::from_value(value).unwrap()
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[cfg_attr(
    bff_no_browser,
    ignore = "chromium or chromedriver not found: apt-get install chromium chromium-driver"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_resumes_after_its_daemon_restarts_with_no_gap() {
    if !browser_installed() {
        return;
    }
    let Some(redis) = common::redis::RedisServer::start() else {
        return;
    };
    let addr = free_port();
    let args = |addr: SocketAddr| {
        [
            "--demo",
            "--listen",
            &addr.to_string(),
            "--cluster",
            &redis.url(),
        ]
        .map(String::from)
    };
    let start = |addr| {
        let args = args(addr);
        BffProcess::start(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[])
    };
    let mut bff = start(addr);
    let (_driver, client) = browser().await;
    client.goto(&format!("http://{addr}/")).await.unwrap();
    wait_script(
        &client,
        "return window.bff.seqs.length >= 3;",
        "three packets",
    )
    .await;

    // The daemon restarts: the page reconnects saying where it left off, and the cluster's
    // history (the new process remembers nothing) fills the hole.
    bff.signal(libc::SIGTERM);
    assert!(bff.wait_exit().success());
    wait_text(&client, "conn", "Disconnected", |t| t == "Disconnected").await;
    let before = page_seqs(&client).await;
    let _bff = start(addr);
    wait_text(&client, "conn", "the page to reconnect", |t| t == "Live").await;
    let count = before.len() + 3;
    wait_script(
        &client,
        &format!("return window.bff.seqs.length >= {count};"),
        "more packets",
    )
    .await;
    let resumed = client
        .execute("return window.bff.resumed;", vec![])
        .await
        .unwrap();
    assert_eq!(resumed, json!(true));
    let seqs = page_seqs(&client).await;
    let (epoch, _) = seqs[1].split_once(':').unwrap();
    let numbers: Vec<u64> = seqs[1..]
        .iter()
        .map(|s| {
            let (e, n) = s.split_once(':').unwrap();
            assert_eq!(e, epoch, "one count across the restart: {seqs:?}");
            n.parse().unwrap()
        })
        .collect();
    for pair in numbers.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "no gap in the page's seq history: {seqs:?}"
        );
    }
    client.close().await.unwrap();
}

#[cfg_attr(
    bff_no_browser,
    ignore = "chromium or chromedriver not found: apt-get install chromium chromium-driver"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_site_can_neither_watch_nor_halt_and_the_own_page_still_can() {
    if !browser_installed() {
        return;
    }
    let logs = &*LOGS;
    let engine = FakeEngine::samples().await;
    let halted = json!({"success": true, "message": "Trading halted"});
    engine.set("api/actions/halt", Answer::Body(halted.to_string()));
    let mut cfg = common::config(&engine);
    // The trader's own machine may halt without a token: exactly what another site's page in
    // the trader's browser must not borrow.
    cfg.commands.allow_without_auth = true;
    let daemon = Daemon::start(cfg).await;
    let addr = daemon.addr;
    let attacker = serve_page(format!(
        r#"<!doctype html><title>elsewhere</title><script>
window.seen = {{ ws: 'pending', post: 'pending' }};
const ws = new WebSocket('ws://{addr}/');
ws.onopen = () => {{ window.seen.ws = 'open'; }};
ws.onclose = () => {{ if (window.seen.ws === 'pending') window.seen.ws = 'refused'; }};
fetch('http://{addr}/api/actions/halt', {{ method: 'POST', mode: 'no-cors',
  headers: {{ 'Content-Type': 'text/plain' }}, body: '{{}}' }})
  .then(() => {{ window.seen.post = 'answered'; }}, () => {{ window.seen.post = 'failed'; }});
</script>"#
    ))
    .await;
    let (_driver, client) = browser().await;
    client.goto(&format!("http://{attacker}/")).await.unwrap();
    wait_script(
        &client,
        "return window.seen.ws !== 'pending' && window.seen.post !== 'pending';",
        "the other site's page to try both",
    )
    .await;
    let seen = client.execute("return window.seen;", vec![]).await.unwrap();
    // The stream refused, the POST answered (opaquely), and no halt reached the engine.
    assert_eq!(
        (seen, engine.hits("/api/actions/halt")),
        (json!({"ws": "refused", "post": "answered"}), 0)
    );
    let (metrics, text) = daemon.metrics().await;
    assert_eq!(
        metrics.get(r#"bff_handshakes_refused_total{status="403"}"#),
        Some(&1.0),
        "the stream was refused with 403: {text}"
    );
    let origin = format!("http://{attacker}");
    assert_eq!(
        logs.count(&["Command route refused: origin not allowed", &origin]),
        1,
        "the POST came and was refused for its origin"
    );

    // The daemon's own page streams and halts; its token leaves the address bar, and a `?ws=`
    // pointing elsewhere is ignored.
    client
        .goto(&format!("http://{addr}/?token=t0ken&ws=ws://{attacker}/"))
        .await
        .unwrap();
    wait_text(&client, "conn", "the own page to connect", |t| t == "Live").await;
    let href = client
        .execute("return location.href;", vec![])
        .await
        .unwrap();
    let href = href.as_str().unwrap();
    assert!(!href.contains("t0ken") && href.contains("ws="), "{href}");
    let url = client
        .execute("return window.bff.url;", vec![])
        .await
        .unwrap();
    assert_eq!(url, json!(format!("ws://{addr}/")));
    let refused = client
        .execute("return window.bff.wsRefused;", vec![])
        .await
        .unwrap();
    assert_eq!(refused, json!(true));
    let started = Instant::now();
    while hidden(&client, "halt").await {
        assert!(started.elapsed() < PATIENCE, "the HALT button never showed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client
        .execute("window.confirm = () => true;", vec![])
        .await
        .unwrap();
    click(&client, "halt").await;
    wait_text(&client, "command-result", "the halt's result", |t| {
        t == "halt: Trading halted"
    })
    .await;
    assert_eq!(engine.hits("/api/actions/halt"), 1);

    // A `?ws=` to another daemon is followed when this daemon lists that daemon's origin.
    let mut cfg = common::config(&engine);
    cfg.server.allowed_origins = vec!["*".into()];
    let other = Daemon::start(cfg.clone()).await;
    cfg.server.allowed_origins = vec![format!("http://{}", other.addr)];
    let home = Daemon::start(cfg).await;
    let target = format!("ws://{}/", other.addr);
    client
        .goto(&format!("http://{}/?ws={target}", home.addr))
        .await
        .unwrap();
    wait_text(
        &client,
        "conn",
        "the page to connect to the other daemon",
        |t| t == "Live",
    )
    .await;
    let url = client
        .execute("return window.bff.url;", vec![])
        .await
        .unwrap();
    assert_eq!(url, json!(target));
    client.close().await.unwrap();
}

/// A token the daemon stops accepting (the secret rotated, then `SIGHUP`) closes the page's
/// connection with 4401; the page says so and asks for a new token rather than retrying with the
/// one it has, which would only be refused.
#[cfg_attr(
    bff_no_browser,
    ignore = "chromium or chromedriver not found: apt-get install chromium chromium-driver"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_asks_for_a_new_token_when_its_token_is_revoked() {
    if !browser_installed() {
        return;
    }
    let secret = fresh_secret("revoked");
    let file = secret.to_str().unwrap();
    let viewer = token(&["--secret-file", file, "--sub", "viewer"]);
    let (addr, bff) = demo_with_secret(file);
    let (_driver, client) = browser().await;
    client
        .goto(&format!("http://{addr}/?token={viewer}"))
        .await
        .unwrap();
    wait_text(&client, "conn", "the page to connect", |t| t == "Live").await;

    std::fs::write(
        &secret,
        "a-new-secret-nobody-has-signed-with-yet-0123456789",
    )
    .unwrap();
    bff.signal(libc::SIGHUP);
    wait_text(
        &client,
        "conn",
        "the page to say its token is no longer valid",
        |t| t == "Token no longer valid",
    )
    .await;
    assert_eq!(
        text(&client, "retry").await,
        "open the page with a new ?token="
    );
    client.close().await.unwrap();
}

/// The sample engine state at `price`, moving at `velocity` a tick, the signal saying `side`.
fn state_moving(price: f64, velocity: f64, side: &str) -> Answer {
    let mut state: Value =
        serde_json::from_str(&common::fixture_text("state-current.json")).unwrap();
    state["market"]["price"] = json!(price);
    state["market"]["velocity"] = json!(velocity);
    state["signal"]["side"] = json!(side);
    Answer::Body(state.to_string())
}

/// The vibe card as the page shows it: its class, label, persona and headline.
async fn vibe(client: &Client) -> Value {
    let script = "const t = (id) => document.getElementById(id).textContent; \
                  return { class: document.getElementById('vibe').className, \
                  hidden: document.getElementById('vibe').hidden, label: t('vibe-label'), \
                  persona: t('vibe-persona'), headline: t('vibe-headline') };";
    client.execute(script, vec![]).await.unwrap()
}

/// Waits until the vibe card is `expected`; returns it.
async fn wait_vibe(client: &Client, what: &str, expected: Value) {
    let started = Instant::now();
    loop {
        let shown = vibe(client).await;
        if shown == expected {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "timed out waiting for {what}: the card is {shown}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The alert banner's rows: `level class|code|message` each.
async fn banner(client: &Client) -> Value {
    let script = "const list = document.getElementById('alerts'); \
                  return { hidden: list.hidden, rows: [...list.children].map((li) => \
                  `${li.className}|${li.querySelector('.code').textContent}|\
                  ${li.querySelector('.message').textContent}`) };";
    client.execute(script, vec![]).await.unwrap()
}

/// The vibe card follows the market's mood: neutral with the daemon's own words, then a REGIME
/// turns it red with Big Pickle and the MARKET_CRASH alert shows in the banner, critical; then
/// back to neutral (the alert cleared, the banner gone), and green for a rally. The words are
/// the daemon's (`[regime]`), never the page's. The crash vibe is saved as a screenshot
/// (`BFF_UPDATE_SCREENSHOT=1` writes it to `docs/live-page-mood.png`).
#[cfg_attr(
    bff_no_browser,
    ignore = "chromium or chromedriver not found: apt-get install chromium chromium-driver"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vibe_card_and_the_alert_banner_follow_the_market_mood() {
    if !browser_installed() {
        return;
    }
    let engine = FakeEngine::start(
        state_moving(450.32, 0.0012, "BUY"),
        Answer::File("agents-raw-records.json"),
        Answer::File("models-raw-records.json"),
    )
    .await;
    let mut cfg = common::config(&engine);
    // Two readings at the test's poll: quick, and still through the dwell.
    cfg.regime.min_dwell_ms = 300;
    cfg.regime.neutral_label = "Calm".into();
    cfg.regime.neutral_persona = "Desk Owl".into();
    cfg.regime.neutral_headline = "NOTHING TO SEE".into();
    let daemon = Daemon::start(cfg).await;
    let (_driver, client) = browser().await;
    client
        .goto(&format!("http://{}/", daemon.addr))
        .await
        .unwrap();
    wait_text(&client, "conn", "the page to connect", |t| t == "Live").await;
    let neutral = json!({"class": "card vibe mood-neutral", "hidden": false, "label": "Calm",
        "persona": "Desk Owl", "headline": "NOTHING TO SEE"});
    wait_vibe(&client, "the neutral card", neutral.clone()).await;
    assert_eq!(banner(&client).await, json!({"hidden": true, "rows": []}));

    // The market falls: one REGIME, the red card, and MARKET_CRASH in the banner.
    engine.set("state", state_moving(441.27, -0.01, "SELL"));
    let crash = json!({"class": "card vibe mood-crash", "hidden": false, "label": "Crash/Panic",
        "persona": "Big Pickle", "headline": "SELL EVERYTHING"});
    wait_vibe(&client, "the crash card", crash).await;
    wait_script(
        &client,
        "return document.getElementById('alerts').children.length > 0;",
        "the crash alert in the banner",
    )
    .await;
    assert_eq!(
        banner(&client).await,
        json!({"hidden": false, "rows": ["critical|MARKET_CRASH|The market turned to crash"]})
    );
    let regimes = client
        .execute("return window.bff.regimes;", vec![])
        .await
        .unwrap();
    assert_eq!(
        regimes,
        json!(["neutral>crash"]),
        "one REGIME, for the turn"
    );
    let screenshot = client.screenshot().await.unwrap();
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("live-page-mood.png");
    std::fs::write(&shot, &screenshot).unwrap();
    eprintln!("screenshot: {}", shot.display());
    if std::env::var_os("BFF_UPDATE_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/live-page-mood.png");
        std::fs::write(docs, &screenshot).unwrap();
    }

    // Steady again: the standard card, and the alert cleared from the banner.
    engine.set("state", state_moving(442.05, 0.0012, "BUY"));
    wait_vibe(&client, "the neutral card again", neutral).await;
    wait_script(
        &client,
        "return document.getElementById('alerts').hidden;",
        "the banner to empty",
    )
    .await;
    assert_eq!(banner(&client).await, json!({"hidden": true, "rows": []}));
    let events = client
        .execute("return window.bff.alertEvents;", vec![])
        .await
        .unwrap();
    assert_eq!(
        events,
        json!(["MARKET_CRASH:raised", "MARKET_CRASH:cleared"]),
        "the alert raised once and cleared once"
    );

    // A rally with the signal BUY: the green card.
    engine.set("state", state_moving(447.90, 0.01, "BUY"));
    let bull = json!({"class": "card vibe mood-bull", "hidden": false, "label": "Bull/Euphoria",
        "persona": "MiniMax", "headline": "TO THE MOON"});
    wait_vibe(&client, "the bull card", bull).await;
    let regimes = client
        .execute("return window.bff.regimes;", vec![])
        .await
        .unwrap();
    assert_eq!(
        regimes,
        json!(["neutral>crash", "crash>neutral", "neutral>bull"])
    );
    client.close().await.unwrap();
}

/// The client library (`clients/js/bff.js`) in Chromium as it is, no build step: its test page
/// (`clients/js/test/browser.html`) imports it and its dependencies through an import map from
/// `clients/js/` served as files, and connects a delta client and a MessagePack client to a
/// daemon that lists the page's origin. Both get deflate from the browser, packets decoded to
/// the same data seq for seq, deltas applied among them, and never a reconnect.
#[cfg_attr(
    bff_no_browser,
    ignore = "chromium or chromedriver not found: apt-get install chromium chromium-driver"
)]
#[cfg_attr(
    bff_no_js_deps,
    ignore = "clients/js/node_modules not found: npm ci --prefix clients/js"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_library_decodes_deltas_and_msgpack_over_deflate_in_chromium() {
    if !browser_installed() {
        return;
    }
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/js");
    let page = serve_dir(js).await;
    let addr = free_port();
    let config = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("library-{page}.toml"));
    let listed = format!("[server]\nallowed_origins = [\"http://{page}\"]\n");
    std::fs::write(&config, listed).unwrap();
    let args = ["--demo", "--listen", &addr.to_string(), "--config"];
    let _bff = BffProcess::start(&[&args[..], &[config.to_str().unwrap()]].concat(), &[]);
    let (_driver, client) = browser().await;
    client
        .goto(&format!("http://{page}/test/browser.html?url=ws://{addr}/"))
        .await
        .unwrap();
    // Eight packets each past the later WELCOME, three deltas among the delta client's.
    wait_script(
        &client,
        "const s = window.seen; if (!s) return false;
         const [d, m] = [s.delta.packets, s.msgpack.packets];
         if (!d.length || !m.length) return false;
         const last = Math.max(d[0].seq, m[0].seq) + 8;
         return s.delta.deltas >= 3 && d.some((p) => p.seq === last) && m.some((p) => p.seq === last);",
        "eight packets in each client, three of them deltas",
    )
    .await;
    let seen = client.execute("return window.seen;", vec![]).await.unwrap();
    client.close().await.unwrap();
    let deflate = "permessage-deflate; client_no_context_takeover";
    let mut data = Vec::new();
    for name in ["delta", "msgpack"] {
        let c = &seen[name];
        assert_eq!(c["statuses"], json!(["connecting", "live"]), "{name}");
        assert_eq!(c["extensions"], json!([deflate]), "{name}: deflate");
        let packets = c["packets"].as_array().unwrap();
        assert_eq!(packets[0]["type"], "WELCOME", "{name}");
        let seqs: Vec<u64> = packets.iter().map(|p| p["seq"].as_u64().unwrap()).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "{name}: seqs one after another: {seqs:?}"
        );
        assert!(
            packets[1..].iter().all(|p| p["type"] == "TELEMETRY"),
            "{name}"
        );
        assert!(packets.iter().all(|p| p["data"].is_object()), "{name}");
        data.push(packets);
    }
    assert!(seen["delta"]["deltas"].as_u64().unwrap() >= 3);
    assert!(
        seen["msgpack"]["binary"].as_u64().unwrap() >= 9,
        "MessagePack comes binary"
    );
    // The delta client's data equals the MessagePack client's for every seq both have.
    let mut common = 0;
    for d in data[0] {
        if let Some(m) = data[1].iter().find(|m| m["seq"] == d["seq"]) {
            assert_eq!(d["data"], m["data"], "seq {}", d["seq"]);
            common += 1;
        }
    }
    assert!(common >= 8, "{common} seqs in common");
}
