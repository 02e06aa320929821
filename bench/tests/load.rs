//! `bff-load` in each form a client may ask for (`docs/PROTOCOL.md` §13) against a real daemon
//! polling its demo engine, in this process: every run must decode every packet of its
//! verifying clients to the reference connection's data, and say so in its JSON report.
#![cfg(target_os = "linux")]

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// A `--demo` daemon polling four times a second, so a few seconds make a dozen packets, with
/// room for every client of the runs below on the loopback addresses they share.
async fn demo_daemon(shutdown: CancellationToken) -> std::net::SocketAddr {
    let mut config = bff::Config::default();
    config.engine.poll_interval_ms = 250;
    config.engine.timeout_ms = 200;
    config.server.max_connections_per_ip = 1000;
    config.server.max_http_connections_per_ip = 1000;
    config.server.handshakes_per_second_per_ip = 10_000;
    config.server.handshake_burst_per_ip = 1000;
    let demo = bff::cli::demo_engine::beside_daemon(&config, None, shutdown.clone())
        .await
        .expect("the demo engine starts");
    let config = bff::cli::reload::with_demo_engine(config, Some(demo));
    config.validate("the test").expect("a valid config");
    let listener = bff::listen("127.0.0.1:0".parse().unwrap()).expect("a port");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(bff::run(bff::fixed(config), listener, shutdown));
    addr
}

/// Runs `bff-load` against `addr` with `args`; its exit status and JSON report.
async fn load(addr: std::net::SocketAddr, name: &str, args: &[&str]) -> (Output, Value) {
    let json = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("load-{name}-{}.json", std::process::id()));
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_bff-load"));
    command
        .args([
            "--url",
            &format!("ws://{addr}/"),
            "--clients",
            "4",
            "--duration",
            "3",
        ])
        .args(["--json", json.to_str().unwrap()])
        .args(args);
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("bff-load runs");
    let report = std::fs::read_to_string(&json)
        .map(|text| serde_json::from_str(&text).expect("the report is JSON"))
        .unwrap_or(Value::Null);
    (out, report)
}

/// Every form, five `bff-load` runs at once: each verifies packets (all four clients, against
/// the reference), none mismatches or fails to decode, deflate is taken by every client that
/// offered it, deltas come as deltas, and the bytes on the wire are reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_form_decodes_to_the_plain_packets() {
    let shutdown = CancellationToken::new();
    let addr = demo_daemon(shutdown.clone()).await;
    let modes: [(&str, &[&str]); 5] = [
        ("deflate", &["--deflate"]),
        ("delta", &["--delta"]),
        ("delta-deflate", &["--delta", "--deflate"]),
        ("msgpack", &["--format", "msgpack"]),
        ("msgpack-deflate", &["--format", "msgpack", "--deflate"]),
    ];
    let runs =
        futures_util::future::join_all(modes.iter().map(|(name, args)| load(addr, name, args)));
    let runs = tokio::time::timeout(Duration::from_secs(120), runs)
        .await
        .expect("the runs end");
    for ((name, args), (out, report)) in modes.iter().zip(runs) {
        let said = format!(
            "{name}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{said}");
        let form = &report["form"];
        let verify = &form["verify"];
        assert_eq!(verify["clients"], 4, "{said}");
        assert!(verify["verified"].as_u64().unwrap() > 0, "{said}");
        assert_eq!(
            (
                &verify["mismatched"],
                &verify["undecodable"],
                &form["failed"]
            ),
            (&Value::from(0), &Value::from(0), &Value::from(false)),
            "{said}"
        );
        assert_eq!(form["undecodable_frames"], 0, "{said}");
        let deflate = args.contains(&"--deflate");
        assert_eq!(form["deflate_taken"], if deflate { 4 } else { 0 }, "{said}");
        let packets = form["packets"].as_u64().unwrap();
        assert!(packets > 0, "{said}");
        if args.contains(&"--delta") {
            assert!(form["delta_packets"].as_u64().unwrap() > 0, "{said}");
        }
        assert!(
            form["wire_bytes_per_packet"].as_f64().unwrap() > 0.0,
            "{said}"
        );
        // Every packet's staleness is known, a delta's from the reference's timestamp.
        assert_eq!(report["steady"]["unparsed_timestamps"], 0, "{said}");
    }
    shutdown.cancel();
}

/// A run that asks for no form is today's: no reference, no form section.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_run_has_no_form_section() {
    let shutdown = CancellationToken::new();
    let addr = demo_daemon(shutdown.clone()).await;
    let (out, report) = load(addr, "plain", &[]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["form"], Value::Null);
    assert_eq!(report["config"].get("verify"), None);
    assert_eq!(report["connect"]["connected"], 4);
    shutdown.cancel();
}
