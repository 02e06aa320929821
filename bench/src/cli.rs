//! The command line: the options ([`Cli`]), the checks they must pass before anything starts
//! ([`check`]), the defaults that depend on other options, and the server `--url` names
//! ([`target`]) and the `--redis` the publisher writes to ([`redis`]).
//!
//! [`crate::app`] parses it and runs with it; nothing here opens a connection.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use tokio_tungstenite::tungstenite::http::Uri;

use crate::sys;

/// The most memory the per-packet receive records may take.
const MAX_RECORD_BYTES: u64 = 2 << 30;

/// The most ticks a second `--publish-hz` may ask for.
const MAX_PUBLISH_HZ: u32 = 1000;

/// Opens many WebSocket dashboards against a bff daemon and measures how it serves them.
#[derive(Debug, Parser)]
#[command(name = "bff-load", version)]
pub struct Cli {
    /// WebSocket URL of the daemon
    #[arg(long, default_value = "ws://127.0.0.1:3000/")]
    pub url: String,
    /// Number of clients
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Seconds of steady state, counted from the moment every client is connected
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// New connections per second; 0 opens them all at once (a connect storm)
    #[arg(long, default_value_t = 2000)]
    pub connect_rate: u32,
    /// Spread clients over this many loopback source addresses 127.0.0.1…, round robin
    /// (0: let the kernel pick; only for a loopback server)
    #[arg(long, default_value_t = 32)]
    pub source_ips: u32,
    /// The first M clients stop reading right after their WELCOME (stalled dashboards)
    #[arg(long, default_value_t = 0, value_name = "M")]
    pub stall: usize,
    /// SO_RCVBUF of stalled clients, bytes
    #[arg(long, default_value_t = 4096, value_name = "BYTES")]
    pub stall_rcvbuf: u32,
    /// The daemon's process id, for its CPU and memory figures
    #[arg(long, value_name = "PID")]
    pub daemon_pid: Option<u32>,
    /// Also write the JSON report to this file
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Seconds one client may take to connect and receive its WELCOME
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub connect_timeout: u64,
    /// Cap on the whole connect phase, seconds [default: clients/connect-rate + connect-timeout]
    #[arg(long, value_name = "SECS")]
    pub connect_phase_cap: Option<u64>,
    /// Runtime worker threads for the load generator; 1 runs everything on one thread, leaving
    /// the other cores to the daemon
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Redis the daemon subscribes to (host:port), to publish ticks on with --publish-hz
    #[arg(long, value_name = "HOST:PORT")]
    pub redis: Option<String>,
    /// Ticks a second to publish on market.tick.SPY during the steady window, each with its own
    /// price, and measure from PUBLISH to each client's packet (0: no publisher)
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub publish_hz: u32,
    /// Offer permessage-deflate in the handshake, as browsers do, and inflate every compressed
    /// frame (docs/PROTOCOL.md §13.1)
    #[arg(long)]
    pub deflate: bool,
    /// Ask for TELEMETRY as fossil deltas (`?delta=fossil`, docs/PROTOCOL.md §13.2); a delta's
    /// staleness is taken from the reference connection's timestamp of the same seq
    #[arg(long)]
    pub delta: bool,
    /// The packets' format to ask for: msgpack is `?format=msgpack`, binary frames
    /// (docs/PROTOCOL.md §13.3)
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// Clients (the first N that do not stall) that decode every packet fully and compare its
    /// data with what one extra plain-JSON reference connection got; any mismatch, or a delta
    /// that does not apply, makes the exit code 1 [default: 20 when --deflate, --delta or
    /// --format msgpack is asked, else 0]
    #[arg(long, value_name = "N")]
    pub verify: Option<usize>,
}

/// What `--format` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Msgpack,
}

impl Cli {
    /// Whether the clients ask for anything but today's plain JSON.
    pub fn form_asked(&self) -> bool {
        self.deflate || self.delta || self.format != Format::Json
    }

    /// How many clients verify: `--verify`, or by default 20 (at most every client that does
    /// not stall) when a form is asked.
    pub fn verifiers(&self) -> usize {
        self.verify.unwrap_or_else(|| {
            if self.form_asked() {
                20.min(self.clients - self.stall.min(self.clients))
            } else {
                0
            }
        })
    }

    /// `--url` with the query of the forms asked for (`?delta=fossil`, `?format=msgpack`).
    pub fn stream_url(&self) -> String {
        let mut asks = Vec::new();
        if self.delta {
            asks.push("delta=fossil");
        }
        if self.format == Format::Msgpack {
            asks.push("format=msgpack");
        }
        if asks.is_empty() {
            return self.url.clone();
        }
        let joint = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{joint}{}", self.url, asks.join("&"))
    }

    /// `--connect-phase-cap`, or by default the time the paced connects take plus one client's
    /// timeout (and a second to spare), so the last client started still gets its full timeout.
    pub fn phase_cap(&self) -> Duration {
        Duration::from_secs(self.connect_phase_cap.unwrap_or_else(|| {
            self.clients
                .checked_div(self.connect_rate as usize)
                .unwrap_or(0) as u64
                + 1
                + self.connect_timeout
        }))
    }
}

/// Where to connect, from `--url`.
pub struct Target {
    /// The URL as given, sent in the upgrade request.
    pub url: String,
    /// Its host resolved to an IPv4 address: the sockets connect there, and stalled clients are
    /// looked up by it in `sock_diag`.
    pub addr: SocketAddr,
}

/// Rejects option combinations that cannot make a run, before any socket is opened, so that a
/// mistake costs an error message rather than a connect storm.
pub fn check(cli: &Cli) -> Result<(), String> {
    if cli.clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    if cli.stall > cli.clients {
        return Err("--stall cannot exceed --clients".into());
    }
    if cli.duration == 0 {
        return Err("--duration must be at least 1 second".into());
    }
    match (&cli.redis, cli.publish_hz) {
        (None, 0) => {}
        (Some(_), 0) => return Err("--redis publishes nothing without --publish-hz".into()),
        (None, _) => return Err("--publish-hz needs --redis HOST:PORT".into()),
        (Some(_), hz) if hz > MAX_PUBLISH_HZ => {
            return Err(format!("--publish-hz {hz}: at most {MAX_PUBLISH_HZ}"));
        }
        (Some(_), _) => {}
    }
    // Every packet at every client is kept (16 bytes, and 8 more for a publisher's price) until
    // the report; a publisher may add a packet per publish to the tick's one a second.
    let per_packet = if cli.publish_hz > 0 { 24 } else { 16 };
    let record_bytes = (cli.clients as u64)
        .saturating_mul(cli.duration + 60)
        .saturating_mul(1 + u64::from(cli.publish_hz))
        .saturating_mul(per_packet);
    if record_bytes > MAX_RECORD_BYTES {
        return Err(format!(
            "--clients {} × --duration {} would keep {} MiB of receive records; shorten the run",
            cli.clients,
            cli.duration,
            record_bytes >> 20
        ));
    }
    // The daemon does not offer the two together (docs/PROTOCOL.md §13); the clients would
    // read them.
    if cli.delta && cli.format == Format::Msgpack {
        return Err(
            "--delta with --format msgpack: the daemon does not offer the two together".into(),
        );
    }
    if cli.deflate && cli.stall > 0 {
        return Err("--stall with --deflate: stalled clients are read as plain frames".into());
    }
    if cli.verifiers() > cli.clients - cli.stall {
        return Err(format!(
            "--verify {}: more than the {} clients that do not stall",
            cli.verifiers(),
            cli.clients - cli.stall
        ));
    }
    if cli.connect_timeout == 0 {
        return Err("--connect-timeout must be at least 1 second".into());
    }
    if let Some(pid) = cli.daemon_pid
        && sys::sample(pid).is_err()
    {
        return Err(format!(
            "--daemon-pid {pid}: no such process readable in /proc"
        ));
    }
    Ok(())
}

/// Resolves `--url` once, up front: every client connects to the same address, and only plain
/// `ws://` to an IPv4 address is supported (the client sockets are IPv4).
pub async fn target(url: &str) -> Result<Target, String> {
    let uri: Uri = url.parse().map_err(|e| format!("--url {url}: {e}"))?;
    if uri.scheme_str() != Some("ws") {
        return Err(format!("--url {url}: only ws:// URLs are supported"));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("--url {url}: no host"))?
        .trim_matches(['[', ']']);
    let port = uri.port_u16().unwrap_or(80);
    let addr = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("--url {url}: cannot resolve {host}: {e}"))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| format!("--url {url}: {host} has no IPv4 address"))?;
    Ok(Target {
        url: url.to_string(),
        addr,
    })
}

/// Resolves `--redis` (host:port) to the address the publisher connects to.
pub async fn redis(addr: &str) -> Result<SocketAddr, String> {
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("--redis {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("--redis {addr}: no address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("bff-load").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn the_options_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_defaults_pass_and_impossible_runs_do_not() {
        assert_eq!(check(&cli(&[])), Ok(()));
        for args in [
            &["--clients", "0"][..],
            &["--clients", "2", "--stall", "3"],
            &["--duration", "0"],
            &["--connect-timeout", "0"],
            &["--clients", "1000000", "--duration", "3600"],
            &["--publish-hz", "5"],
            &["--redis", "127.0.0.1:6379"],
            &["--redis", "127.0.0.1:6379", "--publish-hz", "1001"],
            &["--delta", "--format", "msgpack"],
            &["--deflate", "--clients", "10", "--stall", "1"],
            &["--clients", "10", "--stall", "2", "--verify", "9"],
            // 10,000 clients for an hour is fine at 1 Hz, not with 5 pushes a second on top.
            &[
                "--clients",
                "10000",
                "--duration",
                "3600",
                "--redis",
                "127.0.0.1:6379",
                "--publish-hz",
                "5",
            ],
        ] {
            assert!(check(&cli(args)).is_err(), "{args:?}");
        }
        assert_eq!(
            check(&cli(&["--clients", "10000", "--duration", "3600"])),
            Ok(())
        );
        let push = [
            "--clients",
            "10000",
            "--redis",
            "127.0.0.1:6379",
            "--publish-hz",
            "5",
        ];
        assert_eq!(check(&cli(&push)), Ok(()));
    }

    #[test]
    fn forms_go_in_the_url_and_default_to_twenty_verifiers() {
        let plain = cli(&[]);
        assert_eq!(
            (plain.stream_url(), plain.verifiers()),
            ("ws://127.0.0.1:3000/".into(), 0)
        );
        let delta = cli(&["--delta", "--deflate"]);
        assert_eq!(delta.stream_url(), "ws://127.0.0.1:3000/?delta=fossil");
        assert_eq!(delta.verifiers(), 20);
        let binary = cli(&["--url", "ws://h:1/ws/stream?x=1", "--format", "msgpack"]);
        assert_eq!(binary.stream_url(), "ws://h:1/ws/stream?x=1&format=msgpack");
        let few = cli(&["--deflate", "--clients", "5", "--stall", "2"]);
        assert_eq!(few.verifiers(), 3);
        assert_eq!(cli(&["--verify", "2"]).verifiers(), 2);
        assert_eq!(cli(&["--delta", "--verify", "0"]).verifiers(), 0);
    }

    #[test]
    fn the_connect_phase_cap_defaults_to_the_pacing_plus_a_timeout() {
        let paced = cli(&["--clients", "10000", "--connect-rate", "2000"]);
        assert_eq!(paced.phase_cap(), Duration::from_secs(5 + 1 + 30));
        let storm = cli(&["--clients", "10000", "--connect-rate", "0"]);
        assert_eq!(storm.phase_cap(), Duration::from_secs(1 + 30));
        let capped = cli(&["--connect-phase-cap", "7"]);
        assert_eq!(capped.phase_cap(), Duration::from_secs(7));
    }
}
