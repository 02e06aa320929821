//! The figures on made-up receive times: each test writes down the few packets it needs and
//! checks exact values.

use super::ticks::{self, Arrivals, Incomplete, Interval, SETTLE_NS, SeqWalk, Span, Tick};
use super::{Dist, compute};
use crate::client::{End, Rx, Session};
use crate::report::fixtures::{T0, at_ms, busy_run, push_run, rx, session};

/// The packets `(seq, ms after T0)`.
fn packets(list: &[(u32, i64)]) -> Vec<Rx> {
    list.iter().map(|&(seq, ms)| rx(seq, ms)).collect()
}

fn lost_at(ms: i64) -> End {
    End::Lost {
        at: at_ms(ms),
        why: "EOF".into(),
    }
}

fn refs(sessions: &[Session]) -> Vec<&Session> {
    sessions.iter().collect()
}

#[test]
fn percentiles_are_nearest_rank() {
    let d = Dist::of((1..=100).rev().map(f64::from).collect());
    let want = Dist {
        n: 100,
        p50: 50.0,
        p99: 99.0,
        max: 100.0,
    };
    assert_eq!(d, Some(want));
    // Ranks round up: the 50th percentile of ten values is the 5th, the 99th is the 10th.
    let d = Dist::of((1..=10).map(|x| f64::from(x) / 4.0).collect()).unwrap();
    assert_eq!((d.n, d.p50, d.p99, d.max), (10, 1.25, 2.5, 2.5));
    // 0.99 × 160 = 158.4: the 159th value, not the 158th.
    let d = Dist::of((1..=160).map(f64::from).collect()).unwrap();
    assert_eq!((d.p50, d.p99, d.max), (80.0, 159.0, 160.0));
}

#[test]
fn one_value_is_every_percentile_and_none_is_no_distribution() {
    let one = Dist {
        n: 1,
        p50: 7.25,
        p99: 7.25,
        max: 7.25,
    };
    assert_eq!(Dist::of(vec![7.25]), Some(one));
    assert_eq!(Dist::of(Vec::new()), None);
}

#[test]
fn skipped_seqs_are_gaps_where_they_were_skipped() {
    let walk = ticks::walk(4, &packets(&[(5, 0), (6, 1_000), (8, 3_000), (11, 6_000)]));
    let want = SeqWalk {
        gaps: vec![7..8, 9..11],
        duplicates: 0,
        last: 11,
    };
    assert_eq!(walk, want);
    assert_eq!(walk.missed(), 3);
    // The seq after the WELCOME's is expected first.
    let walk = ticks::walk(2, &packets(&[(5, 0), (6, 1_000), (8, 3_000)]));
    let want = SeqWalk {
        gaps: vec![3..5, 7..8],
        duplicates: 0,
        last: 8,
    };
    assert_eq!(walk, want);
    assert_eq!(walk.missed(), 3);
}

#[test]
fn repeats_and_late_packets_are_duplicates() {
    // 6 twice, 7 after 8, and the WELCOME's own seq again.
    let seqs = [
        (4, 0),
        (5, 0),
        (6, 1_000),
        (6, 1_001),
        (8, 3_000),
        (7, 3_001),
        (11, 6_000),
    ];
    let walk = ticks::walk(4, &packets(&seqs));
    let want = SeqWalk {
        gaps: vec![7..8, 9..11],
        duplicates: 3,
        last: 11,
    };
    assert_eq!(walk, want);
}

#[test]
fn missed_ticks_count_a_stopped_clients_tail_but_not_an_early_ones() {
    let sessions = [
        // Stopped after 11 while 13 had settled: 7, 9, 10, then 12 and 13 at the end.
        session(
            4,
            packets(&[(5, 0), (6, 1_000), (8, 3_000), (11, 6_000)]),
            End::Stopped,
        ),
        // Lost after 6: held only to its last packet, nothing missed.
        session(4, packets(&[(5, 0), (6, 1_000)]), lost_at(2_500)),
        // Every seq to 13, with 9 twice.
        session(
            4,
            (5..=13).chain([9]).map(|seq| rx(seq, 0)).collect(),
            End::Stopped,
        ),
        // Closed by the server after 5.
        session(
            4,
            packets(&[(5, 0)]),
            End::ServerClose {
                at: at_ms(1_500),
                code: Some(1001),
                reason: String::new(),
            },
        ),
    ];
    let m = ticks::missed(&refs(&sessions), 13, T0);
    assert_eq!(m.total, 5);
    assert_eq!(m.trailing, 2);
    assert_eq!(m.max_per_client, 5);
    assert_eq!(m.clients_with_gaps, 1);
    assert_eq!(m.duplicates, 1);
    assert_eq!(m.ended_early, 2);
    assert_eq!(m.ended_early_first_s, Some(1.5));
    let reasons = vec![("EOF".to_string(), 1), ("close 1001".to_string(), 1)];
    assert_eq!(m.ended_early_reasons, reasons);
    // Nothing had settled after 11: no tail.
    let m = ticks::missed(&refs(&sessions[..1]), 11, T0);
    assert_eq!((m.total, m.trailing, m.ended_early), (3, 0, 0));
}

#[test]
fn a_ticks_spread_is_its_last_receive_minus_its_first() {
    // The window ends at 3 s, so ticks first received from 2.5 s on have not settled.
    let steady_end = at_ms(3_000);
    assert_eq!(steady_end - SETTLE_NS, at_ms(2_500));
    let sessions = [
        session(
            9,
            packets(&[(10, 1), (11, 1_001), (12, 2_600)]),
            End::Stopped,
        ),
        session(
            9,
            packets(&[(10, 4), (11, 1_002), (12, 2_601)]),
            End::Stopped,
        ),
        session(9, packets(&[(10, 2)]), End::Stopped),
    ];
    let normal = refs(&sessions);
    let arrivals = Arrivals::of(&normal);
    assert_eq!(arrivals.last_welcome, 9);
    let span = |first, last, count| Span {
        first: at_ms(first),
        last: at_ms(last),
        count,
    };
    assert_eq!(arrivals.ticks[&10], span(1, 4, 3));
    assert_eq!(arrivals.ticks[&11], span(1_001, 1_002, 2));
    assert_eq!(arrivals.last_settled_seq(steady_end), 11);
    let (spread, worst, incomplete) = ticks::fan_out(&arrivals, &normal, steady_end);
    // Seq 10 reached all three, from 1 ms to 4 ms.
    let want = Dist {
        n: 1,
        p50: 3.0,
        p99: 3.0,
        max: 3.0,
    };
    assert_eq!(spread, Some(want));
    let widest = Tick {
        seq: 10,
        spread_ms: 3.0,
    };
    assert_eq!(worst, vec![widest]);
    // Seq 11 settled without reaching the third client; seq 12 was still on its way.
    let missing = Incomplete {
        seq: 11,
        got: 2,
        expected: 3,
    };
    assert_eq!(incomplete, vec![missing]);
}

#[test]
fn a_client_that_ended_early_is_not_expected_after_its_last_packet() {
    let sessions = [
        session(
            9,
            packets(&[(10, 1), (11, 1_001), (12, 2_001)]),
            End::Stopped,
        ),
        session(
            9,
            packets(&[(10, 2), (11, 1_005), (12, 2_003)]),
            End::Stopped,
        ),
        session(9, packets(&[(10, 3)]), lost_at(500)),
        // Subscribed after tick 10: that tick is not counted for anyone.
        session(10, packets(&[(11, 1_003), (12, 2_002)]), End::Stopped),
    ];
    let normal = refs(&sessions);
    let arrivals = Arrivals::of(&normal);
    assert_eq!(arrivals.last_welcome, 10);
    let (spread, worst, incomplete) = ticks::fan_out(&arrivals, &normal, at_ms(10_000));
    let want = Dist {
        n: 2,
        p50: 2.0,
        p99: 4.0,
        max: 4.0,
    };
    assert_eq!(spread, Some(want));
    let tick = |seq, spread_ms| Tick { seq, spread_ms };
    assert_eq!(worst, vec![tick(11, 4.0), tick(12, 2.0)]);
    assert_eq!(incomplete, vec![]);
}

#[test]
fn the_largest_interval_is_between_two_packets_of_one_client() {
    let sessions = [
        session(0, packets(&[(1, 0), (2, 1_000), (3, 2_000)]), End::Stopped),
        session(0, packets(&[(1, 5), (2, 1_005), (3, 2_700)]), End::Stopped),
        // As long a silence, found later; the 3.3 s since the client before does not count.
        session(0, packets(&[(1, 6_000), (4, 7_695)]), End::Stopped),
        session(0, packets(&[(1, 9_000)]), End::Stopped),
    ];
    let want = Interval {
        ms: 1_695.0,
        before_seq: 3,
    };
    assert_eq!(ticks::max_interval(&refs(&sessions)), Some(want));
    assert_eq!(ticks::max_interval(&refs(&sessions[3..])), None);
}

#[test]
fn a_busy_runs_figures() {
    let f = compute(&busy_run());
    assert_eq!((f.clock.kernel, f.clock.fallback), (43, 3));
    assert_eq!((f.connect.connected, f.connect.failed), (8, 3));
    let s = &f.steady;
    assert_eq!((s.normal_clients, s.after_seq), (5, 101));
    assert_eq!(s.spread.map(|d| d.n), Some(5));
    let tick = |seq, spread_ms| Tick { seq, spread_ms };
    assert_eq!(
        s.worst,
        vec![tick(108, 40.0), tick(102, 1.0), tick(103, 1.0)]
    );
    let incomplete = |seq, got, expected| Incomplete { seq, got, expected };
    // 104 was skipped by one client, 106 came twice to one, 109 came after one was stopped.
    let want = vec![
        incomplete(104, 3, 4),
        incomplete(106, 4, 3),
        incomplete(109, 2, 3),
    ];
    assert_eq!(s.incomplete, want);
    assert_eq!(s.unparsed_timestamps, 1);
    let m = &f.missed;
    assert_eq!((m.total, m.trailing, m.duplicates), (2, 1, 1));
    let gap = Interval {
        ms: 2_000.0,
        before_seq: 105,
    };
    assert_eq!(m.max_interval, Some(gap));
    let stalls = f.stalls.expect("three stalled clients connected");
    let rows: Vec<_> = stalls
        .clients
        .iter()
        .map(|r| (r.cut_after_s, r.first_undelivered_after_s, r.state_at_cut))
        .collect();
    // Client 1 was cut before seq 102, the first it could not get, reached anyone.
    let want = vec![
        (Some(4.25), Some(3.001), Some("gone")),
        (Some(0.8), None, Some("FIN_WAIT1")),
        (None, Some(0.001), None),
    ];
    assert_eq!(rows, want);
    assert_eq!(
        stalls.cut_after_first_undelivered.map(|d| d.max),
        Some(1.249)
    );
    assert_eq!(stalls.max_buffered, (3, 2_100));
    let d = f.daemon.expect("the daemon was sampled");
    assert_eq!((d.peak_rss_kb, d.kb_per_connection), (9_800, 625.0));
}

#[test]
fn push_latency_runs_from_each_publish_to_the_first_packet_with_its_price() {
    let p = compute(&push_run()).push.expect("a publisher ran");
    assert_eq!((p.hz, p.channel.as_str()), (5, "market.tick.SPY"));
    // 2 was overtaken by 3 before a push; 7 went to no subscriber.
    assert_eq!((p.published, p.appeared, p.coalesced), (7, 5, 2));
    assert_eq!(p.no_subscriber, 1);
    // Client 2 missed the push of 4; client 3 ended early and is not held to any.
    assert_eq!((p.clients, p.reached_all), (3, 4));
    // 1 and 3 at 2, 3, 4, 5 ms (four clients), 4 at 3 and 4, 5 at 3, 4, 5, and 6 at 5, 6, 7
    // (the poll that carried 6 again is not a second sample).
    let latency = Dist {
        n: 16,
        p50: 4.0,
        p99: 7.0,
        max: 7.0,
    };
    assert_eq!(p.latency_ms, Some(latency));
    let first = Dist {
        n: 5,
        p50: 3.0,
        p99: 5.0,
        max: 5.0,
    };
    assert_eq!(p.first_client_ms, Some(first));
    // 1 and 3 reached the lost client 3 ms after the first; 5 and 6 the last held one 2 ms after.
    let push_spread = Dist {
        n: 4,
        p50: 2.0,
        p99: 3.0,
        max: 3.0,
    };
    assert_eq!(p.push_spread_ms, Some(push_spread));
    // Polls 101 (four clients, 6 ms) and 105 (three, 4 ms); 108 carried a published price.
    let poll_spread = Dist {
        n: 2,
        p50: 4.0,
        p99: 6.0,
        max: 6.0,
    };
    assert_eq!(p.poll_spread_ms, Some(poll_spread));
    assert_eq!(p.ratio, Some(7.0 / 6.0));
    // 8 + 8 + 7 + 3 packets over four clients and 2.5 s.
    assert_eq!(p.packets_per_s, 2.6);
    assert_eq!(p.error, None);
}

#[test]
fn a_publisher_whose_ticks_never_showed_has_only_counts() {
    let mut run = push_run();
    for c in &mut run.clients {
        if let Ok(s) = &mut c.outcome {
            s.priced.clear();
        }
    }
    let publishes = run.publishes.as_mut().expect("a publisher ran");
    publishes.error = Some("Redis closed the connection".into());
    let p = compute(&run).push.expect("a publisher ran");
    assert_eq!(
        (p.published, p.appeared, p.coalesced, p.reached_all),
        (7, 0, 7, 0)
    );
    assert_eq!(
        (p.latency_ms, p.first_client_ms, p.push_spread_ms),
        (None, None, None)
    );
    assert_eq!(p.ratio, None);
    // Every complete tick is then a poll: 101, 102, 103, 105, 106, 107 and 108.
    assert_eq!(p.poll_spread_ms.map(|d| d.n), Some(7));
    assert_eq!(p.error.as_deref(), Some("Redis closed the connection"));
    // Without a publisher there is no push section at all.
    assert!(compute(&busy_run()).push.is_none());
}
