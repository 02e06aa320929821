//! The listening socket: accepts TCP connections, serves HTTP/1.1 on each with hyper (routes in
//! [`super::routes`]), and keeps every task it starts in one tracker so shutdown can wait for them.
//! Every connection holds a slot (`server.max_http_connections`, in total and per IP) until it
//! closes or upgrades; one over the limit is answered at once, without reading, and closed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tracing::{Instrument, debug, debug_span, warn};

use crate::edge::admission::forwarded::TrustedProxies;
use crate::edge::admission::limits::{Permit, Refusal};
use crate::edge::command::log::{INTERVAL, REFUSALS_LOGGED, Throttle, Verdict};
use crate::edge::context::Context;
use crate::edge::http::io::HttpIo;
use crate::edge::http::routes;

/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts connections until shutdown; returns once the listener is closed.
pub async fn accept(listener: TcpListener, ctx: Arc<Context>) {
    loop {
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let limits = &ctx.config().server;
                // A trusted proxy carries many clients over its own address: only the total
                // holds it; each of its clients is counted at the handshake.
                let per_ip = if from_trusted_proxy(peer, &limits.trusted_proxies) {
                    limits.max_http_connections
                } else {
                    limits.max_http_connections_per_ip
                };
                let permit = match ctx
                    .sockets
                    .admit(peer.ip(), limits.max_http_connections, per_ip)
                {
                    Ok(permit) => permit,
                    Err(refusal) => {
                        turn_away(&stream, peer, refusal, &ctx.refusals);
                        continue;
                    }
                };
                let task = serve_http(stream, peer, ctx.clone(), permit);
                // At DEBUG: an enabled span is kept by the log subscriber for the connection's
                // whole life (`docs/BENCHMARKS-JOURNAL.md`, "Lighter connections, and the
                // figures in alternated rounds"). The lines
                // operators read carry the peer as a field of their own.
                ctx.tracker
                    .spawn(task.instrument(debug_span!("http", %peer)));
            }
            Err(err) => {
                warn!(%err, "Accept failed; retrying shortly (is the open-file limit reached?)");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Whether `peer` is one of `server.trusted_proxies` (none by default, the common case, which
/// costs nothing).
fn from_trusted_proxy(peer: SocketAddr, proxies: &[String]) -> bool {
    !proxies.is_empty()
        && TrustedProxies::parse(proxies).is_ok_and(|trusted| trusted.contains(peer.ip()))
}

/// Answers a connection over the limits and lets it close: written without waiting (a new
/// socket's send buffer takes it whole) and without reading the request, so it costs nothing.
fn turn_away(stream: &TcpStream, peer: SocketAddr, refusal: Refusal, log: &Mutex<Throttle>) {
    let (status, message) = match refusal {
        Refusal::PerIp(limit) => (
            "429 Too Many Requests",
            format!(
                "Too many open connections from your address (limit {limit}, \
                 server.max_http_connections_per_ip); close one and retry.\n"
            ),
        ),
        Refusal::Total(limit) => (
            "503 Service Unavailable",
            format!(
                "Server full ({limit} connections, server.max_http_connections); retry later.\n"
            ),
        ),
    };
    // Anyone can open connections faster than a log should grow: past the limit they are
    // answered alike but left out of the log, and the next interval says how many were.
    match log
        .lock()
        .expect("refusal log throttle poisoned")
        .admit(Instant::now())
    {
        Verdict::Hold => {}
        Verdict::Log { left_out } => {
            if left_out > 0 {
                warn!(
                    left_out,
                    interval_s = INTERVAL.as_secs(),
                    "Refused connections beyond {REFUSALS_LOGGED} an interval were not logged"
                );
            }
            warn!(%peer, status, "Connection refused: {}", message.trim_end());
        }
    }
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\nretry-after: 5\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{message}",
        message.len()
    );
    let _ = stream.try_write(response.as_bytes());
}

/// Serves HTTP on one TCP connection until it closes, upgrades, or the daemon shuts down,
/// holding its slot (`permit`) as long.
async fn serve_http(stream: TcpStream, peer: SocketAddr, ctx: Arc<Context>, permit: Permit) {
    // Packets are whole messages: send each at once rather than waiting to coalesce.
    let _ = stream.set_nodelay(true);
    let handler = ctx.clone();
    let service = service_fn(move |req| routes::handle(req, peer, handler.clone()));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(ctx.config().server.header_timeout_ms))
        // One buffer a response, so a `101` is one write that `HttpIo` can hold back.
        .writev(false)
        .serve_connection(TokioIo::new(HttpIo::new(stream)), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = ctx.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    // Closed or upgraded: a WebSocket counts against `server.max_connections` from here.
    drop(permit);
    if let Err(err) = result {
        debug!(%err, "HTTP connection ended with an error");
    }
}
