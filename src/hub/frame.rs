//! Outbound WebSocket frames, encoded once and shared: the hub frames each packet once per
//! snapshot and every connection writes those same bytes straight to its socket, so no
//! connection copies a packet or keeps a write buffer.

use bytes::Bytes;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// A server ping with an empty payload (server frames are unmasked, so it is always these bytes).
pub const PING: &[u8] = &[0x89, 0x00];

/// An unmasked, final text frame carrying `payload`, ready to write to any number of sockets.
pub fn text_frame(payload: &str) -> Bytes {
    data_frame(payload.as_bytes(), Data::Text)
}

/// An unmasked, final binary frame carrying `payload` (MessagePack), shared the same way.
pub fn binary_frame(payload: &[u8]) -> Bytes {
    data_frame(payload, Data::Binary)
}

fn data_frame(payload: &[u8], kind: Data) -> Bytes {
    let frame = Frame::message(Bytes::copy_from_slice(payload), OpCode::Data(kind), true);
    let mut out = Vec::with_capacity(frame.len());
    frame
        .format(&mut out)
        .expect("writing a frame to a Vec cannot fail");
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_their_length() {
        assert_eq!(&text_frame("hi")[..], b"\x81\x02hi");
        let long = "x".repeat(300);
        let frame = text_frame(&long);
        assert_eq!(&frame[..4], &[0x81, 126, 0x01, 0x2c]);
        assert_eq!(frame.len(), 304);
    }
}
