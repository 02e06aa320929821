use super::server::RESERVED_PATHS;
use super::*;
use crate::config::listen_addr;

fn problems(toml: &str) -> Vec<String> {
    ConfigError::of(toml)
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let got = problems(
        "[engine]\nurl = \"ftp://x\"\ntimeout_ms = 1000\n[server]\nallowed_origins = [\"dash.example.com\"]\ntrusted_proxies = [\"10.0.0.1\", \"10.0.0.0/33\", \"proxy.local\"]\nmax_connections_per_ip = 0\n[clients]\nidle_timeout_ms = 100\n",
    );
    let keys: Vec<&str> = got.iter().map(|p| p.split(':').next().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "engine.url",
            "engine.timeout_ms",
            "server.allowed_origins",
            "server.trusted_proxies[1]",
            "server.trusted_proxies[2]",
            "server.max_connections_per_ip",
            "clients.idle_timeout_ms"
        ],
        "{got:#?}"
    );
}

#[test]
fn secrets_are_masked_everywhere_but_where_they_are_used() {
    let secret = "s3cret-s3cret-s3cret-s3cret-s3cret";
    let cfg = Config::parse(&format!("[auth]\nsecret = \"{secret}\"\n")).unwrap();
    assert_eq!(cfg.auth.secret.expose(), secret);
    assert!(!cfg.to_toml().contains(secret) && cfg.to_toml().contains("secret = \"***\""));
    assert!(!format!("{cfg:?}").contains(secret));
    assert_eq!(
        problems(&format!("[auth]\nsecret = \"{secret}\"\n")),
        Vec::<String>::new()
    );
    assert_eq!(problems("[auth]\nsecret = \"short\"\n").len(), 1);
}

#[test]
fn a_rollover_needs_both_secrets_and_an_end_and_claims_to_match_are_not_empty() {
    let keys = |toml: &str| {
        problems(toml)
            .iter()
            .map(|p| p.split(':').next().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys("[auth]\nprevious_secret_until = \"2026-12-08T12:00:00Z\"\n"),
        ["auth.previous_secret_until"]
    );
    // Parsed, not read: the file's secret is empty, and so is the new one.
    assert_eq!(
        keys("[auth]\nprevious_secret_file = \"old\"\nprevious_secret_until = \"soon\"\n"),
        [
            "auth.previous_secret_file",
            "auth.previous_secret_file",
            "auth.previous_secret_until"
        ]
    );
    assert_eq!(
        keys("[auth]\nissuer = \"\"\naudience = \"\"\nwatch = \"open\"\n"),
        ["auth.issuer", "auth.audience"]
    );
    assert!(Config::parse("[auth]\nwatch = \"maybe\"\n").is_err());
}

#[test]
fn a_bad_engine_url_is_one_problem_and_full_endpoint_urls_must_be_http() {
    let all_paths = problems("[engine]\nurl = \"ftp://x\"\n");
    assert_eq!(
        all_paths,
        ["engine.url: \"ftp://x\" must be an http:// or https:// URL with a host"]
    );
    // No path to join to it: the base is not used, so not checked.
    let full = "state = \"http://e/s\"\nagents = \"http://e/a\"\nmodels = \"engine:9000/m\"\nhalt = \"\"\nresume = \"\"\nrebalance = \"\"\nexport_logs = \"\"\n";
    let got = problems(&format!("[engine]\nurl = \"ftp://x\"\n{full}"));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("engine.models: "), "{got:?}");
}

#[test]
fn listen_takes_an_address_or_localhost_and_says_what_to_write() {
    assert_eq!(listen_addr("0.0.0.0:3000"), Ok(([0, 0, 0, 0], 3000).into()));
    assert_eq!(listen_addr("[::1]:0"), Ok("[::1]:0".parse().unwrap()));
    assert_eq!(
        listen_addr("localhost:3000"),
        Ok(([127, 0, 0, 1], 3000).into())
    );
    for bad in [
        "nowhere",
        "localhost",
        "dash.example.com:3000",
        "localhost:99999",
    ] {
        let err = listen_addr(bad).unwrap_err();
        assert!(err.contains("write IP:port, e.g. 127.0.0.1:3000"), "{err}");
    }
}

#[test]
fn a_publish_deadline_past_a_quarter_of_the_period_is_set_to_what_applies() {
    let mut cfg = Config::parse("[engine]\npublish_deadline_ms = 5000\n").unwrap();
    assert_eq!(
        cfg.normalise(),
        [
            "engine.publish_deadline_ms: 5000 is more than a quarter of engine.poll_interval_ms (1000); 250 applies"
        ]
    );
    assert_eq!(cfg.engine.publish_deadline_ms, 250);
    assert!(cfg.normalise().is_empty());
    assert!(Config::default().normalise().is_empty());
}

#[test]
fn a_masked_secret_read_back_is_named() {
    let got = problems("[auth]\nsecret = \"***\"\n");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("auth.secret: \"***\" is how check-config shows a secret"),
        "{got:?}"
    );
}

#[test]
fn redis_urls_are_checked_and_never_shown_with_their_password() {
    let got = problems(
        "[redis]\nurl = \"http://:hunter2@cache:6379\"\n[cluster]\nurl = \"redis://cache:6379\"\n",
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("redis.url: http://:***@cache:6379/ is not a redis:// URL"),
        "{got:?}"
    );
    assert!(!got[0].contains("hunter2"));
}

#[test]
fn a_market_stream_path_speaks_one_dialect() {
    assert_eq!(
        Config::default().server.market_stream_paths,
        ["/ws/market-stream"]
    );
    let got = problems(
        "[server]\nws_paths = [\"/\"]\nbridge_paths = [\"/ws\"]\nmarket_stream_paths = [\"/\", \"/ws\", \"market\", \"/ws/mood\"]\n",
    );
    assert_eq!(
        got,
        [
            "server.market_stream_paths: \"/\" is in server.ws_paths too; a path speaks one dialect".to_owned(),
            "server.market_stream_paths: \"/ws\" is in server.bridge_paths too; a path speaks one dialect".to_owned(),
            format!("server.market_stream_paths: \"market\" must start with '/' and not be one of {RESERVED_PATHS:?}"),
        ]
    );
}

/// A minimum no frame reaches turns compression off in effect, so it is named, with what to
/// write instead; with compression off it does not matter.
#[test]
fn a_compression_minimum_above_every_frame_is_refused() {
    let got = problems("[clients]\ncompression_min_bytes = 100000000\n");
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with("clients.compression_min_bytes: 100000000 is above")
            && got[0].contains("clients.compression = false"),
        "{got:#?}"
    );
    assert_eq!(
        problems("[clients]\ncompression = false\ncompression_min_bytes = 100000000\n"),
        Vec::<String>::new()
    );
    assert_eq!(
        problems("[clients]\ncompression_min_bytes = 0\n"),
        Vec::<String>::new()
    );
}
