//! Connection churn: many clients coming and going leave nothing behind. Its own test binary,
//! so its load does not share the machine with the latency-sensitive tests in `daemon.rs`.

mod common;

use common::{Daemon, FakeEngine, config, next_packet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_disconnect_cycles_leave_no_task_or_slot_behind() {
    let engine = FakeEngine::samples().await;
    let daemon = Daemon::start(config(&engine)).await;
    let mut watcher = daemon.connect().await;
    let mut seq = next_packet(&mut watcher).await["seq"].as_u64().unwrap();
    let baseline = daemon
        .wait_health("a settled daemon", |h| h["connections"] == 1)
        .await["tasks"]
        .as_u64()
        .unwrap();

    let done = std::sync::atomic::AtomicBool::new(false);
    let cycles = async {
        for i in 0..10_000 {
            let mut ws = daemon.connect().await;
            assert_eq!(next_packet(&mut ws).await["type"], "WELCOME");
            if i % 2 == 0 {
                ws.close(None).await.unwrap();
            } // else dropped without a close frame
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    let watch = async {
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            seq += 1;
            assert_eq!(
                next_packet(&mut watcher).await["seq"],
                seq,
                "the watcher saw every tick"
            );
        }
    };
    tokio::join!(cycles, watch);
    let after = daemon
        .wait_health("every cycle's task gone", |h| {
            h["connections"] == 1 && h["tasks"].as_u64() <= Some(baseline)
        })
        .await;
    assert_eq!(after["tasks"].as_u64(), Some(baseline), "{after}");
}
