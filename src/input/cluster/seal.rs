//! What the cluster publishes, signed (`docs/PROTOCOL.md` §11.3): with `cluster.secret_file`
//! set, the poller adds an HMAC-SHA256 tag over each packet's epoch, seq and data (and each
//! relayed message's epoch, offset, channel and payload), and every daemon checks it before the
//! message goes anywhere, so whoever can merely publish on the cluster's Redis feeds nobody.
//! Without a secret nothing is signed or checked, as before.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// A tag's length on the wire: 32 bytes as lowercase hex.
pub const TAG_HEX: usize = 64;

/// What a packet's tag covers, before its own bytes: a relayed message's tag can never pass
/// for a packet's, nor the other way round.
const PACKET: &[u8] = b"bff packet\n";
const RELAYED: &[u8] = b"bff relayed\n";

/// Why a message on the cluster's channels (or in its history) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// No tag, while this daemon has a secret: published by something other than a poller of
    /// this cluster (or by one without the secret).
    Unsigned,
    /// A tag that does not match: forged, altered, or signed with another secret.
    BadTag,
}

impl Rejected {
    /// The `reason` label of `bff_cluster_rejected_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Rejected::Unsigned => "unsigned",
            Rejected::BadTag => "bad_tag",
        }
    }
}

/// The cluster's key, once keyed; `None` without `cluster.secret_file`. Cloning the keyed state
/// per message saves hashing the key again each time.
#[derive(Clone)]
pub struct Seal(Option<HmacSha256>);

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Some(_) => "Seal(HMAC-SHA256, secret ***)",
            None => "Seal(none)",
        })
    }
}

impl Seal {
    /// Signs and checks with `secret`; an empty one signs and checks nothing.
    pub fn new(secret: &str) -> Self {
        Self((!secret.is_empty()).then(|| {
            HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length")
        }))
    }

    /// Whether this daemon signs and checks.
    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// A packet as published: `<epoch> <seq> <tag> <data>`, or `<epoch> <seq> <data>` without a
    /// secret.
    pub fn packet(&self, epoch: &str, seq: u64, body: &str) -> String {
        let head = format!("{epoch} {seq} ");
        match self.tag(PACKET, &[head.as_bytes(), body.as_bytes()]) {
            Some(tag) => format!("{head}{tag} {body}"),
            None => format!("{head}{body}"),
        }
    }

    /// A relayed message as published: `<epoch> <offset> <tag> <n> <channel><payload>`, or
    /// without the tag and its space when there is no secret.
    pub fn relayed(&self, epoch: &str, offset: u64, channel: &str, payload: &[u8]) -> Vec<u8> {
        let (head, rest) = relayed_parts(epoch, offset, channel);
        let mut message = head.into_bytes();
        if let Some(tag) = self.tag(RELAYED, &[&message, rest.as_bytes(), payload]) {
            message.extend_from_slice(tag.as_bytes());
            message.push(b' ');
        }
        message.extend_from_slice(rest.as_bytes());
        message.extend_from_slice(payload);
        message
    }

    /// Checks a packet's tag (any passes without a secret).
    pub fn check_packet(
        &self,
        epoch: &str,
        seq: u64,
        tag: Option<&str>,
        body: &str,
    ) -> Result<(), Rejected> {
        let head = format!("{epoch} {seq} ");
        self.check(PACKET, &[head.as_bytes(), body.as_bytes()], tag)
    }

    /// Checks a relayed message's tag (any passes without a secret).
    pub fn check_relayed(
        &self,
        epoch: &str,
        offset: u64,
        channel: &str,
        payload: &[u8],
        tag: Option<&str>,
    ) -> Result<(), Rejected> {
        let (head, rest) = relayed_parts(epoch, offset, channel);
        self.check(RELAYED, &[head.as_bytes(), rest.as_bytes(), payload], tag)
    }

    fn keyed(&self, domain: &[u8], parts: &[&[u8]]) -> Option<HmacSha256> {
        let mut mac = self.0.clone()?;
        mac.update(domain);
        for part in parts {
            mac.update(part);
        }
        Some(mac)
    }

    fn tag(&self, domain: &[u8], parts: &[&[u8]]) -> Option<String> {
        let tag = self.keyed(domain, parts)?.finalize().into_bytes();
        Some(tag.iter().map(|b| format!("{b:02x}")).collect())
    }

    fn check(&self, domain: &[u8], parts: &[&[u8]], tag: Option<&str>) -> Result<(), Rejected> {
        let Some(mac) = self.keyed(domain, parts) else {
            return Ok(());
        };
        let tag = from_hex(tag.ok_or(Rejected::Unsigned)?).ok_or(Rejected::BadTag)?;
        // Constant time: how much of a guess matched must not show in how long it took.
        mac.verify_slice(&tag).map_err(|_| Rejected::BadTag)
    }
}

/// A relayed message's numbers (`<epoch> <offset> `, where its tag goes after) and its
/// channel's (`<n> <channel>`, before its payload).
fn relayed_parts(epoch: &str, offset: u64, channel: &str) -> (String, String) {
    (
        format!("{epoch} {offset} "),
        format!("{} {channel}", channel.len()),
    )
}

/// Whether `field` has the shape of a tag (so it is one: no data JSON, channel length or payload
/// starts that way).
pub fn is_tag(field: &[u8]) -> bool {
    field.len() == TAG_HEX && field.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !is_tag(text.as_bytes()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_signed_packet_passes_and_any_change_to_it_fails() {
        let seal = Seal::new(SECRET);
        let packet = seal.packet("e1", 42, r#"{"a":1}"#);
        let (head, body) = packet.split_at(packet.find('{').unwrap());
        let tag = head.split(' ').nth(2).unwrap();
        assert!(is_tag(tag.as_bytes()), "{packet}");
        assert_eq!(body, r#"{"a":1}"#);
        assert_eq!(seal.check_packet("e1", 42, Some(tag), body), Ok(()));
        for (epoch, seq, body) in [("e2", 42, body), ("e1", 43, body), ("e1", 42, r#"{"a":2}"#)] {
            assert_eq!(
                seal.check_packet(epoch, seq, Some(tag), body),
                Err(Rejected::BadTag),
                "{epoch} {seq} {body}"
            );
        }
        assert_eq!(
            seal.check_packet("e1", 42, None, body),
            Err(Rejected::Unsigned)
        );
        assert_eq!(
            Seal::new("another secret, another secret!!").check_packet("e1", 42, Some(tag), body),
            Err(Rejected::BadTag)
        );
        assert_eq!(
            seal.check_packet("e1", 42, Some("zz"), body),
            Err(Rejected::BadTag)
        );
    }

    #[test]
    fn a_relayed_tag_is_not_a_packet_tag() {
        let seal = Seal::new(SECRET);
        let message = seal.relayed("e1", 7, "trade.results", b"{}");
        let text = std::str::from_utf8(&message).unwrap();
        let tag = text.split(' ').nth(2).unwrap();
        assert_eq!(
            seal.check_relayed("e1", 7, "trade.results", b"{}", Some(tag)),
            Ok(())
        );
        assert_eq!(
            seal.check_relayed("e1", 8, "trade.results", b"{}", Some(tag)),
            Err(Rejected::BadTag)
        );
        assert_eq!(
            seal.check_packet("e1", 7, Some(tag), "13 trade.results{}"),
            Err(Rejected::BadTag)
        );
    }

    #[test]
    fn without_a_secret_nothing_is_signed_and_everything_passes() {
        let seal = Seal::new("");
        assert_eq!(seal.packet("e1", 1, "{}"), "e1 1 {}");
        assert_eq!(seal.relayed("e1", 1, "a b", b"x"), b"e1 1 3 a bx");
        assert_eq!(seal.check_packet("e1", 1, None, "{}"), Ok(()));
        assert!(!format!("{:?}", Seal::new(SECRET)).contains(SECRET));
    }
}
