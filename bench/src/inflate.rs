//! permessage-deflate (RFC 7692) on the way in: the daemon answers `server_no_context_takeover`
//! (`docs/PROTOCOL.md` §13.1), so each compressed message inflates on its own: raw inflate of
//! its payload followed by `00 00 ff ff`.
//!
//! One decompressor and one output buffer per thread, reset for every message, so 10,000 deflate
//! clients cost no inflate state each. [`crate::client`] inflates every compressed frame before
//! reading it.

use std::cell::RefCell;

use flate2::{Decompress, FlushDecompress, Status};

/// What RFC 7692 §7.2.2 has the receiver append to each message before inflating it.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The most one message may inflate to: far above any packet, low enough that a broken stream
/// cannot take the load generator's memory.
const MAX_INFLATED: usize = 16 << 20;

thread_local! {
    static INFLATER: RefCell<(Decompress, Vec<u8>)> =
        RefCell::new((Decompress::new(false), Vec::with_capacity(16 << 10)));
}

/// Inflates one compressed message and hands its bytes to `read`; an error says why the
/// payload is not a DEFLATE message of at most 16 MiB.
pub fn with_inflated<R>(payload: &[u8], read: impl FnOnce(&[u8]) -> R) -> Result<R, String> {
    INFLATER.with(|cell| {
        let (decompress, out) = &mut *cell.borrow_mut();
        inflate(decompress, payload, out)?;
        Ok(read(out))
    })
}

/// `payload` + [`TAIL`] inflated into `out` (cleared first), with `decompress` reset.
fn inflate(decompress: &mut Decompress, payload: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    decompress.reset(false);
    out.clear();
    for mut input in [payload, &TAIL[..]] {
        loop {
            if out.capacity() - out.len() < 4096 {
                if out.len() >= MAX_INFLATED {
                    return Err(format!(
                        "a compressed message inflates past {} MiB",
                        MAX_INFLATED >> 20
                    ));
                }
                out.reserve(out.len().max(8192));
            }
            let (read, written) = (decompress.total_in(), decompress.total_out());
            let status = decompress
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|e| format!("a compressed message does not inflate: {e}"))?;
            let used = (decompress.total_in() - read) as usize;
            let made = decompress.total_out() - written;
            input = &input[used..];
            let room_left = out.len() < out.capacity();
            if status == Status::StreamEnd || (input.is_empty() && room_left) {
                break;
            }
            if used == 0 && made == 0 && room_left {
                return Err("a compressed message stops short".into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// What the daemon does (`src/hub/deflate.rs`): raw deflate, sync-flushed, the tail stripped.
    pub fn compress(message: &[u8]) -> Vec<u8> {
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(message).unwrap();
        encoder.flush().unwrap();
        let mut out = std::mem::take(encoder.get_mut());
        assert!(out.ends_with(&TAIL));
        out.truncate(out.len() - TAIL.len());
        out
    }

    /// Messages of every size inflate back, one after the other on the same decompressor, and
    /// what is not DEFLATE is an error, not a panic.
    #[test]
    fn messages_inflate_each_on_its_own() {
        for len in [0, 10, 5_000, 300_000] {
            let text: Vec<u8> = (0..len).map(|i| b"tick, price 451.25 "[i % 19]).collect();
            let got = with_inflated(&compress(&text), <[u8]>::to_vec).unwrap();
            assert_eq!(got, text, "{len}");
        }
        assert!(with_inflated(&[0xff, 0xff, 0xff], |_| ()).is_err());
    }
}
