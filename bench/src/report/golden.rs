//! The report of three made-up runs, kept as the text and JSON it printed (`golden/`): any change
//! to a figure or to how it is printed shows up here as a diff. A change meant to alter the
//! report rewrites those files with the new output.

use serde_json::Value;

use super::build;
use super::fixtures::{busy_run, empty_run, push_run};

fn check(run: &super::Run, text: &str, json: &str) {
    let (got_text, got_json, failed) = build(run);
    assert!(!failed);
    assert_eq!(got_text, text);
    let want: Value = serde_json::from_str(json).expect("the expected JSON parses");
    assert_eq!(got_json, want);
    // The same keys in the same order, and the same digits.
    let pretty = serde_json::to_string_pretty(&got_json).expect("JSON serializes");
    assert_eq!(pretty + "\n", json);
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
