//! Tests of `bff.toml`: the defaults, unknown keys and wrong types named, the keys a reload
//! cannot change, and the checked-in file.

use super::*;

#[test]
fn empty_file_is_the_defaults() {
    assert_eq!(Config::parse("").unwrap(), Config::default());
    assert!(Config::default().validate("test").is_ok());
}

#[test]
fn unknown_key_is_named() {
    let err = Config::parse("[engine]\npoll_intervall_ms = 5\n").unwrap_err();
    assert_eq!(
        err,
        ["engine.poll_intervall_ms: unknown key; did you mean `poll_interval_ms`? (line 2)"]
    );
}

#[test]
fn a_reload_names_the_keys_that_need_a_restart() {
    let running = Config::default();
    let mut next = Config::default();
    next.engine.poll_interval_ms = 500;
    next.server.max_connections_per_ip = 1;
    assert!(running.restart_needed(&next).is_empty());
    next.server.listen = "0.0.0.0:3000".parse().unwrap();
    next.clients.queue_size = 2;
    assert_eq!(
        running.restart_needed(&next),
        ["server.listen", "clients.queue_size"]
    );
}

#[test]
fn wrong_type_is_named() {
    let err = Config::parse("[server]\nlisten = \"nowhere\"\n").unwrap_err();
    assert_eq!(err.len(), 1, "{err:?}");
    assert!(
        err[0].starts_with(
            "server.listen: \"nowhere\" is not an address to listen on; write IP:port"
        ),
        "{err:?}"
    );
    let cfg = Config::parse("[server]\nlisten = \"localhost:3000\"\n").unwrap();
    assert_eq!(cfg.server.listen, ([127, 0, 0, 1], 3000).into());
}

#[test]
fn checked_in_file_holds_the_defaults() {
    let text = include_str!("../../bff.toml");
    assert_eq!(Config::parse(text).unwrap(), Config::default());
}
