//! What a connection asked for on top of its [`super::Encoding`]: permessage-deflate, fossil
//! deltas (`?delta=fossil`), MessagePack (`?format=msgpack`); `docs/PROTOCOL.md` §13. Each
//! packet is written once per form that some connection uses, and shared by all of them, as
//! the plain frames are: [`super::Snapshot::packet_as`].

use super::deflate::Deflate;

/// A connection's form: the default is today's frames, byte for byte.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Form {
    /// permessage-deflate, when it was negotiated.
    pub deflate: Option<Deflate>,
    /// Each TELEMETRY as a fossil delta of the previous packet's `data` when it can be.
    pub delta: bool,
    /// Packets and relayed messages as MessagePack binary frames.
    pub msgpack: bool,
}

impl Form {
    /// How many ways a stream packet's body can be written (delta, MessagePack, both not
    /// offered, each compressed or not): the size of a snapshot's table of them.
    pub const COUNT: usize = 8;

    /// Where this form's frame sits in a snapshot's table.
    pub fn index(self) -> usize {
        usize::from(self.delta)
            | (usize::from(self.msgpack) << 1)
            | (usize::from(self.deflate.is_some()) * Self::DEFLATED)
    }

    /// What [`Form::index`] adds for permessage-deflate: `index & !DEFLATED` is where the same
    /// body sits uncompressed.
    pub const DEFLATED: usize = 1 << 2;

    /// The same body, uncompressed.
    pub fn plain(self) -> Self {
        Self {
            deflate: None,
            ..self
        }
    }
}
