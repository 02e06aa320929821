//! The command line and the run: connect phase, steady window, teardown, report.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout_at};
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use crate::client::{self, Client, Shared};
use crate::net::{self, now_ns};
use crate::report::{self, DaemonSamples, Run};
use crate::sys;

/// Ephemeral ports one source address can use towards one server (net.ipv4.ip_local_port_range
/// is 32768–60999 by default).
const PORTS_PER_SOURCE: usize = 28_000;

/// The most memory the per-packet receive records may take.
const MAX_RECORD_BYTES: u64 = 2 << 30;

/// Opens many WebSocket dashboards against a bff daemon and measures how it serves them.
#[derive(Debug, Parser)]
#[command(name = "bff-load", version)]
struct Cli {
    /// WebSocket URL of the daemon
    #[arg(long, default_value = "ws://127.0.0.1:3000/")]
    url: String,
    /// Number of clients
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Seconds of steady state, counted from the moment every client is connected
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// New connections per second; 0 opens them all at once (a connect storm)
    #[arg(long, default_value_t = 2000)]
    connect_rate: u32,
    /// Spread clients over this many loopback source addresses 127.0.0.1…, round robin
    /// (0: let the kernel pick; only for a loopback server)
    #[arg(long, default_value_t = 32)]
    source_ips: u32,
    /// The first M clients stop reading right after their WELCOME (stalled dashboards)
    #[arg(long, default_value_t = 0, value_name = "M")]
    stall: usize,
    /// SO_RCVBUF of stalled clients, bytes
    #[arg(long, default_value_t = 4096, value_name = "BYTES")]
    stall_rcvbuf: u32,
    /// The daemon's process id, for its CPU and memory figures
    #[arg(long, value_name = "PID")]
    daemon_pid: Option<u32>,
    /// Also write the JSON report to this file
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Seconds one client may take to connect and receive its WELCOME
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    connect_timeout: u64,
    /// Cap on the whole connect phase, seconds [default: clients/connect-rate + connect-timeout]
    #[arg(long, value_name = "SECS")]
    connect_phase_cap: Option<u64>,
    /// Runtime worker threads for the load generator; 1 runs everything on one thread, leaving
    /// the other cores to the daemon
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// Where to connect, from `--url`.
struct Target {
    url: String,
    addr: SocketAddr,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(why) = check(&cli) {
        eprintln!("bff-load: {why}");
        return ExitCode::from(2);
    }
    let nofile = match sys::raise_nofile() {
        Ok((_, now)) => {
            if (now as usize) < cli.clients + 64 {
                eprintln!(
                    "bff-load: warning: the open-file limit is {now}, fewer than {} clients need",
                    cli.clients + 64
                );
            }
            now
        }
        Err(err) => {
            eprintln!("bff-load: warning: cannot raise the open-file limit: {err}");
            0
        }
    };
    let runtime = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("bff-load: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli, nofile))
}

fn check(cli: &Cli) -> Result<(), String> {
    if cli.clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    if cli.stall > cli.clients {
        return Err("--stall cannot exceed --clients".into());
    }
    if cli.duration == 0 {
        return Err("--duration must be at least 1 second".into());
    }
    // Every packet at every client is kept (16 bytes) until the report.
    let record_bytes = (cli.clients as u64).saturating_mul(cli.duration + 60) * 16;
    if record_bytes > MAX_RECORD_BYTES {
        return Err(format!(
            "--clients {} × --duration {} would keep {} MiB of receive records; shorten the run",
            cli.clients,
            cli.duration,
            record_bytes >> 20
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

async fn target(url: &str) -> Result<Target, String> {
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

async fn run(cli: Cli, nofile: u64) -> ExitCode {
    let target = match target(&cli.url).await {
        Ok(t) => t,
        Err(why) => {
            eprintln!("bff-load: {why}");
            return ExitCode::from(2);
        }
    };
    let sources = match (cli.source_ips, target.addr.ip()) {
        (0, _) => 0,
        (k, IpAddr::V4(ip)) if ip.is_loopback() => k,
        (_, ip) => {
            eprintln!(
                "bff-load: warning: {ip} is not a loopback address; ignoring --source-ips (the kernel picks the source)"
            );
            0
        }
    };
    let per_source = cli.clients.div_ceil(sources.max(1) as usize);
    if per_source > PORTS_PER_SOURCE {
        eprintln!(
            "bff-load: warning: {per_source} connections per source address may exhaust ephemeral ports; raise --source-ips"
        );
    }
    let connect_timeout = Duration::from_secs(cli.connect_timeout);
    let phase_cap = Duration::from_secs(cli.connect_phase_cap.unwrap_or_else(|| {
        cli.clients
            .checked_div(cli.connect_rate as usize)
            .unwrap_or(0) as u64
            + 1
            + cli.connect_timeout
    }));

    let shared = Arc::new(Shared {
        url: target.url.clone(),
        server: target.addr,
        ws_config: WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0),
        connect_timeout,
        stall_rcvbuf: cli.stall_rcvbuf,
        connect_cutoff: CancellationToken::new(),
        stop: CancellationToken::new(),
        settled: AtomicUsize::new(0),
        connected: AtomicUsize::new(0),
        ended_early: AtomicUsize::new(0),
        stalled: Mutex::new(Vec::new()),
    });

    let daemon_before = cli.daemon_pid.and_then(|pid| sys::sample(pid).ok());
    let gen_cpu_start = sys::self_cpu();
    let run_started = Instant::now();
    let watcher = (cli.stall > 0).then(|| tokio::spawn(client::watch_stalled(shared.clone())));
    eprintln!(
        "bff-load: {} clients ({} stalled) → {} from {} source address(es), {}",
        cli.clients,
        cli.stall,
        target.addr,
        sources.max(1),
        if cli.connect_rate == 0 {
            "all at once".to_string()
        } else {
            format!("{} connects/s", cli.connect_rate)
        }
    );

    // Connect phase.
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
    let connect_phase = run_started.elapsed();
    let connected_at_start = shared.connected.load(Ordering::Relaxed);

    // Steady window.
    let steady_start = now_ns();
    let steady_started = Instant::now();
    let daemon_start = cli.daemon_pid.and_then(|pid| sys::sample(pid).ok());
    let gen_cpu_steady_start = sys::self_cpu();
    eprintln!(
        "bff-load: {connected_at_start} connected after {:.1}s; steady window of {}s",
        connect_phase.as_secs_f64(),
        cli.duration
    );
    // With nobody connected there is nothing to measure: report at once.
    let steady_end_at = if connected_at_start == 0 {
        steady_started
    } else {
        steady_started + Duration::from_secs(cli.duration)
    };
    let mut next_progress = Instant::now() + Duration::from_secs(5);
    while Instant::now() < steady_end_at {
        sleep_until(next_progress.min(steady_end_at)).await;
        if Instant::now() >= next_progress {
            next_progress += Duration::from_secs(5);
            eprintln!(
                "bff-load: steady {:.0}s: {} connected, {} ended early",
                steady_started.elapsed().as_secs_f64(),
                shared.connected.load(Ordering::Relaxed),
                shared.ended_early.load(Ordering::Relaxed)
            );
        }
    }
    let steady_end = now_ns();
    let window = steady_started.elapsed();
    let daemon_end = cli.daemon_pid.and_then(|pid| sys::sample(pid).ok());
    let gen_cpu_steady_end = sys::self_cpu();
    let gen_rss_kb = sys::sample(std::process::id()).map_or(0, |s| s.rss_kb);

    // Teardown.
    shared.stop.cancel();
    eprintln!("bff-load: closing clients");
    let handles = spawner.await.unwrap_or_default();
    let not_started = cli.clients - handles.len();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut clients: Vec<Client> = Vec::with_capacity(handles.len());
    let mut unfinished = 0;
    for mut handle in handles {
        match timeout_at(deadline, &mut handle).await {
            Ok(Ok(c)) => clients.push(c),
            Ok(Err(_)) => unfinished += 1,
            Err(_) => {
                handle.abort();
                unfinished += 1;
            }
        }
    }
    if let Some(w) = watcher {
        let _ = w.await;
    }
    let gen_cpu_end = sys::self_cpu();
    // VmHWM trails VmRSS a little (per-thread counters are folded in lazily).
    let gen_maxrss_kb = sys::sample(std::process::id())
        .map_or(0, |s| s.hwm_kb.max(s.rss_kb))
        .max(gen_rss_kb);
    let daemon_after_close = match cli.daemon_pid {
        Some(pid) => {
            sleep(Duration::from_secs(1)).await;
            sys::sample(pid).ok()
        }
        None => None,
    };

    let daemon = match (daemon_before, daemon_start, daemon_end) {
        (Some(before), Some(start), Some(end)) => Some(DaemonSamples {
            pid: cli.daemon_pid.unwrap_or(0),
            before,
            start,
            end,
            after_close: daemon_after_close,
        }),
        _ => {
            if cli.daemon_pid.is_some() {
                eprintln!(
                    "bff-load: warning: the daemon could not be sampled; skipping its figures"
                );
            }
            None
        }
    };
    let stalls = shared.stalled.lock().expect("stall list poisoned").clone();
    let config = json!({
        "url": cli.url,
        "server": target.addr.to_string(),
        "clients": cli.clients,
        "stalled": cli.stall,
        "stall_rcvbuf": cli.stall_rcvbuf,
        "duration_s": cli.duration,
        "connect_rate": cli.connect_rate,
        "source_ips": sources,
        "threads": cli.threads,
        "connect_timeout_s": cli.connect_timeout,
        "connect_phase_cap_s": phase_cap.as_secs(),
        "nofile": nofile,
        "daemon_pid": cli.daemon_pid,
    });
    let run = Run {
        config,
        clients,
        not_started,
        unfinished,
        connected_at_start,
        connect_phase_s: connect_phase.as_secs_f64(),
        window_s: window.as_secs_f64(),
        steady_start,
        steady_end,
        daemon,
        gen_cpu: [
            gen_cpu_start,
            gen_cpu_steady_start,
            gen_cpu_steady_end,
            gen_cpu_end,
        ],
        gen_maxrss_kb,
        gen_rss_kb,
        stalls,
    };
    let (table, json) = report::build(&run);
    print!("{table}");
    if let Some(path) = &cli.json {
        let pretty = serde_json::to_string_pretty(&json).expect("JSON serializes");
        if let Err(err) = std::fs::write(path, pretty + "\n") {
            eprintln!("bff-load: cannot write {}: {err}", path.display());
        }
    }
    println!("JSON {json}");
    if run.clients.iter().any(|c| c.outcome.is_ok()) {
        ExitCode::SUCCESS
    } else {
        eprintln!("bff-load: no client could connect");
        ExitCode::FAILURE
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
