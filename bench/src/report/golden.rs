//! The report of four made-up runs, kept as the text and JSON it printed (`golden/`): any change
//! to a figure or to how it is printed shows up here as a diff. A change meant to alter the
//! report rewrites those files with the new output
//! (`BFF_BENCH_PRINT_REPORT=1 cargo test -p bff-bench golden -- --nocapture` prints it).

use serde_json::Value;

use super::build;
use super::fixtures::{busy_run, empty_run, form_run, push_run};

/// `run`'s report is `text` and `json`, and its decoding did not fail.
fn check(run: &super::Run, text: &str, json: &str) {
    assert!(!check_failed(run, text, json));
}

/// `run`'s report is `text` and `json`; whether its decoding failed.
fn check_failed(run: &super::Run, text: &str, json: &str) -> bool {
    let (got_text, got_json, failed) = build(run);
    if std::env::var_os("BFF_BENCH_PRINT_REPORT").is_some() {
        println!("{got_text}");
        println!("{}", serde_json::to_string_pretty(&got_json).unwrap());
    }
    assert_eq!(got_text, text);
    let want: Value = serde_json::from_str(json).expect("the expected JSON parses");
    assert_eq!(got_json, want);
    // The same keys in the same order, and the same digits.
    let pretty = serde_json::to_string_pretty(&got_json).expect("JSON serializes");
    assert_eq!(pretty + "\n", json);
    failed
}

#[test]
fn a_busy_runs_report_is_unchanged() {
    check(
        &busy_run(),
        include_str!("golden/busy.txt"),
        include_str!("golden/busy.json"),
    );
}

#[test]
fn the_report_of_a_run_where_nobody_connected_is_unchanged() {
    check(
        &empty_run(),
        include_str!("golden/empty.txt"),
        include_str!("golden/empty.json"),
    );
}

/// The push section appears only with a publisher: the two runs above have none, and their
/// report is the one printed before the publisher existed.
#[test]
fn a_push_runs_report_is_unchanged() {
    check(
        &push_run(),
        include_str!("golden/push.txt"),
        include_str!("golden/push.json"),
    );
}

/// The form section appears only when a form or `--verify` was asked: bytes on the wire, deltas,
/// deflate taken, and the verification, whose mismatch fails the run.
#[test]
fn a_form_runs_report_is_unchanged() {
    let failed = check_failed(
        &form_run(),
        include_str!("golden/form.txt"),
        include_str!("golden/form.json"),
    );
    assert!(
        failed,
        "a mismatch and a frame that did not inflate fail the run"
    );
}
