//! The figures of a run, computed from what the clients and the samples recorded and from
//! nothing else (no clock, no I/O), as plain data for [`super::text`] and [`super::json`] to
//! print. The connect, CPU and memory figures are computed here; the steady window's per-tick
//! figures in [`ticks`], the stalled clients' in [`stalls`], the publisher's in [`push`].

use std::collections::HashMap;

use serde_json::Value;

use super::Run;
use crate::client::{Client, Session};

mod form;
mod push;
mod stalls;
mod ticks;

#[cfg(test)]
mod tests;

pub use form::Form;
pub use push::Push;
pub use stalls::{StallRow, Stalls};
pub use ticks::{Missed, Steady};

/// Everything the report prints, in the order it prints it.
pub struct Figures {
    /// The command line, echoed as the JSON's `config` and in the table's header.
    pub config: Value,
    pub clock: Clock,
    pub connect: Connect,
    pub steady: Steady,
    pub missed: Missed,
    /// `None` without a publisher (`--publish-hz`).
    pub push: Option<Push>,
    /// `None` when no stalled client connected.
    pub stalls: Option<Stalls>,
    /// `None` unless a form (`--deflate`, `--delta`, `--format`) or `--verify` was asked.
    pub form: Option<Form>,
    /// `None` without `--daemon-pid`, or when the daemon could not be sampled.
    pub daemon: Option<DaemonFigures>,
    pub load_generator: LoadGen,
    /// Client tasks that did not finish at teardown, whose data is missing from every figure.
    pub unfinished: usize,
}

/// How the receive times were taken, counted over every connected client: the per-tick spread
/// only means something with kernel timestamps.
pub struct Clock {
    /// Messages stamped by the kernel (`SCM_TIMESTAMPNS`).
    pub kernel: u64,
    /// Messages stamped with the clock when we read them.
    pub fallback: u64,
}

impl Clock {
    /// What the receive times are, in words.
    pub fn label(&self) -> &'static str {
        match (self.kernel, self.fallback) {
            (0, 0) => "none (no packets received)",
            (_, 0) => "kernel SCM_TIMESTAMPNS (CLOCK_REALTIME)",
            (0, _) => "CLOCK_REALTIME at message time (no kernel timestamps)",
            _ => "mixed: kernel SCM_TIMESTAMPNS, some CLOCK_REALTIME at message time",
        }
    }
}

/// p50 / p99 / max of a sample: the shape of a latency without keeping every value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dist {
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Dist {
    /// Nearest-rank percentiles (the smallest value with at least that share of the sample at
    /// or below it, always one of the values); `None` for an empty sample.
    pub fn of(mut v: Vec<f64>) -> Option<Dist> {
        if v.is_empty() {
            return None;
        }
        v.sort_unstable_by(f64::total_cmp);
        let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Some(Dist {
            n: v.len(),
            p50: rank(0.50),
            p99: rank(0.99),
            max: v[v.len() - 1],
        })
    }
}

/// Distinct messages with how often each occurred, most frequent first, then alphabetical:
/// thousands of clients failing the same way make one line.
pub type Tally = Vec<(String, usize)>;

/// Counts each distinct message.
pub fn tally(items: impl Iterator<Item = String>) -> Tally {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for item in items {
        *counts.entry(item).or_default() += 1;
    }
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    counts
}

/// The connect phase: who connected, how fast, and whether the first frame was the WELCOME.
pub struct Connect {
    /// Clients started, including those whose task did not finish at teardown.
    pub attempted: usize,
    pub not_started: usize,
    pub connected: usize,
    pub connected_at_window_start: usize,
    pub failed: usize,
    pub errors: Tally,
    pub phase_s: f64,
    pub tcp_ms: Option<Dist>,
    pub welcome_ms: Option<Dist>,
    /// From the upgrade request: the daemon's share of `welcome_ms`.
    pub upgrade_to_welcome_ms: Option<Dist>,
    pub first_frame_not_welcome: usize,
    pub extra_welcomes: u64,
    pub other_text_frames: u64,
}

/// The daemon's CPU over the steady window and its memory at each sample: what serving the
/// clients cost it.
pub struct DaemonFigures {
    pub pid: u32,
    pub cpu_s_window: f64,
    /// CPU over the window as a share of one core, %.
    pub cpu_pct_window: f64,
    /// Kernel time alone, which over loopback includes the receiving side's TCP work, %.
    pub kernel_pct_window: f64,
    pub cpu_s_connect_phase: f64,
    pub rss_kb_before: u64,
    pub rss_kb_connected: u64,
    pub rss_kb_end: u64,
    pub rss_kb_after_close: Option<u64>,
    /// The largest VmHWM or VmRSS of the samples from the window's start on.
    pub peak_rss_kb: u64,
    /// RSS growth over the connect phase per client connected at the window's start.
    pub kb_per_connection: f64,
    pub threads: u64,
}

/// The load generator's own cost, to tell whether it, not the daemon, was the bottleneck.
pub struct LoadGen {
    pub cpu_s_window: f64,
    pub cpu_pct_window: f64,
    pub cpu_s_connect_phase: f64,
    pub cpu_s_total: f64,
    pub max_rss_kb: u64,
    pub rss_kb_steady_end: u64,
}

/// Computes every figure of `run`.
pub fn compute(run: &Run) -> Figures {
    let sessions: Vec<(&Client, &Session)> = run
        .clients
        .iter()
        .filter_map(|c| c.outcome.as_ref().ok().map(|s| (c, s)))
        .collect();
    let normal: Vec<&Session> = sessions
        .iter()
        .filter(|(c, _)| !c.stalled)
        .map(|(_, s)| *s)
        .collect();
    let stalled: Vec<(&Client, &Session)> = sessions
        .iter()
        .filter(|(c, _)| c.stalled)
        .copied()
        .collect();
    let (steady, arrivals) = ticks::steady(&normal, run.window_s, run.steady_end);
    let last_settled = arrivals.last_settled_seq(run.steady_end);
    Figures {
        config: run.config.clone(),
        clock: Clock {
            kernel: sessions.iter().map(|(_, s)| s.kernel_ts).sum(),
            fallback: sessions.iter().map(|(_, s)| s.fallback_ts).sum(),
        },
        connect: connect(run, &sessions),
        steady,
        missed: ticks::missed(&normal, last_settled, run.steady_start),
        push: run.publishes.as_ref().map(|p| {
            push::compute(
                p,
                &normal,
                &arrivals,
                run.steady_start,
                run.steady_end,
                run.window_s,
            )
        }),
        stalls: stalls::compute(&stalled, &run.stalls, &arrivals.first_seen),
        form: run.form.as_ref().map(|f| form::compute(f, &normal)),
        daemon: daemon(run),
        load_generator: load_generator(run),
        unfinished: run.unfinished,
    }
}

fn connect(run: &Run, sessions: &[(&Client, &Session)]) -> Connect {
    let errors = tally(
        run.clients
            .iter()
            .filter_map(|c| c.outcome.as_ref().err().cloned()),
    );
    let dist = |f: fn(&Session) -> f64| Dist::of(sessions.iter().map(|(_, s)| f(s)).collect());
    Connect {
        attempted: run.clients.len() + run.unfinished,
        not_started: run.not_started,
        connected: sessions.len(),
        connected_at_window_start: run.connected_at_start,
        failed: errors.iter().map(|(_, n)| n).sum(),
        errors,
        phase_s: run.connect_phase_s,
        tcp_ms: dist(|s| s.tcp_ms),
        welcome_ms: dist(|s| s.welcome_ms),
        upgrade_to_welcome_ms: dist(|s| s.upgrade_ms),
        first_frame_not_welcome: sessions.iter().filter(|(_, s)| !s.welcome_first).count(),
        extra_welcomes: sessions
            .iter()
            .map(|(_, s)| u64::from(s.extra_welcomes))
            .sum(),
        other_text_frames: sessions.iter().map(|(_, s)| u64::from(s.other_text)).sum(),
    }
}

/// The window's length as a divisor: a run where nobody connected has none.
fn window(run: &Run) -> f64 {
    run.window_s.max(1e-9)
}

fn daemon(run: &Run) -> Option<DaemonFigures> {
    let d = run.daemon.as_ref()?;
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
    Some(DaemonFigures {
        pid: d.pid,
        cpu_s_window: cpu,
        cpu_pct_window: cpu / window(run) * 100.0,
        kernel_pct_window: (d.end.sys_s - d.start.sys_s) / window(run) * 100.0,
        cpu_s_connect_phase: d.start.cpu_s - d.before.cpu_s,
        rss_kb_before: d.before.rss_kb,
        rss_kb_connected: d.start.rss_kb,
        rss_kb_end: d.end.rss_kb,
        rss_kb_after_close: d.after_close.map(|s| s.rss_kb),
        peak_rss_kb: peak,
        kb_per_connection: per_conn,
        threads: d.end.threads,
    })
}

fn load_generator(run: &Run) -> LoadGen {
    let cpu = run.gen_cpu[2] - run.gen_cpu[1];
    LoadGen {
        cpu_s_window: cpu,
        cpu_pct_window: cpu / window(run) * 100.0,
        cpu_s_connect_phase: run.gen_cpu[1] - run.gen_cpu[0],
        cpu_s_total: run.gen_cpu[3],
        max_rss_kb: run.gen_maxrss_kb,
        rss_kb_steady_end: run.gen_rss_kb,
    }
}
