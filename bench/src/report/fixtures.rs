//! Made-up runs for the report's tests: clients, sessions and samples written by hand, with
//! receive times on whole milliseconds from a fixed epoch, so nothing depends on the clock or
//! the machine.

use std::net::{Ipv4Addr, SocketAddrV4};

use serde_json::json;

use super::{DaemonSamples, FormRun, Run};
use crate::client::{Client, Drain, End, NO_STALENESS, Priced, Rx, Session, StallWatch};
use crate::publisher::{Published, Publishes};
use crate::sys::ProcSample;
use crate::verify::Tally;

/// The start of the steady window, ns since the epoch (2023-11-14T22:13:20Z).
pub const T0: i64 = 1_700_000_000_000_000_000;

/// `T0` plus `ms` milliseconds.
pub fn at_ms(ms: i64) -> i64 {
    T0 + ms * 1_000_000
}

/// One packet received `ms` after `T0`, 2.5 ms stale.
pub fn rx(seq: u32, ms: i64) -> Rx {
    Rx {
        seq,
        stale_us: 2_500,
        at: at_ms(ms),
    }
}

/// A session that got its WELCOME (seq `welcome_seq`) at `T0` and then the packets `rx`.
pub fn session(welcome_seq: u64, rx: Vec<Rx>, end: End) -> Session {
    Session {
        local: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 40_000),
        tcp_ms: 0.5,
        welcome_ms: 2.0,
        upgrade_ms: 1.0,
        welcome_at: T0,
        welcome_seq,
        welcome_first: true,
        kernel_ts: rx.len() as u64 + 1,
        rx,
        priced: Vec::new(),
        extra_welcomes: 0,
        other_text: 0,
        deflate: false,
        wire_bytes: 0,
        deltas: 0,
        undecodable: 0,
        window: Vec::new(),
        fallback_ts: 0,
        end,
        drain: None,
    }
}

/// A normal client that connected.
pub fn normal(index: usize, session: Session) -> Client {
    Client {
        index,
        stalled: false,
        outcome: Ok(session),
    }
}

/// Tick `seq` (101, 102, …) as client `k` of the run below received it: ticks one second apart
/// from `T0`, each client `k` × 0.25 ms after the first.
fn tick(seq: u32, k: i64) -> Rx {
    Rx {
        seq,
        stale_us: 1_000 + 250 * k as i32 + (seq as i32 - 100) * 10,
        at: at_ms((i64::from(seq) - 101) * 1_000 + 1) + k * 250_000,
    }
}

fn proc(cpu_s: f64, sys_s: f64, rss_kb: u64, hwm_kb: u64, threads: u64) -> ProcSample {
    ProcSample {
        cpu_s,
        sys_s,
        rss_kb,
        hwm_kb,
        threads,
    }
}

/// A run with something in every part of the report: failed connects, three stalled clients
/// (cut, cut late, never watched), normal clients with a gap, a duplicate, a short tail, two that
/// ended early, a tick still on its way at the end, and daemon samples.
pub fn busy_run() -> Run {
    let mut clients = Vec::new();
    // Stalled: WELCOME at seq 100; the server gave up on the first two.
    let drains = [
        (
            3,
            2_100,
            Some(103),
            true,
            "close frame 1008 too slow, then EOF",
        ),
        (1, 700, Some(101), true, "EOF without a close frame"),
        (0, 0, None, false, "still open"),
    ];
    for (i, (frames, bytes, last_seq, closed, outcome)) in drains.into_iter().enumerate() {
        let mut s = session(100, Vec::new(), End::Stopped);
        s.drain = Some(Drain {
            frames,
            bytes,
            last_seq,
            server_closed: closed,
            outcome: outcome.into(),
        });
        clients.push(Client {
            index: i,
            stalled: true,
            outcome: Ok(s),
        });
    }
    let stalls = vec![
        StallWatch {
            index: 0,
            client: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 40_000),
            seen: true,
            cut_at: Some(at_ms(4_250)),
            cut_state: 0,
            max_send_queue: 2_500_000,
        },
        StallWatch {
            index: 1,
            client: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 40_001),
            seen: true,
            // Before seq 102 reached anyone: nothing was held back yet.
            cut_at: Some(at_ms(800)),
            cut_state: 4,
            max_send_queue: 1_200_000,
        },
    ];
    // Normal clients, ticks 101..=110; the window ends 300 ms after tick 110.
    let all = |k: i64| (101..=110).map(|seq| tick(seq, k)).collect::<Vec<_>>();
    clients.push(normal(3, session(100, all(0), End::Stopped)));
    // Misses 104, gets 106 twice, and is stopped after 108 (109 settled, 110 did not).
    let mut gappy: Vec<Rx> = [101, 102, 103, 105, 106, 106, 107, 108]
        .into_iter()
        .map(|seq| tick(seq, 1))
        .collect();
    gappy[1].stale_us = NO_STALENESS;
    let mut s = session(100, gappy, End::Stopped);
    s.welcome_first = false;
    s.extra_welcomes = 1;
    s.other_text = 2;
    s.fallback_ts = 3;
    clients.push(normal(4, s));
    // Closed by the server after 105, and lost after 103 with a WELCOME at 101.
    let closed = End::ServerClose {
        at: at_ms(4_600),
        code: Some(1008),
        reason: "slow consumer".into(),
    };
    clients.push(normal(5, session(100, all(2)[..5].to_vec(), closed)));
    let lost = End::Lost {
        at: at_ms(2_400),
        why: "EOF".into(),
    };
    clients.push(normal(6, session(101, all(3)[1..3].to_vec(), lost)));
    // Seq 108 reached client 7 last, 40 ms after the first: the widest tick.
    let mut late = all(4);
    late[7].at = at_ms(7_041);
    clients.push(normal(7, session(100, late, End::Stopped)));
    for (index, err) in [
        (8, "connect: Connection refused (os error 111)"),
        (9, "no WELCOME within 30s"),
        (10, "connect: Connection refused (os error 111)"),
    ] {
        clients.push(Client {
            index,
            stalled: false,
            outcome: Err(err.into()),
        });
    }
    Run {
        config: json!({
            "url": "ws://127.0.0.1:3000/",
            "server": "127.0.0.1:3000",
            "clients": 12,
            "stalled": 3,
            "stall_rcvbuf": 4096,
            "duration_s": 10,
            "connect_rate": 2000,
            "source_ips": 4,
            "threads": 1,
            "connect_timeout_s": 30,
            "connect_phase_cap_s": 31,
            "nofile": 1024,
            "daemon_pid": 4242,
        }),
        clients,
        not_started: 1,
        unfinished: 1,
        connected_at_start: 8,
        connect_phase_s: 0.4251,
        window_s: 9.3004,
        steady_start: T0,
        steady_end: at_ms(9_300),
        daemon: Some(DaemonSamples {
            pid: 4242,
            before: proc(0.5, 0.1, 4_000, 4_100, 3),
            start: proc(1.25, 0.3, 9_000, 9_500, 5),
            // 2.6446 s over the window: the JSON's 2.645, which the table shows as 2.65.
            end: proc(3.8946, 1.2, 9_200, 9_600, 5),
            after_close: Some(proc(4.0, 1.3, 5_000, 9_800, 4)),
        }),
        gen_cpu: [0.01, 0.2, 0.9555, 1.1],
        gen_maxrss_kb: 12_000,
        gen_rss_kb: 11_000,
        stalls,
        publishes: None,
        form: None,
    }
}

/// A run where nobody connected: every figure is missing.
pub fn empty_run() -> Run {
    Run {
        config: json!({
            "url": "ws://127.0.0.1:9/",
            "server": "127.0.0.1:9",
            "clients": 2,
            "stalled": 0,
            "connect_rate": 0,
            "source_ips": 0,
            "threads": 2,
            "daemon_pid": null,
        }),
        clients: vec![
            Client {
                index: 0,
                stalled: false,
                outcome: Err("connect: Connection refused (os error 111)".into()),
            },
            Client {
                index: 1,
                stalled: false,
                outcome: Err("connect: Connection refused (os error 111)".into()),
            },
        ],
        not_started: 0,
        unfinished: 0,
        connected_at_start: 0,
        connect_phase_s: 0.003,
        window_s: 0.0,
        steady_start: T0,
        steady_end: T0,
        daemon: None,
        gen_cpu: [0.0, 0.001, 0.001, 0.002],
        gen_maxrss_kb: 3_000,
        gen_rss_kb: 2_900,
        stalls: Vec::new(),
        publishes: None,
        form: None,
    }
}

/// A run with a publisher at 5 Hz over 2.5 s: seven publishes, of which the second was
/// overtaken by the third before a push and the seventh went to no subscriber; polls at seqs
/// 101 and 105, pushes at 102–104, 106 and 107, and the poll at 108 still carrying publish 6.
/// Clients 0–2 get pushes `k` ms and polls `2k` ms after client 0; client 2 misses seq 104, and
/// client 3 (3 ms and 6 ms late) is lost after seq 103.
pub fn push_run() -> Run {
    // (seq, ms after T0 at client 0, publish carried, is a poll)
    const PACKETS: [(u32, i64, Option<u32>, bool); 8] = [
        (101, 1, None, true),
        (102, 102, Some(1), false),
        (103, 312, Some(3), false),
        (104, 503, Some(4), false),
        (105, 1_001, None, true),
        (106, 1_203, Some(5), false),
        (107, 1_405, Some(6), false),
        (108, 2_001, Some(6), true),
    ];
    let client = |k: i64, seqs: &[u32], end: End| {
        let mut rx = Vec::new();
        let mut priced = Vec::new();
        for &(seq, ms, carried, poll) in PACKETS.iter().filter(|p| seqs.contains(&p.0)) {
            let late = if poll { 2 * k } else { k };
            if let Some(n) = carried {
                priced.push(Priced {
                    rx: rx.len() as u32,
                    n,
                });
            }
            rx.push(Rx {
                seq,
                stale_us: 2_000,
                at: at_ms(ms + late),
            });
        }
        let mut s = session(100, rx, end);
        s.priced = priced;
        normal(k as usize, s)
    };
    let all: Vec<u32> = (101..=108).collect();
    let lost = End::Lost {
        at: at_ms(800),
        why: "EOF".into(),
    };
    let clients = vec![
        client(0, &all, End::Stopped),
        client(1, &all, End::Stopped),
        client(2, &[101, 102, 103, 105, 106, 107, 108], End::Stopped),
        client(3, &[101, 102, 103], lost),
    ];
    let sent = [
        (1, 100, 1),
        (2, 300, 1),
        (3, 310, 1),
        (4, 500, 1),
        (5, 1_200, 1),
        (6, 1_400, 1),
        (7, 2_100, 0),
    ]
    .into_iter()
    .map(|(n, ms, receivers)| Published {
        n,
        at: at_ms(ms),
        receivers,
    })
    .collect();
    Run {
        config: json!({
            "url": "ws://127.0.0.1:3000/",
            "server": "127.0.0.1:3000",
            "clients": 4,
            "stalled": 0,
            "stall_rcvbuf": 4096,
            "duration_s": 3,
            "connect_rate": 2000,
            "source_ips": 4,
            "threads": 1,
            "connect_timeout_s": 30,
            "connect_phase_cap_s": 31,
            "nofile": 1024,
            "daemon_pid": null,
            "redis": "127.0.0.1:6390",
            "publish_hz": 5,
        }),
        clients,
        not_started: 0,
        unfinished: 0,
        connected_at_start: 4,
        connect_phase_s: 0.01,
        window_s: 2.5,
        steady_start: T0,
        steady_end: at_ms(2_500),
        daemon: None,
        gen_cpu: [0.0, 0.01, 0.02, 0.03],
        gen_maxrss_kb: 3_000,
        gen_rss_kb: 2_900,
        stalls: Vec::new(),
        publishes: Some(Publishes {
            hz: 5,
            channel: "market.tick.SPY".into(),
            sent,
            error: None,
        }),
        form: None,
    }
}

/// A run of three clients asking for deltas over permessage-deflate: the server took deflate
/// from two, one compressed frame did not inflate, one delta stayed whole, and the verification
/// found a mismatch; a delta's staleness was not read from its frame.
pub fn form_run() -> Run {
    let all = |k: i64| (101..=104).map(|seq| tick(seq, k)).collect::<Vec<_>>();
    let mut clients = Vec::new();
    for (index, (deflate, wire_bytes, deltas, undecodable)) in [
        (true, 2_080, 4, 0),
        (true, 2_090, 3, 1),
        (false, 3_300, 4, 0),
    ]
    .into_iter()
    .enumerate()
    {
        let mut s = session(100, all(index as i64), End::Stopped);
        s.deflate = deflate;
        s.wire_bytes = wire_bytes;
        s.deltas = deltas;
        s.undecodable = undecodable;
        clients.push(normal(index, s));
    }
    Run {
        config: json!({
            "url": "ws://127.0.0.1:3000/",
            "server": "127.0.0.1:3000",
            "clients": 3,
            "stalled": 0,
            "stall_rcvbuf": 4096,
            "duration_s": 4,
            "connect_rate": 2000,
            "source_ips": 32,
            "threads": 1,
            "connect_timeout_s": 30,
            "connect_phase_cap_s": 31,
            "nofile": 1024,
            "daemon_pid": null,
            "deflate": true,
            "delta": true,
            "format": "json",
            "verify": 2,
        }),
        clients,
        not_started: 0,
        unfinished: 0,
        connected_at_start: 3,
        connect_phase_s: 0.01,
        window_s: 4.0,
        steady_start: T0,
        steady_end: at_ms(4_000),
        daemon: None,
        gen_cpu: [0.0, 0.01, 0.02, 0.03],
        gen_maxrss_kb: 3_000,
        gen_rss_kb: 2_900,
        stalls: Vec::new(),
        publishes: None,
        form: Some(FormRun {
            verifiers: 2,
            tally: Tally {
                verified: 9,
                mismatched: 1,
                undecodable: 0,
                unreferenced: 0,
                problems: vec![
                    "client 1: seq 103 decodes to other data than the reference's (first difference at byte 17)".into(),
                ],
            },
            reference_end: None,
        }),
    }
}
