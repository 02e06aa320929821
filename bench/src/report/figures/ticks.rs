//! The steady window's figures, from the normal clients' receive records: how far apart the
//! clients got each tick (the fan-out spread), how stale the packets were, which ticks each
//! client missed or got twice, the longest silence between two packets, and who ended early.
//! Stalled clients are left out: they stop reading on purpose.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use super::{Dist, Tally, tally};
use crate::client::{End, NO_STALENESS, Rx, Session};

/// A tick counts as finished this long before the end of the window; later ones may have
/// reached only some clients when they were stopped.
pub const SETTLE_NS: i64 = 500_000_000;

/// The fan-out and staleness of the ticks every normal client subscribed in time for.
pub struct Steady {
    pub window_s: f64,
    pub normal_clients: usize,
    /// Ticks after this seq are counted: every normal client had its WELCOME by then.
    pub after_seq: u64,
    /// Last minus first receive of each tick that reached every client expected to get it, ms.
    pub spread: Option<Dist>,
    /// The (up to) three widest of those ticks, widest first.
    pub worst: Vec<Tick>,
    /// Settled ticks that reached a different number of clients than expected, by seq.
    pub incomplete: Vec<Incomplete>,
    /// Receive time minus the packet's own timestamp, ms.
    pub staleness: Option<Dist>,
    /// Packets (any seq) whose timestamp did not parse, left out of `staleness`.
    pub unparsed_timestamps: usize,
}

/// One tick's fan-out spread.
#[derive(Debug, PartialEq)]
pub struct Tick {
    pub seq: u64,
    pub spread_ms: f64,
}

/// A tick that did not reach exactly the clients expected to get it: some lost it, or one got
/// it twice.
#[derive(Debug, PartialEq, Eq)]
pub struct Incomplete {
    pub seq: u64,
    pub got: usize,
    pub expected: usize,
}

/// Ticks the normal clients did not get, and how long they went without a packet.
pub struct Missed {
    /// Missed ticks over all clients, counting a stopped client's tail (`trailing`).
    pub total: u64,
    pub max_per_client: u64,
    pub clients_with_gaps: usize,
    /// Settled ticks that came after a stopped client's last packet.
    pub trailing: u64,
    /// Packets whose seq was not above the client's previous one.
    pub duplicates: u64,
    pub max_interval: Option<Interval>,
    /// Normal clients whose stream ended before we stopped them.
    pub ended_early: usize,
    /// The first of those ends, seconds after the window's start.
    pub ended_early_first_s: Option<f64>,
    pub ended_early_reasons: Tally,
}

/// The longest time one client went between two packets.
#[derive(Debug, PartialEq)]
pub struct Interval {
    pub ms: f64,
    /// The packet that ended the silence.
    pub before_seq: u64,
}

/// When the normal clients received each tick.
pub struct Arrivals {
    /// The highest WELCOME seq: every normal client subscribed at or before it, so each later
    /// tick should reach all of them.
    pub last_welcome: u64,
    /// The first receive of each seq by any normal client, ns.
    pub first_seen: HashMap<u64, i64>,
    /// Each tick after `last_welcome`: its first and last receive and how many receives.
    pub ticks: BTreeMap<u64, Span>,
}

/// The receives of one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub first: i64,
    pub last: i64,
    pub count: usize,
}

impl Arrivals {
    /// Collects the receive times of `normal` clients by seq.
    pub fn of(normal: &[&Session]) -> Arrivals {
        let last_welcome = normal.iter().map(|s| s.welcome_seq).max().unwrap_or(0);
        let mut first_seen: HashMap<u64, i64> = HashMap::new();
        let mut ticks: BTreeMap<u64, Span> = BTreeMap::new();
        for s in normal {
            for r in &s.rx {
                let seq = u64::from(r.seq);
                let first = first_seen.entry(seq).or_insert(r.at);
                *first = (*first).min(r.at);
                if seq > last_welcome {
                    let t = ticks.entry(seq).or_insert(Span {
                        first: i64::MAX,
                        last: i64::MIN,
                        count: 0,
                    });
                    t.first = t.first.min(r.at);
                    t.last = t.last.max(r.at);
                    t.count += 1;
                }
            }
        }
        Arrivals {
            last_welcome,
            first_seen,
            ticks,
        }
    }

    /// The highest seq some client received before the settle margin (0 if none): every
    /// client we stopped should have had it.
    pub fn last_settled_seq(&self, steady_end: i64) -> u64 {
        self.first_seen
            .iter()
            .filter(|(_, at)| settled(**at, steady_end))
            .map(|(seq, _)| *seq)
            .max()
            .unwrap_or(0)
    }
}

/// Whether something received at `at` was at least [`SETTLE_NS`] before the window's end.
fn settled(at: i64, steady_end: i64) -> bool {
    at < steady_end - SETTLE_NS
}

/// The last seq a client is expected to get: every one if we stopped it, else up to its last
/// packet (its WELCOME's seq if none came).
pub fn expected_through(s: &Session) -> u64 {
    match s.end {
        End::Stopped => u64::MAX,
        _ => {
            s.rx.iter()
                .map(|r| u64::from(r.seq))
                .max()
                .unwrap_or(s.welcome_seq)
        }
    }
}

/// The spread of each complete tick, the widest three, and the settled ticks that are not
/// complete; ticks first received within the settle margin that are not complete are left out.
pub fn fan_out(
    arrivals: &Arrivals,
    normal: &[&Session],
    steady_end: i64,
) -> (Option<Dist>, Vec<Tick>, Vec<Incomplete>) {
    let mut through: Vec<u64> = normal.iter().map(|s| expected_through(s)).collect();
    through.sort_unstable();
    let expected = |seq: u64| through.len() - through.partition_point(|&t| t < seq);
    let mut spreads = Vec::new();
    let mut worst = Vec::new();
    let mut incomplete = Vec::new();
    for (&seq, span) in &arrivals.ticks {
        let want = expected(seq);
        if span.count == want && want > 0 {
            let spread_ms = ms(span.last - span.first);
            spreads.push(spread_ms);
            worst.push(Tick { seq, spread_ms });
        } else if settled(span.first, steady_end) {
            incomplete.push(Incomplete {
                seq,
                got: span.count,
                expected: want,
            });
        }
    }
    worst.sort_by(|a, b| b.spread_ms.total_cmp(&a.spread_ms));
    worst.truncate(3);
    (Dist::of(spreads), worst, incomplete)
}

/// The fan-out and staleness figures of the `normal` clients, and their arrivals for the
/// figures that build on them.
pub fn steady(normal: &[&Session], window_s: f64, steady_end: i64) -> (Steady, Arrivals) {
    let arrivals = Arrivals::of(normal);
    let (spread, worst, incomplete) = fan_out(&arrivals, normal, steady_end);
    let packets = || normal.iter().flat_map(|s| s.rx.iter());
    let staleness = Dist::of(
        packets()
            .filter(|r| u64::from(r.seq) > arrivals.last_welcome && r.stale_us != NO_STALENESS)
            .map(|r| r.stale_us as f64 / 1000.0)
            .collect(),
    );
    let steady = Steady {
        window_s,
        normal_clients: normal.len(),
        after_seq: arrivals.last_welcome,
        spread,
        worst,
        incomplete,
        staleness,
        unparsed_timestamps: packets().filter(|r| r.stale_us == NO_STALENESS).count(),
    };
    (steady, arrivals)
}

/// One client's seqs in the order they arrived, walked from its WELCOME's.
#[derive(Debug, PartialEq, Eq)]
pub struct SeqWalk {
    /// The seqs skipped, as runs, in order: each never arrived before a higher one did.
    pub gaps: Vec<Range<u64>>,
    /// Packets whose seq was not above the highest before it (a repeat, or one out of order).
    pub duplicates: u64,
    /// The highest seq seen, the WELCOME's if no packet was higher.
    pub last: u64,
}

impl SeqWalk {
    /// Ticks skipped between the WELCOME and the last packet.
    pub fn missed(&self) -> u64 {
        self.gaps.iter().map(|g| g.end - g.start).sum()
    }
}

/// Walks the packets of a client whose WELCOME carried `welcome_seq`.
pub fn walk(welcome_seq: u64, rx: &[Rx]) -> SeqWalk {
    let mut walk = SeqWalk {
        gaps: Vec::new(),
        duplicates: 0,
        last: welcome_seq,
    };
    for r in rx {
        let seq = u64::from(r.seq);
        if seq <= walk.last {
            walk.duplicates += 1;
            continue;
        }
        if seq > walk.last + 1 {
            walk.gaps.push(walk.last + 1..seq);
        }
        walk.last = seq;
    }
    walk
}

/// The longest time between two consecutive packets of one client, over all `normal` clients;
/// the first such if several are as long.
pub fn max_interval(normal: &[&Session]) -> Option<Interval> {
    let mut max: Option<Interval> = None;
    for pair in normal.iter().flat_map(|s| s.rx.windows(2)) {
        let gap = ms(pair[1].at - pair[0].at);
        if max.as_ref().is_none_or(|m| gap > m.ms) {
            max = Some(Interval {
                ms: gap,
                before_seq: u64::from(pair[1].seq),
            });
        }
    }
    max
}

/// Missed ticks, duplicates and early ends of the `normal` clients. A client we stopped should
/// have had every tick up to `last_settled_seq`; one that ended early is only held to its last.
pub fn missed(normal: &[&Session], last_settled_seq: u64, steady_start: i64) -> Missed {
    let (mut total, mut max_per_client, mut clients_with_gaps) = (0, 0, 0);
    let (mut trailing, mut duplicates) = (0, 0);
    for s in normal {
        let walk = walk(s.welcome_seq, &s.rx);
        let mut missed = walk.missed();
        duplicates += walk.duplicates;
        if matches!(s.end, End::Stopped) && last_settled_seq > walk.last {
            trailing += last_settled_seq - walk.last;
            missed += last_settled_seq - walk.last;
        }
        total += missed;
        max_per_client = max_per_client.max(missed);
        if missed > 0 {
            clients_with_gaps += 1;
        }
    }
    let ended_early: Vec<&End> = normal
        .iter()
        .map(|s| &s.end)
        .filter(|end| !matches!(end, End::Stopped))
        .collect();
    let ended_early_first_s = ended_early
        .iter()
        .map(|end| match end {
            End::ServerClose { at, .. } | End::Lost { at, .. } => *at,
            End::Stopped => i64::MAX,
        })
        .min()
        .map(|at| (at - steady_start) as f64 / 1e9);
    Missed {
        total,
        max_per_client,
        clients_with_gaps,
        trailing,
        duplicates,
        max_interval: max_interval(normal),
        ended_early: ended_early.len(),
        ended_early_first_s,
        ended_early_reasons: tally(ended_early.iter().map(|end| end_reason(end))),
    }
}

/// Why a stream ended, in words.
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

fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}
