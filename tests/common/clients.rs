//! The example clients of `examples/clients/` as commands, and a balancer to put in front of
//! several daemons, as a dashboard meets them in production.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};

/// `node` for the example client, with `--experimental-websocket` before Node 22; `None` (the
/// test is skipped) without Node.
pub fn node() -> Option<Command> {
    let major = node_major()?;
    let mut node = Command::new("node");
    if major < 22 {
        node.arg("--experimental-websocket");
    }
    node.arg(dashboard_js());
    Some(node)
}

/// The major version of `node`; `None` (the test is skipped) without Node.
pub fn node_major() -> Option<u32> {
    let version = Command::new("node").arg("--version").output();
    if !super::tool_available(version.is_ok(), "node", "install Node.js") {
        return None;
    }
    Some(
        String::from_utf8_lossy(&version.unwrap().stdout)
            .trim_start_matches('v')
            .split('.')
            .next()
            .unwrap()
            .parse()
            .unwrap(),
    )
}

/// `node --test` in `clients/js` (the JavaScript client library's tests), with
/// `--experimental-websocket` before Node 22; `None` (the test is skipped) without Node or
/// without the library's dev dependencies (`npm ci --prefix clients/js`).
pub fn node_tests() -> Option<Command> {
    let major = node_major()?;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients/js");
    let installed = [
        "react-test-renderer",
        "fossil-delta",
        "@msgpack/msgpack",
        "ws",
    ]
    .iter()
    .all(|package| dir.join("node_modules").join(package).is_dir());
    if !super::tool_available(
        installed,
        "clients/js/node_modules",
        "npm ci --prefix clients/js",
    ) {
        return None;
    }
    let mut node = Command::new("node");
    if major < 22 {
        node.arg("--experimental-websocket");
    }
    node.args(["--test-reporter=tap", "--test"])
        .current_dir(dir);
    Some(node)
}

/// `examples/clients/dashboard.mjs` (an ES module on the client library `clients/js/bff.js`).
pub fn dashboard_js() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/clients/dashboard.mjs")
}

/// `python3 dashboard.py`; `None` (the test is skipped) without Python's `websockets`.
pub fn python() -> Option<Command> {
    let has_websockets = Command::new("python3")
        .args(["-c", "import websockets"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !super::tool_available(
        has_websockets,
        "python3 with websockets",
        "pip install -r examples/clients/requirements.txt",
    ) {
        return None;
    }
    let mut python = Command::new("python3");
    python.arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/clients/dashboard.py"));
    Some(python)
}

/// A TCP balancer on 127.0.0.1: each connection goes to the backend of the moment, byte for
/// byte (WebSocket upgrades included), until either side closes. Stops with the test's runtime.
pub struct Balancer {
    /// Where new connections go.
    backend: Arc<Mutex<SocketAddr>>,
    /// Where clients connect.
    pub addr: SocketAddr,
}

impl Balancer {
    /// A balancer sending connections to `backend`.
    pub async fn start(backend: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let backend = Arc::new(Mutex::new(backend));
        let to = backend.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let target = *to.lock().unwrap();
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self { backend, addr }
    }

    /// Sends new connections to `backend` from now on.
    pub fn switch(&self, backend: SocketAddr) {
        *self.backend.lock().unwrap() = backend;
    }
}
