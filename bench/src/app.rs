//! The run: starts the runtime, sets up what the clients share, then goes through the connect
//! phase ([`crate::connect`]), the steady window (with the [`crate::publisher`] publishing on
//! Redis, if asked) and the teardown, sampling the daemon and this process at each step, and
//! hands what was recorded to [`crate::report`].
//!
//! The options come from [`crate::cli`]; the clients themselves are [`crate::client`].

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use serde_json::json;
use tokio::time::{Instant, sleep, sleep_until, timeout_at};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use crate::cli::{self, Cli};
use crate::client::reference::Reference;
use crate::client::{self, Client, Shared};
use crate::connect;
use crate::net::now_ns;
use crate::publisher;
use crate::report::{self, DaemonSamples, FormRun, Run};
use crate::sys;
use crate::verify::Verify;

/// The publisher stops this long before the steady window ends, so that its last tick has time
/// to be pushed and to reach every client before they are stopped.
const PUBLISH_MARGIN: Duration = Duration::from_secs(1);

/// Parses the command line, raises the open-file limit and runs on a runtime of `--threads`
/// workers; the exit code says whether any client connected (2 for a bad command line).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(why) = cli::check(&cli) {
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

/// One run, from resolving `--url` to the report; the exit code as [`main`] describes it.
async fn run(cli: Cli, nofile: u64) -> ExitCode {
    let target = match cli::target(&cli.url).await {
        Ok(t) => t,
        Err(why) => {
            eprintln!("bff-load: {why}");
            return ExitCode::from(2);
        }
    };
    // Redis is checked before any client connects: a publisher that cannot publish would make
    // a run without its figures.
    let redis = match &cli.redis {
        Some(addr) if cli.publish_hz > 0 => {
            let addr = match cli::redis(addr).await {
                Ok(a) => a,
                Err(why) => {
                    eprintln!("bff-load: {why}");
                    return ExitCode::from(2);
                }
            };
            match publisher::Conn::open(addr).await {
                Ok(conn) => Some((addr, conn)),
                Err(why) => {
                    eprintln!("bff-load: --redis: {why}");
                    return ExitCode::FAILURE;
                }
            }
        }
        _ => None,
    };
    let sources = connect::sources(cli.source_ips, target.addr.ip(), cli.clients);
    let connect_timeout = Duration::from_secs(cli.connect_timeout);
    let phase_cap = cli.phase_cap();
    // The reference connection opens first, so it has every packet the verifiers get.
    let verifiers = cli.verifiers();
    let asked = cli.form_asked() || verifiers > 0;
    let verify = asked.then(|| Arc::new(Verify::default()));
    let reference = match &verify {
        Some(verify) => {
            let opened = tokio::time::timeout(
                connect_timeout,
                Reference::open(&target.url, target.addr, verify.clone()),
            )
            .await
            .unwrap_or_else(|_| Err(format!("no WELCOME within {connect_timeout:?}")));
            match opened {
                Ok(reference) => Some(reference),
                Err(why) => {
                    eprintln!("bff-load: the reference connection: {why}");
                    return ExitCode::FAILURE;
                }
            }
        }
        None => None,
    };

    let shared = Arc::new(Shared {
        url: cli.stream_url(),
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
        prices: redis.is_some(),
        deflate: cli.deflate,
        verifiers: cli.stall..cli.stall + verifiers,
        verify: verify.clone(),
    });
    // The reference stops after the clients have, so it has every packet they got.
    let reference_stop = CancellationToken::new();
    let reference = reference.map(|r| tokio::spawn(r.follow(reference_stop.clone())));

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
    let connected = connect::phase(&shared, &cli, sources, run_started).await;
    let connect_phase = connected.phase;
    let connected_at_start = connected.connected;

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
    let redis_addr = redis.as_ref().map(|(addr, _)| *addr);
    let publishing = redis.and_then(|(addr, conn)| {
        let until = steady_end_at
            .checked_sub(PUBLISH_MARGIN)
            .unwrap_or(steady_started)
            .max(steady_started);
        (until > steady_started).then(|| {
            eprintln!(
                "bff-load: publishing {} ticks/s on {} at {addr} for {:.0}s",
                cli.publish_hz,
                publisher::CHANNEL,
                (until - steady_started).as_secs_f64()
            );
            tokio::spawn(publisher::run(conn, cli.publish_hz, until))
        })
    });
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
    let publishes = match publishing {
        Some(task) => match task.await {
            Ok(p) => Some(p),
            Err(err) => Some(publisher::Publishes {
                hz: cli.publish_hz,
                channel: publisher::CHANNEL.into(),
                sent: Vec::new(),
                error: Some(format!("the publisher task failed: {err}")),
            }),
        },
        // Asked for, but the window was too short (or nobody connected): nothing published.
        None if redis_addr.is_some() => Some(publisher::Publishes {
            hz: cli.publish_hz,
            channel: publisher::CHANNEL.into(),
            sent: Vec::new(),
            error: None,
        }),
        None => None,
    };
    let daemon_end = cli.daemon_pid.and_then(|pid| sys::sample(pid).ok());
    let gen_cpu_steady_end = sys::self_cpu();
    let gen_rss_kb = sys::sample(std::process::id()).map_or(0, |s| s.rss_kb);

    // Teardown.
    shared.stop.cancel();
    eprintln!("bff-load: closing clients");
    let handles = connected.spawner.await.unwrap_or_default();
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
    reference_stop.cancel();
    let reference_end = match reference {
        Some(task) => task
            .await
            .unwrap_or_else(|e| Some(format!("its task failed: {e}"))),
        None => None,
    };
    let form = verify.map(|verify| {
        let stamps = verify.stamps();
        for session in clients.iter_mut().filter_map(|c| c.outcome.as_mut().ok()) {
            client::backfill(session, &stamps);
        }
        FormRun {
            verifiers,
            tally: verify.finish(),
            reference_end,
        }
    });
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
    let mut config = json!({
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
    if let Some(addr) = redis_addr {
        config["redis"] = json!(addr.to_string());
        config["publish_hz"] = json!(cli.publish_hz);
    }
    if asked {
        config["deflate"] = json!(cli.deflate);
        config["delta"] = json!(cli.delta);
        config["format"] = json!(format!("{:?}", cli.format).to_lowercase());
        config["verify"] = json!(verifiers);
    }
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
        publishes,
        form,
    };
    let (table, json, decoding_failed) = report::build(&run);
    print!("{table}");
    if let Some(path) = &cli.json {
        let pretty = serde_json::to_string_pretty(&json).expect("JSON serializes");
        if let Err(err) = std::fs::write(path, pretty + "\n") {
            eprintln!("bff-load: cannot write {}: {err}", path.display());
        }
    }
    println!("JSON {json}");
    if !run.clients.iter().any(|c| c.outcome.is_ok()) {
        eprintln!("bff-load: no client could connect");
        return ExitCode::FAILURE;
    }
    if let Some(form) = &run.form {
        let tally = &form.tally;
        if decoding_failed {
            eprintln!(
                "bff-load: decoding failed: {} packets mismatched, {} did not decode \
                 (see FORM and VERIFY above)",
                tally.mismatched, tally.undecodable
            );
            return ExitCode::FAILURE;
        }
        if form.verifiers > 0 && tally.verified == 0 {
            eprintln!(
                "bff-load: --verify {}: no packet was verified",
                form.verifiers
            );
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
