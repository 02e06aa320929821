//! What every request handler and connection task shares: the config, the hub, the metrics,
//! the admission counts and the one shutdown token.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::edge::admission::limits::Admission;
use crate::edge::admission::throttle::Throttle;
use crate::edge::command::Commands;
use crate::hub::Hub;
use crate::metrics::Metrics;

/// What every request handler and connection task shares.
#[derive(Debug)]
pub struct Context {
    /// The running config; `SIGHUP` replaces it. Read it with [`Context::config`].
    pub settings: watch::Receiver<Arc<Config>>,
    /// Where every connection's packets come from.
    pub hub: Hub,
    /// Counted where things happen, rendered at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Open connections, in total and per IP.
    pub admission: Admission,
    /// Handshakes per client IP per second.
    pub handshakes: Throttle,
    /// TCP connections still speaking HTTP (until they close or upgrade), in total and per IP.
    pub sockets: Admission,
    /// Limits the log lines of refused TCP connections, which anyone can cause at will.
    pub refusals: std::sync::Mutex<crate::edge::command::log::Throttle>,
    /// Decides and sends commands, for sessions and HTTP routes alike.
    pub commands: Arc<Commands>,
    /// Cancelled once, at shutdown; every loop selects on it.
    pub shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for their close frames to go out.
    pub tracker: TaskTracker,
    /// When the daemon started, for `/health`.
    pub started: Instant,
}

impl Context {
    /// The config as it is now. A reload applies to `[engine]` and `packet.max_logs` from the
    /// next tick; to the limits, origins, trusted proxies, `[auth]`, paths and header timeout
    /// from the next request, and `[auth]` to open connections' tokens too
    /// (`session::TokenCheck`); to `[clients]` from the next connection (open ones keep the
    /// settings they started with). `server.listen` and `clients.queue_size` need a restart.
    pub fn config(&self) -> Arc<Config> {
        self.settings.borrow().clone()
    }
}
