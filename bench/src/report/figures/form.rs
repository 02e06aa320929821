//! The figures of a run that asked for a form (`--deflate`, `--delta`, `--format msgpack`) or
//! `--verify`: what the packets cost on the wire, how many came as deltas, and what the
//! verification found.

use crate::client::Session;
use crate::report::FormRun;
use crate::verify::Tally;

/// What the forms cost and whether they decoded.
pub struct Form {
    /// Normal clients, and how many of them the server took permessage-deflate from.
    pub clients: usize,
    pub deflate_taken: usize,
    /// TELEMETRY the normal clients received.
    pub packets: u64,
    /// Their mean size on the wire, frame header included: bytes per client per tick.
    pub wire_bytes_per_packet: f64,
    /// How many of them were fossil deltas.
    pub delta_packets: u64,
    /// Compressed frames that did not inflate, at any normal client.
    pub undecodable_frames: u64,
    pub verifiers: usize,
    pub tally: Tally,
    pub reference_end: Option<String>,
}

impl Form {
    /// Whether decoding failed anywhere: `bff-load` then exits non-zero.
    pub fn failed(&self) -> bool {
        self.tally.failed() || self.undecodable_frames > 0
    }
}

pub fn compute(form: &FormRun, normal: &[&Session]) -> Form {
    let packets: u64 = normal.iter().map(|s| s.rx.len() as u64).sum();
    let wire: u64 = normal.iter().map(|s| s.wire_bytes).sum();
    Form {
        clients: normal.len(),
        deflate_taken: normal.iter().filter(|s| s.deflate).count(),
        packets,
        wire_bytes_per_packet: if packets > 0 {
            wire as f64 / packets as f64
        } else {
            0.0
        },
        delta_packets: normal.iter().map(|s| u64::from(s.deltas)).sum(),
        undecodable_frames: normal.iter().map(|s| u64::from(s.undecodable)).sum(),
        verifiers: form.verifiers,
        tally: form.tally.clone(),
        reference_end: form.reference_end.clone(),
    }
}
