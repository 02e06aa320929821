//! Who the client is behind a reverse proxy. Only a peer listed in `server.trusted_proxies` is
//! believed about the address it forwards (`X-Forwarded-For`, else `Forwarded`); the client is
//! the right-most hop that is not itself a trusted proxy, since every hop left of it could have
//! been written by the client. Pure: the peer, the headers and the list in, the client out.

use std::net::{IpAddr, SocketAddr};

use hyper::header::{FORWARDED, HeaderMap};
use ipnet::IpNet;

use crate::config::proxy_net;

/// The addresses and networks whose forwarding headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// The client a request is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// Its address: the TCP peer's, or the one a trusted proxy forwarded (port 0 when the proxy
    /// did not say).
    pub addr: SocketAddr,
    /// Whether the request came through a trusted proxy; such a request is never from loopback,
    /// whatever address the proxy forwards or connects from.
    pub proxied: bool,
}

impl Client {
    /// Whether the client is on this machine and came straight to the daemon.
    pub fn on_loopback(&self) -> bool {
        !self.proxied && self.addr.ip().to_canonical().is_loopback()
    }
}

impl TrustedProxies {
    /// The list from `server.trusted_proxies`: addresses (`10.0.0.5`, `::1`) or networks
    /// (`10.0.0.0/8`). `Err` holds the index of the first entry that is neither, and why.
    pub fn parse(entries: &[String]) -> Result<Self, (usize, String)> {
        entries
            .iter()
            .enumerate()
            .map(|(i, entry)| proxy_net(entry).map_err(|why| (i, why)))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// The client behind `peer`: the peer itself unless it is a trusted proxy; then the right-most
/// untrusted hop of `X-Forwarded-For` (or, without it, of `Forwarded`), the left-most hop when
/// all are trusted, and the proxy itself when it names no usable hop.
pub fn client(peer: SocketAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> Client {
    if !trusted.contains(peer.ip()) {
        return Client {
            addr: peer,
            proxied: false,
        };
    }
    let proxied = |addr| Client {
        addr,
        proxied: true,
    };
    let hops = x_forwarded_for(headers);
    let hops = if hops.is_empty() {
        forwarded_for(headers)
    } else {
        hops
    };
    let mut left_most = None;
    for hop in hops.iter().rev() {
        // An unknown or obfuscated hop may be anyone; nothing left of it can be believed.
        let Some(addr) = parse_hop(hop) else {
            return proxied(left_most.unwrap_or(peer));
        };
        if !trusted.contains(addr.ip()) {
            return proxied(addr);
        }
        left_most = Some(addr);
    }
    proxied(left_most.unwrap_or(peer))
}

/// Every `X-Forwarded-For` hop, in order, over all such headers.
fn x_forwarded_for(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|hop| !hop.is_empty())
        .collect()
}

/// The `for=` of every `Forwarded` element (RFC 7239), in order, over all such headers.
fn forwarded_for(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|element| {
            element
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(key, _)| key.trim().eq_ignore_ascii_case("for"))
                .map_or("unknown", |(_, value)| value.trim().trim_matches('"'))
        })
        .collect()
}

/// One hop: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:5678`.
fn parse_hop(hop: &str) -> Option<SocketAddr> {
    if let Ok(addr) = hop.parse::<SocketAddr>() {
        return Some(addr);
    }
    let ip = hop
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(hop);
    ip.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn trusted(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn client_of(peer: &str, pairs: &[(&'static str, &'static str)], list: &[&str]) -> Client {
        client(peer.parse().unwrap(), &headers(pairs), &trusted(list))
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let got = client_of(
            "203.0.113.9:4000",
            &[
                ("x-forwarded-for", "127.0.0.1"),
                ("forwarded", "for=127.0.0.1"),
            ],
            &["10.0.0.0/8"],
        );
        assert_eq!(
            got,
            Client {
                addr: addr("203.0.113.9:4000"),
                proxied: false
            }
        );
        // With no list at all, nobody is believed either.
        let got = client_of(
            "127.0.0.1:4000",
            &[("x-forwarded-for", "198.51.100.1")],
            &[],
        );
        assert_eq!(got.addr, addr("127.0.0.1:4000"));
        assert!(got.on_loopback());
    }

    #[test]
    fn the_right_most_untrusted_hop_of_x_forwarded_for_is_the_client() {
        let list = ["10.0.0.1", "10.1.0.0/16"];
        // The client forged the first hop; the proxies appended the rest.
        let pairs = [("x-forwarded-for", "127.0.0.1,  198.51.100.7 ,10.1.2.3")];
        let got = client_of("10.0.0.1:5000", &pairs, &list);
        assert_eq!(
            got,
            Client {
                addr: addr("198.51.100.7:0"),
                proxied: true
            }
        );
        assert!(!got.on_loopback());
        // Several headers read as one list, in order.
        let pairs = [
            ("x-forwarded-for", "127.0.0.1, 198.51.100.7"),
            ("x-forwarded-for", "198.51.100.8:1234, 10.1.0.9"),
        ];
        assert_eq!(
            client_of("10.0.0.1:5000", &pairs, &list).addr,
            addr("198.51.100.8:1234")
        );
        // All hops trusted: the left-most is where the chain began.
        let pairs = [("x-forwarded-for", "10.1.0.1, 10.1.0.2")];
        assert_eq!(
            client_of("10.0.0.1:5000", &pairs, &list).addr,
            addr("10.1.0.1:0")
        );
        // No header: the proxy itself, still proxied, so never loopback.
        let got = client_of("127.0.0.1:5000", &[], &["127.0.0.1"]);
        assert_eq!(
            got,
            Client {
                addr: addr("127.0.0.1:5000"),
                proxied: true
            }
        );
        assert!(!got.on_loopback());
        // A hop that is no address stops the walk: the proxy's own address stands in.
        let pairs = [("x-forwarded-for", "198.51.100.7, garbage")];
        assert_eq!(
            client_of("10.0.0.1:5000", &pairs, &list).addr,
            addr("10.0.0.1:5000")
        );
    }

    #[test]
    fn forwarded_is_read_when_there_is_no_x_forwarded_for() {
        let list = ["10.0.0.1", "2001:db8:ffff::/48"];
        let pairs = [(
            "forwarded",
            "for=192.0.2.60;proto=https, For=\"[2001:db8::1]:4711\";by=10.0.0.1",
        )];
        let got = client_of("10.0.0.1:5000", &pairs, &list);
        assert_eq!(got.addr, addr("[2001:db8::1]:4711"));
        let pairs = [("forwarded", "for=192.0.2.60, for=\"[2001:db8:ffff::5]\"")];
        assert_eq!(
            client_of("10.0.0.1:5000", &pairs, &list).addr,
            addr("192.0.2.60:0")
        );
        let pairs = [("forwarded", "for=unknown"), ("forwarded", "proto=http")];
        assert_eq!(
            client_of("10.0.0.1:5000", &pairs, &list).addr,
            addr("10.0.0.1:5000")
        );
        // X-Forwarded-For, when present, is the one read.
        let pairs = [
            ("forwarded", "for=192.0.2.60"),
            ("x-forwarded-for", "198.51.100.7"),
        ];
        assert_eq!(
            client_of("10.0.0.1:5000", &pairs, &list).addr,
            addr("198.51.100.7:0")
        );
    }

    #[test]
    fn a_v4_mapped_peer_matches_a_v4_entry_and_bad_entries_are_named() {
        let list = trusted(&["127.0.0.1"]);
        assert!(list.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!list.contains("127.0.0.2".parse().unwrap()));
        let entries = vec!["10.0.0.0/8".to_string(), "10.0.0.0/33".to_string()];
        let (index, why) = TrustedProxies::parse(&entries).unwrap_err();
        assert_eq!(index, 1);
        assert!(
            why.contains("\"10.0.0.0/33\" is not an address or a network"),
            "{why}"
        );
    }
}
