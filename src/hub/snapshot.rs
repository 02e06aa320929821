//! One published snapshot: its number and epoch, its typed data, and its frames, each built once
//! per [`Encoding`] and written as is by every connection of that encoding. The stream packet
//! (TELEMETRY) is made when it is published, as the fan-out writes it to nearly everyone; the
//! others (a WELCOME, a bridge's `telemetry` update, what comes next) by the first connection
//! that needs them. Once a newer one is published, the hub keeps a [`Snapshot::slim`] copy for
//! clients that resume: what they are sent, without what only the latest needs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::announce::Announcements;
use super::deflate;
use super::delta;
use super::encoding::{Encoding, Message, Packet};
use super::form::Form;
use super::frame;
use super::msgpack;
use super::packet::Telemetry;

/// One published snapshot.
#[derive(Debug)]
pub struct Snapshot {
    /// Grows by one per snapshot within an epoch; 0 is the INITIALIZING snapshot before the
    /// first poll.
    pub seq: u64,
    /// The sequence this `seq` belongs to; a new one means the count started again.
    pub epoch: Arc<str>,
    /// Which snapshot of this process it is, whatever its epoch: what a connection's outlet
    /// remembers it last sent, so the next packet may come compressed after it.
    pub serial: u64,
    /// What only the latest needs: `None` in a slim copy. Boxed, so the kept copies without it
    /// do not keep its room (some 600 bytes each).
    latest: Option<Box<Latest>>,
    /// The framed `{"type":"TELEMETRY",…}`: the [`Encoding::Stream`] packet, made at once (after
    /// the `REGIME` and `ALERT` it announces, if any).
    pub telemetry: Bytes,
    /// How many bytes of `telemetry` come before its packet: what it announces, which a
    /// resumed WELCOME made of this snapshot carries too.
    announced: usize,
    /// The serialized data, for the frames made on demand: a slice of `telemetry`, which
    /// carries it whole, so a kept packet holds it once.
    body: Bytes,
    /// The packet's frame in each encoding, by [`Encoding::index`]: made by the first connection
    /// that needs it, then shared (the stream one is `telemetry`).
    packets: [OnceLock<Bytes>; Encoding::COUNT],
    /// Its frames in the other forms, made by the first connection that asks for one (boxed,
    /// so a snapshot nobody asks them of keeps a pointer's room).
    forms: OnceLock<Box<Forms>>,
}

/// The parts of the latest snapshot that kept ones drop.
#[derive(Debug)]
struct Latest {
    /// The typed data, for `/health` and `/metrics`.
    data: Telemetry,
    /// The frame a connection starts with, in each encoding, made by the first that connects
    /// while this is the latest (a resuming client gets one of its own).
    welcomes: [OnceLock<Bytes>; Encoding::COUNT],
    /// The fossil delta against the prior snapshot's data, made by the first delta connection;
    /// `None` when there is none to make.
    delta: OnceLock<Option<String>>,
    /// The snapshot published before this one, as far as a delta of this one or a packet
    /// compressed after it needs.
    prior: Option<Prior>,
    /// The packet compressed after the prior one's, by the slot of [`Forms`]: made by the first
    /// connection whose window ends with the prior packet; `None` when the prior one's frame
    /// was not made or its packet went uncompressed.
    chained: [OnceLock<Option<Bytes>>; Form::COUNT + Encoding::COUNT],
    /// The WELCOME of MessagePack connections, shared like `welcomes`.
    msgpack_welcome: OnceLock<Bytes>,
    /// The shared WELCOMEs compressed, for permessage-deflate connections: each encoding's by
    /// [`Encoding::index`], then MessagePack's.
    deflated_welcomes: [OnceLock<Bytes>; Encoding::COUNT + 1],
    /// The WELCOME of clients that asked to resume from what is no longer kept
    /// (`"resumed": false`), alike for all of them, so a reconnect storm after a restart frames
    /// it once: each encoding's, then MessagePack's.
    unresumed_welcomes: [OnceLock<Bytes>; Encoding::COUNT + 1],
}

/// Of the snapshot before the latest, what a delta of the latest and a packet compressed after
/// it need. Its bytes, not the snapshot, so no snapshot holds a chain of those before it.
#[derive(Debug)]
struct Prior {
    serial: u64,
    /// Its data, when it is the packet just before (the same epoch, the seq before): what a
    /// delta applies to.
    base: Option<Bytes>,
    /// Its plain frames (uncompressed), by the slot of [`Forms`] of their compressed
    /// counterparts: those that were made.
    frames: [Option<Bytes>; Form::COUNT + Encoding::COUNT],
}

/// Gives each snapshot its [`Snapshot::serial`].
static SERIALS: AtomicU64 = AtomicU64::new(1);

/// A snapshot's packet in each [`Form`] besides the plain one: the stream packet's by
/// [`Form::index`], then each encoding's compressed, by [`Encoding::index`].
type Forms = [OnceLock<Bytes>; Form::COUNT + Encoding::COUNT];

impl Snapshot {
    /// Frames `data` (serialized as `body`) as snapshot `seq` of `epoch`.
    pub fn new(seq: u64, epoch: Arc<str>, data: Telemetry, body: String) -> Self {
        Self::announcing(seq, epoch, data, body, &Announcements::default())
    }

    /// Like [`Snapshot::new`], with what the snapshot announces (`REGIME`, `ALERT`: see
    /// [`super::announce::announcements`]) written before its packet in each encoding's frame, so
    /// a connection writes one buffer whatever it carries, and a client resuming gets them too.
    /// Then every encoding's frame is made at once: changes are rare.
    pub fn announcing(
        seq: u64,
        epoch: Arc<str>,
        data: Telemetry,
        body: String,
        announced: &Announcements,
    ) -> Self {
        let parts = Packet {
            seq,
            epoch: &epoch,
            body: &body,
        };
        // What the stream frame announces before its packet, which a resumed WELCOME made of
        // this snapshot carries too.
        let mut before_packet = 0;
        let frames = Encoding::ALL.map(|encoding| {
            let made = OnceLock::new();
            if !announced.is_empty() || encoding == Encoding::Stream {
                let (frame, before) = encoding.packet_frames(announced, parts);
                if encoding == Encoding::Stream {
                    before_packet = before;
                }
                let _ = made.set(frame);
            }
            made
        });
        let telemetry = frames[Encoding::Stream.index()]
            .get()
            .expect("the stream frame is made at once")
            .clone();
        // The frame ends with `data` + `,"epoch":` + the quoted epoch + `}`, whatever is before.
        let quoted_epoch = serde_json::to_string(&*epoch).expect("a string serializes");
        let end = telemetry.len() - r#","epoch":}"#.len() - quoted_epoch.len();
        let body_bytes = telemetry.slice(end - body.len()..end);
        debug_assert_eq!(&body_bytes[..], body.as_bytes());
        let mut snapshot = Self::framed(seq, epoch, telemetry, body_bytes, Some(data), frames);
        snapshot.announced = before_packet;
        snapshot
    }

    fn framed(
        seq: u64,
        epoch: Arc<str>,
        telemetry: Bytes,
        body: Bytes,
        data: Option<Telemetry>,
        packets: [OnceLock<Bytes>; Encoding::COUNT],
    ) -> Self {
        Self {
            seq,
            epoch,
            serial: SERIALS.fetch_add(1, Ordering::Relaxed),
            latest: data.map(|data| {
                Box::new(Latest {
                    data,
                    welcomes: std::array::from_fn(|_| OnceLock::new()),
                    delta: OnceLock::new(),
                    prior: None,
                    chained: std::array::from_fn(|_| OnceLock::new()),
                    msgpack_welcome: OnceLock::new(),
                    deflated_welcomes: std::array::from_fn(|_| OnceLock::new()),
                    unresumed_welcomes: std::array::from_fn(|_| OnceLock::new()),
                })
            }),
            telemetry,
            announced: 0,
            body,
            packets,
            forms: OnceLock::new(),
        }
    }

    /// What the hub keeps of this snapshot once a newer one is published: the frames a resuming
    /// client is sent, without the typed data and the WELCOMEs, which only the latest needs,
    /// nor the other encodings' packets: only stream clients resume, and the others take their
    /// packets from the feed. What it saves: `docs/BENCHMARKS-JOURNAL.md`, "The resume history
    /// fills after the window".
    pub fn slim(&self) -> Self {
        let mut slim = Self::framed(
            self.seq,
            self.epoch.clone(),
            self.telemetry.clone(),
            self.body.clone(),
            None,
            std::array::from_fn(|i| {
                let kept = OnceLock::new();
                if i == Encoding::Stream.index() {
                    let _ = kept.set(self.telemetry.clone());
                }
                kept
            }),
        );
        slim.announced = self.announced;
        slim.serial = self.serial;
        slim
    }

    /// The typed data; `None` in a [`Snapshot::slim`] copy. The hub's latest snapshot always
    /// has it.
    pub fn data(&self) -> Option<&Telemetry> {
        self.latest.as_deref().map(|latest| &latest.data)
    }

    /// The serialized data.
    pub fn body(&self) -> &str {
        std::str::from_utf8(&self.body).expect("a serialized body is UTF-8")
    }

    /// The packet as `encoding` writes it, framed once and shared.
    pub fn packet(&self, encoding: Encoding) -> &Bytes {
        self.packets[encoding.index()].get_or_init(|| encoding.frame(Message::Packet(self.parts())))
    }

    /// This snapshot following `previous`: when it is the packet just before (the same epoch,
    /// the seq before), delta connections get this one as a delta of it; and a connection
    /// whose window ends with `previous`'s packet may get this one compressed after it.
    pub fn after(mut self, previous: &Snapshot) -> Self {
        let follows = previous.epoch == self.epoch && previous.seq + 1 == self.seq;
        if let Some(latest) = self.latest.as_deref_mut() {
            latest.prior = Some(Prior {
                serial: previous.serial,
                base: follows.then(|| previous.body.clone()),
                frames: std::array::from_fn(|slot| previous.plain_made(slot).cloned()),
            });
        }
        self
    }

    /// Where the frame of `encoding` in `form` sits in [`Forms`].
    fn slot(encoding: Encoding, form: Form) -> usize {
        if encoding == Encoding::Stream {
            form.index()
        } else {
            Form::COUNT + encoding.index()
        }
    }

    /// The plain (uncompressed) counterpart of the frame in `slot` of [`Forms`], if it was made.
    fn plain_made(&self, slot: usize) -> Option<&Bytes> {
        match slot.checked_sub(Form::COUNT) {
            // Another encoding's: its plain packet.
            Some(encoding) => self.packets[encoding].get(),
            None => match slot & !Form::DEFLATED {
                0 => self.packets[Encoding::Stream.index()].get(),
                plain => self.forms.get()?[plain].get(),
            },
        }
    }

    /// The packet for a connection of `encoding` in `form`: made once and shared, like the plain
    /// one (a delta once per snapshot, for every delta connection).
    pub fn packet_as(&self, encoding: Encoding, form: Form) -> &Bytes {
        if form == Form::default() {
            return self.packet(encoding);
        }
        let forms = self
            .forms
            .get_or_init(|| Box::new(std::array::from_fn(|_| OnceLock::new())));
        forms[Self::slot(encoding, form)].get_or_init(|| match form.deflate {
            Some(deflate) => deflate.frame(self.packet_as(encoding, form.plain())),
            None if form.msgpack => self.announcing_first(msgpack::packet(
                "TELEMETRY",
                self.seq,
                &self.epoch,
                self.body(),
                None,
            )),
            None => {
                let text = delta::telemetry(self.seq, &self.epoch, self.body(), self.delta());
                self.announcing_first(frame::text_frame(&text))
            }
        })
    }

    /// The packet for a connection of `encoding` in `form` whose window ends with the packet of
    /// snapshot `last` (a [`Snapshot::serial`]; 0 when it does not end with a packet: the
    /// outlet knows, [`crate::edge::connection::outlet`]): compressed after that one when its
    /// client keeps its window and it is the snapshot just before this one, else
    /// [`Snapshot::packet_as`]. Made once and shared by every such connection.
    pub fn packet_after(&self, encoding: Encoding, form: Form, last: u64) -> &Bytes {
        if let (Some(deflate), Some(latest)) = (form.deflate, self.latest.as_deref())
            && deflate.takeover
            && let Some(prior) = latest.prior.as_ref().filter(|prior| prior.serial == last)
        {
            let slot = Self::slot(encoding, form);
            let chained = latest.chained[slot].get_or_init(|| {
                let window = deflate::last_payload(prior.frames[slot].as_ref()?);
                (!window.is_empty())
                    .then(|| deflate.frame_after(self.packet_as(encoding, form.plain()), window))
            });
            if let Some(frame) = chained {
                return frame;
            }
        }
        self.packet_as(encoding, form)
    }

    /// The fossil delta of the data against the previous packet's, when there is one.
    fn delta(&self) -> Option<&str> {
        let latest = self.latest.as_deref()?;
        latest
            .delta
            .get_or_init(|| delta::between(latest.prior.as_ref()?.base.as_ref()?, &self.body))
            .as_deref()
    }

    /// The frame a connection of `encoding` in `form` starts with: the WELCOME of
    /// [`Snapshot::welcome`], in MessagePack when it asked for it (a delta connection's is
    /// whole), compressed once and shared for permessage-deflate connections; one made for a
    /// resuming client alone goes uncompressed, so a reconnect storm compresses nothing per
    /// client.
    pub fn welcome_as(&self, encoding: Encoding, resumed: Option<bool>, form: Form) -> Bytes {
        let plain = || {
            if !form.msgpack {
                return self.welcome(encoding, resumed);
            }
            let welcome =
                || msgpack::packet("WELCOME", self.seq, &self.epoch, self.body(), resumed);
            match (&self.latest, resumed) {
                (Some(latest), None) => latest.msgpack_welcome.get_or_init(welcome).clone(),
                (_, Some(_)) => self.announcing_first(welcome()),
                _ => welcome(),
            }
        };
        let slot = if form.msgpack {
            Encoding::COUNT
        } else {
            encoding.index()
        };
        match (form.deflate, &self.latest, resumed) {
            (Some(deflate), Some(latest), None) => latest.deflated_welcomes[slot]
                .get_or_init(|| deflate.frame(&plain()))
                .clone(),
            (_, Some(latest), Some(false)) => {
                latest.unresumed_welcomes[slot].get_or_init(plain).clone()
            }
            _ => plain(),
        }
    }

    /// The frame a connection of `encoding` starts with. `resumed` when it asked to resume:
    /// whether what it missed follows, which it is told in a frame made for it alone; else the
    /// latest snapshot's, framed once and shared.
    pub fn welcome(&self, encoding: Encoding, resumed: Option<bool>) -> Bytes {
        let welcome = || encoding.frame(Message::Welcome(self.parts(), resumed));
        match (&self.latest, resumed) {
            (Some(latest), None) => latest.welcomes[encoding.index()]
                .get_or_init(welcome)
                .clone(),
            // A resumed client missed what this snapshot announced: it comes first.
            (_, Some(_)) => self.announcing_first(welcome()),
            _ => welcome(),
        }
    }

    /// `frame` after what this snapshot announces (the stream's `REGIME` and `ALERT` frames,
    /// JSON text in every form), for the frames made for a form or a resuming client.
    fn announcing_first(&self, frame: Bytes) -> Bytes {
        match self.announced {
            0 => frame,
            n => [&self.telemetry[..n], &frame[..]].concat().into(),
        }
    }

    fn parts(&self) -> Packet<'_> {
        Packet {
            seq: self.seq,
            epoch: &self.epoch,
            body: self.body(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    /// The body is read out of the TELEMETRY frame, whatever the length of the frame's header
    /// (2, 4 or 10 bytes), of the sequence number and of the epoch, and a slim copy holds no
    /// second copy of it, nor room for the typed data it no longer has.
    #[test]
    fn the_body_is_a_slice_of_the_telemetry_frame() {
        for (seq, len, epoch) in [
            (0, 10, "e1"),
            (7, 100, "a\"quoted\"epoch"),
            (12, 4_000, "0123456789abcdef"),
            (123_456_789_012, 70_000, "e"),
        ] {
            let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(len));
            let snapshot = Snapshot::new(
                seq,
                epoch.into(),
                Telemetry::initializing(Utc::now()),
                body.clone(),
            );
            snapshot.packet(Encoding::Bridge);
            let slim = snapshot.slim();
            assert!(
                slim.packets[Encoding::Bridge.index()].get().is_none(),
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
                slim.packet(Encoding::Bridge)
                    .ends_with(format!("{body}}}").as_bytes()),
                "seq {seq}: the bridge frame carries the body"
            );
        }
    }

    /// Each encoding's packet and WELCOME are made once and shared; a resumed WELCOME is the
    /// client's own.
    #[test]
    fn frames_are_made_once_per_encoding() {
        let snapshot = Snapshot::new(
            3,
            "e1".into(),
            Telemetry::initializing(Utc::now()),
            r#"{"a":1}"#.into(),
        );
        assert_eq!(
            snapshot.packet(Encoding::Stream).as_ptr(),
            snapshot.telemetry.as_ptr()
        );
        for encoding in Encoding::ALL {
            assert_eq!(
                snapshot.packet(encoding).as_ptr(),
                snapshot.packet(encoding).as_ptr(),
                "{encoding:?}"
            );
            let welcome = snapshot.welcome(encoding, None);
            assert_eq!(
                welcome.as_ptr(),
                snapshot.welcome(encoding, None).as_ptr(),
                "{encoding:?}"
            );
        }
        assert_eq!(
            &snapshot.welcome(Encoding::Stream, Some(true))[2..],
            br#"{"type":"WELCOME","seq":3,"data":{"a":1},"epoch":"e1","resumed":true}"#
        );
        assert_eq!(
            &snapshot.welcome(Encoding::Bridge, None)[..],
            &snapshot.packet(Encoding::Bridge)[..]
        );
        // Every client that could not resume gets the same frame, made once.
        let unresumed = snapshot.welcome_as(Encoding::Stream, Some(false), Form::default());
        assert_eq!(
            unresumed.as_ptr(),
            snapshot
                .welcome_as(Encoding::Stream, Some(false), Form::default())
                .as_ptr()
        );
        assert_eq!(
            &unresumed[2..],
            br#"{"type":"WELCOME","seq":3,"data":{"a":1},"epoch":"e1","resumed":false}"#
        );
    }
}
