//! Any bytes an engine might answer with, through the normaliser and the packet builder: the
//! daemon must turn them into a packet or a stale source, never a panic.
#![no_main]

use bff::aggregate::{self, Inputs};
use bff::normalize;
use chrono::DateTime;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(answer) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let now = DateTime::from_timestamp_millis(1_766_318_400_500).unwrap();
    let mut inputs = Inputs::default();
    inputs.state.record(normalize::state(&answer), now);
    inputs.agents.record(normalize::agents(&answer), now);
    inputs.models.record(normalize::models(&answer), now);
    let packet = aggregate::build(&inputs, now, 50);
    let body = bff::packet::body(&packet);
    // What the daemon sends must always be JSON that reads back.
    serde_json::from_str::<serde_json::Value>(&body).expect("the packet is valid JSON");
});
