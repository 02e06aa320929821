//! The publisher's figures: from each PUBLISH to the first packet carrying its price at each
//! normal client, how many publishes never showed (coalesced into a later push), and how the
//! latency compares with the fan-out of the regular, polled ticks.
//!
//! Publish times are taken just before the write and receive times are the kernel's, both
//! CLOCK_REALTIME on the same host, so the difference is the whole path: Redis, the daemon's
//! merge, its wait for a push slot (`redis.max_push_hz`), and the fan-out.

use std::collections::{HashMap, HashSet};

use super::Dist;
use super::ticks::{self, Arrivals};
use crate::client::{End, Session};
use crate::publisher::Publishes;

/// What the publisher's ticks took to reach the clients.
pub struct Push {
    pub hz: u32,
    pub channel: String,
    pub published: usize,
    /// Publishes Redis handed to no subscriber: the daemon was not listening.
    pub no_subscriber: usize,
    /// Publishes whose price reached at least one client.
    pub appeared: usize,
    /// Publishes whose price reached no client: a later one overtook them before the daemon
    /// pushed (or they were lost).
    pub coalesced: usize,
    /// Normal clients held to the end of the run, which every publish that appeared should
    /// have reached.
    pub clients: usize,
    /// Publishes that reached every one of those clients.
    pub reached_all: usize,
    /// Publish → first packet with its price, over every (publish, client) pair, ms.
    pub latency_ms: Option<Dist>,
    /// Publish → the first client to get it, ms: the daemon's share before the fan-out.
    pub first_client_ms: Option<Dist>,
    /// First to last client, for the publishes that reached every client, ms.
    pub push_spread_ms: Option<Dist>,
    /// The fan-out spread of the complete ticks that carried no published price: the polls.
    pub poll_spread_ms: Option<Dist>,
    /// `latency_ms` p99 over `poll_spread_ms` p99.
    pub ratio: Option<f64>,
    /// Packets (polls and pushes) per normal client per second of the window.
    pub packets_per_s: f64,
    /// Why the publisher stopped early, if it did.
    pub error: Option<String>,
}

/// The push figures of `published` as the `normal` clients received them; `arrivals` are their
/// receives by seq ([`ticks::steady`]), and the window runs from `steady_start` to `steady_end`.
pub fn compute(
    published: &Publishes,
    normal: &[&Session],
    arrivals: &Arrivals,
    steady_start: i64,
    steady_end: i64,
    window_s: f64,
) -> Push {
    let sent = &published.sent;
    let index: HashMap<u32, usize> = sent.iter().enumerate().map(|(i, p)| (p.n, i)).collect();
    // Per publish: the first and last receive, and how many held clients got it.
    let mut first = vec![i64::MAX; sent.len()];
    let mut last = vec![i64::MIN; sent.len()];
    let mut reached = vec![0usize; sent.len()];
    let mut latencies = Vec::new();
    // Seqs of packets that carried a published price: the pushes (and a poll that came before
    // the tick it carried could be overridden).
    let mut priced_seqs = HashSet::new();
    let mut seen = vec![false; sent.len()];
    let mut held = 0;
    for s in normal {
        let stopped = matches!(s.end, End::Stopped);
        held += usize::from(stopped);
        seen.fill(false);
        for p in &s.priced {
            let Some(r) = s.rx.get(p.rx as usize) else {
                continue;
            };
            priced_seqs.insert(u64::from(r.seq));
            let Some(&i) = index.get(&p.n) else {
                continue;
            };
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            latencies.push(ms(r.at - sent[i].at));
            first[i] = first[i].min(r.at);
            last[i] = last[i].max(r.at);
            reached[i] += usize::from(stopped);
        }
    }
    let appeared: Vec<usize> = (0..sent.len()).filter(|&i| first[i] != i64::MAX).collect();
    let complete: Vec<usize> = appeared
        .iter()
        .copied()
        .filter(|&i| held > 0 && reached[i] == held)
        .collect();
    let polls = Arrivals {
        last_welcome: arrivals.last_welcome,
        first_seen: HashMap::new(),
        ticks: arrivals
            .ticks
            .iter()
            .filter(|(seq, _)| !priced_seqs.contains(*seq))
            .map(|(seq, span)| (*seq, *span))
            .collect(),
    };
    let (poll_spread_ms, _, _) = ticks::fan_out(&polls, normal, steady_end);
    let latency_ms = Dist::of(latencies);
    let ratio = match (&latency_ms, &poll_spread_ms) {
        (Some(l), Some(p)) if p.p99 > 0.0 => Some(l.p99 / p.p99),
        _ => None,
    };
    let in_window = normal
        .iter()
        .flat_map(|s| s.rx.iter())
        .filter(|r| (steady_start..steady_end).contains(&r.at))
        .count();
    Push {
        hz: published.hz,
        channel: published.channel.clone(),
        published: sent.len(),
        no_subscriber: sent.iter().filter(|p| p.receivers == 0).count(),
        appeared: appeared.len(),
        coalesced: sent.len() - appeared.len(),
        clients: held,
        reached_all: complete.len(),
        first_client_ms: Dist::of(
            appeared
                .iter()
                .map(|&i| ms(first[i] - sent[i].at))
                .collect(),
        ),
        push_spread_ms: Dist::of(complete.iter().map(|&i| ms(last[i] - first[i])).collect()),
        latency_ms,
        poll_spread_ms,
        ratio,
        packets_per_s: if normal.is_empty() {
            0.0
        } else {
            in_window as f64 / normal.len() as f64 / window_s.max(1e-9)
        },
        error: published.error.clone(),
    }
}

fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}
