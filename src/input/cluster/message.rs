//! How a packet and a relayed message read on the cluster's channels and in its history (the
//! formats `scripts` writes): reading one back, its tag not yet checked (`seal` checks it).

use super::seal::is_tag;

/// One packet as published, its tag not yet checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The count it belongs to.
    pub epoch: &'a str,
    /// Its number in that count.
    pub seq: u64,
    /// Its HMAC-SHA256 tag, as hex; `None` when unsigned.
    pub tag: Option<&'a str>,
    /// Its data JSON.
    pub body: &'a str,
}

/// One relayed message as published, its tag not yet checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relayed<'a> {
    /// The count its offset belongs to.
    pub epoch: &'a str,
    /// Its number on its channel.
    pub offset: u64,
    /// Its HMAC-SHA256 tag, as hex; `None` when unsigned.
    pub tag: Option<&'a str>,
    /// The channel it was heard on.
    pub channel: &'a str,
    /// What was heard.
    pub payload: &'a [u8],
}

/// Reads one packet as published: its epoch, seq, tag (a field of 64 hex digits after the seq:
/// data JSON never starts so) and data JSON.
pub fn parse(packet: &str) -> Option<Packet<'_>> {
    let mut parts = packet.splitn(3, ' ');
    let epoch = parts.next()?;
    let seq = parts.next()?.parse().ok()?;
    let rest = parts.next()?;
    let (tag, body) = match rest.split_once(' ') {
        Some((tag, body)) if is_tag(tag.as_bytes()) => (Some(tag), body),
        _ => (None, rest),
    };
    Some(Packet {
        epoch,
        seq,
        tag,
        body,
    })
}

/// Reads one relayed message as published: its epoch, offset, tag (64 hex digits: no channel
/// length is that long), channel and payload.
pub fn parse_relayed(message: &[u8]) -> Option<Relayed<'_>> {
    let mut fields = message.splitn(3, |b| *b == b' ');
    let epoch = std::str::from_utf8(fields.next()?).ok()?;
    let offset = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
    let mut rest = fields.next()?;
    let mut tag = None;
    if let Some(space) = rest.iter().position(|b| *b == b' ')
        && is_tag(&rest[..space])
    {
        tag = Some(std::str::from_utf8(&rest[..space]).ok()?);
        rest = &rest[space + 1..];
    }
    let mut fields = rest.splitn(2, |b| *b == b' ');
    let length: usize = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
    let rest = fields.next()?;
    let channel = std::str::from_utf8(rest.get(..length)?).ok()?;
    Some(Relayed {
        epoch,
        offset,
        tag,
        channel,
        payload: &rest[length..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::cluster::seal::Seal;

    fn relayed<'a>(
        epoch: &'a str,
        offset: u64,
        tag: Option<&'a str>,
        channel: &'a str,
        payload: &'a [u8],
    ) -> Option<Relayed<'a>> {
        Some(Relayed {
            epoch,
            offset,
            tag,
            channel,
            payload,
        })
    }

    #[test]
    fn a_relayed_message_reads_as_published() {
        let published = b"e1 17 13 trade.results{\"a\": \"b c\"}";
        assert_eq!(
            parse_relayed(published),
            relayed("e1", 17, None, "trade.results", &br#"{"a": "b c"}"#[..])
        );
        // A channel with a space in its name, and an empty payload.
        assert_eq!(
            parse_relayed(b"e1 2 5 a b c"),
            relayed("e1", 2, None, "a b c", b"")
        );
        assert_eq!(
            parse_relayed(b"e1 2 9 short"),
            None,
            "shorter than its length"
        );
        assert_eq!(parse_relayed(b"e1 x 1 a{}"), None);
        assert_eq!(parse_relayed(b"released"), None);
        let tag = "ab".repeat(32);
        let signed = format!("e1 3 {tag} 3 a b{{}}");
        assert_eq!(
            parse_relayed(signed.as_bytes()),
            relayed("e1", 3, Some(&tag), "a b", b"{}")
        );
        let sealed = Seal::new("0123456789abcdef0123456789abcdef");
        let message = sealed.relayed("e1", 3, "a b", b"{}");
        let read = parse_relayed(&message).unwrap();
        assert_eq!((read.channel, read.payload), ("a b", &b"{}"[..]));
        assert_eq!(
            sealed.check_relayed(
                read.epoch,
                read.offset,
                read.channel,
                read.payload,
                read.tag
            ),
            Ok(())
        );
    }

    #[test]
    fn a_packet_reads_as_published() {
        let packet = |epoch, seq, tag, body| {
            Some(Packet {
                epoch,
                seq,
                tag,
                body,
            })
        };
        assert_eq!(
            parse(r#"e1 42 {"a":"b c"}"#),
            packet("e1", 42, None, r#"{"a":"b c"}"#)
        );
        assert_eq!(parse("released"), None);
        assert_eq!(parse("e1 x {}"), None);
        let tag = "0f".repeat(32);
        assert_eq!(
            parse(&format!(r#"e1 42 {tag} {{"a":"b c"}}"#)),
            packet("e1", 42, Some(&tag), r#"{"a":"b c"}"#)
        );
        let sealed = Seal::new("0123456789abcdef0123456789abcdef").packet("e1", 7, "{}");
        let read = parse(&sealed).unwrap();
        assert_eq!((read.epoch, read.seq, read.body), ("e1", 7, "{}"));
        assert!(read.tag.is_some());
    }
}
