//! The listening socket: accepts TCP connections, serves HTTP/1.1 on each with hyper (routes in
//! [`super::routes`]), and keeps every task it starts in one tracker so shutdown can wait for them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tracing::{Instrument, debug, debug_span, warn};

use super::context::Context;
use super::http_io::HttpIo;
use super::routes;

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
                let task = serve_http(stream, peer, ctx.clone());
                // At DEBUG: an enabled span is kept by the log subscriber for the connection's
                // whole life, about 230 bytes each (2.3 MB at 10,000 clients). The lines
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

/// Serves HTTP on one TCP connection until it closes, upgrades, or the daemon shuts down.
async fn serve_http(stream: TcpStream, peer: SocketAddr, ctx: Arc<Context>) {
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
    if let Err(err) = result {
        debug!(%err, "HTTP connection ended with an error");
    }
}
