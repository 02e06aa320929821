//! Tests of the hub: what a subscriber gets after its welcome, the two frames of a snapshot,
//! a producer's numbers and epochs, and resuming from the history.

use super::*;
use chrono::Utc;

fn data() -> Telemetry {
    Telemetry::initializing(Utc::now())
}

/// The JSON inside a frame written by `frame::text_frame` (payloads here are 126..65535 bytes).
fn json(frame: &[u8]) -> serde_json::Value {
    assert_eq!(
        (frame[0], frame[1]),
        (0x81, 126),
        "a final text frame with a 16-bit length"
    );
    let len = u16::from_be_bytes([frame[2], frame[3]]) as usize;
    assert_eq!(frame.len(), 4 + len);
    serde_json::from_slice(&frame[4..]).unwrap()
}

#[test]
fn a_subscriber_gets_exactly_the_snapshots_after_its_welcome() {
    let hub = Hub::new(data(), 4, 10);
    hub.publish(data());
    let Subscription {
        welcome,
        missed,
        resumed,
        mut rx,
    } = hub.subscribe();
    assert_eq!((welcome.seq, missed.len(), resumed), (1, 0, None));
    hub.publish(data());
    hub.publish(data());
    assert_eq!(rx.try_recv().unwrap().seq, 2);
    assert_eq!(rx.try_recv().unwrap().seq, 3);
    assert!(rx.try_recv().is_err());
}

#[test]
fn both_frames_carry_the_same_seq_epoch_and_data() {
    let hub = Hub::new(data(), 4, 10);
    let snapshot = hub.publish(data());
    let welcome = snapshot.welcome(Encoding::Stream, None);
    let (telemetry, welcome) = (json(&snapshot.telemetry), json(&welcome));
    assert_eq!(
        (telemetry["type"].as_str(), welcome["type"].as_str()),
        (Some("TELEMETRY"), Some("WELCOME"))
    );
    assert_eq!(
        (telemetry["seq"].as_u64(), welcome["seq"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(telemetry["epoch"], welcome["epoch"]);
    assert_eq!(telemetry["epoch"].as_str().unwrap().len(), 16);
    assert_eq!(telemetry["data"], welcome["data"]);
    assert_eq!(
        telemetry["data"],
        serde_json::to_value(snapshot.data()).unwrap()
    );
    assert_eq!(
        json(&snapshot.welcome(Encoding::Stream, Some(true)))["resumed"],
        true
    );
}

#[test]
fn a_producers_numbers_are_kept_and_never_go_back_within_an_epoch() {
    let hub = Hub::new(data(), 4, 10);
    let first_own = hub.latest().epoch.clone();
    let Subscription { mut rx, .. } = hub.subscribe();
    let body = packet::body(&data());
    let given = hub
        .publish_numbered("cluster-1", 41, data(), Some(body.clone()))
        .unwrap();
    assert_eq!((given.seq, &*given.epoch), (41, "cluster-1"));
    // The producer's serialized body is what goes out.
    assert!(
        json(&given.telemetry)["data"] == serde_json::from_str::<serde_json::Value>(&body).unwrap()
    );
    assert_eq!(
        hub.publish_numbered("cluster-1", 41, data(), None)
            .unwrap_err(),
        OutOfOrder {
            given: 41,
            latest: 41
        }
    );
    assert_eq!(
        hub.publish_numbered("cluster-1", 7, data(), None)
            .unwrap_err()
            .latest,
        41
    );
    // Another epoch is a new count.
    assert_eq!(
        hub.publish_numbered("cluster-2", 3, data(), None)
            .unwrap()
            .seq,
        3
    );
    // The hub's own numbering carries on from there, in its own epoch.
    let own = hub.publish(data());
    assert_eq!(own.seq, 4);
    assert_ne!(&*own.epoch, "cluster-2");
    // Back to its own count after another's: a new local epoch each time.
    assert_ne!(own.epoch, first_own);
    let seqs: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok().map(|s| s.seq)).collect();
    assert_eq!(seqs, [41, 3, 4]);
}

#[test]
fn a_client_resumes_from_the_history_when_it_reaches_back() {
    let hub = Hub::new(data(), 8, 5);
    for _ in 0..9 {
        hub.publish(data());
    }
    let epoch = hub.latest().epoch.to_string();
    let resume = |since: u64, epoch: &str| Resume {
        since,
        epoch: epoch.into(),
    };
    let seqs = |sub: &Subscription| {
        std::iter::once(sub.welcome.seq)
            .chain(sub.missed.iter().map(|s| s.seq))
            .collect::<Vec<_>>()
    };
    // The history keeps 5..=9: a client that had 6 gets 7, 8, 9.
    let sub = hub.subscribe_from(Some(&resume(6, &epoch)));
    assert_eq!((seqs(&sub), sub.resumed), (vec![7, 8, 9], Some(true)));
    // One that had 4 misses 5 at least: it is kept, so 5..=9.
    let sub = hub.subscribe_from(Some(&resume(4, &epoch)));
    assert_eq!((seqs(&sub), sub.resumed), (vec![5, 6, 7, 8, 9], Some(true)));
    // Nothing missed: the latest again, resumed.
    let sub = hub.subscribe_from(Some(&resume(9, &epoch)));
    assert_eq!((seqs(&sub), sub.resumed), (vec![9], Some(true)));
    // Too far back, another epoch, or a seq from the future: the latest, not resumed.
    for (since, epoch) in [(3, epoch.as_str()), (6, "another"), (12, epoch.as_str())] {
        let sub = hub.subscribe_from(Some(&resume(since, epoch)));
        assert_eq!(
            (seqs(&sub), sub.resumed),
            (vec![9], Some(false)),
            "{since} {epoch}"
        );
    }
    // Then the live stream, with no gap after what was sent.
    let mut sub = hub.subscribe_from(Some(&resume(8, &epoch)));
    hub.publish(data());
    assert_eq!(sub.rx.try_recv().unwrap().seq, 10);
}

/// An outlet that notes the `seq` of every packet the fan-out offers it, and takes no more
/// after `takes` of them.
struct Noting {
    seqs: Mutex<Vec<u64>>,
    takes: usize,
}

impl Noting {
    fn new(takes: usize) -> Arc<Self> {
        Arc::new(Self {
            seqs: Mutex::new(Vec::new()),
            takes,
        })
    }

    fn seqs(&self) -> Vec<u64> {
        self.seqs.lock().unwrap().clone()
    }
}

impl Outlet for Noting {
    fn offer(&self, snapshot: &Snapshot) -> bool {
        let mut seqs = self.seqs.lock().unwrap();
        seqs.push(snapshot.seq);
        seqs.len() < self.takes
    }
}

fn attach(hub: &Hub, outlet: &Arc<Noting>) -> Vec<u64> {
    let Subscription {
        welcome, mut rx, ..
    } = hub.subscribe();
    let attached: Arc<dyn Outlet> = outlet.clone();
    hub.attach(Arc::downgrade(&attached), || {
        let mut caught_up = vec![welcome.seq];
        while let Ok(snapshot) = rx.try_recv() {
            caught_up.push(snapshot.seq);
        }
        caught_up
    })
}

#[test]
fn an_attached_outlet_is_written_every_packet_after_its_catch_up_in_order() {
    let hub = Hub::new(data(), 4, 10);
    hub.publish(data());
    let outlet = Noting::new(usize::MAX);
    assert_eq!(attach(&hub, &outlet), vec![1]);
    for _ in 0..3 {
        hub.publish(data());
    }
    assert_eq!(outlet.seqs(), vec![2, 3, 4]);
    assert_eq!(
        hub.subscribers(),
        1,
        "the fan-out's last pass counts as served"
    );
}

#[test]
fn joining_while_another_thread_publishes_leaves_no_gap_and_no_repeat() {
    let hub = Hub::new(data(), 1024, 10);
    let publisher = {
        let hub = hub.clone();
        std::thread::spawn(move || {
            for _ in 0..2000 {
                hub.publish(data());
            }
        })
    };
    let outlets: Vec<_> = (0..50)
        .map(|_| {
            let outlet = Noting::new(usize::MAX);
            let caught_up = attach(&hub, &outlet);
            std::thread::yield_now();
            (outlet, caught_up)
        })
        .collect();
    publisher.join().unwrap();
    for (outlet, caught_up) in outlets {
        let all: Vec<u64> = caught_up.into_iter().chain(outlet.seqs()).collect();
        let expected: Vec<u64> = (all[0]..=2000).collect();
        assert_eq!(
            all, expected,
            "what the feed gave, then what the fan-out wrote"
        );
    }
}

#[test]
fn an_outlet_that_refuses_or_is_dropped_leaves_the_fan_out() {
    let hub = Hub::new(data(), 4, 10);
    let refusing = Noting::new(2);
    let dropped = Noting::new(usize::MAX);
    attach(&hub, &refusing);
    attach(&hub, &dropped);
    hub.publish(data());
    assert_eq!(hub.subscribers(), 2);
    drop(dropped);
    for _ in 0..3 {
        hub.publish(data());
    }
    assert_eq!(
        refusing.seqs(),
        vec![1, 2],
        "not offered again after refusing"
    );
    assert_eq!(hub.subscribers(), 0);
}

#[test]
fn kept_packets_are_slim_and_still_resume_whole() {
    let hub = Hub::new(data(), 8, 5);
    for _ in 0..4 {
        hub.publish(data());
    }
    let latest = hub.latest();
    assert!(latest.data().is_some(), "the latest keeps its data");
    assert!(
        !latest.welcome(Encoding::Stream, None).is_empty(),
        "and its WELCOME frame"
    );
    let sub = hub.subscribe_from(Some(&Resume {
        since: 1,
        epoch: latest.epoch.to_string(),
    }));
    // 2 as the resumed WELCOME, then 3 and 4 (the latest, whole).
    assert_eq!(sub.welcome.seq, 2);
    assert!(sub.welcome.data().is_none());
    let resumed = json(&sub.welcome.welcome(Encoding::Stream, Some(true)));
    assert_eq!(
        (resumed["type"].as_str(), resumed["seq"].as_u64()),
        (Some("WELCOME"), Some(2))
    );
    assert_eq!(resumed["data"], json(&sub.welcome.telemetry)["data"]);
    let kept = &sub.missed[0];
    assert_eq!((kept.seq, kept.data().is_none()), (3, true));
    assert_eq!(json(&kept.telemetry)["seq"], 3);
    assert!(Arc::ptr_eq(&sub.missed[1], &latest));
}

/// An outlet that notes its number in a log the others share.
struct Logging {
    id: usize,
    log: Arc<Mutex<Vec<(u64, usize)>>>,
    refuse: bool,
}

impl Outlet for Logging {
    fn offer(&self, snapshot: &Snapshot) -> bool {
        self.log.lock().unwrap().push((snapshot.seq, self.id));
        !self.refuse
    }
}

/// The pass writes to the connections in the order they joined, pass after pass, while those
/// that refuse or are gone drop out from anywhere in it.
#[test]
fn a_pass_keeps_the_order_connections_joined_in_as_some_leave() {
    let hub = Hub::new(data(), 4, 10);
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut outlets: Vec<Arc<dyn Outlet>> = (0..12)
        .map(|id| {
            Arc::new(Logging {
                id,
                log: log.clone(),
                refuse: id == 3 || id == 11,
            }) as Arc<dyn Outlet>
        })
        .collect();
    for outlet in &outlets {
        hub.attach(Arc::downgrade(outlet), || ());
    }
    hub.publish(data());
    outlets.remove(7); // gone before the second pass
    hub.publish(data());
    hub.publish(data());
    let log = log.lock().unwrap().clone();
    let ids = |seq| -> Vec<usize> {
        log.iter()
            .filter(|(s, _)| *s == seq)
            .map(|&(_, id)| id)
            .collect()
    };
    assert_eq!(ids(1), (0..12).collect::<Vec<_>>());
    assert_eq!(ids(2), [0, 1, 2, 4, 5, 6, 8, 9, 10]);
    assert_eq!(ids(3), ids(2));
    assert_eq!(hub.subscribers(), 9);
}

/// The packets the fan-out writes are counted as sent, once a pass: those taken, not those
/// refused.
#[test]
fn the_fan_outs_packets_are_counted_as_sent() {
    let hub = Hub::new(data(), 4, 10);
    let metrics = Arc::new(Metrics::new());
    hub.report_to(metrics.clone());
    let outlets = [
        Noting::new(usize::MAX),
        Noting::new(usize::MAX),
        Noting::new(2),
    ];
    for outlet in &outlets {
        attach(&hub, outlet);
    }
    let mut bytes = 0;
    for taken in [3, 2] {
        bytes += taken * hub.publish(data()).telemetry.len();
    }
    let text = metrics.render(0, [], Utc::now());
    let value = |key: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{key} in\n{text}"))
    };
    assert_eq!(value(r#"bff_frames_sent_total{kind="telemetry"}"#), 5.0);
    assert_eq!(value("bff_bytes_sent_total"), bytes as f64);
    assert_eq!(value("bff_fanout_duration_seconds_count"), 2.0);
}

/// A store behind the hub's memory that holds `epoch`'s packets `seqs`.
#[derive(Debug)]
struct Store {
    epoch: String,
    seqs: std::ops::RangeInclusive<u64>,
}

impl History for Store {
    fn from(&self, epoch: &str, since: u64) -> Older<'_> {
        let packets = if epoch == self.epoch {
            self.seqs
                .clone()
                .filter(|seq| *seq >= since)
                .map(|seq| (seq, format!("{{\"n\":{seq}}}")))
                .collect()
        } else {
            Vec::new()
        };
        Box::pin(std::future::ready(packets))
    }
}

/// The `(type, seq, resumed)` of each frame a connection is started with.
fn started(joined: &Joined) -> Vec<(String, u64, Option<bool>)> {
    joined
        .frames
        .iter()
        .map(|frame| {
            let json = serde_json::from_slice::<serde_json::Value>(&frame[2..])
                .or_else(|_| serde_json::from_slice(&frame[4..]))
                .unwrap();
            (
                json["type"].as_str().unwrap().to_owned(),
                json["seq"].as_u64().unwrap(),
                json["resumed"].as_bool(),
            )
        })
        .collect()
}

#[tokio::test]
async fn joining_resumes_from_memory_then_from_the_store_behind_it_in_one_call() {
    let hub = Hub::new(data(), 16, 3);
    for _ in 0..6 {
        hub.publish(data());
    }
    let epoch = hub.latest().epoch.to_string();
    let resume = |since: u64, epoch: &str| Resume {
        since,
        epoch: epoch.into(),
    };
    let welcome = |seq, resumed| ("WELCOME".to_owned(), seq, resumed);
    let telemetry = |seq| ("TELEMETRY".to_owned(), seq, None);
    // No resume asked: the latest, as it is sent to everyone.
    let joined = hub.join(None, Encoding::Stream, Form::default()).await;
    assert_eq!(started(&joined), [welcome(6, None)]);
    assert_eq!((joined.seq, &*joined.epoch), (6, epoch.as_str()));
    // The memory keeps 4..=6: a client that had 4 gets 5 as its WELCOME, then 6.
    let joined = hub
        .join(Some(&resume(4, &epoch)), Encoding::Stream, Form::default())
        .await;
    assert_eq!(started(&joined), [welcome(5, Some(true)), telemetry(6)]);
    assert_eq!(joined.seq, 6);
    // Further back, with no store: the latest, not resumed.
    let joined = hub
        .join(Some(&resume(1, &epoch)), Encoding::Stream, Form::default())
        .await;
    assert_eq!(started(&joined), [welcome(6, Some(false))]);
    // With a store that reaches back: 2 and 3 from it, then 4..=6 from memory, no repeat.
    hub.set_history(Arc::new(Store {
        epoch: epoch.clone(),
        seqs: 1..=5,
    }));
    let joined = hub
        .join(Some(&resume(1, &epoch)), Encoding::Stream, Form::default())
        .await;
    assert_eq!(
        started(&joined),
        [
            welcome(2, Some(true)),
            telemetry(3),
            telemetry(4),
            telemetry(5),
            telemetry(6)
        ]
    );
    assert_eq!((joined.seq, &*joined.epoch), (6, epoch.as_str()));
    // The store keeps stream frames only: a client of another encoding is not resumed.
    let joined = hub
        .join(Some(&resume(1, &epoch)), Encoding::Bridge, Form::default())
        .await;
    assert_eq!(joined.frames.len(), 1);
    assert_eq!(joined.seq, 6);
    // Then the live feed, with no gap after what was sent.
    let mut joined = hub
        .join(Some(&resume(1, &epoch)), Encoding::Stream, Form::default())
        .await;
    hub.publish(data());
    assert_eq!(joined.rx.try_recv().unwrap().seq, 7);
}

/// The text frames in one buffer, each as JSON (any length of header).
fn frames(mut buf: &[u8]) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        assert_eq!(buf[0], 0x81, "a final text frame");
        let (len, head) = match buf[1] {
            126 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        out.push(serde_json::from_slice(&buf[head..head + len]).unwrap());
        buf = &buf[head + len..];
    }
    out
}

/// A packet whose mood and alerts differ from the one before announces it once, in every
/// encoding's one buffer, before the packet: `REGIME` and `ALERT` on a stream path, nothing new
/// on a bridge path, `market_regime` and `alert` alone on a market-stream path; the next
/// packet, the same again, announces nothing. A client resuming gets the same frames.
#[test]
fn a_change_of_mood_or_alerts_is_announced_once_before_its_packet() {
    use crate::config::AlertLevel;
    use crate::hub::mood::{Alert, MoodNow, Regime};
    let hub = Hub::new(data(), 4, 10);
    let mut halted = data();
    hub.publish(halted.clone());
    halted.mood = MoodNow {
        regime: Regime::Crash,
        label: "Crash/Panic".into(),
        ..MoodNow::neutral(halted.timestamp)
    };
    halted.alerts.push(Alert {
        level: AlertLevel::Critical,
        code: "ENGINE_HALTED".into(),
        message: "The engine halted trading".into(),
        timestamp: halted.timestamp,
        active: true,
    });
    let changed = hub.publish(halted.clone());
    let stream = frames(changed.packet(Encoding::Stream));
    let kinds: Vec<_> = stream.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["REGIME", "ALERT", "TELEMETRY"]);
    assert_eq!(
        (&stream[0]["data"]["regime"], &stream[0]["data"]["previous"]),
        (&"crash".into(), &"neutral".into())
    );
    assert_eq!(stream[0]["data"]["market"], stream[2]["data"]["market"]);
    assert_eq!(stream[1]["data"]["code"], "ENGINE_HALTED");
    assert_eq!(stream[1]["data"]["active"], true);
    let bridge = frames(changed.packet(Encoding::Bridge));
    assert_eq!(bridge.len(), 1, "the bridge's packet alone: {bridge:?}");
    let market = frames(changed.packet(Encoding::MarketStream));
    let kinds: Vec<_> = market.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["market_regime", "alert"]);
    assert_eq!(
        (
            &market[0]["label"],
            &market[0]["previous"],
            &market[1]["code"]
        ),
        (
            &"Crash/Panic".into(),
            &"neutral".into(),
            &"ENGINE_HALTED".into()
        )
    );

    let same = hub.publish(halted.clone());
    assert_eq!(frames(same.packet(Encoding::Stream)).len(), 1);
    assert!(
        same.packet(Encoding::MarketStream).is_empty(),
        "nothing new"
    );
    let greeting = frames(&same.welcome(Encoding::MarketStream, None));
    let kinds: Vec<_> = greeting
        .iter()
        .map(|f| f["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["market_regime", "alert"],
        "the mood and active alerts on connect"
    );
    assert!(greeting[0].get("previous").is_none());

    halted.alerts.clear();
    let cleared = hub.publish(halted.clone());
    let stream = frames(cleared.packet(Encoding::Stream));
    assert_eq!(
        (
            &stream[0]["type"],
            &stream[0]["data"]["active"],
            stream.len()
        ),
        (&"ALERT".into(), &false.into(), 2)
    );

    let epoch = changed.epoch.to_string();
    let resume = Resume {
        since: 1,
        epoch: epoch.clone(),
    };
    let mut sub = hub.subscribe_from(Some(&resume));
    assert_eq!(sub.resumed, Some(true));
    assert!(sub.rx.try_recv().is_err());
    let resumed: Vec<_> = std::iter::once(sub.welcome.welcome(Encoding::Stream, Some(true)))
        .chain(
            sub.missed
                .iter()
                .map(|s| s.packet(Encoding::Stream).clone()),
        )
        .flat_map(|buf| frames(&buf))
        .map(|f| f["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        resumed,
        [
            "REGIME",
            "ALERT",
            "WELCOME",
            "TELEMETRY",
            "ALERT",
            "TELEMETRY"
        ],
        "the first missed packet is the WELCOME, after what it announced"
    );
}

/// A delta connection's TELEMETRY is a delta only of the packet just before it in the same
/// epoch: whole (`"delta": false`) after a new epoch, after a gap in `seq`, and when it comes
/// from the kept history; a resumed client's WELCOME is whole, and the latest after it a delta.
#[tokio::test]
async fn deltas_follow_only_the_packet_just_before() {
    let hub = Hub::new(data(), 16, 10);
    let delta = Form {
        delta: true,
        ..Form::default()
    };
    let telemetry = |frame: &[u8]| {
        let json = serde_json::from_slice::<serde_json::Value>(&frame[2..])
            .or_else(|_| serde_json::from_slice(&frame[4..]))
            .unwrap();
        (json["seq"].as_u64().unwrap(), json["delta"].as_bool())
    };
    let flag = |snapshot: &Snapshot| telemetry(snapshot.packet_as(Encoding::Stream, delta));
    assert_eq!(flag(&hub.publish(data())), (1, Some(true)));
    assert_eq!(flag(&hub.publish(data())), (2, Some(true)));
    let other = |seq| hub.publish_numbered("other", seq, data(), None).unwrap();
    assert_eq!(flag(&other(7)), (7, Some(false)), "a new epoch");
    assert_eq!(flag(&other(9)), (9, Some(false)), "a gap");
    assert_eq!(flag(&other(10)), (10, Some(true)));
    other(11);
    let joined = hub
        .join(
            Some(&Resume {
                since: 7,
                epoch: "other".into(),
            }),
            Encoding::Stream,
            delta,
        )
        .await;
    let frames: Vec<_> = joined.frames.iter().map(|f| telemetry(f)).collect();
    assert_eq!(
        frames,
        [(9, None), (10, Some(false)), (11, Some(true))],
        "the WELCOME, a kept packet, the latest"
    );
}

/// What a delta client does with a frame: the data it now has (the bytes of `data` as they
/// came, or the previous data with the delta applied) and the packet's seq and epoch.
fn delta_client_reads(
    frame: &[u8],
    base: &[u8],
    last: Option<(u64, &str)>,
) -> (Vec<u8>, u64, String) {
    let at = match frame[1] {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    let text = std::str::from_utf8(&frame[at..]).unwrap();
    let packet: serde_json::Value = serde_json::from_str(text).unwrap();
    let (seq, epoch) = (
        packet["seq"].as_u64().unwrap(),
        packet["epoch"].as_str().unwrap(),
    );
    let data = if packet["delta"] == true {
        assert_eq!(
            last,
            Some((seq - 1, epoch)),
            "a delta only right after its base"
        );
        fossil_delta::apply(base, packet["data"].as_str().unwrap()).unwrap()
    } else {
        let start = text.find(r#""data":"#).unwrap() + r#""data":"#.len();
        text.as_bytes()[start..text.rfind(r#","epoch":"#).unwrap()].to_vec()
    };
    (data, seq, epoch.to_owned())
}

/// Over 1,000 consecutive packets whose log shifts and whose figures move, with reconnects
/// (resuming, or afresh) and a new epoch in between, a delta client rebuilds every packet's
/// data byte for byte, and most of them come as deltas.
#[tokio::test]
async fn a_delta_client_rebuilds_a_thousand_packets_across_reconnects() {
    let hub = Hub::new(data(), 64, 50);
    let delta = Form {
        delta: true,
        ..Form::default()
    };
    let body = |n: u64| {
        let log: Vec<String> = (n..n + 20)
            .map(|i| format!("tick {i}: price {}", 450 + i % 7))
            .collect();
        serde_json::json!({"price": 450.0 + (n % 13) as f64 / 4.0, "n": n, "log": log}).to_string()
    };
    let mut published = std::collections::HashMap::new();
    let (mut base, mut last): (Vec<u8>, Option<(u64, String)>) = (Vec::new(), None);
    let mut joined = hub.join(None, Encoding::Stream, delta).await;
    let (mut deltas, mut checked, mut skipped) = (0, 0, 0);
    for n in 1..=1000u64 {
        let epoch = if n <= 500 { "first" } else { "second" };
        hub.publish_numbered(epoch, n, data(), Some(body(n)))
            .unwrap();
        published.insert((epoch.to_owned(), n), body(n));
        // Every 97th packet the client is away for a few, then reconnects: resuming where it
        // left off every other time, afresh the others.
        let mut frames: Vec<bytes::Bytes> = std::mem::take(&mut joined.frames);
        if n >= 97 && n % 97 < 3 {
            continue;
        } else if n >= 97 && n % 97 == 3 {
            let resume = last
                .as_ref()
                .filter(|_| n % 2 == 0)
                .map(|(seq, epoch)| Resume {
                    since: *seq,
                    epoch: epoch.clone(),
                });
            if resume.is_none() {
                // Afresh: the latest, and what came between is not sent.
                skipped += n - last.as_ref().unwrap().0 - 1;
            }
            joined = hub.join(resume.as_ref(), Encoding::Stream, delta).await;
            frames.append(&mut joined.frames);
        } else {
            while let Ok(next) = joined.rx.try_recv() {
                frames.push(next.packet_as(Encoding::Stream, delta).clone());
            }
        }
        for frame in frames {
            let was_delta = frame.windows(13).any(|w| w == br#""delta":true}"#);
            let last_ref = last.as_ref().map(|(s, e)| (*s, e.as_str()));
            let (data, seq, epoch) = delta_client_reads(&frame, &base, last_ref);
            if seq > 0 {
                assert_eq!(
                    std::str::from_utf8(&data).unwrap(),
                    published[&(epoch.clone(), seq)],
                    "{epoch} {seq}"
                );
                checked += 1;
            }
            deltas += usize::from(was_delta);
            base = data;
            last = Some((seq, epoch));
        }
    }
    assert_eq!(checked, 1000 - skipped, "every packet sent was rebuilt");
    assert!(deltas >= 900, "{deltas} of {checked} came as deltas");
}

/// The messages of unmasked server frames as a permessage-deflate client that keeps its window
/// reads them: each compressed one inflated after `window`, the last compressed message read
/// (which then becomes the window), the others as they are. A window of the last message only,
/// not the 32 KB a client keeps: the daemon refers no further back (`docs/PROTOCOL.md` §13.1).
fn inflated_messages(frames: &[u8], window: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    let mut rest = frames;
    while !rest.is_empty() {
        let (header, len) = match rest[1] & 0x7f {
            126 => (4, u16::from_be_bytes([rest[2], rest[3]]) as usize),
            127 => (
                10,
                u64::from_be_bytes(rest[2..10].try_into().unwrap()) as usize,
            ),
            n => (2, n as usize),
        };
        let payload = &rest[header..header + len];
        messages.push(if rest[0] & 0x40 == 0 {
            payload.to_vec()
        } else {
            // The window as a DEFLATE stored block (under 64 KB here), then the message.
            let mut input = vec![0x00];
            input.extend_from_slice(&(window.len() as u16).to_le_bytes());
            input.extend_from_slice(&(!(window.len() as u16)).to_le_bytes());
            input.extend_from_slice(window);
            input.extend_from_slice(payload);
            input.extend_from_slice(&super::deflate::TAIL);
            let mut out = Vec::with_capacity(1 << 16);
            flate2::Decompress::new(false)
                .decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync)
                .unwrap();
            *window = out.split_off(window.len());
            window.clone()
        });
        rest = &rest[header + len..];
    }
    messages
}

/// Over 1,000 consecutive packets, with reconnects (resuming, or afresh: a new window each
/// time), a new epoch, the market turning now and then (a REGIME before the packet), and now
/// and then a message of the session's own between two packets, a client that keeps its
/// deflate window reads exactly the messages of its form uncompressed, in each form; most
/// packets come compressed after the one before, at a fraction of the size.
#[tokio::test]
async fn a_client_that_keeps_its_window_inflates_a_thousand_packets_across_reconnects() {
    let takeover = super::deflate::Deflate {
        min_bytes: 64,
        takeover: true,
    };
    for body_form in [
        Form::default(),
        Form {
            delta: true,
            ..Form::default()
        },
        Form {
            msgpack: true,
            ..Form::default()
        },
    ] {
        let form = Form {
            deflate: Some(takeover),
            ..body_form
        };
        let hub = Hub::new(data(), 64, 50);
        let body = |n: u64| {
            let agents: Vec<String> = (0..8)
                .map(|a| {
                    format!(
                        r#""a{a}":{{"latency_ms":{}}}"#,
                        (n * 7919 + a) as f64 / 97.0
                    )
                })
                .collect();
            let log: Vec<String> = (n..n + 20)
                .map(|i| format!("tick {i}: price {}", 450 + i % 7))
                .collect();
            format!(
                r#"{{"price":{},"agents":{{{}}},"log":{:?}}}"#,
                450.0 + (n % 13) as f64 / 4.0,
                agents.join(","),
                log
            )
        };
        let mut joined = hub.join(None, Encoding::Stream, form).await;
        let mut window = Vec::new();
        // What the client's outlet last wrote by the fan-out: a snapshot's serial, or 0.
        let mut last_packet = 0;
        let (mut checked, mut chained, mut bytes, mut alone_bytes) = (0, 0, 0, 0);
        for n in 1..=1000u64 {
            let epoch = if n <= 500 { "first" } else { "second" };
            // The market turns every 40 packets: a REGIME goes before the packet.
            let mut turning = data();
            if n / 40 % 2 == 1 {
                turning.mood.regime = super::mood::Regime::Crash;
            }
            hub.publish_numbered(epoch, n, turning, Some(body(n)))
                .unwrap();
            // Each frame written, and the plain frame it stands for (`None`: a frame of the
            // session's, compressed on its own).
            let mut written: Vec<(bytes::Bytes, Option<bytes::Bytes>)> = Vec::new();
            if n >= 97 && n % 97 < 3 {
                continue; // away
            } else if n >= 97 && n % 97 == 3 {
                // Back, on a new connection, with a new window; resuming every other time.
                let resume = (n % 2 == 0).then(|| Resume {
                    since: n - 4,
                    epoch: epoch.to_owned(),
                });
                joined = hub.join(resume.as_ref(), Encoding::Stream, form).await;
                window = Vec::new();
            } else {
                while let Ok(next) = joined.rx.try_recv() {
                    if n % 50 == 7 {
                        // A frame of the session's own between two packets (an UPDATE).
                        let update = format!(r#"{{"type":"UPDATE","pad":"{}"}}"#, "u".repeat(200));
                        written.push((takeover.frame(&frame::text_frame(&update)), None));
                        last_packet = 0;
                    }
                    let frame = next
                        .packet_after(Encoding::Stream, form, last_packet)
                        .clone();
                    let alone = next.packet_as(Encoding::Stream, form);
                    chained += usize::from(frame != *alone);
                    (bytes, alone_bytes) = (bytes + frame.len(), alone_bytes + alone.len());
                    // As the outlet does: a packet ends the window when it went compressed.
                    last_packet = if super::deflate::ends_compressed(&frame) {
                        next.serial
                    } else {
                        0
                    };
                    let plain = next.packet_as(Encoding::Stream, body_form).clone();
                    written.push((frame, Some(plain)));
                }
            }
            for frame in std::mem::take(&mut joined.frames) {
                // The session's frames (WELCOME, resumed packets) go before any packet.
                written.insert(0, (frame, None));
                last_packet = 0;
            }
            for (frame, plain) in written {
                let got = inflated_messages(&frame, &mut window);
                let want = inflated_messages(plain.as_deref().unwrap_or(&frame), &mut Vec::new());
                assert_eq!(got, want, "{body_form:?}: {epoch} {n}");
                checked += 1;
            }
        }
        assert!(checked > 950, "{body_form:?}: {checked} messages checked");
        assert!(
            chained > 900,
            "{body_form:?}: {chained} packets after the one before"
        );
        // Half or less for whole packets; deltas, a few changes each, shrink less.
        let factor = if body_form == Form::default() { 2 } else { 1 };
        assert!(
            bytes * factor < alone_bytes,
            "{body_form:?}: {bytes} bytes against {alone_bytes} each on its own"
        );
    }
}
