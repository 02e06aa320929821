//! `bff-load`: a WebSocket load generator for the bff daemon.
//!
//! Opens many dashboard connections (spread over loopback source addresses 127.0.0.1…K so tens of
//! thousands do not run out of ephemeral ports), holds them for a steady window, and reports
//! connect-to-WELCOME latency, the fan-out spread of each tick across clients (from kernel
//! receive timestamps, `SO_TIMESTAMPNS`), packet staleness, missed ticks, how the daemon treats
//! stalled clients, and the daemon's CPU and memory.
//!
//! ```text
//! cargo run --release -p bff-bench -- --url ws://127.0.0.1:3000/ --clients 10000 \
//!     --duration 60 --connect-rate 2000 --source-ips 32 --stall 10 --daemon-pid PID --json out.json
//! cargo run --release -p bff-bench -- --clients 10000 --delta --deflate --verify 20
//! ```
//!
//! What the figures mean:
//! - Receive times are kernel timestamps (`SCM_TIMESTAMPNS`, CLOCK_REALTIME) of the read that
//!   completed each message, so the load generator's own scheduling does not blur them. Over
//!   loopback the kernel stamps a packet while the daemon's `send` is still in progress, so the
//!   per-tick spread is, in effect, how long the daemon takes to write one tick to everyone.
//! - "TCP connect" and "connect → WELCOME" start when a client task starts its connect; in a
//!   connect storm they include the time this (single-threaded by default) process takes to get
//!   round to every socket. "upgrade request → WELCOME" is the daemon's share alone.
//! - Staleness compares the receive time with `data.timestamp`; it needs both on one clock (same
//!   host, or well synchronised ones).
//! - With a publisher, push latency is a client's receive time of the first packet carrying a
//!   publish's price minus the time just before that PUBLISH was written, both CLOCK_REALTIME on
//!   this host; publishes overtaken by a later one before the daemon pushed are "coalesced".
//! - Stalled clients are watched from the daemon's side with exact `sock_diag` lookups (both
//!   ends are on this host), which show when the daemon closed its socket; at the end they are
//!   read as raw frames (no pong is sent back) to see what was still on its way and how it ended.
//! - With `--deflate`, `--delta` or `--format msgpack` every client asks for that form of the
//!   packets (`docs/PROTOCOL.md` §13) and reads it as cheaply as a plain one: a compressed frame
//!   is inflated, a MessagePack one walked for its seq and timestamp, a delta's envelope read
//!   without applying it (its staleness comes from the reference connection's timestamp of the
//!   same seq). `--verify N` clients (20 by default with a form) decode every packet fully and
//!   compare its `data` with what one extra plain-JSON reference connection got; a mismatch or a
//!   delta that does not apply makes the exit code 1. The report gives the bytes on the wire per
//!   client per packet, frame header included.
//!
//! Linux only: it relies on `recvmsg` control messages, `/proc`, `sock_diag` and loopback
//! source addresses.
//!
//! The modules: [`cli`] (the options) and [`app`] (the run, phase by phase); [`connect`] starts
//! the clients; [`client`] is one dashboard, with its stalled variant in `client::stalled`, the
//! hand-written WebSocket client of those that offer permessage-deflate in `client::raw`, and the
//! reference connection in `client::reference`; [`frames`] reads what the daemon sends, with
//! [`msgpack`] for binary packets and [`inflate`] for compressed ones; [`verify`] decodes packets
//! fully and checks them; [`publisher`] publishes ticks on Redis for the daemon to push
//! (`--redis`, `--publish-hz`); [`net`] (sockets with kernel timestamps) and [`sys`] (`/proc`,
//! `getrusage`, `sock_diag`) are the system underneath; [`report`] turns the records into the
//! table and the JSON.
//!
//! The crate's other binary, `bff-floor` (`src/floor/`), is the server `scripts/bench.sh` runs each
//! steady scenario against before the daemon: one thread, epoll, one pre-framed packet and one
//! `send` per client per tick, the least a server can do to feed these clients.

#[cfg(target_os = "linux")]
mod app;
#[cfg(target_os = "linux")]
mod civil;
#[cfg(target_os = "linux")]
mod cli;
#[cfg(target_os = "linux")]
mod client;
#[cfg(target_os = "linux")]
mod connect;
#[cfg(target_os = "linux")]
mod frames;
#[cfg(target_os = "linux")]
mod inflate;
#[cfg(target_os = "linux")]
mod msgpack;
#[cfg(target_os = "linux")]
mod net;
#[cfg(target_os = "linux")]
mod publisher;
#[cfg(target_os = "linux")]
mod report;
#[cfg(target_os = "linux")]
mod sys;
#[cfg(target_os = "linux")]
mod verify;

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    app::main()
}

#[cfg(not(target_os = "linux"))]
fn main() -> std::process::ExitCode {
    eprintln!("bff-load runs on Linux only");
    std::process::ExitCode::from(2)
}
