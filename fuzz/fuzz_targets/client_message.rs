//! Any text a dashboard might send, through the client-message parser: an answer or an
//! error to log, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = bff::message::parse(text);
    }
});
