//! The connect phase: which loopback source addresses the clients come from ([`sources`]), and
//! starting them at `--connect-rate` ([`phase`]) until every one has connected or given up, or
//! the phase's cap runs out; then the connects still in flight are cut off.
//!
//! [`crate::app`] runs it between setting up the run and the steady window; each client's own
//! connect, upgrade and WELCOME are in [`crate::client`].

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until};

use crate::cli::Cli;
use crate::client::{self, Client, Shared};
use crate::net;

/// Ephemeral ports one source address can use towards one server (net.ipv4.ip_local_port_range
/// is 32768–60999 by default).
const PORTS_PER_SOURCE: usize = 28_000;

/// How many loopback source addresses to spread `clients` over: `source_ips`, or 0 (the kernel
/// picks) when the server is not on loopback, where 127.0.0.x cannot reach it. Warns when each
/// address would need more ephemeral ports than it has.
pub fn sources(source_ips: u32, server: IpAddr, clients: usize) -> u32 {
    let sources = match (source_ips, server) {
        (0, _) => 0,
        (k, IpAddr::V4(ip)) if ip.is_loopback() => k,
        (_, ip) => {
            eprintln!(
                "bff-load: warning: {ip} is not a loopback address; ignoring --source-ips (the kernel picks the source)"
            );
            0
        }
    };
    let per_source = clients.div_ceil(sources.max(1) as usize);
    if per_source > PORTS_PER_SOURCE {
        eprintln!(
            "bff-load: warning: {per_source} connections per source address may exhaust ephemeral ports; raise --source-ips"
        );
    }
    sources
}

/// Where the connect phase left the run.
pub struct Connected {
    /// The task that starts the clients; it ends with the handle of every client it started.
    pub spawner: JoinHandle<Vec<JoinHandle<Client>>>,
    /// From the start of the run to the cutoff.
    pub phase: Duration,
    /// Clients connected at the cutoff: the steady window measures these.
    pub connected: usize,
}

/// Starts the clients and waits, printing progress every second, until every one has settled
/// or the phase cap (counted from `run_started`) is reached; then cuts off the connects still
/// in flight, so the steady window starts with a known set of clients.
pub async fn phase(
    shared: &Arc<Shared>,
    cli: &Cli,
    sources: u32,
    run_started: Instant,
) -> Connected {
    let phase_cap = cli.phase_cap();
    let spawned = Arc::new(AtomicUsize::new(0));
    let spawner = tokio::spawn(spawn_clients(
        shared.clone(),
        cli.clients,
        cli.stall,
        cli.connect_rate,
        sources,
        spawned.clone(),
    ));
    let phase_deadline = run_started + phase_cap;
    let mut next_progress = Instant::now() + Duration::from_secs(1);
    while shared.settled.load(Ordering::Relaxed) < cli.clients {
        if Instant::now() >= phase_deadline {
            eprintln!(
                "bff-load: the connect phase cap ({}s) was reached; starting the steady window anyway",
                phase_cap.as_secs()
            );
            break;
        }
        sleep(Duration::from_millis(20)).await;
        if Instant::now() >= next_progress {
            next_progress += Duration::from_secs(1);
            eprintln!(
                "bff-load: connecting: {} started, {} connected, {} settled",
                spawned.load(Ordering::Relaxed),
                shared.connected.load(Ordering::Relaxed),
                shared.settled.load(Ordering::Relaxed)
            );
        }
    }
    shared.connect_cutoff.cancel();
    Connected {
        spawner,
        phase: run_started.elapsed(),
        connected: shared.connected.load(Ordering::Relaxed),
    }
}

/// Starts `n` clients at `rate` per second (all at once when 0), round robin over `sources`
/// loopback addresses; the first `stall` are stalled. Stops starting new ones when the connect
/// phase is cut off.
async fn spawn_clients(
    shared: Arc<Shared>,
    n: usize,
    stall: usize,
    rate: u32,
    sources: u32,
    spawned: Arc<AtomicUsize>,
) -> Vec<JoinHandle<Client>> {
    let started = Instant::now();
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        if rate > 0 {
            let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
            if due > Instant::now() + Duration::from_millis(1) {
                tokio::select! {
                    _ = shared.connect_cutoff.cancelled() => break,
                    _ = sleep_until(due) => {}
                }
            }
        }
        if shared.connect_cutoff.is_cancelled() {
            break;
        }
        let source = (sources > 0).then(|| net::source_ip(i as u32 % sources));
        handles.push(tokio::spawn(client::run(
            i,
            shared.clone(),
            source,
            i < stall,
        )));
        spawned.fetch_add(1, Ordering::Relaxed);
    }
    handles
}
