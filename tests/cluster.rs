//! Several daemons, one poll: three real `bff` processes, a real `redis-server` and a test
//! engine per daemon (so its hits say which daemon polled), all on free ports. One daemon polls
//! and every daemon's clients see the same `seq`; the poller stopping or killed is replaced (not
//! before its sign of life lapses, a period or so after its last packet), a follower killed touches only its own clients; Redis gone or
//! paused makes each daemon poll alone and serve on, and one poller is elected again when it is
//! back; a client resumes on another daemon exactly where it left off. With
//! `cluster.secret_file`, what anyone else publishes on the cluster's channels reaches nobody;
//! a daemon whose feed stops says `stale` in `/health`.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bff::Seal;
use bff::scripts::{self, Keys};
use common::clients::Balancer;
use common::process::BffProcess;
use common::redis::RedisServer;
use common::{FakeEngine, Ws, next_packet, packet_where, send_text, within};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

/// A config file for daemons polling `engine` every `poll_ms`.
fn config_file(engine: &FakeEngine, name: &str, poll_ms: u64) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cluster-{name}-{}.toml", std::process::id()));
    let text = format!(
        "[engine]\nurl = \"http://{}\"\nstate = \"/state\"\nagents = \"/agents\"\nmodels = \"/models\"\n\
         poll_interval_ms = {poll_ms}\ntimeout_ms = {}\n[cluster]\nlease_ms = 2000\n\
         engine_id = \"the test engine\"\n",
        engine.addr,
        poll_ms * 3 / 4
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// What a test's cluster is made of: its Redis, the engine each daemon polls (its own, with the
/// same answers, so the hits say which daemon polled), the first daemon's config file, the
/// daemons, and which of them was elected to poll.
struct Cluster {
    redis: RedisServer,
    engines: Vec<FakeEngine>,
    config: PathBuf,
    daemons: Vec<BffProcess>,
    leader: usize,
}

/// `n` daemons polling a test engine every `poll_ms` (and, `hearing_redis`, hearing the agents'
/// channels on the cluster's Redis), once one leads; `None` (skipped) without `redis-server`.
async fn cluster(name: &str, poll_ms: u64, n: usize, hearing_redis: bool) -> Option<Cluster> {
    let redis = RedisServer::start()?;
    let mut engines = Vec::new();
    let mut configs = Vec::new();
    for i in 0..n {
        let engine = FakeEngine::samples().await;
        let config = config_file(&engine, &format!("{name}-{i}"), poll_ms);
        if hearing_redis {
            let mut text = std::fs::read_to_string(&config).unwrap();
            text += &format!("[redis]\nurl = \"{}\"\n", redis.url());
            std::fs::write(&config, text).unwrap();
        }
        engines.push(engine);
        configs.push(config);
    }
    let daemons: Vec<BffProcess> = configs
        .iter()
        .flat_map(|config| start_daemons(1, config, &redis))
        .collect();
    let leader = one_leader(&daemons).await;
    Some(Cluster {
        redis,
        engines,
        config: configs.swap_remove(0),
        daemons,
        leader,
    })
}

/// The `/state` requests each engine of `engines` has had.
fn polls(engines: &[FakeEngine]) -> Vec<usize> {
    engines.iter().map(|e| e.hits("/state")).collect()
}

/// Reads `ws` until `n` packets of the cluster's `epoch` came, and returns the last.
async fn packets_of(ws: &mut Ws, epoch: &str, n: usize) -> Value {
    let mut last = Value::Null;
    for _ in 0..n {
        last = packet_where(ws, "a packet of the cluster's epoch", |p| {
            p["epoch"] == epoch
        })
        .await;
    }
    last
}

/// `n` daemons of the cluster at `redis`.
fn start_daemons(n: usize, config: &std::path::Path, redis: &RedisServer) -> Vec<BffProcess> {
    (0..n)
        .map(|_| {
            BffProcess::start(
                &[
                    "--config",
                    config.to_str().unwrap(),
                    "--listen",
                    "127.0.0.1:0",
                    "--cluster",
                    &redis.url(),
                ],
                &[],
            )
        })
        .collect()
}

async fn health(daemon: &BffProcess) -> Value {
    common::reqwest_get(&format!("http://{}/health", daemon.addr()))
        .await
        .1
}

/// The daemons' modes once exactly one leads and the rest follow; the leader's index.
async fn one_leader(daemons: &[BffProcess]) -> usize {
    within("one leader and the rest following", async {
        loop {
            let mut modes = Vec::new();
            for daemon in daemons {
                modes.push(
                    health(daemon).await["mode"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                );
            }
            let leaders = modes.iter().filter(|m| *m == "leader").count();
            let followers = modes.iter().filter(|m| *m == "follower").count();
            if leaders == 1 && followers == daemons.len() - 1 {
                return modes.iter().position(|m| m == "leader").unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

async fn client(daemon: &BffProcess, query: &str) -> Ws {
    let url = format!("ws://{}/{query}", daemon.addr());
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// Reads packets until one of the cluster's epoch with `seq` ≥ `from`.
async fn packet_from(ws: &mut Ws, epoch: &str, from: u64) -> Value {
    within("a cluster packet", async {
        loop {
            let p = next_packet(ws).await;
            if p["epoch"] == epoch && p["seq"].as_u64() >= Some(from) {
                return p;
            }
        }
    })
    .await
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_daemon_polls_and_every_client_sees_the_same_packets() {
    let Some(Cluster {
        redis: _redis,
        engines,
        daemons,
        leader,
        ..
    }) = cluster("one", 250, 3, false).await
    else {
        return;
    };

    let mut clients = Vec::new();
    for daemon in &daemons {
        let mut ws = client(daemon, "").await;
        next_packet(&mut ws).await;
        clients.push(ws);
    }
    let first = next_packet(&mut clients[0]).await;
    let epoch = first["epoch"].as_str().unwrap().to_owned();
    let seq = first["seq"].as_u64().unwrap() + 2;
    let mut seen = Vec::new();
    for ws in &mut clients {
        seen.push(packet_from(ws, &epoch, seq).await);
    }
    for packet in &seen[1..] {
        assert_eq!(packet["seq"], seen[0]["seq"]);
        assert_eq!(
            packet["data"], seen[0]["data"],
            "the same packet everywhere"
        );
    }

    // Only the leader polls: while four more packets are published, the others' engines hear
    // nothing (each daemon has its own engine, so the hits say who polled).
    let before = polls(&engines);
    packets_of(&mut clients[0], &epoch, 4).await;
    let after = polls(&engines);
    for (i, (before, after)) in before.iter().zip(&after).enumerate() {
        if i == leader {
            assert!(after > before, "the leader polled: {before} then {after}");
        } else {
            assert_eq!(after, before, "daemon {i} polled, and it does not lead");
        }
    }
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_stopping_or_killed_is_replaced_and_a_follower_killed_touches_only_its_own() {
    let Some(Cluster {
        redis,
        engines: _engines,
        config,
        mut daemons,
        leader,
    }) = cluster("failover", 1000, 3, false).await
    else {
        return;
    };

    // SIGTERM: the lease is released, another takes over; the followers' clients see every seq.
    let mut watchers = followers_watched(&daemons, leader).await;
    let mut last = Vec::new();
    for ws in &mut watchers {
        last.push(next_packet(ws).await);
    }
    let epoch = last[0]["epoch"].as_str().unwrap().to_owned();
    daemons[leader].signal(libc::SIGTERM);
    assert!(daemons[leader].wait_exit().success());
    let stopped = daemons.remove(leader);
    drop(stopped);
    let new_leader = one_leader(&daemons).await;
    for (ws, last) in watchers.iter_mut().zip(&mut last) {
        for _ in 0..3 {
            let next = next_packet(ws).await;
            assert_eq!(next["epoch"], epoch.as_str(), "the same count carries on");
            assert_eq!(
                next["seq"].as_u64(),
                Some(last["seq"].as_u64().unwrap() + 1),
                "no missed tick across a clean handover"
            );
            *last = next;
        }
    }

    // SIGKILL: the dead poller goes silent and the other daemon takes over once its sign of
    // life lapses (before its lease does); seq still carries on.
    let survivor = 1 - new_leader;
    let mut ws = client(&daemons[survivor], "").await;
    let mut last = next_packet(&mut ws).await;
    // What is left of the leader's sign of life as it dies: nobody may take over before that
    // lapses (a packet after this reading only moves the lapse later).
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let asked_at = Instant::now();
    let left: i64 = redis::cmd("PTTL")
        .arg("bff:alive")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(left > 0, "the leader is alive: PTTL {left}");
    daemons[new_leader].signal(libc::SIGKILL);
    daemons[new_leader].wait_exit();
    let took_over = within("the survivor to take over", async {
        while health(&daemons[survivor]).await["mode"] != "leader" {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        asked_at.elapsed()
    })
    .await;
    eprintln!(
        "after SIGKILL of the leader: the survivor led after {took_over:?}, sign of life left {left} ms"
    );
    assert!(
        took_over >= Duration::from_millis(left.unsigned_abs()),
        "the survivor led {took_over:?} after the reading, when the dead leader's sign of life still had {left} ms"
    );
    let mut next = next_packet(&mut ws).await;
    while next["seq"] == last["seq"] {
        next = next_packet(&mut ws).await;
    }
    assert_eq!(next["epoch"], epoch.as_str());
    assert!(next["seq"].as_u64() > last["seq"].as_u64());
    last = next;
    let health = health(&daemons[survivor]).await;
    assert_eq!(health["mode"], "leader");

    // A third daemon joins as a follower; killing it leaves the others' clients untouched.
    daemons.extend(start_daemons(1, &config, &redis));
    let mut doomed = client(&daemons[2], "").await;
    next_packet(&mut doomed).await;
    daemons[2].signal(libc::SIGKILL);
    daemons[2].wait_exit();
    assert!(matches!(
        common::next_frame(&mut doomed).await,
        common::Frame::Ended(_)
    ));
    for _ in 0..2 {
        let next = next_packet(&mut ws).await;
        assert_eq!(
            next["seq"].as_u64(),
            Some(last["seq"].as_u64().unwrap() + 1)
        );
        last = next;
    }
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_gone_each_daemon_serves_alone_then_one_poller_again() {
    let Some(Cluster {
        mut redis,
        engines: _engines,
        daemons,
        ..
    }) = cluster("fallback", 500, 3, false).await
    else {
        return;
    };
    let mut ws = client(&daemons[0], "").await;
    next_packet(&mut ws).await;
    // A packet the leader published (the WELCOME may be this daemon's own first snapshot).
    let cluster_epoch = next_packet(&mut ws).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();

    redis.stop();
    // Every daemon falls back to polling alone, and its clients keep getting packets, under
    // a local epoch (so they see the change).
    within("every daemon in fallback", async {
        loop {
            let mut fallback = 0;
            for daemon in &daemons {
                if health(daemon).await["mode"] == "fallback" {
                    fallback += 1;
                }
            }
            if fallback == 3 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // Each says so to its clients: the CLUSTER_LOST alert, active in the packets it polls.
    let has_alert = |p: &Value| {
        p["data"]["alerts"]
            .as_array()
            .is_some_and(|alerts| alerts.iter().any(|a| a["code"] == "CLUSTER_LOST"))
    };
    let local = common::packet_where(&mut ws, "a local packet with CLUSTER_LOST", |p| {
        p["type"] == "TELEMETRY" && p["epoch"] != cluster_epoch.as_str() && has_alert(p)
    })
    .await;
    let next = next_packet(&mut ws).await;
    assert_eq!(next["epoch"], local["epoch"]);
    assert_eq!(
        next["seq"].as_u64(),
        Some(local["seq"].as_u64().unwrap() + 1)
    );
    let (samples, _) = {
        let (_, text) = common::reqwest_get(&format!("http://{}/metrics", daemons[0].addr())).await;
        (text.clone(), text)
    };
    assert!(
        samples
            .as_str()
            .unwrap()
            .contains(r#"bff_cluster_role{role="fallback"} 1"#)
    );

    // Redis back: one poller again, and the clients follow the cluster's count.
    redis.restart();
    one_leader(&daemons).await;
    let again = common::packet_where(&mut ws, "a cluster packet again", |p| {
        p["type"] == "TELEMETRY" && p["epoch"] != local["epoch"]
    })
    .await;
    assert!(!has_alert(&again), "cleared with the cluster back: {again}");
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_cannot_leave_two_pollers_publishing() {
    let Some(Cluster {
        redis,
        engines,
        daemons,
        ..
    }) = cluster("fence", 500, 3, false).await
    else {
        return;
    };
    let mut ws = client(&daemons[1], "").await;
    next_packet(&mut ws).await;
    // A packet the leader published (the WELCOME may be this daemon's own first snapshot); the
    // paused Redis keeps the cluster's count, so it carries on under this epoch afterwards.
    let cluster_epoch = next_packet(&mut ws).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    redis.pause();
    // Past the lease and its deadline, nobody holds it for sure: each daemon serves alone.
    within("every daemon polling alone", async {
        while polling_alone(&daemons).await < daemons.len() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    redis.resume();
    let leader = one_leader(&daemons).await;
    // From here one poller, and one count. Two of the leader's packets first, so that a poll a
    // daemon started while it was still alone has landed.
    let start = packets_of(&mut ws, &cluster_epoch, 2).await;
    let before = polls(&engines);
    let mut last = start["seq"].as_u64().unwrap();
    for _ in 0..4 {
        let next = packets_of(&mut ws, &cluster_epoch, 1).await;
        let seq = next["seq"].as_u64().unwrap();
        assert_eq!(seq, last + 1, "one count, nothing skipped or repeated");
        last = seq;
    }
    let after = polls(&engines);
    for (i, (before, after)) in before.iter().zip(&after).enumerate() {
        if i == leader {
            assert!(after > before, "the leader polled: {before} then {after}");
        } else {
            assert_eq!(
                after, before,
                "daemon {i} still polls after Redis came back, and it does not lead"
            );
        }
    }
}

/// How many of `daemons` say in `/health` that they poll alone (`fallback`).
async fn polling_alone(daemons: &[BffProcess]) -> usize {
    let mut alone = 0;
    for daemon in daemons {
        if health(daemon).await["mode"] == "fallback" {
            alone += 1;
        }
    }
    alone
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_on_another_daemon_where_it_left_off() {
    let Some(Cluster {
        redis: _redis,
        engines: _engines,
        daemons,
        ..
    }) = cluster("resume", 250, 3, false).await
    else {
        return;
    };
    let mut ws = client(&daemons[0], "").await;
    next_packet(&mut ws).await;
    let left = next_packet(&mut ws).await;
    let (since, epoch) = (
        left["seq"].as_u64().unwrap(),
        left["epoch"].as_str().unwrap().to_owned(),
    );
    drop(ws);
    // Some packets published while it is away: the other daemon has seen two more.
    within("two packets while the client is away", async {
        while health(&daemons[2]).await["seq"].as_u64() < Some(since + 2) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let mut ws = client(&daemons[2], &format!("?since={since}&epoch={epoch}")).await;
    let welcome = next_packet(&mut ws).await;
    assert_eq!(
        (&welcome["resumed"], welcome["seq"].as_u64()),
        (&Value::Bool(true), Some(since + 1))
    );
    let mut seq = since + 1;
    for _ in 0..5 {
        let next = next_packet(&mut ws).await;
        seq += 1;
        assert_eq!(
            next["seq"].as_u64(),
            Some(seq),
            "exactly what it missed, in order, then live"
        );
    }
}

/// Reads until `n` UPDATEs came: their (offset, data), in order.
async fn updates(ws: &mut Ws, n: usize) -> Vec<(u64, Value)> {
    let mut got = Vec::new();
    while got.len() < n {
        let update = packet_where(ws, "an UPDATE", |p| p["type"] == "UPDATE").await;
        got.push((update["offset"].as_u64().unwrap(), update["data"].clone()));
    }
    got
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_channels_are_numbered_once_for_the_cluster_and_resume_on_another_daemon() {
    let Some(Cluster {
        redis,
        engines: _engines,
        config,
        mut daemons,
        ..
    }) = cluster("relay", 250, 2, true).await
    else {
        return;
    };
    let subscribe = r#"{"type":"SUBSCRIBE","channels":["trade.results"]}"#;
    let (mut a, mut b) = (client(&daemons[0], "").await, client(&daemons[1], "").await);
    let mut epoch = Value::Null;
    for ws in [&mut a, &mut b] {
        let polled = packet_where(ws, "a cluster packet", |p| p["seq"].as_u64() >= Some(1)).await;
        epoch = polled["epoch"].clone();
        send_text(ws, subscribe).await;
        packet_where(ws, "SUBSCRIBED", |p| p["type"] == "SUBSCRIBED").await;
    }
    for n in 1..=2 {
        redis.publish("trade.results", format!(r#"{{"n":{n}}}"#));
    }
    // Every daemon gives each message the same offset.
    let expected = vec![(1, json!({"n": 1})), (2, json!({"n": 2}))];
    assert_eq!(updates(&mut a, 2).await, expected);
    assert_eq!(updates(&mut b, 2).await, expected);
    drop(a);
    // A third joins after those: it numbers nothing itself, so its offsets are the cluster's.
    daemons.extend(start_daemons(1, &config, &redis));
    one_leader(&daemons).await;
    for n in 3..=4 {
        redis.publish("trade.results", format!(r#"{{"n":{n}}}"#));
    }
    assert_eq!(updates(&mut b, 2).await[1].0, 4);

    // Back, on another daemon: exactly what it missed, then live.
    let mut a = client(&daemons[2], "").await;
    next_packet(&mut a).await;
    let resume = format!(
        r#"{{"type":"SUBSCRIBE","channels":["trade.results"],"since":{{"trade.results":2}},"epoch":{epoch}}}"#
    );
    send_text(&mut a, &resume).await;
    let answer = packet_where(&mut a, "SUBSCRIBED", |p| p["type"] == "SUBSCRIBED").await;
    assert_eq!(answer["resumed"], json!({"trade.results": true}));
    redis.publish("trade.results", r#"{"n":5}"#);
    assert_eq!(
        updates(&mut a, 3).await,
        [
            (3, json!({"n": 3})),
            (4, json!({"n": 4})),
            (5, json!({"n": 5}))
        ]
    );
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[cfg_attr(
    bff_no_python,
    ignore = "python3 with websockets not found: pip install -r examples/clients/requirements.txt"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_dashboard_behind_a_balancer_loses_nothing_when_its_daemon_dies() {
    let Some(python) = common::clients::python() else {
        return;
    };
    let Some(Cluster {
        redis,
        engines: _engines,
        daemons,
        leader,
        ..
    }) = cluster("balancer", 250, 2, true).await
    else {
        return;
    };
    let (follower, leader) = (&daemons[1 - leader], &daemons[leader]);
    // The follower relays the leader's packets before the dashboard connects: until the first
    // reaches it, its WELCOME would be its own INITIALIZING snapshot, of another epoch than
    // the packets that follow.
    within("the follower to relay the leader's packets", async {
        while health(follower).await["seq"].as_u64().unwrap_or(0) < 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let balancer = Balancer::start(follower.addr()).await;

    // The agents publish ten times a second throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let (addr, publishing) = (redis.addr(), stop.clone());
    let agents = std::thread::spawn(move || {
        for n in 0.. {
            if publishing.load(Ordering::Relaxed) {
                break;
            }
            common::redis::publish_to(addr, "agent.updates", format!(r#"{{"n":{n}}}"#).as_bytes());
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let mut dashboard = tokio::process::Command::from(python);
    dashboard
        .args([
            format!("ws://{}/", balancer.addr),
            "60".into(),
            "agent.updates".into(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut dashboard = dashboard.spawn().unwrap();
    let mut lines = BufReader::new(dashboard.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    within("three updates before the fault", async {
        while stdout.matches("UPDATE ").count() < 3 {
            stdout += &lines.next_line().await.unwrap().unwrap();
            stdout.push('\n');
        }
    })
    .await;
    // Its daemon dies; the balancer sends the reconnect to the other.
    balancer.switch(leader.addr());
    follower.signal(libc::SIGKILL);
    within("the dashboard to end", async {
        while let Some(line) = lines.next_line().await.unwrap() {
            stdout += &line;
            stdout.push('\n');
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    agents.join().unwrap();
    assert!(dashboard.wait().await.unwrap().success(), "{stdout}");

    let reconnects: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("RECONNECTED"))
        .collect();
    assert_eq!(reconnects, ["RECONNECTED resumed=true"], "{stdout}");
    let subscribed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("SUBSCRIBED"))
        .collect();
    assert_eq!(
        subscribed,
        [
            "SUBSCRIBED channels=[agent.updates]",
            "SUBSCRIBED channels=[agent.updates] resumed=[agent.updates:true]"
        ],
        "{stdout}"
    );
    let seqs = numbers_in_order(&stdout, &["WELCOME seq=", "TELEMETRY seq="]);
    let offsets = numbers_in_order(&stdout, &["UPDATE agent.updates offset="]);
    for (what, list) in [("seq", seqs), ("offset", offsets)] {
        assert!(list.len() >= 4, "{what}s: {stdout}");
        assert!(
            list.windows(2).all(|w| w[1] == w[0] + 1),
            "no {what} missing or repeated across the fault: {stdout}"
        );
    }
}

/// The numbers after any of `prefixes`, in the order the lines came.
fn numbers_in_order(stdout: &str, prefixes: &[&str]) -> Vec<u64> {
    stdout
        .lines()
        .filter_map(|l| prefixes.iter().find_map(|p| l.strip_prefix(p)))
        .map(|rest| rest.split(' ').next().unwrap().parse().unwrap())
        .collect()
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_lapsed_can_neither_publish_nor_number_what_it_relays() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys = Keys::new("fenced");
    // Short, yet room for a stalled test thread between acquiring and publishing.
    let short = Duration::from_millis(800);
    assert!(
        scripts::acquire(&mut conn, &keys, "old", "E", short, short)
            .await
            .unwrap()
            .taken
            .taken()
    );
    let seal = Seal::new("");
    let first = scripts::publish(
        &mut conn, &keys, "old", "E", &seal, "{}", 300, SILENCE, "e1",
    )
    .await;
    assert_eq!(first, Ok(Some(("e1".to_owned(), 1))));

    // The old holder is paused past its lease (Redis has let the key go); another takes it.
    within("the short lease to lapse", async {
        loop {
            let left: i64 = redis::cmd("PTTL")
                .arg("fenced:lease")
                .query_async(&mut conn)
                .await
                .unwrap();
            if left == -2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let lease = Duration::from_secs(5);
    assert!(
        scripts::acquire(&mut conn, &keys, "new", "E", lease, lease)
            .await
            .unwrap()
            .taken
            .taken()
    );
    let late = scripts::publish(
        &mut conn,
        &keys,
        "old",
        "E",
        &seal,
        r#"{"late":1}"#,
        300,
        SILENCE,
        "e2",
    )
    .await;
    assert_eq!(
        late,
        Ok(None),
        "refused: the lease is no longer the old holder's"
    );
    let relayed = [scripts::Offer {
        channel: "trade.results".to_owned(),
        payload: bytes::Bytes::from_static(b"{}"),
        id: scripts::message_id("trade.results", b"{}", 0),
    }];
    scripts::relay(
        &mut conn, &keys, "old", "E", &seal, "e2", &relayed, SILENCE, 300,
    )
    .await
    .unwrap();
    let offset = redis.command(&[b"HGET", b"fenced:offsets", b"trade.results"]);
    assert!(
        matches!(offset, common::redis::Resp::Bulk(None)),
        "nothing numbered for a lapsed lease: {offset:?}"
    );

    // The count carries on under the new holder, in the same epoch, with nothing in between.
    let next = scripts::publish(
        &mut conn, &keys, "new", "E", &seal, "{}", 300, SILENCE, "e3",
    )
    .await;
    assert_eq!(next, Ok(Some(("e1".to_owned(), 2))));
    scripts::relay(
        &mut conn, &keys, "new", "E", &seal, "e3", &relayed, SILENCE, 300,
    )
    .await
    .unwrap();
    let offset = redis.command(&[b"HGET", b"fenced:offsets", b"trade.results"]);
    assert_eq!(offset.text(), "1", "numbered from the first");
}

/// A poller's sign of life long enough never to lapse in a test that does not wait for it.
const SILENCE: Duration = Duration::from_secs(60);

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_pollers_lease_is_taken_before_it_lapses_and_its_publishing_refused() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys = Keys::new("silent");
    // A silence the test's next steps fit in even on a loaded machine, waited out below.
    let (lease, silence) = (Duration::from_secs(60), Duration::from_millis(1500));
    let seal = Seal::new("");
    let taker = conn.clone();
    let take = |token: &'static str| {
        let (mut conn, keys) = (taker.clone(), keys.clone());
        async move {
            scripts::acquire(&mut conn, &keys, token, "E", lease, silence)
                .await
                .unwrap()
                .taken
        }
    };
    assert_eq!(take("old").await, scripts::Taken::Free);
    let first = scripts::publish(
        &mut conn, &keys, "old", "E", &seal, "{}", 300, silence, "e1",
    )
    .await;
    assert_eq!(first, Ok(Some(("e1".to_owned(), 1))));
    // Within its silence the poller keeps its lease, and its own try keeps it too.
    assert_eq!(take("new").await, scripts::Taken::No);
    assert_eq!(take("old").await, scripts::Taken::Free);

    // Silent past it (killed, paused): its lease, far from lapsing, is taken from it.
    within("the poller's sign of life to lapse", async {
        while redis.command(&[b"PTTL", b"silent:alive"]).integer() != -2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(redis.command(&[b"PTTL", b"silent:lease"]).integer() > 50_000);
    assert_eq!(take("new").await, scripts::Taken::Silent);
    // From then on the old one is refused: one publisher in the epoch, numbered on.
    let late = scripts::publish(
        &mut conn, &keys, "old", "E", &seal, "{}", 300, silence, "e2",
    )
    .await;
    assert_eq!(late, Ok(None), "refused: the lease was taken");
    let relayed = [scripts::Offer {
        channel: "trade.results".to_owned(),
        payload: bytes::Bytes::from_static(b"{}"),
        id: scripts::message_id("trade.results", b"{}", 0),
    }];
    scripts::relay(
        &mut conn, &keys, "old", "E", &seal, "e2", &relayed, SILENCE, 300,
    )
    .await
    .unwrap();
    let offset = redis.command(&[b"HGET", b"silent:offsets", b"trade.results"]);
    assert!(
        matches!(offset, common::redis::Resp::Bulk(None)),
        "{offset:?}"
    );
    assert!(
        !scripts::renew(&mut conn, &keys, "old", lease)
            .await
            .unwrap(),
        "the old poller's renewal finds another token"
    );
    assert_eq!(
        take("old").await,
        scripts::Taken::No,
        "the new one is alive"
    );
    let next = scripts::publish(
        &mut conn, &keys, "new", "E", &seal, "{}", 300, silence, "e3",
    )
    .await;
    assert_eq!(next, Ok(Some(("e1".to_owned(), 2))));
}

/// `config` with `[cluster]` signing with `secret` (written to a file next to it); the new
/// config's path, told apart by `name`.
fn with_secret(config: &std::path::Path, name: &str, secret: &str) -> PathBuf {
    let stem = config.file_stem().unwrap().to_str().unwrap();
    let secret_file = config.with_file_name(format!("{stem}-{name}.secret"));
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let text = std::fs::read_to_string(config).unwrap().replace(
        "[cluster]\n",
        &format!("[cluster]\nsecret_file = {:?}\n", secret_file.display()),
    );
    let signed = config.with_file_name(format!("{stem}-{name}.toml"));
    std::fs::write(&signed, text).unwrap();
    signed
}

/// The samples of `metric` in `daemon`'s `/metrics`, as `name{labels} value` lines.
async fn samples(daemon: &BffProcess, metric: &str) -> Vec<String> {
    let (_, text) = common::reqwest_get(&format!("http://{}/metrics", daemon.addr())).await;
    text.as_str()
        .unwrap()
        .lines()
        .filter(|l| l.starts_with(metric))
        .map(str::to_owned)
        .collect()
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_packets_and_relayed_messages_reach_nobody_when_the_cluster_signs() {
    let secret = "the-cluster-secret-the-cluster-secret";
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let engine = FakeEngine::samples().await;
    let plain = config_file(&engine, "forged", 250);
    let mut text = std::fs::read_to_string(&plain).unwrap();
    text += &format!("[redis]\nurl = \"{}\"\n", redis.url());
    std::fs::write(&plain, text).unwrap();
    let config = with_secret(&plain, "signed", secret);
    let mut daemons = start_daemons(2, &config, &redis);
    let leader = one_leader(&daemons).await;
    let follower = &daemons[1 - leader];

    let mut ws = client(follower, "").await;
    let polled = packet_where(&mut ws, "a cluster packet", |p| {
        p["seq"].as_u64() >= Some(1)
    })
    .await;
    send_text(
        &mut ws,
        r#"{"type":"SUBSCRIBE","channels":["trade.results"]}"#,
    )
    .await;
    packet_where(&mut ws, "SUBSCRIBED", |p| p["type"] == "SUBSCRIBED").await;
    let epoch = redis.command(&[b"GET", b"bff:epoch"]).text();
    assert_eq!(polled["epoch"], epoch.as_str());
    let last = next_packet(&mut ws).await;
    let body = last["data"].to_string();

    // What anyone who can publish on that Redis could send: far-ahead numbers, unsigned or
    // with a made-up tag, each of which would have frozen the follower's stream (and channel).
    let made_up = "0".repeat(64);
    for forged in [
        format!("{epoch} 999999999999 {body}"),
        format!("{epoch} 999999999998 {made_up} {body}"),
    ] {
        assert!(
            redis.publish("bff:packets", forged) >= 2,
            "both daemons hear it"
        );
    }
    redis.publish(
        "bff:relay",
        format!(r#"{epoch} 999999 13 trade.results{{"forged":1}}"#),
    );
    redis.publish("trade.results", r#"{"n":1}"#);

    // The follower's dashboard carries on with the leader's packets, one after the other.
    let mut seq = last["seq"].as_u64().unwrap();
    let mut update = None;
    while seq < last["seq"].as_u64().unwrap() + 3 || update.is_none() {
        let next = next_packet(&mut ws).await;
        if next["type"] == "UPDATE" {
            assert!(update.is_none(), "one UPDATE only: {next}");
            update = Some((next["offset"].clone(), next["data"].clone()));
            continue;
        }
        assert_eq!(next["epoch"], epoch.as_str(), "{next}");
        assert_eq!(next["seq"].as_u64(), Some(seq + 1), "no forged seq: {next}");
        seq += 1;
    }
    assert_eq!(
        update,
        Some((json!(1), json!({"n": 1}))),
        "the real message, numbered from 1"
    );

    // Counted, logged without the secret, and said in /health.
    for daemon in &daemons {
        let mut got = samples(daemon, "bff_cluster_rejected_total").await;
        got.sort();
        assert_eq!(
            got,
            [
                r#"bff_cluster_rejected_total{reason="bad_tag"} 1"#,
                r#"bff_cluster_rejected_total{reason="unsigned"} 2"#
            ]
        );
        let health = health(daemon).await;
        assert_eq!(health["cluster_rejected"], 3, "{health}");
    }
    let follower = &mut daemons[1 - leader];
    let line = follower.line_containing("cluster.secret_file was dropped");
    assert!(line.contains("unsigned"), "{line}");
    assert!(follower.log().iter().all(|l| !l.contains(secret)));

    // A daemon given another secret takes nothing, and says why.
    let other = with_secret(&plain, "other", "another-secret-another-secret-another");
    let stray = start_daemons(1, &other, &redis).remove(0);
    let health = within("the stray daemon to say stale", async {
        loop {
            let health = health(&stray).await;
            if health["state"] == "stale" && health["cluster_rejected"].as_u64() > Some(0) {
                return health;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(health["seq"], 0, "{health}");
    assert!(health["packet_age_ms"].as_u64() >= Some(750), "{health}");
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_stale_with_the_age_while_no_packet_reaches_the_clients() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let engine = FakeEngine::samples().await;
    let config = config_file(&engine, "silent", 250);
    // A lease that outlasts the test: the stopped leader keeps it, so nobody takes over.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("lease_ms = 2000", "lease_ms = 60000");
    std::fs::write(&config, text).unwrap();
    let mut daemons = start_daemons(2, &config, &redis);
    daemons[0].line_containing("cluster.secret_file is not set");
    let leader = one_leader(&daemons).await;
    let follower = &daemons[1 - leader];
    let fresh = within("the follower to be ok", async {
        loop {
            let health = health(follower).await;
            if health["state"] == "ok" {
                return health;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(fresh["packet_age_ms"].as_u64() < Some(750), "{fresh}");

    daemons[leader].signal(libc::SIGSTOP);
    let stale = within("the follower to say stale", async {
        loop {
            let health = health(follower).await;
            if health["state"] != "ok" {
                return health;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(stale["state"], "stale", "{stale}");
    assert!(stale["packet_age_ms"].as_u64() >= Some(750), "{stale}");
    assert_eq!(stale["mode"], "follower");

    // The leader back: packets again, and `ok`.
    daemons[leader].signal(libc::SIGCONT);
    within("the follower to be ok again", async {
        while health(follower).await["state"] != "ok" {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_entry_in_the_cluster_history_is_never_resumed_from() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let engine = FakeEngine::samples().await;
    let plain = config_file(&engine, "history", 250);
    let config = with_secret(&plain, "signed", "the-cluster-secret-the-cluster-secret");
    let daemons = start_daemons(2, &config, &redis);
    one_leader(&daemons).await;
    let mut ws = client(&daemons[0], "").await;
    let left = packet_where(&mut ws, "a cluster packet", |p| {
        p["seq"].as_u64() >= Some(1)
    })
    .await;
    let (since, epoch) = (
        left["seq"].as_u64().unwrap(),
        left["epoch"].as_str().unwrap().to_owned(),
    );
    packet_from(&mut ws, &epoch, since + 2).await;
    drop(ws);

    // Someone who can write the cluster's Redis puts their own packet after `since` in the
    // history, in one step (the poller appends meanwhile).
    let rewrite = br"
        local entries = redis.call('XRANGE', KEYS[1], '-', '+')
        redis.call('DEL', KEYS[1])
        for _, entry in ipairs(entries) do
          local packet = entry[2][2]
          if entry[1] == ARGV[1] then packet = ARGV[2] end
          redis.call('XADD', KEYS[1], entry[1], 'p', packet)
        end
        return #entries";
    let id = format!("{}-1", since + 1);
    let forged = format!(r#"{epoch} {} {{"forged":1}}"#, since + 1);
    let rewritten = redis.command(&[
        b"EVAL",
        rewrite,
        b"1",
        b"bff:history",
        id.as_bytes(),
        forged.as_bytes(),
    ]);
    assert!(rewritten.integer() > 2, "{rewritten:?}");

    // A daemon that joins now has only the history to resume from: it starts the client
    // afresh, with the cluster's packets, and never sends the forged one.
    let late = start_daemons(1, &config, &redis).remove(0);
    within("the late daemon to relay the leader's packets", async {
        while health(&late).await["seq"].as_u64().unwrap_or(0) <= since + 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let mut ws = client(&late, &format!("?since={since}&epoch={epoch}")).await;
    let welcome = next_packet(&mut ws).await;
    assert_eq!(welcome["resumed"], false, "{welcome}");
    assert!(welcome["seq"].as_u64() > Some(since + 2), "{welcome}");
    for _ in 0..2 {
        let next = next_packet(&mut ws).await;
        assert_ne!(next["data"], json!({"forged": 1}));
    }
    assert_eq!(
        samples(&late, "bff_cluster_rejected_total").await,
        [r#"bff_cluster_rejected_total{reason="unsigned"} 1"#]
    );
}

/// A client on each daemon but the `leader`, past its WELCOME.
async fn followers_watched(daemons: &[BffProcess], leader: usize) -> Vec<Ws> {
    let mut watchers = Vec::new();
    for (i, daemon) in daemons.iter().enumerate() {
        if i != leader {
            let mut ws = client(daemon, "").await;
            next_packet(&mut ws).await;
            watchers.push(ws);
        }
    }
    watchers
}

/// Every message read from `ws` up to the first `done` holds for, that one included.
async fn messages_until(ws: &mut Ws, done: impl Fn(&Value) -> bool) -> Vec<Value> {
    within("a message", async {
        let mut read = Vec::new();
        loop {
            let message = next_packet(ws).await;
            let last = done(&message);
            read.push(message);
            if last {
                return read;
            }
        }
    })
    .await
}

/// The messages of `kinds` among `messages`.
fn only<'a>(messages: &'a [Value], kinds: &[&str]) -> Vec<&'a Value> {
    messages
        .iter()
        .filter(|m| kinds.iter().any(|kind| m["type"] == *kind))
        .collect()
}

/// The mood and alerts are decided by the poller alone and announced from consecutive packets,
/// so a follower's clients hear exactly the leader's `REGIME` and `ALERT`s (and its
/// market-stream clients the same change); and a daemon taking over carries the mood and the
/// alerts on from the last packet: no mood reset to neutral, no alert raised again.
#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_hear_the_leaders_regime_and_a_new_poller_carries_the_mood_on() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let engine = FakeEngine::samples().await;
    let config = config_file(&engine, "mood", 250);
    // A dwell longer than a poll: a new poller that started from neutral would show it.
    let text = std::fs::read_to_string(&config).unwrap() + "[regime]\nmin_dwell_ms = 600\n";
    std::fs::write(&config, text).unwrap();
    let mut daemons = start_daemons(2, &config, &redis);
    let leader = one_leader(&daemons).await;
    let follower = 1 - leader;
    let mut on_leader = client(&daemons[leader], "").await;
    let mut on_follower = client(&daemons[follower], "").await;
    for ws in [&mut on_leader, &mut on_follower] {
        let welcome = next_packet(ws).await;
        assert_eq!(welcome["data"]["mood"]["regime"], "neutral", "{welcome}");
    }
    let market_url = format!("ws://{}/ws/market-stream", daemons[follower].addr());
    let mut market = tokio_tungstenite::connect_async(market_url)
        .await
        .unwrap()
        .0;
    assert_eq!(next_packet(&mut market).await["regime"], "neutral");

    let mut crash: Value =
        serde_json::from_str(&common::fixture_text("state-current.json")).unwrap();
    crash["status"] = "HALTED".into();
    crash["market"]["velocity"] = (-0.02).into();
    engine.set("state", common::Answer::Body(crash.to_string()));
    let crashed = |m: &Value| m["type"] == "TELEMETRY" && m["data"]["mood"]["regime"] == "crash";
    let heard_on_leader = messages_until(&mut on_leader, crashed).await;
    let heard_on_follower = messages_until(&mut on_follower, crashed).await;
    let announced = only(&heard_on_leader, &["REGIME", "ALERT"]);
    assert_eq!(
        announced,
        only(&heard_on_follower, &["REGIME", "ALERT"]),
        "the follower hears what the leader's clients hear"
    );
    let kinds: Vec<_> = announced
        .iter()
        .map(|m| format!("{} {}", m["type"], m["data"]["code"]))
        .collect();
    assert_eq!(
        kinds,
        [
            "\"ALERT\" \"ENGINE_HALTED\"",
            "\"REGIME\" null",
            "\"ALERT\" \"MARKET_CRASH\""
        ],
        "the halt at once, the crash after its dwell"
    );
    let regime = &announced[1]["data"];
    assert_eq!(regime["previous"], "neutral");
    let changed = messages_until(&mut market, |m| m["type"] == "market_regime").await;
    let mut flat = changed.last().unwrap().clone();
    flat.as_object_mut().unwrap().remove("type");
    assert_eq!(
        &flat, regime,
        "the market-stream path hears the same change"
    );
    let last = heard_on_follower.last().unwrap().clone();

    // The leader stops: the follower takes over, and its packets carry on with the same mood
    // (the same `since`) and the same alerts (the same timestamps), announcing nothing.
    daemons[leader].signal(libc::SIGTERM);
    assert!(daemons[leader].wait_exit().success());
    let stopped = daemons.remove(leader);
    drop(stopped);
    within("the follower to take over", async {
        while health(&daemons[0]).await["mode"] != "leader" {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let mut after = Vec::new();
    for _ in 0..6 {
        after.extend(messages_until(&mut on_follower, |m| m["type"] == "TELEMETRY").await);
    }
    assert_eq!(
        only(&after, &["REGIME", "ALERT"]),
        Vec::<&Value>::new(),
        "{after:#?}"
    );
    for packet in &after {
        assert_eq!(packet["data"]["mood"], last["data"]["mood"]);
        assert_eq!(packet["data"]["alerts"], last["data"]["alerts"]);
    }
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_pollers_silence_is_noticed_and_the_survivors_clients_wait_little() {
    let Some(Cluster {
        redis: _redis,
        engines: _engines,
        mut daemons,
        leader,
        ..
    }) = cluster("gap", 1000, 3, false).await
    else {
        return;
    };
    let mut watchers = followers_watched(&daemons, leader).await;
    // The last packet before the kill, at each survivor's client; the kill right after it, so
    // the gap is the whole of the silence.
    let mut last = Vec::new();
    let first = next_packet(&mut watchers[0]).await;
    last.push((first.clone(), Instant::now()));
    let seq = first["seq"].as_u64().unwrap();
    let second = packet_from(&mut watchers[1], first["epoch"].as_str().unwrap(), seq).await;
    assert_eq!(second["seq"].as_u64(), Some(seq), "both at the same packet");
    last.push((second, Instant::now()));
    daemons[leader].signal(libc::SIGKILL);
    daemons[leader].wait_exit();
    let mut dead = daemons.remove(leader);
    dead.close_output();

    for (ws, (before, at)) in watchers.iter_mut().zip(&last) {
        let after = packet_where(ws, "a packet after the kill", |p| {
            p["epoch"] == before["epoch"] && p["seq"].as_u64() > before["seq"].as_u64()
        })
        .await;
        eprintln!(
            "gap after SIGKILL of the poller (1 Hz, default lease): {} ms (seq {} then {})",
            at.elapsed().as_millis(),
            before["seq"],
            after["seq"]
        );
    }
    // Taken over for the poller's silence, not once its lease lapsed.
    let new_leader = one_leader(&daemons).await;
    let line = daemons[new_leader].line_containing("Poller lease taken");
    assert!(line.contains("silent"), "{line}");
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_of_another_engine_follows_none_of_the_cluster_and_says_why() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (ours, theirs) = (FakeEngine::samples().await, FakeEngine::samples().await);
    let config = config_file(&ours, "engine-ours", 250);
    let mut daemons = start_daemons(1, &config, &redis);
    one_leader(&daemons).await;
    // Another engine (told by its URLs: no engine_id), reached with a password in its URL.
    let other = config_file(&theirs, "engine-theirs", 250);
    let text = std::fs::read_to_string(&other)
        .unwrap()
        .replace("engine_id = \"the test engine\"\n", "")
        .replace("url = \"http://", "url = \"http://watcher:s3cret@");
    std::fs::write(&other, text).unwrap();
    let mut apart = start_daemons(1, &other, &redis).remove(0);
    let why = apart.line_containing("The cluster's poller polls another engine");
    assert!(why.contains("cluster_engine="), "{why}");
    let said = within("the other engine's daemon to say so", async {
        loop {
            let said = health(&apart).await;
            if said["mode"] == "apart" && said["seq"].as_u64() > Some(0) {
                return said;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(said["state"], "degraded", "{said}");

    // Its clients get its own engine's packets, never the cluster's; the cluster's get theirs.
    let mut watcher = client(&daemons[0], "").await;
    let cluster_epoch = packet_where(&mut watcher, "a cluster packet", |p| {
        p["seq"].as_u64() > Some(0)
    })
    .await["epoch"]
        .clone();
    let polled = theirs.hits("/state");
    let mut ws = client(&apart, "").await;
    for _ in 0..4 {
        let packet = next_packet(&mut ws).await;
        assert_ne!(packet["epoch"], cluster_epoch, "{packet}");
    }
    assert!(theirs.hits("/state") > polled, "it polls its own engine");

    // A daemon of the cluster's engine follows, and logs what it sends on.
    daemons.extend(start_daemons(1, &config, &redis));
    let line = daemons[1].line_containing("Telemetry published");
    assert!(line.contains("role=follower"), "{line}");
    assert_eq!(health(&daemons[1]).await["mode"], "follower");
    let mut follower = client(&daemons[1], "").await;
    let packet = packet_where(&mut follower, "a cluster packet", |p| {
        p["seq"].as_u64() > Some(0)
    })
    .await;
    assert_eq!(packet["epoch"], cluster_epoch);

    // The cluster's poller dies while its follower is paused, and the other engine's daemon
    // takes the lease: the follower, woken, sends none of that engine's packets on.
    let ours_engine = redis.command(&[b"GET", b"bff:engine"]).text();
    daemons[1].signal(libc::SIGSTOP);
    daemons[0].signal(libc::SIGKILL);
    daemons[0].wait_exit();
    within("the other engine's daemon to lead and number", async {
        while redis.command(&[b"GET", b"bff:engine"]).text() == ours_engine {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let theirs_epoch = redis.command(&[b"GET", b"bff:epoch"]).text();
    assert_ne!(Value::String(theirs_epoch.clone()), cluster_epoch);
    daemons[1].signal(libc::SIGCONT);
    let mut apart_packets = 0;
    within("the woken follower to be apart", async {
        while apart_packets < 3 {
            let packet = next_packet(&mut follower).await;
            assert_ne!(
                packet["epoch"],
                theirs_epoch.as_str(),
                "another engine's packet: {packet}"
            );
            if packet["epoch"] != cluster_epoch {
                apart_packets += 1;
            }
        }
    })
    .await;
    assert_eq!(health(&daemons[1]).await["mode"], "apart");

    apart.signal(libc::SIGTERM);
    apart.wait_exit();
    let log = apart.log().join("\n");
    assert!(!log.contains("s3cret"), "a credential in the log:\n{log}");
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_messages_published_across_the_pollers_death_reach_every_survivor_once() {
    let Some(Cluster {
        redis,
        engines: _engines,
        mut daemons,
        leader,
        ..
    }) = cluster("relayloss", 1000, 3, true).await
    else {
        return;
    };
    let subscribe = r#"{"type":"SUBSCRIBE","channels":["trade.results"]}"#;
    let mut watchers = Vec::new();
    for (i, daemon) in daemons.iter().enumerate() {
        if i != leader {
            let mut ws = client(daemon, "").await;
            send_text(&mut ws, subscribe).await;
            packet_where(&mut ws, "SUBSCRIBED", |p| p["type"] == "SUBSCRIBED").await;
            watchers.push(ws);
        }
    }
    // One message every 50 ms, from before the kill to well after the takeover.
    const MESSAGES: u64 = 80;
    let url = redis.url();
    let publisher = tokio::spawn(async move {
        let mut conn = redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let mut every = tokio::time::interval(Duration::from_millis(50));
        for n in 1..=MESSAGES {
            every.tick().await;
            let _: i64 = redis::cmd("PUBLISH")
                .arg("trade.results")
                .arg(format!(r#"{{"n":{n}}}"#))
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    });
    // A few relayed by the poller, then it dies.
    let first = updates(&mut watchers[0], 5).await;
    daemons[leader].signal(libc::SIGKILL);
    daemons[leader].wait_exit();
    let mut dead = daemons.remove(leader);
    dead.close_output();
    publisher.await.unwrap();

    for (i, ws) in watchers.iter_mut().enumerate() {
        let mut got = if i == 0 { first.clone() } else { Vec::new() };
        let rest = within("every message", async {
            let mut rest = Vec::new();
            while got.len() + rest.len() < MESSAGES as usize {
                rest.extend(updates(ws, 1).await);
            }
            rest
        })
        .await;
        got.extend(rest);
        let ns: Vec<u64> = got
            .iter()
            .map(|(_, data)| data["n"].as_u64().unwrap())
            .collect();
        assert_eq!(
            ns,
            (1..=MESSAGES).collect::<Vec<_>>(),
            "every message, once, in order"
        );
        for pair in got.windows(2) {
            assert_eq!(pair[1].0, pair[0].0 + 1, "contiguous offsets: {got:?}");
        }
    }
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_started_after_relayed_messages_resumes_them_from_the_cluster() {
    let Some(Cluster {
        redis,
        engines: _engines,
        config,
        mut daemons,
        ..
    }) = cluster("latejoin", 250, 2, true).await
    else {
        return;
    };
    let subscribe = r#"{"type":"SUBSCRIBE","channels":["trade.results"]}"#;
    let mut ws = client(&daemons[0], "").await;
    let epoch = packet_where(&mut ws, "a cluster packet", |p| {
        p["seq"].as_u64() >= Some(1)
    })
    .await["epoch"]
        .clone();
    send_text(&mut ws, subscribe).await;
    packet_where(&mut ws, "SUBSCRIBED", |p| p["type"] == "SUBSCRIBED").await;
    for n in 1..=3 {
        redis.publish("trade.results", format!(r#"{{"n":{n}}}"#));
    }
    assert_eq!(updates(&mut ws, 3).await[2].0, 3);
    drop(ws);

    // A daemon that started after them: the client that had the first resumes there.
    daemons.extend(start_daemons(1, &config, &redis));
    one_leader(&daemons).await;
    let mut ws = client(&daemons[2], "").await;
    packet_where(&mut ws, "a cluster packet", |p| p["epoch"] == epoch).await;
    let resume = format!(
        r#"{{"type":"SUBSCRIBE","channels":["trade.results"],"since":{{"trade.results":1}},"epoch":{epoch}}}"#
    );
    send_text(&mut ws, &resume).await;
    let answer = packet_where(&mut ws, "SUBSCRIBED", |p| p["type"] == "SUBSCRIBED").await;
    assert_eq!(
        answer["resumed"],
        json!({"trade.results": true}),
        "{answer}"
    );
    redis.publish("trade.results", r#"{"n":4}"#);
    assert_eq!(
        updates(&mut ws, 3).await,
        [
            (2, json!({"n": 2})),
            (3, json!({"n": 3})),
            (4, json!({"n": 4}))
        ]
    );
    // The same message published again is another message, numbered too.
    redis.publish("trade.results", r#"{"n":4}"#);
    assert_eq!(updates(&mut ws, 1).await, [(5, json!({"n": 4}))]);
    let stream = redis.command(&[b"XLEN", b"bff:relayed:trade.results"]);
    assert_eq!(
        stream.integer(),
        5,
        "one entry per message in the channel's stream"
    );
}

/// A `redis-server --sentinel` watching `master` as `m` (quorum 1, down after 1 s), killed when
/// dropped.
struct SentinelProcess {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl SentinelProcess {
    fn start(master: &RedisServer) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("sentinel-{port}-{}.conf", std::process::id()));
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nsentinel monitor m 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds m 1000\nsentinel failover-timeout m 5000\n",
                master.port()
            ),
        )
        .unwrap();
        let child = std::process::Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        Self { child, addr }
    }

    /// The Sentinel's array answer to `args`; `None` while it does not listen (or know `m`).
    fn ask(&self, args: &[&[u8]]) -> Option<Vec<common::redis::Resp>> {
        use std::io::Write;
        let mut stream =
            std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        stream
            .write_all(&common::redis::encode_command(args))
            .ok()?;
        match common::redis::read_reply(&mut std::io::BufReader::new(stream)).ok()? {
            common::redis::Resp::Array(Some(items)) => Some(items),
            _ => None,
        }
    }

    /// The master's port, as the Sentinel says now.
    fn master_port(&self) -> Option<u16> {
        let answer = self.ask(&[b"SENTINEL", b"get-master-addr-by-name", b"m"])?;
        answer.get(1).and_then(|port| port.text().parse().ok())
    }

    /// How many replicas of `m` the Sentinel knows.
    fn replicas(&self) -> usize {
        self.ask(&[b"SENTINEL", b"replicas", b"m"])
            .map_or(0, |answer| answer.len())
    }
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_sentinel_the_daemons_follow_the_new_master_after_a_failover() {
    let (Some(mut master), Some(replica)) = (RedisServer::start(), RedisServer::start()) else {
        return;
    };
    let of = master.port().to_string();
    replica.command(&[b"REPLICAOF", b"127.0.0.1", of.as_bytes()]);
    within("the replica in sync", async {
        while !replica
            .command(&[b"INFO", b"replication"])
            .text()
            .contains("master_link_status:up")
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let sentinel = SentinelProcess::start(&master);
    within("the Sentinel to know the replica", async {
        while sentinel.replicas() == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let url = format!("redis+sentinel://{}/m", sentinel.addr);
    let engine = FakeEngine::samples().await;
    let config = config_file(&engine, "sentinel", 1000);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text += &format!("[redis]\nurl = \"{url}\"\n");
    std::fs::write(&config, text).unwrap();
    let daemons: Vec<BffProcess> = (0..2)
        .map(|_| {
            BffProcess::start(
                &[
                    "--config",
                    config.to_str().unwrap(),
                    "--listen",
                    "127.0.0.1:0",
                    "--cluster",
                    &url,
                ],
                &[],
            )
        })
        .collect();
    let leader = one_leader(&daemons).await;
    let follower = &daemons[1 - leader];
    let mut ws = client(follower, "").await;
    send_text(
        &mut ws,
        r#"{"type":"SUBSCRIBE","channels":["trade.results"]}"#,
    )
    .await;
    packet_where(&mut ws, "SUBSCRIBED", |p| p["type"] == "SUBSCRIBED").await;
    let before = packet_where(&mut ws, "a cluster packet", |p| p["seq"].as_u64() > Some(0)).await;
    let at = Instant::now();
    master.kill();

    // The first packet after the kill (the follower alone, or the cluster again), then the
    // first of the cluster on the new master.
    let after = packet_where(&mut ws, "a packet after the kill", |p| {
        p["type"] == "TELEMETRY" && p["seq"] != before["seq"]
    })
    .await;
    let waited = at.elapsed();
    let failed_over = within("the Sentinel to promote the replica", async {
        while sentinel.master_port() != Some(replica.port()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        at.elapsed()
    })
    .await;
    eprintln!(
        "Sentinel failover within {failed_over:?}; the follower's client waited {} ms for a \
         packet (seq {} of {} then {} of {})",
        waited.as_millis(),
        before["seq"],
        before["epoch"],
        after["seq"],
        after["epoch"]
    );
    // One cluster again, on the new master: one leader, its epoch the one in Redis.
    one_leader(&daemons).await;
    let epoch = replica.command(&[b"GET", b"bff:epoch"]).text();
    packet_where(&mut ws, "a packet of the cluster on the new master", |p| {
        p["epoch"] == epoch.as_str()
    })
    .await;
    // The engine's events come from the new master too: a relayed message reaches the client.
    within("both daemons subscribed on the new master", async {
        while replica
            .command(&[b"PUBSUB", b"NUMSUB", b"trade.results"])
            .array()[1]
            .integer()
            < 2
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    replica.publish("trade.results", r#"{"n":1}"#);
    let update = packet_where(&mut ws, "an UPDATE", |p| p["type"] == "UPDATE").await;
    assert_eq!(update["data"], json!({"n": 1}));
}
