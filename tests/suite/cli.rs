//! The `bff` binary as an operator runs it: config checks, `--demo`, `--listen 127.0.0.1:0`,
//! SIGTERM, and the example clients: reading only `packet.type` and `packet.data`, subscribing
//! to a relay channel of `bff --demo --redis-url` with a real `redis-server`, and resuming with no
//! gap when their daemon restarts.

use crate::common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::clients::{dashboard_js, node, node_major, node_tests, python};
use common::process::{BIN, BffProcess};
use common::redis::RedisServer;
use common::{FakeEngine, PATIENCE, next_packet, next_telemetry, refused, within};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Messages the example clients read when they subscribe: about four seconds of the demo's
/// stream with Redis, so several of its once-a-second `agent.updates`.
const SUBSCRIBED_MESSAGES: usize = 25;

/// Messages the example clients read across a restart of their daemon: enough (a tick is
/// 250 ms) that a client cannot be done before the daemon, stopped after its second, is gone.
const RESTART_MESSAGES: usize = 10;

/// Long enough for a client's backoff (1, 2, 4 s) to come round after a restart.
const BACKOFF_PATIENCE: Duration = Duration::from_secs(30);

/// `bff --demo` publishing to a `redis-server` of its own, or `None` (the test is skipped)
/// without one.
fn demo_with_redis() -> Option<(RedisServer, BffProcess)> {
    let redis = RedisServer::start()?;
    let bff = BffProcess::demo(&["--redis-url", &redis.url()]);
    Some((redis, bff))
}

/// What an example client prints when it reads [`SUBSCRIBED_MESSAGES`] messages subscribed to
/// `agent.updates`: the WELCOME first, one `SUBSCRIBED`, packets, the channel's updates with
/// offsets one apart, and the close.
fn assert_subscribed_output(stdout: &str) {
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), SUBSCRIBED_MESSAGES + 1, "{stdout}");
    assert!(lines[0].starts_with("WELCOME seq="), "{stdout}");
    let subscribed: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("SUBSCRIBED"))
        .collect();
    assert_eq!(
        subscribed,
        [&"SUBSCRIBED channels=[agent.updates]"],
        "{stdout}"
    );
    let offsets: Vec<u64> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("UPDATE agent.updates offset="))
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(offsets.len() >= 2, "{stdout}");
    assert!(
        offsets.windows(2).all(|w| w[1] == w[0] + 1),
        "none lost: {stdout}"
    );
    assert!(
        lines[1..SUBSCRIBED_MESSAGES].iter().all(|l| {
            l.starts_with("TELEMETRY seq=")
                || l.starts_with("SUBSCRIBED")
                || l.starts_with("UPDATE ")
                // The demo's market turns now and then: what a packet announces.
                || l.starts_with("REGIME ")
                || l.starts_with("ALERT ")
        }),
        "{stdout}"
    );
    assert_eq!(lines[SUBSCRIBED_MESSAGES], "closed code=1000", "{stdout}");
}

/// `client URL RESTART_MESSAGES` against a cluster of one daemon (polling a test engine every
/// 250 ms, with a real `redis-server`) that is stopped with SIGTERM once the client printed two
/// packets, and started again on the same address: the new process knows the client's packets
/// from the cluster's history in Redis. The client's output once it exited successfully, or
/// `None` (the test is skipped) without `redis-server`.
async fn across_a_restart(client: Command) -> Option<String> {
    let redis = RedisServer::start()?;
    let engine = FakeEngine::samples().await;
    let config = temp_file(
        &format!("restart-{}.toml", engine.addr.port()),
        &format!(
            "[engine]\nurl = \"http://{}\"\nstate = \"/state\"\nagents = \"/agents\"\n\
             models = \"/models\"\npoll_interval_ms = 250\ntimeout_ms = 200\n",
            engine.addr
        ),
    );
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let cluster = redis.url();
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--listen",
        &addr,
        "--cluster",
        &cluster,
    ];
    let mut bff = BffProcess::start(&args, &[]);

    let mut client = tokio::process::Command::from(client);
    client
        .args([format!("ws://{addr}/"), RESTART_MESSAGES.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut client = client.spawn().unwrap();
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    let read = tokio::time::timeout(PATIENCE, async {
        while stdout.matches(" seq=").count() < 2 {
            let Some(line) = lines.next_line().await.unwrap() else {
                break;
            };
            stdout += &line;
            stdout.push('\n');
        }
    })
    .await;
    assert!(read.is_ok(), "timed out waiting for two packets: {stdout}");

    bff.signal(libc::SIGTERM);
    assert!(bff.wait_exit().success());
    let _bff = BffProcess::start(&args, &[]);
    let read = tokio::time::timeout(BACKOFF_PATIENCE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            stdout += &line;
            stdout.push('\n');
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "timed out waiting for the client to end: {stdout}"
    );
    let out = client.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(stdout)
}

/// What an example client prints across the restart: one `RECONNECTED resumed=true` after the
/// first two packets, [`RESTART_MESSAGES`] packets with no `seq` missing or repeated, and the
/// close.
fn assert_resumed_output(stdout: &str) {
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), RESTART_MESSAGES + 2, "{stdout}");
    assert!(lines[0].starts_with("WELCOME seq="), "{stdout}");
    assert!(lines[1].starts_with("TELEMETRY seq="), "{stdout}");
    let reconnects: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("RECONNECTED"))
        .collect();
    assert_eq!(reconnects, [&"RECONNECTED resumed=true"], "{stdout}");
    let seqs: Vec<u64> = lines
        .iter()
        .filter_map(|l| {
            l.strip_prefix("WELCOME seq=")
                .or_else(|| l.strip_prefix("TELEMETRY seq="))
        })
        .map(|rest| rest.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(seqs.len(), RESTART_MESSAGES, "{stdout}");
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "no gap across the restart: {stdout}"
    );
    assert_eq!(lines[RESTART_MESSAGES + 1], "closed code=1000", "{stdout}");
}

/// `client ARGS`: its stdout, once it exited successfully.
fn run(mut client: Command, args: &[&str]) -> String {
    let out = client.args(args).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn check_config(text: &str, name: &str) -> (i32, String, String) {
    let path = temp_file(name, text);
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn check_config_prints_the_effective_config() {
    let (code, stdout, stderr) = check_config(
        "[engine]\npoll_interval_ms = 500\ntimeout_ms = 400\n",
        "ok.toml",
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("poll_interval_ms = 500"), "{stdout}");
    assert!(
        stdout.contains("max_connections_per_ip = 10"),
        "defaults are shown too: {stdout}"
    );
}

#[test]
fn command_line_flags_override_the_file() {
    let path = temp_file("flags.toml", "[server]\nlisten = \"127.0.0.1:4000\"\n");
    let out = Command::new(BIN)
        .args([
            "check-config",
            "--listen",
            "0.0.0.0:5000",
            "--engine-url",
            "http://engine:9000",
        ])
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("listen = \"0.0.0.0:5000\""), "{stdout}");
    assert!(stdout.contains("url = \"http://engine:9000\""), "{stdout}");
}

#[test]
fn check_config_reports_every_problem_with_its_key() {
    let (code, _, stderr) = check_config(
        "[engine]\ntimeout_ms = 2000\n[clients]\nqueue_size = 0\n[server]\nws_paths = [\"ws\"]\n",
        "bad.toml",
    );
    assert_eq!(code, 2);
    for key in ["engine.timeout_ms", "server.ws_paths", "clients.queue_size"] {
        assert!(stderr.contains(key), "{key} missing from: {stderr}");
    }
    assert!(stderr.contains("3 problem(s)"), "{stderr}");
}

/// Files with an error at a secret, at a Redis URL with a password and at an engine URL with
/// credentials, as `check-config` reports them.
const LEAKY_FILES: [(&str, &str, &str, &str); 3] = [
    (
        "leaky-secret.toml",
        "[auth]\nsecret = \"hunter2hunter2hunter2hunter2hunter2\n",
        "hunter2",
        "line 2",
    ),
    (
        "leaky-redis.toml",
        "[redis]\nurl = \"redis://:redispass@127.0.0.1:6379\" oops\n",
        "redispass",
        "line 2 `url = \"redis://:***@127.0.0.1:6379\" oops`",
    ),
    (
        "leaky-engine.toml",
        "[engine]\nurl = \"ftp://ann:enginepass@engine\"\n",
        "enginepass",
        "\"ftp://ann:***@engine\" must be an http:// or https:// URL",
    ),
];

/// No config message shows a secret or a URL password: `check-config`'s errors name the line
/// or key with the value masked, and its effective config masks the engine URL's password.
#[test]
fn config_messages_never_show_secrets_or_url_passwords() {
    for (name, text, secret, names) in LEAKY_FILES {
        let (code, stdout, stderr) = check_config(text, name);
        assert_eq!(code, 2, "{name}: {stdout}{stderr}");
        assert!(stderr.contains(names), "{name}: {stderr}");
        assert!(!stderr.contains(secret), "{name}: {stderr}");
    }
    let (code, stdout, stderr) = check_config(
        "[engine]\nurl = \"http://ann:enginepass@engine:8000\"\n",
        "engine-credentials.toml",
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("url = \"http://ann:***@engine:8000\""),
        "{stdout}"
    );
    assert!(!stdout.contains("enginepass"), "{stdout}");
}

/// Neither a reload's error (`SIGHUP` on a file with an error at a secret or a Redis password)
/// nor the engine URL's credentials reach the log or `/health`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_errors_and_engine_credentials_stay_out_of_the_log() {
    let path = temp_file("leaky-reload.toml", "[packet]\nmax_logs = 5\n");
    let mut daemon = BffProcess::start(
        &[
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            // Nothing listens on port 1: no source ever answers, and the log names its URL.
            "--engine-url",
            "http://ann:enginepass@127.0.0.1:1",
        ],
        &[],
    );
    let stale = daemon.line_containing("Source not answering");
    assert!(stale.contains("http://ann:***@127.0.0.1:1/"), "{stale}");
    for (_, text, _, names) in &LEAKY_FILES[..2] {
        std::fs::write(&path, text).unwrap();
        daemon.signal(libc::SIGHUP);
        let not_reloaded = daemon.line_containing("Config not reloaded");
        assert!(not_reloaded.contains(names), "{not_reloaded}");
    }
    let (_, health) = common::reqwest_get(&format!("http://{}/health", daemon.addr())).await;
    for secret in ["hunter2", "redispass", "enginepass"] {
        assert!(!health.to_string().contains(secret), "{health}");
        let leaks: Vec<_> = daemon.log().iter().filter(|l| l.contains(secret)).collect();
        assert!(leaks.is_empty(), "{leaks:#?}");
    }
}

#[test]
fn check_config_names_an_unknown_key_and_its_line() {
    let (code, _, stderr) = check_config(
        "[server]\nlisten = \"127.0.0.1:3000\"\nmax_conections = 5\n",
        "typo.toml",
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("max_conections") && stderr.contains("line 3"),
        "{stderr}"
    );
}

/// `bff ARGS` run in a directory of its own (so no `./bff.toml` is read): its exit code, stdout
/// and stderr.
fn bff_in_empty_dir(args: &[&str]) -> (i32, String, String) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("no-bff-toml");
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(BIN)
        .args(args)
        .current_dir(&dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The problem lines (`  - key: message`) of a config message.
fn problem_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("  - "))
        .collect()
}

/// Three misspelt keys take one run, not three: each named with its key path, its line and the
/// key it was meant to be.
#[test]
fn check_config_reports_every_typo_at_once_with_the_nearest_key() {
    let (code, stdout, stderr) = check_config(
        "[engine]\npoll_intervall_ms = 500\n[server]\nmax_conections = 5\n[clinets]\nqueue_size = 2\n",
        "three-typos.toml",
    );
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("three-typos.toml has 3 problem(s):"),
        "{stderr}"
    );
    assert_eq!(
        problem_lines(&stderr),
        [
            "engine.poll_intervall_ms: unknown key; did you mean `poll_interval_ms`? (line 2)",
            "server.max_conections: unknown key; did you mean `max_connections`? (line 4)",
            "clinets: unknown key; did you mean `clients`? (line 5)",
        ],
        "{stderr}"
    );
}

/// A value of the wrong kind says what to write, with an example, and does not hide the
/// problems after it.
#[test]
fn a_value_of_the_wrong_kind_says_what_to_write() {
    let (code, stdout, stderr) = check_config(
        "[engine]\npoll_interval_ms = \"1s\"\n[clients]\nmax_message_bytes = \"4k\"\n",
        "wrong-kind.toml",
    );
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert_eq!(
        problem_lines(&stderr),
        [
            "engine.poll_interval_ms: expected a number of milliseconds, e.g. 1000, not \"1s\" (line 2)",
            "clients.max_message_bytes: expected a number of bytes, e.g. 4096, not \"4k\" (line 4)",
        ],
        "{stderr}"
    );
}

/// A bad `--engine-url` is one problem, against `engine.url` and naming the flag, not one per
/// endpoint path joined to it.
#[test]
fn a_bad_engine_url_flag_is_one_problem_that_names_the_flag() {
    let (code, stdout, stderr) = bff_in_empty_dir(&["check-config", "--engine-url", "engine:8000"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.starts_with("bff: built-in defaults with --engine-url has 1 problem(s):\n"),
        "{stderr}"
    );
    assert_eq!(
        problem_lines(&stderr),
        [
            "engine.url (from --engine-url): \"engine:8000\" must be an http:// or https:// URL with a host"
        ],
        "{stderr}"
    );
}

/// `bff check-config > effective.toml` then `bff check-config --config effective.toml`: its
/// standard output is the TOML alone (logs go to stderr), read back it is the same config, and
/// values print as they apply (a publish deadline past a quarter of the period, with a note).
#[test]
fn check_config_output_reads_back_as_the_same_config() {
    let secret = temp_file(
        "round-trip.secret",
        "r0und-tr1p-r0und-tr1p-r0und-tr1p-r0und\n",
    );
    let (code, first, stderr) = check_config(
        &format!(
            "[engine]\npoll_interval_ms = 500\ntimeout_ms = 400\npublish_deadline_ms = 5000\n[auth]\nsecret_file = {:?}\n[redis]\nrelay = [\"a.*\"]\n",
            secret.display()
        ),
        "round-trip.toml",
    );
    assert_eq!(code, 0, "{first}{stderr}");
    assert!(
        stderr.contains(
            "engine.publish_deadline_ms: 5000 is more than a quarter of engine.poll_interval_ms (500); 125 applies"
        ),
        "{stderr}"
    );
    assert!(first.contains("publish_deadline_ms = 125\n"), "{first}");
    assert!(!first.contains("r0und"), "{first}");
    let (code, second, stderr) = check_config(&first, "effective.toml");
    assert_eq!(code, 0, "{first}\n{stderr}");
    assert_eq!(second, first);
}

/// Every key as `section.key`.
fn keys(table: &toml::Table) -> std::collections::BTreeSet<String> {
    table
        .iter()
        .flat_map(|(section, value)| {
            let keys: Vec<String> = match value.as_table() {
                Some(inner) => inner.keys().map(|k| format!("{section}.{k}")).collect(),
                None => vec![section.clone()],
            };
            keys
        })
        .collect()
}

/// The repository's `bff.toml` documents every key the daemon has: the same keys as the config
/// `check-config` prints (optional keys with no default are in it as comments, in neither).
#[test]
fn the_checked_in_bff_toml_has_every_key_check_config_prints() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bff.toml");
    let file: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: toml::Table =
        toml::from_str(&stdout).unwrap_or_else(|e| panic!("not TOML ({e}):\n{stdout}"));
    let (file, printed) = (keys(&file), keys(&printed));
    assert_eq!(
        printed.difference(&file).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "keys missing from bff.toml"
    );
    assert_eq!(file, printed);
}

/// `listen = "localhost:3000"` listens on 127.0.0.1:3000; any other host name says what to write.
#[test]
fn listen_takes_localhost_and_otherwise_says_to_write_ip_and_port() {
    let (code, stdout, stderr) =
        check_config("[server]\nlisten = \"localhost:3000\"\n", "localhost.toml");
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("listen = \"127.0.0.1:3000\""), "{stdout}");
    let (code, _, stderr) = check_config(
        "[server]\nlisten = \"dash.example.com:3000\"\n",
        "hostname.toml",
    );
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(
        problem_lines(&stderr),
        [
            "server.listen: \"dash.example.com:3000\" is not an address to listen on; write IP:port, e.g. 127.0.0.1:3000 (0.0.0.0:3000 for every interface) or localhost:3000 (line 2)"
        ],
        "{stderr}"
    );
}

/// A secret file that cannot be read is a problem of `auth.secret_file` (or of the flag that
/// named it), not of the config file, and says how to make one.
#[test]
fn a_missing_auth_secret_file_is_named_by_its_key() {
    let missing = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("no-such.secret");
    let (code, stdout, stderr) = check_config(
        &format!("[auth]\nsecret_file = {:?}\n", missing.display()),
        "missing-secret.toml",
    );
    assert_eq!(code, 2, "{stdout}{stderr}");
    let problems = problem_lines(&stderr);
    assert_eq!(problems.len(), 1, "{stderr}");
    assert!(
        problems[0].starts_with(&format!(
            "auth.secret_file: cannot read {}: ",
            missing.display()
        )) && problems[0].ends_with("creates one)"),
        "{stderr}"
    );
    let (code, _, stderr) = bff_in_empty_dir(&[
        "check-config",
        "--auth-secret-file",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        problem_lines(&stderr)[0]
            .starts_with("auth.secret_file (from --auth-secret-file): cannot read"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_streams_on_a_port_it_picked_and_sigterm_closes_with_1001() {
    let mut daemon = BffProcess::demo(&[]);
    assert_ne!(
        daemon.addr().port(),
        0,
        "the bound port is logged, not the requested 0"
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/", daemon.addr()))
        .await
        .unwrap();
    let welcome = next_packet(&mut ws).await;
    assert_eq!(welcome["type"], "WELCOME");
    let first = next_telemetry(&mut ws).await;
    let second = next_telemetry(&mut ws).await;
    assert_eq!(second["seq"].as_u64(), first["seq"].as_u64().map(|s| s + 1));
    for packet in [&first, &second] {
        assert_eq!(packet["data"]["market"]["symbol"], "SPY");
        assert_eq!(packet["data"]["sources"]["agents"]["ok"], true);
        assert!(
            packet["data"]["agents"]["analyst"]["invocations"]
                .as_u64()
                .unwrap()
                >= 1
        );
    }
    assert_ne!(
        first["data"]["timestamp"], second["data"]["timestamp"],
        "the simulator moves"
    );
    let telemetry_line = daemon.line_containing("Telemetry");
    assert!(
        telemetry_line.contains("seq=") && telemetry_line.contains("clients="),
        "{telemetry_line}"
    );

    daemon.signal(libc::SIGTERM);
    assert_eq!(common::close_code(&mut ws).await, 1001);
    let exit = daemon.wait_exit();
    assert!(exit.success(), "{exit:?}");
}

/// Node.js runs the same WebSocket code a browser would. CI installs nothing for it: Node is part
/// of the machine image; where it is missing outside CI the test says so and passes.
#[cfg_attr(bff_no_node, ignore = "node not found: install Node.js")]
#[test]
fn a_javascript_client_reading_type_and_data_works_unchanged() {
    let Some(node) = node() else {
        return;
    };
    let daemon = BffProcess::demo(&[]);
    let url = format!("ws://localhost:{}", daemon.addr().port());
    assert_packets(&run(node, &[&url, "5"]));
}

/// With a channel as its third argument, the JavaScript client subscribes and prints the
/// channel's updates; a channel the daemon does not relay is refused with its reason.
#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[cfg_attr(bff_no_node, ignore = "node not found: install Node.js")]
#[test]
fn the_javascript_client_subscribes_to_a_channel() {
    let Some(_) = node() else {
        return;
    };
    let Some((_redis, daemon)) = demo_with_redis() else {
        return;
    };
    let url = format!("ws://localhost:{}", daemon.addr().port());
    let limit = SUBSCRIBED_MESSAGES.to_string();
    assert_subscribed_output(&run(node().unwrap(), &[&url, &limit, "agent.updates"]));

    // The refusal comes right after the WELCOME, before a handful of packets could.
    let stdout = run(node().unwrap(), &[&url, "6", "secret.keys"]);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines.contains(&"SUBSCRIBED channels=[]")
            && lines
                .contains(&"REJECTED secret.keys: not relayed: no entry of redis.relay matches it"),
        "{stdout}"
    );
}

/// When its daemon restarts, the JavaScript client reconnects saying where it left off, and
/// prints each packet once: no `seq` missing across the restart.
#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[cfg_attr(bff_no_node, ignore = "node not found: install Node.js")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_client_resumes_after_its_daemon_restarts() {
    let Some(node) = node() else {
        return;
    };
    if let Some(stdout) = across_a_restart(node).await {
        assert_resumed_output(&stdout);
    }
}

/// `bff | head` closes the daemon's output; logging must not break it, and SIGTERM still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_and_stderr_do_not_stop_the_daemon_or_its_shutdown() {
    let mut daemon = BffProcess::demo(&[]);
    daemon.close_output();
    let health = format!("http://{}/health", daemon.addr());
    let closed_at = common::reqwest_get(&health).await.1["seq"]
        .as_u64()
        .unwrap();
    // Each tick publishes, then logs; once tick `closed_at + 3` is out, the log lines of ticks
    // `closed_at + 1` and `closed_at + 2` have met the closed pipe.
    within("two ticks logged into the closed pipe", async {
        loop {
            let (status, health) = common::reqwest_get(&health).await;
            assert_eq!(status, 200, "{health}");
            if health["seq"].as_u64().unwrap() >= closed_at + 3 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    daemon.signal(libc::SIGTERM);
    let exit = daemon.wait_exit();
    assert!(
        exit.success(),
        "the daemon did not exit cleanly on SIGTERM with its output closed: {exit:?}"
    );
}

/// `bff demo-engine` serves the simulator alone, in the engine's own shapes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_engine_serves_the_engine_api_alone() {
    let engine = BffProcess::start_until(
        &["demo-engine", "--on", "127.0.0.1:0"],
        &[],
        "Demo engine simulator running",
    );
    let addr = engine.addr();
    let (status, state) =
        common::reqwest_get(&format!("http://{addr}/api/system/state/current")).await;
    assert_eq!(status, 200);
    assert!(
        state["status"]
            .as_str()
            .unwrap()
            .starts_with("TradingStatus."),
        "{state}"
    );
    let (_, agents) =
        common::reqwest_get(&format!("http://{addr}/api/system/metrics/agents")).await;
    assert!(agents["analyst"].is_array(), "raw call records: {agents}");
}

/// `SIGHUP` rereads the file: new limits and packet settings apply while clients stay connected,
/// and a broken file is reported while the running config stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config_without_dropping_clients() {
    let path = temp_file("reload.toml", "[server]\nmax_connections_per_ip = 5\n");
    let mut daemon = BffProcess::demo(&["--config", path.to_str().unwrap()]);
    let url = format!("ws://{}/", daemon.addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let before = common::packet_where(&mut ws, "two log lines", |p| {
        p["type"] == "TELEMETRY" && p["data"]["logs"].as_array().unwrap().len() >= 2
    })
    .await;

    std::fs::write(
        &path,
        "[server]\nmax_connections_per_ip = 1\n[packet]\nmax_logs = 1\n",
    )
    .unwrap();
    daemon.signal(libc::SIGHUP);
    daemon.line_containing("Config reloaded");
    let mut seq = before["seq"].as_u64().unwrap();
    let after = loop {
        let packet = next_telemetry(&mut ws).await;
        seq += 1;
        assert_eq!(packet["seq"], seq, "the same connection, no tick missed");
        if packet["data"]["logs"].as_array().unwrap().len() == 1 {
            break packet;
        }
    };
    assert_eq!(
        refused(&url).await,
        429,
        "the new per-IP limit of 1 applies"
    );

    std::fs::write(&path, "[server]\nmax_conections = 3\n").unwrap();
    daemon.signal(libc::SIGHUP);
    let not_reloaded = daemon.line_containing("Config not reloaded");
    assert!(not_reloaded.contains("max_conections"), "{not_reloaded}");
    let next = next_telemetry(&mut ws).await;
    assert_eq!(next["seq"].as_u64(), after["seq"].as_u64().map(|s| s + 1));
    assert_eq!(
        next["data"]["logs"].as_array().unwrap().len(),
        1,
        "still the reloaded config"
    );
}

/// The unit under `contrib/` is one systemd accepts as is, with the binary where it says.
#[cfg_attr(bff_no_systemd, ignore = "systemd-analyze not found: install systemd")]
#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok();
    if !common::tool_available(found, "systemd-analyze", "install systemd") {
        return;
    }
    let unit = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contrib/bff.service"),
    )
    .unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/bff "), "{unit}");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("unit");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bff.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/bff", BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // verify only warns about a bad value; any output at all is a problem in the unit.
    assert_eq!(stderr, "", "systemd-analyze verify complained");
}

/// `--log-format json` writes one JSON object per line, with the event's fields at the top level
/// (so `jq 'select(.message == "Telemetry published") | .seq'` works); the default writes plain
/// lines with no colour codes when the output is not a terminal.
#[test]
fn log_formats_are_json_lines_or_plain_text() {
    for (format, json) in [("json", true), ("pretty", false)] {
        let mut daemon = BffProcess::demo(&["--log-format", format]);
        let telemetry = daemon.line_containing("Telemetry published");
        for line in daemon.log() {
            assert!(
                !line.contains('\u{1b}'),
                "{format}: no colour codes in a pipe: {line:?}"
            );
            if json {
                let event: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                assert!(
                    event["timestamp"].is_string() && event["level"].is_string(),
                    "{line}"
                );
            }
        }
        if json {
            let event: serde_json::Value = serde_json::from_str(&telemetry).unwrap();
            assert_eq!(event["message"], "Telemetry published", "{telemetry}");
            assert!(event["seq"].as_u64() >= Some(1), "{telemetry}");
            assert!(
                event["clients"].is_u64() && event["bytes"].is_u64(),
                "{telemetry}"
            );
        } else {
            assert!(
                telemetry.contains(" INFO ") && telemetry.contains("seq="),
                "{telemetry}"
            );
        }
    }
}

/// The Python example, with the `websockets` package from `examples/clients/requirements.txt`
/// (which `.ci/run` installs), prints the same lines as the JavaScript one.
#[cfg_attr(
    bff_no_python,
    ignore = "python3 with websockets not found: pip install -r examples/clients/requirements.txt"
)]
#[test]
fn the_python_client_prints_the_stream() {
    let Some(python) = python() else {
        return;
    };
    let daemon = BffProcess::demo(&[]);
    let url = format!("ws://127.0.0.1:{}/", daemon.addr().port());
    assert_packets(&run(python, &[&url, "5"]));
}

/// What an example client prints for five messages of the demo's stream: the WELCOME, then
/// TELEMETRY lines with the demo's status, a price that is a number and no stale source (and,
/// when the demo's market turns just then, what it announces: a REGIME and its ALERTs count as
/// messages too), and the close.
fn assert_packets(stdout: &str) {
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{stdout}");
    assert!(lines[0].starts_with("WELCOME seq="), "{stdout}");
    let telemetry: Vec<&&str> = lines[1..5]
        .iter()
        .filter(|line| !line.starts_with("REGIME ") && !line.starts_with("ALERT "))
        .collect();
    assert!(!telemetry.is_empty(), "{stdout}");
    for line in telemetry {
        // The demo halts itself now and then, as a real engine would.
        assert!(
            line.starts_with("TELEMETRY seq=")
                && (line.contains(" status=ACTIVE ") || line.contains(" status=HALT "))
                && line.ends_with(" stale=[]"),
            "{stdout}"
        );
        let price = line
            .split("price=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        assert!(price.parse::<f64>().is_ok(), "{stdout}");
    }
    assert_eq!(lines[5], "closed code=1000", "{stdout}");
}

/// With a channel as its third argument, the Python client subscribes and prints the same
/// lines as the JavaScript one.
#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[cfg_attr(
    bff_no_python,
    ignore = "python3 with websockets not found: pip install -r examples/clients/requirements.txt"
)]
#[test]
fn the_python_client_subscribes_to_a_channel() {
    let Some(python) = python() else {
        return;
    };
    let Some((_redis, daemon)) = demo_with_redis() else {
        return;
    };
    let url = format!("ws://127.0.0.1:{}/", daemon.addr().port());
    let limit = SUBSCRIBED_MESSAGES.to_string();
    assert_subscribed_output(&run(python, &[&url, &limit, "agent.updates"]));
}

/// The Python client resumes after its daemon restarts as the JavaScript one does.
#[cfg_attr(
    bff_no_redis,
    ignore = "redis-server not found: apt-get install redis-server"
)]
#[cfg_attr(
    bff_no_python,
    ignore = "python3 with websockets not found: pip install -r examples/clients/requirements.txt"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_resumes_after_its_daemon_restarts() {
    let Some(python) = python() else {
        return;
    };
    if let Some(stdout) = across_a_restart(python).await {
        assert_resumed_output(&stdout);
    }
}

/// A port already in use is a one-line error naming the address and what to do, exit code 1.
#[test]
fn a_port_in_use_is_named_with_what_to_do() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = Command::new(BIN)
        .args(["--demo", "--listen", &addr.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with(&format!("bff: cannot listen on {addr}: "))
            && stderr.contains("Address already in use")
            && stderr.contains("--listen"),
        "{stderr}"
    );
    drop(taken);
}

#[test]
fn token_creates_a_secret_and_prints_a_token_the_daemon_accepts() {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("ops.secret");
    let _ = std::fs::remove_file(&secret);
    let out = Command::new(BIN)
        .args(["token", "--secret-file"])
        .arg(&secret)
        .args(["--sub", "ann", "--actions", "halt,resume", "--ttl", "30m"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("created"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "only its owner may read the secret");
    let key = std::fs::read_to_string(&secret).unwrap();
    let token = String::from_utf8(out.stdout).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.leeway = 0;
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        token.trim(),
        &jsonwebtoken::DecodingKey::from_secret(key.trim().as_bytes()),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["sub"], "ann");
    assert_eq!(claims["actions"], serde_json::json!(["halt", "resume"]));
    let ttl = claims["exp"].as_i64().unwrap() - chrono::Utc::now().timestamp();
    assert!((1790..=1800).contains(&ttl), "{ttl}");

    // A made-up action or a bad duration is refused with the flag's name.
    for (flag, value) in [("--actions", "liquidate"), ("--ttl", "soon")] {
        let out = Command::new(BIN)
            .args(["token", "--secret-file"])
            .arg(&secret)
            .args(["--sub", "ann", flag, value])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(flag),
            "{flag}"
        );
    }
}

#[test]
fn token_needs_a_sub_so_no_two_holders_share_one_by_default() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("token-sub-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("ops.secret");
    let out = Command::new(BIN)
        .args(["token", "--secret-file"])
        .arg(&secret)
        .args(["--role", "operator"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "no token was printed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--sub"), "{stderr}");
}

/// `bff SUBCOMMAND --help`, which must succeed.
fn help(subcommand: &str) -> String {
    let out = Command::new(BIN)
        .args([subcommand, "--help"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{subcommand} --help: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn each_subcommand_lists_only_its_own_flags() {
    let token = help("token");
    let demo_engine = help("demo-engine");
    for flag in ["--listen", "--engine-url", "--cluster", "--config"] {
        assert!(!token.contains(flag), "token --help lists {flag}:\n{token}");
        assert!(
            !demo_engine.contains(flag),
            "demo-engine --help lists {flag}:\n{demo_engine}"
        );
    }
    assert!(!token.contains("--redis-url"), "{token}");
    assert!(
        token.contains("--secret-file") && token.contains("--sub"),
        "{token}"
    );
    assert!(
        demo_engine.contains("--on") && demo_engine.contains("--redis-url"),
        "demo-engine publishes to Redis:\n{demo_engine}"
    );
    assert!(
        help("check-config").contains("--engine-url"),
        "check-config takes the daemon's overrides"
    );
}

#[test]
fn token_takes_the_daemons_secret_flag_and_refuses_an_unknown_role() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("token-flags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("ops.secret");
    let _ = std::fs::remove_file(&secret);
    let out = Command::new(BIN)
        .args(["token", "--auth-secret-file"])
        .arg(&secret)
        .args(["--sub", "ann", "--role", "operator"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        secret.exists(),
        "the secret was created where the flag said"
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap().split('.').count(), 3);

    let out = Command::new(BIN)
        .args(["token", "--auth-secret-file"])
        .arg(&secret)
        .args(["--sub", "ann", "--role", "admin"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "no token was printed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--role") && stderr.contains("admin") && stderr.contains("operator"),
        "{stderr}"
    );
}

/// A port nobody listens on.
fn closed_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn at_start_an_engine_not_answering_is_said_to_have_no_answer_yet() {
    let engine = format!("http://{}", closed_port());
    let mut bff = BffProcess::start(&["--listen", "127.0.0.1:0", "--engine-url", &engine], &[]);
    let line = bff.line_containing("source=\"state\"");
    assert!(
        line.contains("WARN") && line.contains("no answer from it yet") && line.contains("refused"),
        "{line}"
    );
    bff.line_containing("Telemetry published");
    assert!(
        !bff.log().iter().any(|l| l.contains("last good value")),
        "no last good value is promised when there never was one: {:#?}",
        bff.log()
    );
}

#[test]
fn listening_beyond_loopback_without_a_secret_warns_of_it() {
    let engine = format!("http://{}", closed_port());
    let mut open = BffProcess::start(&["--listen", "0.0.0.0:0", "--engine-url", &engine], &[]);
    let warning = open.line_containing("no auth.secret");
    assert!(
        warning.contains("WARN")
            && warning.contains("without a token")
            && warning.contains("127.0.0.1"),
        "{warning}"
    );

    let mut local = BffProcess::start(&["--listen", "127.0.0.1:0", "--engine-url", &engine], &[]);
    local.line_containing("Telemetry published");
    assert!(
        !local.log().iter().any(|l| l.contains("no auth.secret")),
        "loopback needs no warning: {:#?}",
        local.log()
    );
}

/// A secret of the length the daemon asks for, for the example clients' tokens.
const CLIENT_SECRET: &str = "0123456789abcdef0123456789abcdef";

/// `bff --demo` with [`CLIENT_SECRET`] as its `auth.secret`.
fn demo_with_a_secret() -> BffProcess {
    let secret = temp_file(
        &format!("clients-{}.secret", std::process::id()),
        CLIENT_SECRET,
    );
    BffProcess::demo(&["--auth-secret-file", secret.to_str().unwrap()])
}

/// `client ARGS` with `env` set: its exit code, stdout and stderr.
fn output(
    mut client: Command,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    let out = client
        .args(args)
        .env_remove("BFF_TOKEN")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// An example client against a daemon with a secret: refused without a token or with a bad
/// one, saying so and why and exiting 1; streaming with one from `--token` or `BFF_TOKEN`.
fn assert_takes_a_token(client: impl Fn() -> Command, url: &str) {
    let token = bff::mint(CLIENT_SECRET, "dash", 3600, None, &[]);
    let forged = bff::mint(
        "another secret, another secret, another secret",
        "dash",
        3600,
        None,
        &[],
    );

    let (code, stdout, stderr) = output(client(), &[url, "3"], &[]);
    assert_eq!(code, Some(1), "no token: {stdout}{stderr}");
    assert!(
        stderr.starts_with("error: HTTP 401 ") && stderr.contains("--token or BFF_TOKEN"),
        "{stderr}"
    );
    assert!(!stderr.contains("is it running"), "{stderr}");

    let (code, stdout, stderr) = output(client(), &[url, "3", "--token", &forged], &[]);
    assert_eq!(code, Some(1), "a forged token: {stdout}{stderr}");
    assert!(
        stderr.starts_with("error: HTTP 401 ") && stderr.contains("the token was refused"),
        "{stderr}"
    );

    for (args, env) in [
        (vec![url, "3", "--token", &token], vec![]),
        (vec!["--token", &token, url, "3"], vec![]),
        (vec![url, "3"], vec![("BFF_TOKEN", token.as_str())]),
    ] {
        let (code, stdout, stderr) = output(client(), &args, &env);
        assert_eq!(code, Some(0), "{args:?} {env:?}: {stdout}{stderr}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 4, "{stdout}");
        assert!(lines[0].starts_with("WELCOME seq="), "{stdout}");
        assert_eq!(lines[3], "closed code=1000", "{stdout}");
    }
}

/// An example client against a daemon allowing one connection per address, one taken: a 429
/// said as such, with the daemon's reason, and exit code 1.
async fn assert_reports_too_many(client: Command) {
    let config = temp_file(
        &format!("one-per-ip-{}.toml", std::process::id()),
        "[server]\nmax_connections_per_ip = 1\n",
    );
    let daemon = BffProcess::demo(&["--config", config.to_str().unwrap()]);
    let url = format!("ws://127.0.0.1:{}/", daemon.addr().port());
    let (_taken, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let (code, stdout, stderr) =
        tokio::task::spawn_blocking(move || output(client, &[&url, "3"], &[]))
            .await
            .unwrap();
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.starts_with("error: HTTP 429 Too Many Requests: Too many connections")
            && stderr.contains("Retry-After: 5"),
        "{stderr}"
    );
}

#[cfg_attr(bff_no_node, ignore = "node not found: install Node.js")]
#[test]
fn the_javascript_client_takes_a_token_and_says_why_it_is_refused() {
    let Some(_) = node() else {
        return;
    };
    let daemon = demo_with_a_secret();
    let url = format!("ws://127.0.0.1:{}/", daemon.addr().port());
    assert_takes_a_token(|| node().unwrap(), &url);
}

#[cfg_attr(
    bff_no_python,
    ignore = "python3 with websockets not found: pip install -r examples/clients/requirements.txt"
)]
#[test]
fn the_python_client_takes_a_token_and_says_why_it_is_refused() {
    let Some(_) = python() else {
        return;
    };
    let daemon = demo_with_a_secret();
    let url = format!("ws://127.0.0.1:{}/", daemon.addr().port());
    assert_takes_a_token(|| python().unwrap(), &url);
}

#[cfg_attr(
    all(bff_no_node, bff_no_python),
    ignore = "neither node nor python3 with websockets found: install Node.js or pip install -r examples/clients/requirements.txt"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_clients_say_a_429_is_too_many_connections() {
    if let Some(node) = node() {
        assert_reports_too_many(node).await;
    }
    if let Some(python) = python() {
        assert_reports_too_many(python).await;
    }
}

/// The JavaScript client library's own tests (`clients/js/test/`, `node --test`): its
/// `MarketStream` store alone, and its `useMarketStream` React hook against this `bff` binary,
/// which the hook's test starts, stops and starts again on the same port; `bff.js` in each
/// encoding, resuming, and commanding against it, and relaying a channel from a `redis-server`
/// started here (without one, outside CI, that test alone is skipped); and Node's `ws` with
/// permessage-deflate on.
#[cfg_attr(bff_no_node, ignore = "node not found: install Node.js")]
#[cfg_attr(
    bff_no_js_deps,
    ignore = "clients/js/node_modules not found: npm ci --prefix clients/js"
)]
#[test]
fn the_javascript_library_and_its_react_hook_pass_their_tests() {
    let Some(mut node) = node_tests() else {
        return;
    };
    let redis = RedisServer::start();
    if let Some(redis) = &redis {
        node.env("BFF_REDIS_URL", redis.url());
    }
    let out = node.env("BFF_BIN", BIN).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    // Every test ran: none skipped for want of the daemon, none missing.
    let skipped = if redis.is_some() {
        "# skipped 0"
    } else {
        "# skipped 1"
    };
    for line in ["# fail 0", skipped] {
        assert!(
            stdout.lines().any(|l| l == line),
            "{line}: {stdout}{stderr}"
        );
    }
    // The tests against the real daemon: the hook's, and the client library's (clients/js/bff.js).
    for name in [
        "useMarketStream shows the daemon regime, its turn, the drop and the reconnect",
        "plain, delta and MessagePack clients get the same data for the same seq, as plain objects",
        "bff.js alone, without its npm packages: a plain client streams, a delta or MessagePack one says what is missing",
        "a dropped connection comes back with since/epoch: resumed, deltas again, no seq missing or twice",
        "command() resolves with the COMMAND_RESULT of its id, and rejects when the client closes first",
        "a relay channel resumes with its offsets after a drop: every UPDATE once, in order",
        "Node ws with permessage-deflate: negotiated, packets that parse, a compressed PING answered",
    ]
    .into_iter()
    .filter(|name| redis.is_some() || !name.contains("relay channel"))
    {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("ok ") && l.ends_with(&format!("- {name}"))),
            "{name}: did not pass: {stdout}{stderr}"
        );
    }
}

/// Node 20 has no WebSocket unless told: the client says which flag or version to use.
#[cfg_attr(bff_no_node, ignore = "node not found: install Node.js")]
#[cfg_attr(
    bff_node_has_websocket,
    ignore = "this node has WebSocket without a flag: the test needs Node 20 or 21"
)]
#[test]
fn the_javascript_client_on_node_20_says_which_flag_it_needs() {
    let Some(major) = node_major() else {
        return;
    };
    if major >= 22 {
        eprintln!("SKIPPED: Node {major} has WebSocket without a flag");
        return;
    }
    let mut node = Command::new("node");
    node.arg(dashboard_js());
    let (code, stdout, stderr) = output(node, &["ws://127.0.0.1:9/", "3"], &[]);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("has no WebSocket")
            && stderr.contains("node --experimental-websocket dashboard.mjs")
            && stderr.contains("Node 22"),
        "{stderr}"
    );
    assert!(!stderr.contains("ReferenceError"), "{stderr}");
}

/// Redis URLs are masked alike, whichever key holds them: the password only, so a value that is
/// not a URL at all still shows what to mend.
#[test]
fn redis_urls_hide_their_password_only() {
    let (code, stdout, stderr) = check_config(
        "[redis]\nurl = \"redis://u:hunter2@127.0.0.1:6379\"\n\
         [cluster]\nurl = \"redis://u:hunter3@127.0.0.1:6379\"\n",
        "redis-urls.toml",
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout
            .matches("url = \"redis://u:***@127.0.0.1:6379\"")
            .count(),
        2,
        "{stdout}"
    );
    // Not a URL: the value is shown (no password in it), with how to write it.
    let (code, _, stderr) = check_config(
        "[redis]\nurl = \"127.0.0.1:6379\"\n[cluster]\nurl = \":hunter4@127.0.0.1:6379\"\n",
        "redis-not-urls.toml",
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("redis.url: 127.0.0.1:6379 is not a redis:// URL"),
        "{stderr}"
    );
    assert!(
        stderr.contains("cluster.url: ***@127.0.0.1:6379 is not a redis:// URL"),
        "{stderr}"
    );
    assert!(!format!("{stdout}{stderr}").contains("hunter"), "{stderr}");
}

/// The `bff` command lines of the README's first-steps blocks (each a fenced block after a
/// `<!-- first-steps -->` line), as argument lists: the program (`bff`, `target/release/bff`,
/// `cargo run --release --`) taken off, and so are leading `VAR=value` words, comments (` #`)
/// and whatever follows a pipe, a redirection or a `&`. Other commands (`cargo test`,
/// `redis-server`) are not the binary's and are left out.
fn readme_first_steps(readme: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "<!-- first-steps -->" {
            continue;
        }
        let fence = lines.by_ref().find(|l| !l.trim().is_empty());
        assert!(
            fence.is_some_and(|f| f.starts_with("```")),
            "README.md: a `<!-- first-steps -->` line must be followed by a fenced code block"
        );
        for line in lines.by_ref().take_while(|l| !l.starts_with("```")) {
            let line = line.split(" #").next().unwrap();
            let line = line.split(['|', '>', '&', ';']).next().unwrap();
            let mut words = line
                .split_whitespace()
                .map(|w| w.trim_matches(|c| c == '\'' || c == '"').to_string())
                .skip_while(|w| w.contains('=') && !w.starts_with('-'))
                .peekable();
            match words.peek().map(String::as_str) {
                Some("bff" | "target/release/bff" | "target/debug/bff") => {
                    words.next();
                }
                Some("cargo") => {
                    let before: Vec<String> = words.by_ref().take_while(|w| w != "--").collect();
                    if before.get(1).map(String::as_str) != Some("run") {
                        continue;
                    }
                }
                _ => continue,
            }
            commands.push(words.collect());
        }
    }
    commands
}

/// The README's first steps run as written: every `bff` command line of its first-steps blocks
/// parses with the built binary (`--help` appended, so nothing starts), and `check-config` lines
/// run for real from the repository root. A flag or subcommand the binary does not have fails
/// here; whether a command does what the prose around it says is for the other tests.
#[test]
fn the_readme_first_steps_name_only_flags_and_subcommands_that_exist() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(PathBuf::from(root).join("README.md")).unwrap();
    let commands = readme_first_steps(&readme);
    assert!(
        commands.iter().any(|c| c == &["--demo"]),
        "README.md's first steps should run the demo: {commands:?}"
    );
    assert!(
        commands
            .iter()
            .any(|c| c.first().map(String::as_str) == Some("check-config")),
        "README.md's first steps should check a config: {commands:?}"
    );
    for args in &commands {
        let out = Command::new(BIN)
            .args(args)
            .arg("--help")
            .current_dir(root)
            .output()
            .unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Usage: bff"),
            "README.md: `bff {}` does not parse: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        if args.first().map(String::as_str) == Some("check-config") {
            let out = Command::new(BIN)
                .args(args)
                .current_dir(root)
                .output()
                .unwrap();
            assert_eq!(
                out.status.code(),
                Some(0),
                "README.md: `bff {}` from the repository root: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The reload `SIGHUP` triggers, driven without a signal: the file changed on disk is read
/// again with the same flags over it, a key that applies only after a restart is named, and
/// with `--demo` the engine stays the simulator.
#[test]
fn reload_rereads_the_file_with_the_same_flags() {
    use bff::cli::{Settings, reload};
    let path = temp_file(
        "library-reload.toml",
        "[server]\nlisten = \"127.0.0.1:3999\"\n[packet]\nmax_logs = 5\n",
    );
    let flagged: std::net::SocketAddr = "127.0.0.1:4001".parse().unwrap();
    let settings = Settings {
        config: Some(path.clone()),
        listen: Some(flagged),
        ..Settings::default()
    };
    let demo: std::net::SocketAddr = "127.0.0.1:4002".parse().unwrap();
    let start = reload::with_demo_engine(reload::load(&settings).unwrap(), Some(demo));
    assert_eq!(start.server.listen, flagged, "--listen over server.listen");
    let (running, watching) = tokio::sync::watch::channel(std::sync::Arc::new(start));

    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:3998\"\n[packet]\nmax_logs = 7\n\
         [engine]\nurl = \"http://127.0.0.1:9\"\n[clients]\nqueue_size = 17\n",
    )
    .unwrap();
    let restart = reload::reload(&settings, Some(demo), &running).unwrap();
    let now = watching.borrow().clone();
    assert_eq!(now.packet.max_logs, 7, "the file as it is now");
    assert_eq!(now.server.listen, flagged, "--listen still over the file");
    assert_eq!(
        now.engine.url,
        format!("http://{demo}"),
        "still the simulator"
    );
    assert_eq!(
        restart,
        ["clients.queue_size"],
        "listen did not change: the flag holds it"
    );
}

/// A reload of a file with a problem returns it and leaves the running config as it was.
#[test]
fn reload_of_a_broken_file_keeps_the_running_config() {
    use bff::cli::{Settings, reload};
    let path = temp_file("library-reload-broken.toml", "[packet]\nmax_logs = 5\n");
    let settings = Settings {
        config: Some(path.clone()),
        ..Settings::default()
    };
    let start = std::sync::Arc::new(reload::load(&settings).unwrap());
    let (running, watching) = tokio::sync::watch::channel(start.clone());

    std::fs::write(&path, "[server]\nmax_conections = 3\n").unwrap();
    let err = reload::reload(&settings, None, &running).unwrap_err();
    assert!(err.to_string().contains("max_conections"), "{err}");
    assert!(
        std::sync::Arc::ptr_eq(&watching.borrow(), &start),
        "the running config stays"
    );
    assert!(!watching.has_changed().unwrap(), "nothing was sent");
}

/// With `--delta`, the Python client asks for fossil deltas, applies each one (checking its
/// checksum) and prints the same lines as a plain client for the same packets, ending
/// ` delta=true`; whole packets end ` delta=false`.
#[cfg_attr(
    bff_no_python,
    ignore = "python3 with websockets not found: pip install -r examples/clients/requirements.txt"
)]
#[test]
fn the_python_client_applies_fossil_deltas() {
    let (Some(plain), Some(delta)) = (python(), python()) else {
        return;
    };
    assert_applies_deltas("python", plain, delta);
}

/// With `--delta`, the JavaScript client prints what the Python one does: the client library
/// applies the deltas (with `fossil-delta`, from `clients/js/node_modules`).
#[cfg_attr(bff_no_node, ignore = "node not found: install Node.js")]
#[cfg_attr(
    bff_no_js_deps,
    ignore = "clients/js/node_modules not found: npm ci --prefix clients/js"
)]
#[test]
fn the_javascript_client_applies_fossil_deltas() {
    let (Some(plain), Some(delta), Some(_)) = (node(), node(), node_tests()) else {
        return;
    };
    assert_applies_deltas("node", plain, delta);
}

/// `plain URL 16` and `delta URL 16 --delta` against one daemon: the same TELEMETRY lines for
/// the same seqs, the delta client's ending ` delta=true` for all but its first.
fn assert_applies_deltas(name: &str, mut plain: Command, mut delta: Command) {
    let config = temp_file(
        &format!("{name}-delta-{}.toml", std::process::id()),
        "[engine]\npoll_interval_ms = 250\ntimeout_ms = 200\n",
    );
    let daemon = BffProcess::demo(&["--config", config.to_str().unwrap()]);
    let url = format!("ws://127.0.0.1:{}/", daemon.addr().port());
    let both = [
        plain
            .args([&url, "16"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
        delta
            .args([&url, "16", "--delta"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    ];
    let [plain, delta] = both.map(|child| {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    });
    let by_seq = |stdout: &str| -> std::collections::BTreeMap<String, String> {
        stdout
            .lines()
            .filter(|line| line.starts_with("TELEMETRY seq="))
            .map(|line| (line.split(' ').nth(1).unwrap().to_owned(), line.to_owned()))
            .collect()
    };
    let (plain_lines, delta_lines) = (by_seq(&plain), by_seq(&delta));
    let mut deltas = 0;
    for (seq, line) in &delta_lines {
        let (printed, applied) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{delta}"));
        match applied {
            "delta=true" => deltas += 1,
            "delta=false" => {}
            _ => panic!("a TELEMETRY line says whether it was a delta: {delta}"),
        }
        if let Some(expected) = plain_lines.get(seq) {
            assert_eq!(printed, expected, "{plain}\n{delta}");
        }
    }
    // All but those right after the first packet (INITIALIZING, which the next differs from
    // too much for a delta to be smaller).
    assert!(deltas >= delta_lines.len() - 1, "{delta}");
    assert!(
        delta_lines
            .keys()
            .filter(|seq| plain_lines.contains_key(*seq))
            .count()
            >= 10,
        "the two clients saw the same packets\n{plain}\n{delta}"
    );
    assert!(delta.ends_with("closed code=1000\n"), "{delta}");
}
