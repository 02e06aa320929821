//! permessage-deflate (RFC 7692) on the way in. The client keeps its context, so the daemon may
//! compress a packet after the one before (`docs/PROTOCOL.md` §13.1): a message inflates in a
//! window that ends with the last compressed message the connection got, and the daemon
//! refers no further back than that one.
//!
//! One decompressor and one output buffer per thread, reset for every message, so 10,000 deflate
//! clients cost no inflate state each: only their window's bytes (the last message, some 4 KB),
//! which the decompressor is given again before each message as DEFLATE stored blocks, so
//! back-references into it resolve as in a decompressor kept for the connection.
//! [`crate::client`] inflates every compressed frame before reading it.

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

/// DEFLATE's window: the furthest back a message may refer.
const WINDOW: usize = 32 << 10;

/// Inflates one compressed message in the connection's `window` and hands its bytes to `read`;
/// the window then ends with it. An error says why the payload is not a DEFLATE message of at
/// most 16 MiB.
pub fn with_inflated<R>(
    window: &mut Vec<u8>,
    payload: &[u8],
    read: impl FnOnce(&[u8]) -> R,
) -> Result<R, String> {
    INFLATER.with(|cell| {
        let (decompress, out) = &mut *cell.borrow_mut();
        let stored = stored_blocks(window);
        inflate(decompress, [&stored[..], payload, &TAIL[..]], out)?;
        let message = &out[window.len()..];
        let read = read(message);
        window.clear();
        window.extend_from_slice(&message[message.len().saturating_sub(WINDOW)..]);
        Ok(read)
    })
}

/// `bytes` as non-final DEFLATE stored blocks (RFC 1951 §3.2.4): what a stream that held them
/// looks like to the decompressor, at no cost to inflate.
fn stored_blocks(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 5 * (bytes.len() / 0xffff + 1));
    for chunk in bytes.chunks(0xffff) {
        let len = chunk.len() as u16;
        out.push(0x00); // BFINAL 0, BTYPE 00, then to the byte's end
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

/// `inputs` inflated into `out` (cleared first), with `decompress` reset.
fn inflate(
    decompress: &mut Decompress,
    inputs: [&[u8]; 3],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    decompress.reset(false);
    out.clear();
    for mut input in inputs {
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
            let got = with_inflated(&mut Vec::new(), &compress(&text), <[u8]>::to_vec).unwrap();
            assert_eq!(got, text, "{len}");
        }
        assert!(with_inflated(&mut Vec::new(), &[0xff, 0xff, 0xff], |_| ()).is_err());
    }

    /// A message compressed after the one before (the daemon's stream, kept across the two)
    /// inflates in the window that ends with the one before, and not without it; the window
    /// then ends with it.
    #[test]
    fn a_message_after_the_one_before_inflates_in_its_window() {
        let before =
            b"{\"seq\":1,\"agents\":{\"analyst\":39.9954166,\"risk\":5.0904166}}".repeat(40);
        let after =
            b"{\"seq\":2,\"agents\":{\"analyst\":40.0121333,\"risk\":5.0904166}}".repeat(40);
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&before).unwrap();
        encoder.flush().unwrap();
        encoder.get_mut().clear();
        encoder.write_all(&after).unwrap();
        encoder.flush().unwrap();
        let mut chained = std::mem::take(encoder.get_mut());
        chained.truncate(chained.len() - TAIL.len());
        assert!(chained.len() * 2 < compress(&after).len());
        let mut window = Vec::new();
        let got = with_inflated(&mut window, &compress(&before), <[u8]>::to_vec).unwrap();
        assert_eq!(got, before);
        let got = with_inflated(&mut window, &chained, <[u8]>::to_vec).unwrap();
        assert_eq!(got, after);
        assert_eq!(window, after);
        let without = with_inflated(&mut Vec::new(), &chained, <[u8]>::to_vec);
        assert_ne!(without.ok(), Some(after));
    }
}
