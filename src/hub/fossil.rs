//! The fossil delta format's encoder (the format of Fossil's `delta.c`, which every fossil
//! decoder reads: the `fossil-delta` npm package, the crate, the Python example's dozen lines).
//!
//! The reference encoder, and the crate that ports it, index the base in aligned 16-byte
//! blocks, so a stretch the packets share is found only when it covers one whole block: on
//! these packets, where most of what changes are full-precision numbers a few bytes apart, the
//! short unchanged stretches between them are inserted again. This one looks up the positions
//! of the base by their first four bytes (the [`CANDIDATES`] newest alike, after the one that
//! keeps the last copy's shift) and copies the longest match of at least [`MIN_MATCH`] bytes
//! that is shorter as a copy than as text: on 30 consecutive demo packets its deltas are 12-14% of the full bytes
//! against the crate's 16-19%, and 7-8% deflated against 8-10% (`docs/BENCHMARKS.md`). The
//! format is the same, so no decoder changes.
//!
//! Copies start and end on character boundaries of the new packet, so every run it inserts is
//! whole UTF-8 and the delta can travel as a JSON string.

/// The shortest stretch copied rather than inserted: a copy command is 3 to 8 bytes.
const MIN_MATCH: usize = 8;
/// How many bytes a position of the base is looked up by.
const GRAM: usize = 4;
/// How many earlier positions with the same first bytes are tried at most, newest first: a
/// bound on the work for a base with one four bytes everywhere.
const CANDIDATES: usize = 32;
/// Buckets of the position index (a power of two).
const BUCKETS: usize = 1 << 12;
/// No position: the end of a chain.
const NONE: u32 = u32::MAX;

/// The fossil delta that turns `base` into `target`.
pub fn delta(base: &[u8], target: &[u8]) -> Vec<u8> {
    let index = Index::of(base);
    let mut out = Vec::with_capacity(target.len() / 4 + 16);
    push_number(&mut out, target.len());
    out.push(b'\n');
    let (mut at, mut inserted_from) = (0, 0);
    // Where the base goes on after the last copy, at the same shift: what a target that only
    // had something inserted or changed copies next.
    let mut shift = 0isize;
    while at < target.len() {
        let after = at
            .checked_add_signed(shift)
            .filter(|&from| from < base.len());
        match index.longest(target, at, after) {
            Some((len, from)) => {
                shift = from as isize - at as isize;
                insert(&mut out, &target[inserted_from..at]);
                push_number(&mut out, len);
                out.push(b'@');
                push_number(&mut out, from);
                out.push(b',');
                at += len;
                inserted_from = at;
            }
            None => at += 1,
        }
    }
    insert(&mut out, &target[inserted_from..]);
    push_number(&mut out, checksum(target) as usize);
    out.push(b';');
    out
}

/// Every position of a base, by the hash of its first [`GRAM`] bytes: a chain per bucket,
/// newest first, as zlib keeps its window.
struct Index<'a> {
    base: &'a [u8],
    head: Vec<u32>,
    prev: Vec<u32>,
}

impl<'a> Index<'a> {
    fn of(base: &'a [u8]) -> Self {
        let mut head = vec![NONE; BUCKETS];
        let mut prev = vec![NONE; base.len()];
        for at in 0..base.len().saturating_sub(GRAM - 1) {
            let bucket = bucket(&base[at..at + GRAM]);
            prev[at] = head[bucket];
            head[bucket] = at as u32;
        }
        Self { base, head, prev }
    }

    /// The longest stretch of `target` from `at` that the base holds, between two character
    /// boundaries and worth a copy (at least [`MIN_MATCH`] bytes, and more than its command
    /// and the insert it splits): its length and where in the base it is. `after`, where the
    /// last copy's shift points, is tried first.
    fn longest(&self, target: &[u8], at: usize, after: Option<usize>) -> Option<(usize, usize)> {
        if at + GRAM > target.len() || !boundary(target, at) {
            return None;
        }
        let rest = &target[at..];
        let (mut len, mut from) = (0, 0);
        let mut try_at = |start: usize| {
            let common = self.base[start..]
                .iter()
                .zip(rest)
                .take_while(|(a, b)| a == b)
                .count();
            if common > len {
                (len, from) = (common, start);
            }
        };
        if let Some(start) = after {
            try_at(start);
        }
        let mut candidate = self.head[bucket(&rest[..GRAM])];
        for _ in 0..CANDIDATES {
            if candidate == NONE {
                break;
            }
            try_at(candidate as usize);
            candidate = self.prev[candidate as usize];
        }
        while len > 0 && !boundary(target, at + len) {
            len -= 1;
        }
        // `LEN@FROM,`, and the count and colon of the insert after it.
        let cost = digits(len) + digits(from) + 2 + digits(target.len()) + 1;
        (len >= MIN_MATCH && len > cost).then_some((len, from))
    }
}

fn bucket(gram: &[u8]) -> usize {
    let word = u32::from_le_bytes([gram[0], gram[1], gram[2], gram[3]]);
    (word.wrapping_mul(2_654_435_761) >> (32 - BUCKETS.trailing_zeros())) as usize
}

/// Whether a character of `text` starts at `at` (or `at` is its end): not a UTF-8
/// continuation byte.
fn boundary(text: &[u8], at: usize) -> bool {
    text.get(at).is_none_or(|byte| byte & 0xc0 != 0x80)
}

/// An insert command: `bytes` as they are, after their count.
fn insert(out: &mut Vec<u8>, bytes: &[u8]) {
    if !bytes.is_empty() {
        push_number(out, bytes.len());
        out.push(b':');
        out.extend_from_slice(bytes);
    }
}

/// How many digits `n` takes in the format's base 64.
fn digits(n: usize) -> usize {
    (usize::BITS - n.leading_zeros()).div_ceil(6).max(1) as usize
}

/// `n` in the format's base 64, most significant digit first.
fn push_number(out: &mut Vec<u8>, mut n: usize) {
    const DIGITS: &[u8; 64] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~";
    let mut digits = [0u8; 11];
    let mut len = 0;
    loop {
        digits[len] = DIGITS[n & 63];
        len += 1;
        n >>= 6;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[..len].iter().rev());
}

/// The format's checksum of the target: four byte lanes summed, folded into one word.
fn checksum(text: &[u8]) -> u32 {
    let mut lanes = [0u32; 4];
    let words = text.chunks_exact(4);
    let tail = words.remainder();
    for word in words {
        for (lane, &byte) in lanes.iter_mut().zip(word) {
            *lane = lane.wrapping_add(u32::from(byte));
        }
    }
    let [s0, s1, s2, s3] = lanes;
    let mut sum = s3
        .wrapping_add(s2 << 8)
        .wrapping_add(s1 << 16)
        .wrapping_add(s0 << 24);
    for (i, &byte) in tail.iter().enumerate() {
        sum = sum.wrapping_add(u32::from(byte) << (24 - 8 * i));
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deltas of packets alike and unalike, empty ones, and text with characters of two to four
    /// bytes apply back with the crate's decoder (the reference's algorithm), and are UTF-8.
    #[test]
    fn every_delta_applies_back_with_the_reference_decoder() {
        let mut rng = fastrand::Rng::with_seed(7);
        let words = [
            "price", "450.25", "\"é\"", "→", "𝄞", ",", "{", "}", "agent", "0.9871",
        ];
        let text = |rng: &mut fastrand::Rng, n: usize| -> String {
            (0..n).map(|_| words[rng.usize(..words.len())]).collect()
        };
        for round in 0..300 {
            let base = text(&mut rng, round % 50 * 8);
            let mut target = base.clone();
            for _ in 0..rng.usize(0..6) {
                let at = rng.usize(0..=target.len());
                if target.is_char_boundary(at) {
                    let n = rng.usize(1..4);
                    target.insert_str(at, &text(&mut rng, n));
                }
            }
            if round % 7 == 0 {
                let n = rng.usize(0..40);
                target = text(&mut rng, n);
            }
            let delta = delta(base.as_bytes(), target.as_bytes());
            let text = std::str::from_utf8(&delta).expect("a delta is UTF-8");
            assert_eq!(
                fossil_delta::apply(&base, text).unwrap(),
                target.as_bytes(),
                "round {round}: {text}"
            );
        }
    }

    /// The format's numbers and checksum, as the reference writes them.
    #[test]
    fn numbers_and_the_checksum_are_the_formats() {
        let mut out = Vec::new();
        for n in [0, 9, 10, 63, 64, 4095, 4096] {
            push_number(&mut out, n);
            out.push(b' ');
        }
        assert_eq!(out, b"0 9 A ~ 10 ~~ 100 ");
        let counts = [0, 63, 64, 4095, 4096, usize::MAX].map(digits);
        assert_eq!(counts, [1, 1, 2, 2, 3, 11]);
        // A delta with a copy, its insert and its checksum, byte for byte.
        let base = b"{\"price\":450.25,\"symbol\":\"SPY\"}";
        let target = b"{\"price\":450.5,\"symbol\":\"SPY\"}";
        let made = delta(base, target);
        assert_eq!(
            fossil_delta::apply(base, &made).unwrap(),
            target,
            "{}",
            String::from_utf8_lossy(&made)
        );
        assert_eq!(
            fossil_delta::delta_output_size(&made),
            target.len(),
            "the header"
        );
    }

    /// A long run of one byte, or a packet shifted by what was put in front of it, is a
    /// handful of copies: the last copy's shift is tried before the newest positions alike.
    #[test]
    fn a_shifted_or_repetitive_target_is_a_few_copies() {
        let run = vec![b'a'; 100_000];
        let mut target = b"bb".to_vec();
        target.extend_from_slice(&run);
        let made = delta(&run, &target);
        assert!(made.len() < 32, "{}", String::from_utf8_lossy(&made));
        assert_eq!(fossil_delta::apply(&run, &made).unwrap(), target);
        let base: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("{i},").into_bytes())
            .collect();
        let mut target = b"[new]".to_vec();
        target.extend_from_slice(&base);
        let made = delta(&base, &target);
        assert!(made.len() < 32, "{}", String::from_utf8_lossy(&made));
        assert_eq!(fossil_delta::apply(&base, &made).unwrap(), target);
    }
}
