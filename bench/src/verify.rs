//! Verification (`--verify N`): N clients decode every packet fully ([`Decoder`]: inflated
//! already, then the fossil delta applied to their previous `data`, or the MessagePack decoded)
//! and [`Verify`] compares each packet's `data` with what the reference connection, one extra
//! client that asks for nothing (`crate::client::reference`), got for the same seq.
//!
//! JSON data is compared byte for byte (a delta rebuilds exactly the plain client's text,
//! `docs/PROTOCOL.md` §13.2), MessagePack data as the JSON value it decodes to (§13.3). The
//! reference's timestamps also give the staleness of packets whose own timestamp cannot be read
//! without decoding them: a delta's.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::Value;

/// Seqs of reference data kept for verifiers that lag behind the reference.
const KEEP: u64 = 64;

/// The problems the report lists, at most.
const PROBLEMS: usize = 5;

/// A packet's `data` as a verifying client rebuilt it.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// JSON text, as a plain client's frame carries it.
    Json(Vec<u8>),
    /// A decoded MessagePack value.
    Value(Value),
}

/// One packet, decoded.
#[derive(Debug)]
pub struct Decoded {
    pub seq: u64,
    pub data: Data,
}

/// What one verifying client needs to rebuild each packet: the previous packet's `data`, the
/// base of the next delta.
#[derive(Debug, Default)]
pub struct Decoder {
    /// The previous packet's data as JSON text (empty after a MessagePack one).
    base: Vec<u8>,
    /// Its seq; `None` before the first packet.
    base_seq: Option<u64>,
}

impl Decoder {
    /// One message as it came (inflated if it was compressed; `binary` for MessagePack):
    /// `Ok(None)` for anything but a WELCOME or TELEMETRY, `Err` for a packet that does not
    /// decode or a delta that does not apply.
    pub fn decode(&mut self, message: &[u8], binary: bool) -> Result<Option<Decoded>, String> {
        let mut envelope: Value = if binary {
            rmp_serde::from_slice(message).map_err(|e| format!("MessagePack: {e}"))?
        } else {
            serde_json::from_slice(message).map_err(|e| format!("JSON: {e}"))?
        };
        if !matches!(envelope["type"].as_str(), Some("WELCOME" | "TELEMETRY")) {
            return Ok(None);
        }
        let seq = envelope["seq"]
            .as_u64()
            .ok_or("a packet without a seq".to_string())?;
        let data = if envelope["delta"] == true {
            let delta = envelope["data"]
                .as_str()
                .ok_or(format!("seq {seq}: a delta whose data is not a string"))?;
            if self.base_seq.map(|s| s + 1) != Some(seq) {
                return Err(format!(
                    "seq {seq}: a delta that does not follow the packet before ({:?})",
                    self.base_seq
                ));
            }
            let applied = apply(&self.base, delta).map_err(|why| format!("seq {seq}: {why}"))?;
            self.base.clone_from(&applied);
            Data::Json(applied)
        } else if binary {
            // No JSON text to apply a delta to: one would not apply, and say so.
            self.base.clear();
            Data::Value(envelope["data"].take())
        } else {
            let data = raw_data(message).ok_or(format!("seq {seq}: no data in the envelope"))?;
            self.base.clear();
            self.base.extend_from_slice(data);
            Data::Json(data.to_vec())
        };
        self.base_seq = Some(seq);
        Ok(Some(Decoded { seq, data }))
    }
}

/// Whether a message that is no packet is still a message: JSON text, or MessagePack in a
/// binary frame. A message that inflated to garbage is not.
pub fn well_formed(message: &[u8], binary: bool) -> Result<(), String> {
    if binary {
        rmp_serde::from_slice::<Value>(message)
            .map(drop)
            .map_err(|e| format!("a binary message that is not MessagePack: {e}"))
    } else {
        serde_json::from_slice::<Value>(message)
            .map(drop)
            .map_err(|e| format!("a text message that is not JSON: {e}"))
    }
}

/// A fossil delta applied to `base`, its checksum and length checked. The crate panics on some
/// malformed deltas; that is caught and reported like any other that does not apply.
fn apply(base: &[u8], delta: &str) -> Result<Vec<u8>, String> {
    let (applied, size) = std::panic::catch_unwind(|| {
        (
            fossil_delta::apply(base, delta),
            fossil_delta::delta_output_size(delta),
        )
    })
    .map_err(|_| "a malformed delta".to_string())?;
    let applied = applied.map_err(|e| format!("the delta does not apply ({e:?})"))?;
    if applied.len() != size {
        return Err("the delta does not apply (its length)".into());
    }
    Ok(applied)
}

/// A text packet's `data` as its bytes appear in the frame: after the envelope's first
/// `"data":`, up to its last `,"epoch":` (`docs/PROTOCOL.md` §13.2).
pub fn raw_data(text: &[u8]) -> Option<&[u8]> {
    let find = |needle: &[u8]| text.windows(needle.len()).position(|w| w == needle);
    let start = find(br#""data":"#)? + br#""data":"#.len();
    let end = text
        .windows(br#","epoch":"#.len())
        .rposition(|w| w == br#","epoch":"#)?;
    text.get(start..end)
}

/// What the verification found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Packets whose data equals the reference's.
    pub verified: u64,
    /// Packets whose data differs from it.
    pub mismatched: u64,
    /// Packets that did not decode, or deltas that did not apply.
    pub undecodable: u64,
    /// Packets the reference never had (it missed them, or the run ended first).
    pub unreferenced: u64,
    /// The first few problems, in words.
    pub problems: Vec<String>,
}

impl Tally {
    /// Whether the run's decoding failed anywhere: `bff-load` then exits non-zero.
    pub fn failed(&self) -> bool {
        self.mismatched > 0 || self.undecodable > 0
    }

    fn note(&mut self, problem: String) {
        if self.problems.len() < PROBLEMS {
            self.problems.push(problem);
        }
    }
}

/// The reference's packets and the verifiers' results, shared by every client of the run;
/// a few dozen clients lock it once a packet, so a mutex is plenty.
#[derive(Debug, Default)]
pub struct Verify {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    /// The reference's data of the last [`KEEP`] seqs.
    reference: BTreeMap<u64, Vec<u8>>,
    /// Every seq's `data.timestamp` (ms) as the reference read it.
    stamps: BTreeMap<u64, i64>,
    /// Verifiers' packets the reference has not had yet: (client, data).
    waiting: BTreeMap<u64, Vec<(usize, Data)>>,
    tally: Tally,
}

impl Verify {
    /// The reference connection's packet `seq`: its raw `data` and timestamp.
    pub fn reference(&self, seq: u64, data: &[u8], ts_ms: Option<i64>) {
        let mut t = self.table.lock().expect("verify table poisoned");
        if let Some(ts) = ts_ms {
            t.stamps.insert(seq, ts);
        }
        for (client, got) in t.waiting.remove(&seq).unwrap_or_default() {
            t.compare(client, seq, &got, data);
        }
        t.reference.insert(seq, data.to_vec());
        let oldest = seq.saturating_sub(KEEP);
        t.reference.retain(|&s, _| s >= oldest);
        let stale: Vec<u64> = t.waiting.range(..oldest).map(|(&s, _)| s).collect();
        for s in stale {
            let missed = t.waiting.remove(&s).unwrap_or_default();
            t.tally.unreferenced += missed.len() as u64;
        }
    }

    /// Verifying client `client`'s result for one packet.
    pub fn check(&self, client: usize, decoded: Result<Decoded, String>) {
        let mut t = self.table.lock().expect("verify table poisoned");
        match decoded {
            Err(why) => {
                t.tally.undecodable += 1;
                t.tally.note(format!("client {client}: {why}"));
            }
            Ok(Decoded { seq, data }) => match t.reference.remove(&seq) {
                Some(reference) => {
                    t.compare(client, seq, &data, &reference);
                    t.reference.insert(seq, reference);
                }
                None => t.waiting.entry(seq).or_default().push((client, data)),
            },
        }
    }

    /// The tally, with whatever still waits counted as unreferenced.
    pub fn finish(&self) -> Tally {
        let mut t = self.table.lock().expect("verify table poisoned");
        let waiting: usize = t.waiting.values().map(Vec::len).sum();
        t.waiting.clear();
        t.tally.unreferenced += waiting as u64;
        t.tally.clone()
    }

    /// `data.timestamp` (ms) of every seq the reference got.
    pub fn stamps(&self) -> BTreeMap<u64, i64> {
        self.table
            .lock()
            .expect("verify table poisoned")
            .stamps
            .clone()
    }
}

impl Table {
    fn compare(&mut self, client: usize, seq: u64, got: &Data, reference: &[u8]) {
        let same = match got {
            Data::Json(bytes) => bytes == reference,
            Data::Value(value) => {
                serde_json::from_slice::<Value>(reference).is_ok_and(|r| &r == value)
            }
        };
        if same {
            self.tally.verified += 1;
        } else {
            self.tally.mismatched += 1;
            let at = match got {
                Data::Json(bytes) => {
                    let at = bytes
                        .iter()
                        .zip(reference)
                        .position(|(a, b)| a != b)
                        .unwrap_or(bytes.len().min(reference.len()));
                    format!(" (first difference at byte {at})")
                }
                Data::Value(value) => serde_json::from_slice::<Value>(reference)
                    .ok()
                    .and_then(|r| difference(value, &r, String::new()))
                    .map_or(String::new(), |at| format!(" (first difference at {at})")),
            };
            self.tally.note(format!(
                "client {client}: seq {seq} decodes to other data than the reference's{at}"
            ));
        }
    }
}

/// Where two values first differ, as a path (`.market.price`) with both values.
fn difference(got: &Value, want: &Value, at: String) -> Option<String> {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => w
            .iter()
            .find_map(|(k, wv)| match g.get(k) {
                Some(gv) => difference(gv, wv, format!("{at}.{k}")),
                None => Some(format!("{at}.{k}: missing")),
            })
            .or_else(|| {
                g.keys()
                    .find(|k| !w.contains_key(*k))
                    .map(|k| format!("{at}.{k}: not in the reference"))
            }),
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => g
            .iter()
            .zip(w)
            .enumerate()
            .find_map(|(i, (gv, wv))| difference(gv, wv, format!("{at}[{i}]"))),
        _ if got == want => None,
        _ => Some(format!("{at}: {got} instead of {want}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain packet's text around `data`.
    fn packet(seq: u64, data: &str, delta: Option<&str>) -> Vec<u8> {
        match delta {
            Some(d) => format!(
                r#"{{"type":"TELEMETRY","seq":{seq},"data":{},"epoch":"e","delta":true}}"#,
                serde_json::to_string(d).unwrap()
            ),
            None => format!(r#"{{"type":"TELEMETRY","seq":{seq},"data":{data},"epoch":"e"}}"#),
        }
        .into_bytes()
    }

    /// A fossil delta that turns `old` into `new` (the crate's encoder; the daemon's own writes
    /// the same format, with more copies).
    fn delta(new: &str, old: &str) -> String {
        String::from_utf8(fossil_delta::delta(new, old)).unwrap()
    }

    /// What `decoder` makes of TELEMETRY `seq` carrying `data`, or the `delta` to it.
    fn decoded(
        decoder: &mut Decoder,
        seq: u64,
        data: &str,
        delta: Option<&str>,
    ) -> Result<Decoded, String> {
        decoder
            .decode(&packet(seq, data, delta), false)
            .map(Option::unwrap)
    }

    /// `data` as a decoded packet `seq`, as JSON text or, `value`, as MessagePack's value.
    fn as_decoded(seq: u64, data: &str, value: bool) -> Result<Decoded, String> {
        let data = if value {
            Data::Value(serde_json::from_str(data).unwrap())
        } else {
            Data::Json(data.as_bytes().to_vec())
        };
        Ok(Decoded { seq, data })
    }

    fn data(price: f64, line: &str) -> String {
        format!(
            r#"{{"timestamp":"2025-12-21T11:59:59.812Z","price":{price},"log":["{line}"],"pad":"{}"}}"#,
            "steady ".repeat(40)
        )
    }

    /// Deltas applied in order rebuild the reference's data byte for byte; MessagePack is
    /// compared as a value.
    #[test]
    fn deltas_in_order_verify() {
        let verify = Verify::default();
        let mut decoder = Decoder::default();
        let (a, b, c) = (data(450.25, "a"), data(450.5, "b"), data(451.0, "c"));
        verify.reference(7, a.as_bytes(), None);
        verify.check(0, decoded(&mut decoder, 7, &a, None));
        let d = delta(&b, &a);
        // The verifier is ahead of the reference: its packet waits for it.
        verify.check(0, decoded(&mut decoder, 8, &b, Some(&d)));
        verify.reference(8, b.as_bytes(), Some(5));
        let d = delta(&c, &b);
        verify.reference(9, c.as_bytes(), None);
        verify.check(0, decoded(&mut decoder, 9, &c, Some(&d)));
        verify.check(1, as_decoded(9, &c, true));
        let tally = verify.finish();
        assert_eq!(
            (tally.verified, tally.mismatched, tally.undecodable),
            (4, 0, 0),
            "{tally:?}"
        );
        assert!(!tally.failed());
        assert_eq!(verify.stamps(), BTreeMap::from([(8, 5)]));
    }

    /// A message that is no packet passes when it is one (an announcement, an answer), and not
    /// when it inflated to garbage.
    #[test]
    fn a_message_that_is_no_packet_must_still_be_one() {
        assert_eq!(
            well_formed(br#"{"type":"REGIME","regime":"crash"}"#, false),
            Ok(())
        );
        assert_eq!(well_formed(&[0x81, 0xa1, b'a', 0x01], true), Ok(()));
        assert!(well_formed(b"{\"type\":\"REG\x00\x13\xff", false).is_err());
        assert!(well_formed(&[0xc1], true).is_err());
    }

    /// The check can fail: a delta applied to the wrong base, one that skips a packet, and data
    /// that decodes but differs are each flagged, and fail the run.
    #[test]
    fn a_wrong_decode_is_flagged() {
        let (a, b, c) = (data(450.25, "a"), data(450.5, "b"), data(451.0, "c"));
        let verify = Verify::default();
        verify.reference(8, b.as_bytes(), None);
        verify.reference(9, c.as_bytes(), None);
        // The delta from a to b, applied to c: its checksum says it did not apply.
        let mut decoder = Decoder::default();
        decoder.decode(&packet(7, &c, None), false).unwrap();
        let d = delta(&b, &a);
        verify.check(0, decoded(&mut decoder, 8, &b, Some(&d)));
        // A delta after a gap in seq is not applied at all.
        let mut decoder = Decoder::default();
        decoder.decode(&packet(7, &a, None), false).unwrap();
        let d = delta(&c, &b);
        verify.check(1, decoded(&mut decoder, 9, &c, Some(&d)));
        // Data that is not the reference's.
        verify.check(2, as_decoded(9, &b, false));
        verify.check(3, as_decoded(9, &b, true));
        let tally = verify.finish();
        assert_eq!(
            (tally.verified, tally.mismatched, tally.undecodable),
            (0, 2, 2),
            "{tally:?}"
        );
        assert!(tally.failed());
        assert_eq!(tally.problems.len(), 4, "{tally:?}");
    }

    /// What the reference never got is counted apart, neither verified nor failed.
    #[test]
    fn packets_the_reference_missed_are_unreferenced() {
        let verify = Verify::default();
        let a = data(1.0, "a");
        verify.check(0, as_decoded(3, &a, false));
        verify.reference(3 + KEEP + 1, a.as_bytes(), None);
        verify.check(
            0,
            Ok(Decoded {
                seq: 500,
                data: Data::Json(a.into_bytes()),
            }),
        );
        let tally = verify.finish();
        assert_eq!((tally.verified, tally.unreferenced), (0, 2));
        assert!(!tally.failed());
    }

    #[test]
    fn raw_data_is_what_a_delta_applies_to() {
        let text = br#"{"type":"TELEMETRY","seq":1,"data":{"log":[",\"epoch\":"]},"epoch":"e"}"#;
        assert_eq!(raw_data(text), Some(&br#"{"log":[",\"epoch\":"]}"#[..]));
        assert_eq!(raw_data(br#"{"type":"PONG"}"#), None);
    }
}
