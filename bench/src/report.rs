//! Turns what the clients recorded into the figures: a table for people and the same as JSON.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::client::{Client, End, NO_STALENESS, Session, StallWatch};
use crate::sys::{ProcSample, tcp_state_name};

/// A tick counts as finished this long before the end of the window; later ones may have
/// reached only some clients when they were stopped.
const SETTLE_NS: i64 = 500_000_000;

/// Daemon samples: before connecting, at the start and end of the steady window, and a second
/// after the clients closed.
pub struct DaemonSamples {
    pub pid: u32,
    pub before: ProcSample,
    pub start: ProcSample,
    pub end: ProcSample,
    pub after_close: Option<ProcSample>,
}

/// Everything a run produced.
pub struct Run {
    pub config: Value,
    pub clients: Vec<Client>,
    /// Clients never started because the connect phase was cut off.
    pub not_started: usize,
    /// Client tasks that did not finish in time at teardown (their data is lost).
    pub unfinished: usize,
    pub connected_at_start: usize,
    pub connect_phase_s: f64,
    pub window_s: f64,
    pub steady_start: i64,
    pub steady_end: i64,
    pub daemon: Option<DaemonSamples>,
    /// Our CPU seconds at: start, steady start, steady end, after teardown.
    pub gen_cpu: [f64; 4],
    pub gen_maxrss_kb: u64,
    /// Our RSS at the end of the steady window, KiB.
    pub gen_rss_kb: u64,
    pub stalls: Vec<StallWatch>,
}

/// p50 / p99 / max of a sample.
struct Dist {
    n: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

impl Dist {
    fn of(mut v: Vec<f64>) -> Option<Dist> {
        if v.is_empty() {
            return None;
        }
        v.sort_unstable_by(f64::total_cmp);
        // Nearest rank.
        let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Some(Dist {
            n: v.len(),
            p50: rank(0.50),
            p99: rank(0.99),
            max: v[v.len() - 1],
        })
    }
}

fn dist_json(d: &Option<Dist>) -> Value {
    match d {
        Some(d) => json!({"n": d.n, "p50": r3(d.p50), "p99": r3(d.p99), "max": r3(d.max)}),
        None => Value::Null,
    }
}

fn dist_line(out: &mut String, label: &str, d: &Option<Dist>) {
    match d {
        Some(d) => writeln!(
            out,
            "  {label:<30} p50 {:>9.2}   p99 {:>9.2}   max {:>9.2}   (n={})",
            d.p50, d.p99, d.max, d.n
        ),
        None => writeln!(out, "  {label:<30} (no data)"),
    }
    .expect("writing to a String");
}

fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

/// Counts of each distinct message, most frequent first.
fn tally<'a>(items: impl Iterator<Item = String> + 'a) -> Vec<(String, usize)> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for item in items {
        *counts.entry(item).or_default() += 1;
    }
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    counts
}

fn tally_json(t: &[(String, usize)], limit: usize) -> Value {
    t.iter()
        .take(limit)
        .map(|(what, n)| json!({"count": n, "what": what}))
        .collect()
}

fn end_reason(end: &End) -> String {
    match end {
        End::Stopped => "stopped by bff-load".into(),
        End::ServerClose { code, reason, .. } => match code {
            Some(c) => format!("close {c} {reason}").trim_end().to_string(),
            None => "close (no code)".into(),
        },
        End::Lost { why, .. } => why.clone(),
    }
}

/// Builds the human table and the JSON report.
pub fn build(run: &Run) -> (String, Value) {
    let mut out = String::new();
    let w = &mut out;
    let cfg = &run.config;

    // ---- Connect -------------------------------------------------------------------------
    let sessions: Vec<(&Client, &Session)> = run
        .clients
        .iter()
        .filter_map(|c| c.outcome.as_ref().ok().map(|s| (c, s)))
        .collect();
    let errors = tally(
        run.clients
            .iter()
            .filter_map(|c| c.outcome.as_ref().err().cloned()),
    );
    let failed: usize = errors.iter().map(|(_, n)| n).sum();
    let tcp = Dist::of(sessions.iter().map(|(_, s)| s.tcp_ms).collect());
    let welcome = Dist::of(sessions.iter().map(|(_, s)| s.welcome_ms).collect());
    let upgrade = Dist::of(sessions.iter().map(|(_, s)| s.upgrade_ms).collect());
    let not_welcome_first = sessions.iter().filter(|(_, s)| !s.welcome_first).count();
    let extra_welcomes: u64 = sessions
        .iter()
        .map(|(_, s)| u64::from(s.extra_welcomes))
        .sum();
    let other_text: u64 = sessions.iter().map(|(_, s)| u64::from(s.other_text)).sum();
    let kernel: u64 = sessions.iter().map(|(_, s)| s.kernel_ts).sum();
    let fallback: u64 = sessions.iter().map(|(_, s)| s.fallback_ts).sum();
    let clock = match (kernel, fallback) {
        (0, 0) => "none (no packets received)",
        (_, 0) => "kernel SCM_TIMESTAMPNS (CLOCK_REALTIME)",
        (0, _) => "CLOCK_REALTIME at message time (no kernel timestamps)",
        _ => "mixed: kernel SCM_TIMESTAMPNS, some CLOCK_REALTIME at message time",
    };

    // ---- Steady window: per-tick fan-out spread ------------------------------------------
    let normal: Vec<&Session> = sessions
        .iter()
        .filter(|(c, _)| !c.stalled)
        .map(|(_, s)| *s)
        .collect();
    // Every normal client subscribed at or before this seq, so later ones reach all of them.
    let last_welcome = normal.iter().map(|s| s.welcome_seq).max().unwrap_or(0);
    let mut first_seen: HashMap<u64, i64> = HashMap::new();
    let mut ticks: BTreeMap<u64, (i64, i64, usize)> = BTreeMap::new();
    for s in &normal {
        for r in &s.rx {
            let seq = u64::from(r.seq);
            let first = first_seen.entry(seq).or_insert(r.at);
            *first = (*first).min(r.at);
            if seq > last_welcome {
                let t = ticks.entry(seq).or_insert((i64::MAX, i64::MIN, 0));
                t.0 = t.0.min(r.at);
                t.1 = t.1.max(r.at);
                t.2 += 1;
            }
        }
    }
    // A client is expected to get every seq up to the end if we stopped it, else up to its last.
    let mut through: Vec<u64> = normal
        .iter()
        .map(|s| match s.end {
            End::Stopped => u64::MAX,
            _ => {
                s.rx.iter()
                    .map(|r| u64::from(r.seq))
                    .max()
                    .unwrap_or(s.welcome_seq)
            }
        })
        .collect();
    through.sort_unstable();
    let expected = |seq: u64| through.len() - through.partition_point(|&t| t < seq);
    let settled = |at: i64| at < run.steady_end - SETTLE_NS;
    let mut spreads = Vec::new();
    let mut worst: Vec<(u64, f64)> = Vec::new();
    let mut incomplete = Vec::new();
    for (&seq, &(min, max, count)) in &ticks {
        let want = expected(seq);
        if count == want && want > 0 {
            spreads.push(ms(max - min));
            worst.push((seq, ms(max - min)));
        } else if settled(min) {
            incomplete.push((seq, count, want));
        }
    }
    worst.sort_by(|a, b| b.1.total_cmp(&a.1));
    worst.truncate(3);
    let spread = Dist::of(spreads);
    let last_settled_seq = first_seen
        .iter()
        .filter(|(_, at)| settled(**at))
        .map(|(seq, _)| *seq)
        .max()
        .unwrap_or(0);

    // ---- Staleness ------------------------------------------------------------------------
    let stale = Dist::of(
        normal
            .iter()
            .flat_map(|s| s.rx.iter())
            .filter(|r| u64::from(r.seq) > last_welcome && r.stale_us != NO_STALENESS)
            .map(|r| r.stale_us as f64 / 1000.0)
            .collect(),
    );
    let unparsed_ts = normal
        .iter()
        .flat_map(|s| s.rx.iter())
        .filter(|r| r.stale_us == NO_STALENESS)
        .count();

    // ---- Missed ticks and intervals -------------------------------------------------------
    let (mut missed_total, mut missed_max, mut gappy, mut dups, mut trailing_total) =
        (0u64, 0u64, 0usize, 0u64, 0u64);
    let mut max_interval: Option<(f64, u64)> = None;
    for s in &normal {
        let mut prev = s.welcome_seq;
        let mut missed = 0;
        for r in &s.rx {
            let seq = u64::from(r.seq);
            if seq <= prev {
                dups += 1;
                continue;
            }
            missed += seq - prev - 1;
            prev = seq;
        }
        for pair in s.rx.windows(2) {
            let gap = ms(pair[1].at - pair[0].at);
            if max_interval.is_none_or(|(m, _)| gap > m) {
                max_interval = Some((gap, u64::from(pair[1].seq)));
            }
        }
        if matches!(s.end, End::Stopped) && last_settled_seq > prev {
            let trailing = last_settled_seq - prev;
            trailing_total += trailing;
            missed += trailing;
        }
        missed_total += missed;
        missed_max = missed_max.max(missed);
        if missed > 0 {
            gappy += 1;
        }
    }
    let ended_early: Vec<&Session> = normal
        .iter()
        .filter(|s| !matches!(s.end, End::Stopped))
        .copied()
        .collect();
    let early_reasons = tally(ended_early.iter().map(|s| end_reason(&s.end)));
    let first_early_s = ended_early
        .iter()
        .map(|s| match s.end {
            End::ServerClose { at, .. } | End::Lost { at, .. } => at,
            End::Stopped => i64::MAX,
        })
        .min()
        .map(|at| (at - run.steady_start) as f64 / 1e9);

    // ---- Stalled clients -----------------------------------------------------------------
    let stalled: Vec<(&Client, &Session)> = sessions
        .iter()
        .filter(|(c, _)| c.stalled)
        .copied()
        .collect();
    let watch_by_index: HashMap<usize, &StallWatch> =
        run.stalls.iter().map(|w| (w.index, w)).collect();
    let mut stall_rows = Vec::new();
    let (mut cut_seen, mut drained_closed, mut still_open) = (0, 0, 0);
    let mut cut_after = Vec::new();
    let mut cut_after_stuck = Vec::new();
    for (c, s) in &stalled {
        let watch = watch_by_index.get(&c.index);
        let drain = s.drain.as_ref();
        let cut_at = watch.and_then(|w| w.cut_at);
        if cut_at.is_some() {
            cut_seen += 1;
        }
        if drain.is_some_and(|d| d.server_closed) {
            drained_closed += 1;
        } else {
            still_open += 1;
        }
        let last = drain.and_then(|d| d.last_seq).unwrap_or(s.welcome_seq);
        // The first packet that could not reach the client: when the others got it.
        // Only meaningful if that was before the cut: otherwise nothing was held back.
        let stuck_at = first_seen
            .get(&(last + 1))
            .copied()
            .filter(|&at| cut_at.is_none_or(|cut| at < cut));
        let cut_s = cut_at.map(|at| (at - s.welcome_at) as f64 / 1e9);
        if let Some(x) = cut_s {
            cut_after.push(x);
        }
        if let (Some(cut), Some(stuck)) = (cut_at, stuck_at) {
            cut_after_stuck.push((cut - stuck) as f64 / 1e9);
        }
        stall_rows.push(json!({
            "client": c.index,
            "welcome_seq": s.welcome_seq,
            "packets_buffered": drain.map_or(0, |d| d.frames),
            "bytes_buffered": drain.map_or(0, |d| d.bytes),
            "last_seq": drain.and_then(|d| d.last_seq),
            "first_undelivered_after_s": stuck_at.map(|at| r3((at - s.welcome_at) as f64 / 1e9)),
            "server_cut_after_s": cut_s.map(r3),
            "server_state_at_cut": watch.filter(|w| w.cut_at.is_some()).map(|w| if w.cut_state == 0 { "gone" } else { tcp_state_name(w.cut_state) }),
            "server_max_send_queue": watch.map(|w| w.max_send_queue),
            "watched": watch.is_some_and(|w| w.seen),
            "read_at_end": drain.map(|d| d.outcome.clone()),
        }));
    }
    let cut_after = Dist::of(cut_after);
    let max_buffered = stalled
        .iter()
        .filter_map(|(_, s)| s.drain.as_ref())
        .map(|d| (d.frames, d.bytes))
        .max()
        .unwrap_or((0, 0));
    let max_send_queue = run.stalls.iter().map(|w| w.max_send_queue).max();
    let cut_after_stuck = Dist::of(cut_after_stuck);
    let drain_outcomes = tally(
        stalled
            .iter()
            .filter_map(|(_, s)| s.drain.as_ref().map(|d| d.outcome.clone())),
    );

    // ---- CPU and memory -------------------------------------------------------------------
    let window = run.window_s.max(1e-9);
    let gen_window = run.gen_cpu[2] - run.gen_cpu[1];
    let gen_json = json!({
        "cpu_s_window": r3(gen_window),
        "cpu_pct_window": r3(gen_window / window * 100.0),
        "cpu_s_connect_phase": r3(run.gen_cpu[1] - run.gen_cpu[0]),
        "cpu_s_total": r3(run.gen_cpu[3]),
        "max_rss_kb": run.gen_maxrss_kb,
        "rss_kb_steady_end": run.gen_rss_kb,
    });
    let daemon_json = run.daemon.as_ref().map(|d| {
        let cpu = d.end.cpu_s - d.start.cpu_s;
        // VmHWM trails VmRSS a little, so take the larger of all samples.
        let peak = [d.start, d.end]
            .iter()
            .chain(d.after_close.iter())
            .map(|s| s.hwm_kb.max(s.rss_kb))
            .max()
            .unwrap_or(0);
        let per_conn = if run.connected_at_start > 0 {
            (d.start.rss_kb as f64 - d.before.rss_kb as f64) / run.connected_at_start as f64
        } else {
            0.0
        };
        json!({
            "pid": d.pid,
            "cpu_s_window": r3(cpu),
            "cpu_pct_window": r3(cpu / window * 100.0),
            "kernel_pct_window": r3((d.end.sys_s - d.start.sys_s) / window * 100.0),
            "cpu_s_connect_phase": r3(d.start.cpu_s - d.before.cpu_s),
            "rss_kb_before": d.before.rss_kb,
            "rss_kb_connected": d.start.rss_kb,
            "rss_kb_end": d.end.rss_kb,
            "rss_kb_after_close": d.after_close.map(|s| s.rss_kb),
            "peak_rss_kb": peak,
            "kb_per_connection": r3(per_conn),
            "threads": d.end.threads,
        })
    });

    // ---- JSON -----------------------------------------------------------------------------
    let report = json!({
        "config": cfg,
        "clock": clock,
        "timestamps": {"kernel": kernel, "fallback": fallback},
        "connect": {
            "attempted": run.clients.len() + run.unfinished,
            "not_started": run.not_started,
            "connected": sessions.len(),
            "connected_at_window_start": run.connected_at_start,
            "failed": failed,
            "errors": tally_json(&errors, 5),
            "phase_s": r3(run.connect_phase_s),
            "tcp_connect_ms": dist_json(&tcp),
            "welcome_ms": dist_json(&welcome),
            "upgrade_to_welcome_ms": dist_json(&upgrade),
            "welcome_always_first": not_welcome_first == 0,
            "first_frame_not_welcome": not_welcome_first,
            "extra_welcomes": extra_welcomes,
            "other_text_frames": other_text,
        },
        "steady": {
            "window_s": r3(run.window_s),
            "normal_clients": normal.len(),
            "after_seq": last_welcome,
            "ticks_counted": spread.as_ref().map_or(0, |d| d.n),
            "ticks_incomplete": incomplete.len(),
            "incomplete": incomplete.iter().take(5).map(|(seq, got, want)| json!({"seq": seq, "got": got, "expected": want})).collect::<Vec<_>>(),
            "fanout_spread_ms": dist_json(&spread),
            "worst_ticks": worst.iter().map(|(seq, ms)| json!({"seq": seq, "spread_ms": r3(*ms)})).collect::<Vec<_>>(),
            "staleness_ms": dist_json(&stale),
            "unparsed_timestamps": unparsed_ts,
        },
        "missed": {
            "total": missed_total,
            "max_per_client": missed_max,
            "clients_with_gaps": gappy,
            "trailing": trailing_total,
            "duplicates": dups,
            "max_interval_ms": max_interval.map(|(m, _)| r3(m)),
            "max_interval_at_seq": max_interval.map(|(_, s)| s),
            "ended_early": ended_early.len(),
            "ended_early_first_s": first_early_s.map(r3),
            "ended_early_reasons": tally_json(&early_reasons, 5),
        },
        "stalled": if stalled.is_empty() { Value::Null } else { json!({
            "connected": stalled.len(),
            "cut_by_server_seen": cut_seen,
            "closed_when_read_at_end": drained_closed,
            "still_open_at_end": still_open,
            "cut_after_welcome_s": dist_json(&cut_after),
            "cut_after_first_undelivered_s": dist_json(&cut_after_stuck),
            "read_at_end": tally_json(&drain_outcomes, 5),
            "max_packets_buffered": max_buffered.0,
            "max_bytes_buffered": max_buffered.1,
            "server_max_send_queue": max_send_queue,
            "clients": stall_rows.iter().take(50).cloned().collect::<Vec<_>>(),
        })},
        "daemon": daemon_json.clone().unwrap_or(Value::Null),
        "load_generator": gen_json,
        "unfinished_tasks": run.unfinished,
    });

    // ---- Table ----------------------------------------------------------------------------
    let line = "-".repeat(96);
    let _ = writeln!(w, "{line}");
    let _ = writeln!(
        w,
        "bff-load  {}  clients {}  stalled {}  rate {}  sources {}  threads {}",
        cfg["url"].as_str().unwrap_or(""),
        cfg["clients"],
        cfg["stalled"],
        if cfg["connect_rate"] == 0 {
            "storm".to_string()
        } else {
            format!("{}/s", cfg["connect_rate"])
        },
        cfg["source_ips"],
        cfg["threads"],
    );
    let _ = writeln!(
        w,
        "receive clock: {clock} ({kernel} kernel, {fallback} fallback)"
    );
    let _ = writeln!(w, "{line}");
    let _ = writeln!(
        w,
        "CONNECT   connected {} / {}   failed {}   not started {}   phase {:.2}s",
        sessions.len(),
        cfg["clients"],
        failed,
        run.not_started,
        run.connect_phase_s
    );
    dist_line(w, "TCP connect (ms)", &tcp);
    dist_line(w, "connect → WELCOME (ms)", &welcome);
    dist_line(w, "upgrade request → WELCOME (ms)", &upgrade);
    let _ = writeln!(
        w,
        "  WELCOME always first: {}   (first frame not WELCOME: {not_welcome_first}, later WELCOMEs: {extra_welcomes}, other text: {other_text})",
        if not_welcome_first == 0 { "yes" } else { "NO" }
    );
    for (what, n) in errors.iter().take(5) {
        let _ = writeln!(w, "  error ×{n}: {what}");
    }
    let _ = writeln!(w, "{line}");
    let _ = writeln!(
        w,
        "STEADY    window {:.1}s   normal clients {}   ticks after seq {last_welcome}: {} complete, {} incomplete",
        run.window_s,
        normal.len(),
        spread.as_ref().map_or(0, |d| d.n),
        incomplete.len()
    );
    dist_line(w, "fan-out spread (ms)", &spread);
    if !worst.is_empty() {
        let list: Vec<String> = worst
            .iter()
            .map(|(seq, ms)| format!("seq {seq}: {ms:.2}"))
            .collect();
        let _ = writeln!(w, "  widest ticks: {}", list.join(", "));
    }
    for (seq, got, want) in incomplete.iter().take(3) {
        let _ = writeln!(w, "  incomplete: seq {seq} reached {got} of {want}");
    }
    dist_line(w, "staleness (ms)", &stale);
    if unparsed_ts > 0 {
        let _ = writeln!(w, "  timestamps that did not parse: {unparsed_ts}");
    }
    let _ = writeln!(
        w,
        "MISSED    total {missed_total} (of which at the end {trailing_total})   max/client {missed_max}   clients with gaps {gappy}   duplicates {dups}"
    );
    let _ = writeln!(
        w,
        "  largest interval between packets: {}",
        max_interval.map_or("n/a".into(), |(m, seq)| format!(
            "{m:.1} ms (before seq {seq})"
        ))
    );
    let _ = writeln!(
        w,
        "  normal clients ended before the run did: {}{}",
        ended_early.len(),
        first_early_s.map_or(String::new(), |s| format!(
            " (first {s:.1}s into the window)"
        ))
    );
    for (what, n) in early_reasons.iter().take(5) {
        let _ = writeln!(w, "    ×{n}: {what}");
    }
    if !stalled.is_empty() {
        let _ = writeln!(w, "{line}");
        let _ = writeln!(
            w,
            "STALLED   {} connected   cut by the server (sock_diag) {cut_seen}   closed when read at the end {drained_closed}   still open {still_open}",
            stalled.len()
        );
        dist_line(w, "cut after WELCOME (s)", &cut_after);
        dist_line(w, "cut after first undelivered (s)", &cut_after_stuck);
        let _ = writeln!(
            w,
            "  read at the end: up to {} packets / {} bytes still on their way; server send queue peak {} bytes",
            max_buffered.0,
            max_buffered.1,
            max_send_queue.map_or("n/a".into(), |q| q.to_string())
        );
        for (what, n) in drain_outcomes.iter().take(5) {
            let _ = writeln!(w, "  read at end ×{n}: {what}");
        }
    }
    let _ = writeln!(w, "{line}");
    if let (Some(d), Some(j)) = (&run.daemon, &daemon_json) {
        let _ = writeln!(
            w,
            "DAEMON    pid {}   CPU {:.2}s over {:.1}s = {:.1}% of a core (kernel {:.1}%)   (connect phase {:.2}s)   threads {}",
            d.pid,
            j["cpu_s_window"].as_f64().unwrap_or(0.0),
            run.window_s,
            j["cpu_pct_window"].as_f64().unwrap_or(0.0),
            j["kernel_pct_window"].as_f64().unwrap_or(0.0),
            j["cpu_s_connect_phase"].as_f64().unwrap_or(0.0),
            d.end.threads,
        );
        let _ = writeln!(
            w,
            "  RSS before {} KB   connected {} KB   end {} KB   peak {} KB   after close {}   → {:.1} KB per connection",
            d.before.rss_kb,
            d.start.rss_kb,
            d.end.rss_kb,
            j["peak_rss_kb"],
            d.after_close
                .map_or("n/a".into(), |s| format!("{} KB", s.rss_kb)),
            j["kb_per_connection"].as_f64().unwrap_or(0.0),
        );
    } else {
        let _ = writeln!(w, "DAEMON    (no --daemon-pid)");
    }
    let _ = writeln!(
        w,
        "LOADGEN   CPU {:.2}s over the window = {:.1}% of a core   (connect phase {:.2}s, total {:.2}s)   RSS {} KB, peak {} KB",
        gen_window,
        gen_window / window * 100.0,
        run.gen_cpu[1] - run.gen_cpu[0],
        run.gen_cpu[3],
        run.gen_rss_kb,
        run.gen_maxrss_kb
    );
    if run.unfinished > 0 {
        let _ = writeln!(
            w,
            "  {} client tasks did not finish at teardown; their data is missing",
            run.unfinished
        );
    }
    let _ = writeln!(w, "{line}");
    (out, report)
}
