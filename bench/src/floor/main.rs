//! `bff-floor`: the least a server can do to feed bff's dashboards, to measure the daemon against.
//!
//! One thread, one epoll loop, no engine and no parsing. It answers each WebSocket upgrade
//! request with `101 Switching Protocols` and a WELCOME, then keeps nothing of the client but its
//! socket. Once a tick (`--hz`, once a second by default) it builds one packet of the daemon's
//! size and envelope, frames it once, and writes it to every client with one `send` each; a
//! client whose `send` would block, fails or only partly goes through is closed, since the floor
//! buffers nothing. What it costs is the price of the sends themselves.
//!
//! ```text
//! bff-floor --listen 127.0.0.1:3100 --packet-bytes 4200 --hz 1
//! ```
//!
//! It prints `Listening addr=ADDR` once bound, and nothing more; SIGTERM or SIGINT ends it.
//! Linux only. [`serve`] is the loop, [`os`] the system calls under it (epoll, timerfd,
//! signalfd), and [`wire`] the bytes it writes.

#[cfg(target_os = "linux")]
#[path = "../civil.rs"]
mod civil;
mod os;
#[cfg(target_os = "linux")]
mod serve;
#[cfg(target_os = "linux")]
mod wire;

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;

/// Serves bff's fan-out and nothing else: a WELCOME on connect, then one pre-framed
/// TELEMETRY of the daemon's size to every client each tick, one send each.
#[derive(Debug, Parser)]
#[command(name = "bff-floor", version)]
pub struct Cli {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// Length of each packet (the JSON text, without the 4-byte frame header); the daemon's
    /// demo packets are 4.1 to 4.3 KB
    #[arg(long, default_value_t = 4200, value_name = "BYTES",
          value_parser = clap::value_parser!(u32).range(1..=1 << 20))]
    pub packet_bytes: u32,
    /// Packets a second to every client
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub hz: u32,
}

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    eprintln!("bff-floor runs on Linux only");
    ExitCode::from(2)
}

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    let cli = Cli::parse();
    match serve::serve(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bff-floor: {err}");
            ExitCode::FAILURE
        }
    }
}
