//! The report of a run: what the clients and the samples recorded ([`Run`]), turned into figures
//! by [`figures`], then printed by [`text`] as a table for people and by [`json`] as the same
//! figures for scripts.

use serde_json::Value;

use crate::client::{Client, StallWatch};
use crate::publisher::Publishes;
use crate::sys::ProcSample;
use crate::verify::Tally;

mod figures;
mod json;
mod text;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod golden;

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
    /// What the publisher sent, when one ran (`--publish-hz`).
    pub publishes: Option<Publishes>,
    /// What the verification found, when a form or `--verify` was asked.
    pub form: Option<FormRun>,
}

/// The verification's side of a run that asked for a form (`--deflate`, `--delta`,
/// `--format msgpack`) or `--verify`.
pub struct FormRun {
    /// Clients that decoded every packet.
    pub verifiers: usize,
    pub tally: Tally,
    /// Why the reference connection ended before the run did, if it did.
    pub reference_end: Option<String>,
}

/// Builds the human table and the JSON report, and says whether decoding failed anywhere
/// (a packet mismatched, a delta did not apply, a frame did not inflate).
pub fn build(run: &Run) -> (String, Value, bool) {
    let figures = figures::compute(run);
    let failed = figures.form.as_ref().is_some_and(|f| f.failed());
    (text::render(&figures), json::render(&figures), failed)
}

/// Rounds to thousandths: the precision of every fraction in the JSON, and of the daemon's
/// figures in the table, which shows the JSON's numbers.
fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
