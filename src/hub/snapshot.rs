//! One published snapshot: its number and epoch, its typed data, and the frames every
//! connection writes as they are. The TELEMETRY and WELCOME frames are made once, when it is
//! published; the rarer ones (a bridge's `telemetry` update, a resumed WELCOME) when first
//! needed. Once a newer one is published, the hub keeps a [`Snapshot::slim`] copy for clients
//! that resume: what they are sent, without what only the latest needs.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::frame;
use super::packet::{self, Telemetry};

/// One published snapshot.
#[derive(Debug)]
pub struct Snapshot {
    /// Grows by one per snapshot within an epoch; 0 is the INITIALIZING snapshot before the
    /// first poll.
    pub seq: u64,
    /// The sequence this `seq` belongs to; a new one means the count started again.
    pub epoch: Arc<str>,
    /// The typed data, for `/health` and `/metrics`: only while it is the latest (see
    /// [`Snapshot::data`]). Boxed, so the kept copies without it do not keep its room (some
    /// 580 bytes each).
    data: Option<Box<Telemetry>>,
    /// The framed `{"type":"TELEMETRY",…}`, written as is by every connection.
    pub telemetry: Bytes,
    /// The framed `{"type":"WELCOME",…}`, for clients that connect while this is the latest
    /// (empty in a slim copy: a resuming client gets [`Snapshot::welcome_resumed`]).
    pub welcome: Bytes,
    /// The serialized `data`, for the frames made on demand: a slice of `telemetry`, which
    /// carries it whole, so a kept packet holds it once.
    body: Bytes,
    /// `{"type":"update","channel":"telemetry","data":…}` framed, for bridge clients that
    /// subscribed to the packet; made by the first that needs it.
    bridge: OnceLock<Bytes>,
}

impl Snapshot {
    /// Frames `data` (serialized as `body`) as snapshot `seq` of `epoch`.
    pub fn new(seq: u64, epoch: Arc<str>, data: Telemetry, body: String) -> Self {
        let envelope = packet::envelope("TELEMETRY", seq, &epoch, &body, None);
        let telemetry = frame::text_frame(&envelope);
        let welcome = frame::text_frame(&packet::envelope("WELCOME", seq, &epoch, &body, None));
        // The envelope is `{"type":"TELEMETRY","seq":N,"data":` + body + the rest, after the
        // frame's header.
        let start = telemetry.len() - envelope.len() + packet::data_offset("TELEMETRY", seq);
        let body_bytes = telemetry.slice(start..start + body.len());
        debug_assert_eq!(&body_bytes[..], body.as_bytes());
        Self {
            seq,
            telemetry,
            welcome,
            epoch,
            data: Some(Box::new(data)),
            body: body_bytes,
            bridge: OnceLock::new(),
        }
    }

    /// What the hub keeps of this snapshot once a newer one is published: the frames a resuming
    /// client is sent, without the typed data and the WELCOME frame, which only the latest
    /// needs, nor the bridge frame: bridge clients do not resume, and take their packets from
    /// the feed. What it saves: `docs/BENCHMARKS-JOURNAL.md`, "The resume history fills after
    /// the window".
    pub fn slim(&self) -> Self {
        Self {
            seq: self.seq,
            epoch: self.epoch.clone(),
            data: None,
            telemetry: self.telemetry.clone(),
            welcome: Bytes::new(),
            body: self.body.clone(),
            bridge: OnceLock::new(),
        }
    }

    /// The typed data; `None` in a [`Snapshot::slim`] copy. The hub's latest snapshot always
    /// has it.
    pub fn data(&self) -> Option<&Telemetry> {
        self.data.as_deref()
    }

    /// The serialized `data`.
    pub fn body(&self) -> &str {
        std::str::from_utf8(&self.body).expect("a serialized body is UTF-8")
    }

    /// The WELCOME for a client that asked to resume: it says whether what it missed follows.
    /// Made for that one client.
    pub fn welcome_resumed(&self, resumed: bool) -> Bytes {
        frame::text_frame(&packet::envelope(
            "WELCOME",
            self.seq,
            &self.epoch,
            self.body(),
            Some(resumed),
        ))
    }

    /// The packet as a bridge-dialect update on the `telemetry` channel, framed once.
    pub fn bridge_frame(&self) -> &Bytes {
        self.bridge.get_or_init(|| {
            frame::text_frame(&format!(
                r#"{{"type":"update","channel":"telemetry","data":{}}}"#,
                self.body()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    /// The body is read out of the TELEMETRY frame, whatever the length of the frame's header
    /// (2, 4 or 10 bytes) and of the sequence number, and a slim copy holds no second copy of
    /// it, nor room for the typed data it no longer has.
    #[test]
    fn the_body_is_a_slice_of_the_telemetry_frame() {
        for (seq, len) in [(0, 10), (7, 100), (12, 4_000), (123_456_789_012, 70_000)] {
            let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(len));
            let snapshot = Snapshot::new(
                seq,
                "e1".into(),
                Telemetry::initializing(Utc::now()),
                body.clone(),
            );
            snapshot.bridge_frame();
            let slim = snapshot.slim();
            assert!(
                slim.bridge.get().is_none(),
                "seq {seq}: a kept packet does not hold the bridge frame"
            );
            assert!(
                std::mem::size_of_val(&slim) <= 256,
                "a kept packet holds {} bytes besides its frame",
                std::mem::size_of_val(&slim)
            );
            assert_eq!(slim.body(), body, "seq {seq}, {len} bytes");
            let frame = slim.telemetry.as_ptr_range();
            assert!(
                frame.contains(&slim.body.as_ptr()),
                "seq {seq}: not a slice"
            );
            assert!(
                slim.bridge_frame()
                    .ends_with(format!("{body}}}").as_bytes()),
                "seq {seq}: the bridge frame carries the body"
            );
        }
    }
}
