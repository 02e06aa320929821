//! Resuming after a reconnect: a client that comes back with `?since=<seq>&epoch=<epoch>` gets
//! exactly the packets it missed, in order, then the live stream; one the history cannot serve
//! is told so and starts from the latest, at no cost to the store behind the daemon's memory.

use crate::common;

use bff::RedisUrl;
use common::redis::RedisServer;
use common::{Daemon, FakeEngine, Ws, config, next_packet};
use serde_json::Value;

async fn connect(daemon: &Daemon, query: &str) -> Ws {
    tokio_tungstenite::connect_async(daemon.url(&format!("/{query}")))
        .await
        .unwrap()
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_comes_back_gets_what_it_missed_in_order() {
    let engine = FakeEngine::samples().await;
    let daemon = Daemon::start(config(&engine)).await;
    let mut ws = connect(&daemon, "").await;
    let welcome = next_packet(&mut ws).await;
    assert!(welcome.get("resumed").is_none(), "not asked, not said");
    let epoch = welcome["epoch"].as_str().unwrap().to_owned();
    let mut last = next_packet(&mut ws).await;
    assert_eq!(last["epoch"], epoch.as_str());
    let since = last["seq"].as_u64().unwrap();
    drop(ws);
    // Away for a few ticks.
    daemon
        .wait_health("three more ticks", |h| h["seq"].as_u64() >= Some(since + 3))
        .await;

    let mut ws = connect(&daemon, &format!("?since={since}&epoch={epoch}")).await;
    let welcome = next_packet(&mut ws).await;
    assert_eq!(
        (
            &welcome["type"],
            &welcome["resumed"],
            welcome["seq"].as_u64()
        ),
        (&Value::from("WELCOME"), &Value::from(true), Some(since + 1))
    );
    // Then every later packet once, in order: the missed ones and on into the live stream.
    let mut seq = since + 1;
    while seq < since + 6 {
        last = next_packet(&mut ws).await;
        seq += 1;
        assert_eq!(
            (&last["type"], last["seq"].as_u64()),
            (&Value::from("TELEMETRY"), Some(seq)),
            "no gap, no repeat"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_epoch_or_a_history_that_does_not_reach_back_starts_afresh() {
    let engine = FakeEngine::samples().await;
    let mut cfg = config(&engine);
    cfg.clients.resume_history = 3;
    let daemon = Daemon::start(cfg).await;
    let epoch = {
        let mut ws = connect(&daemon, "").await;
        next_packet(&mut ws).await["epoch"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    daemon
        .wait_health("ten ticks", |h| h["seq"].as_u64() >= Some(10))
        .await;
    for query in [
        format!("?since=2&epoch={epoch}"),
        "?since=9&epoch=0000000000000000".to_owned(),
        "?since=9".to_owned(),
    ] {
        let mut ws = connect(&daemon, &query).await;
        let welcome = next_packet(&mut ws).await;
        assert_eq!(welcome["resumed"], false, "{query}");
        let latest = welcome["seq"].as_u64().unwrap();
        assert!(latest >= 10, "the latest packet, not an old one");
        assert_eq!(next_packet(&mut ws).await["seq"].as_u64(), Some(latest + 1));
    }
    // A daemon started afresh is another epoch: a client of the first cannot resume there.
    let other = Daemon::start(config(&engine)).await;
    let mut ws = connect(&other, &format!("?since=1&epoch={epoch}")).await;
    let welcome = next_packet(&mut ws).await;
    assert_eq!(welcome["resumed"], false);
    assert_ne!(welcome["epoch"], epoch.as_str());
}

/// How many `XRANGE` reads (the cluster's history) `redis` has served.
fn history_reads(redis: &RedisServer) -> u64 {
    let info = redis.command(&[b"INFO", b"commandstats"]).text();
    info.lines()
        .find_map(|line| line.strip_prefix("cmdstat_xrange:calls="))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_epoch_is_refused_before_the_cluster_history_is_read() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let engine = FakeEngine::samples().await;
    let mut cfg = config(&engine);
    cfg.cluster.url = RedisUrl::new(redis.url());
    let leader = Daemon::start(cfg.clone()).await;
    leader
        .wait_health("a leader ten ticks on", |h| {
            h["mode"] == "leader" && h["seq"].as_u64() >= Some(10)
        })
        .await;
    // A daemon that joins now remembers nothing before it: older packets are in the history.
    let follower = Daemon::start(cfg).await;
    let health = follower
        .wait_health("a follower fed", |h| {
            h["mode"] == "follower" && h["seq"].as_u64() >= Some(10)
        })
        .await;
    let epoch = {
        let mut ws = connect(&follower, "").await;
        next_packet(&mut ws).await["epoch"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(history_reads(&redis), 0, "{health}");

    let mut ws = connect(&follower, "?since=2&epoch=0000000000000000").await;
    assert_eq!(next_packet(&mut ws).await["resumed"], false);
    assert_eq!(history_reads(&redis), 0, "another epoch reads nothing");

    // The same request in the cluster's epoch does read it, and resumes.
    let mut ws = connect(&follower, &format!("?since=2&epoch={epoch}")).await;
    let welcome = next_packet(&mut ws).await;
    assert_eq!(
        (&welcome["resumed"], welcome["seq"].as_u64()),
        (&Value::from(true), Some(3))
    );
    assert_eq!(history_reads(&redis), 1);
}
