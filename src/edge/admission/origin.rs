//! The origin check: which browser pages may open the stream or send commands. A page on the
//! daemon's own origin (the `Origin`'s host and port equal the request's `Host`) or on an origin
//! listed in `server.allowed_origins` may; `["*"]` lets every page in; a request without
//! `Origin` is not from a browser page, which is what the check guards against, so it passes.

use hyper::header::{self, HeaderMap};

/// The entry of `server.allowed_origins` that lets every page in.
pub const ANY: &str = "*";

/// Where a request's page comes from, as far as the origin check is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageOrigin {
    /// No `Origin` header: a script, a bot, a native client; not a browser page.
    None,
    /// A page served from the daemon's own origin (`Origin` matches `Host`).
    Own,
    /// A page on an origin listed in `server.allowed_origins`.
    Listed,
    /// A page on any other origin, let in only because the list holds `"*"`.
    AnyAllowed,
    /// A page on another site, not let in.
    Foreign,
}

impl PageOrigin {
    /// Sorts out the `origin` of a request to `host` (its `Host` header) under `allowed`.
    pub fn of(allowed: &[String], origin: Option<&str>, host: Option<&str>) -> Self {
        let Some(origin) = origin else {
            return Self::None;
        };
        if host.is_some_and(|host| same_origin(origin, host)) {
            Self::Own
        } else if listed(allowed, origin) {
            Self::Listed
        } else if allowed.iter().any(|a| a == ANY) {
            Self::AnyAllowed
        } else {
            Self::Foreign
        }
    }

    /// Sorts out the page a request with `headers` comes from: its `Origin` against its `Host`.
    pub fn of_request(allowed: &[String], headers: &HeaderMap) -> Self {
        let value = |name| headers.get(name).and_then(|v| v.to_str().ok());
        match headers.get(header::ORIGIN) {
            // An `Origin` that is not text is no origin anyone allowed.
            Some(origin) if origin.to_str().is_err() => Self::Foreign,
            _ => Self::of(allowed, value(header::ORIGIN), value(header::HOST)),
        }
    }

    /// Whether the request may go on: every page but a foreign one.
    pub fn admitted(self) -> bool {
        self != Self::Foreign
    }

    /// Whether the page was vouched for: no browser page, the daemon's own, or one named in the
    /// list. `"*"` opens the stream to every page, never the loopback exemption for commands.
    pub fn vouched(self) -> bool {
        matches!(self, Self::None | Self::Own | Self::Listed)
    }
}

/// Whether `origin` is named in `allowed` (not merely let in by `"*"`): such a page gets the CORS
/// headers it needs to read answers.
pub fn listed(allowed: &[String], origin: &str) -> bool {
    allowed
        .iter()
        .any(|a| a != ANY && a.eq_ignore_ascii_case(origin))
}

/// Whether `origin` (`scheme://host[:port]`) names the same host and port as `host` (a `Host`
/// header, `host[:port]`). A missing port is the scheme's default on both sides, so
/// `https://dash.example.com` matches `Host: dash.example.com` behind a TLS proxy.
fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    };
    let (Some((origin_host, origin_port)), Some((host, port))) =
        (split_authority(authority), split_authority(host))
    else {
        return false;
    };
    let (origin_port, port) = (origin_port.or(default), port.or(default));
    origin_port.is_some() && origin_port == port && origin_host.eq_ignore_ascii_case(host)
}

/// `host[:port]` or `[v6][:port]`, split; `None` when it is not one.
fn split_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        match after {
            "" => (v6, None),
            _ => (v6, Some(after.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(port) => Some(port.parse().ok()?),
        None => None,
    };
    (!host.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(allowed: &[&str], origin: Option<&str>, host: &str) -> PageOrigin {
        let allowed: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
        PageOrigin::of(&allowed, origin, Some(host))
    }

    #[test]
    fn by_default_only_the_daemons_own_pages_and_non_browsers_pass() {
        let host = "127.0.0.1:3000";
        assert_eq!(of(&[], None, host), PageOrigin::None);
        assert_eq!(
            of(&[], Some("http://127.0.0.1:3000"), host),
            PageOrigin::Own
        );
        assert_eq!(
            of(&[], Some("HTTP://127.0.0.1:3000"), host),
            PageOrigin::Own
        );
        // Host and port are what count: behind a TLS proxy the scheme may differ.
        assert_eq!(
            of(&[], Some("https://127.0.0.1:3000"), host),
            PageOrigin::Own
        );
        for foreign in [
            "http://127.0.0.1:3001",
            "http://localhost:3000",
            "http://127.0.0.1",
            "null",
            "http://127.0.0.1:3000.evil.example",
            "http://evil.example/127.0.0.1:3000",
        ] {
            assert_eq!(
                of(&[], Some(foreign), host),
                PageOrigin::Foreign,
                "{foreign}"
            );
        }
        // A missing port is the scheme's default on either side.
        assert_eq!(
            of(&[], Some("https://dash.example.com"), "dash.example.com"),
            PageOrigin::Own
        );
        assert_eq!(
            of(
                &[],
                Some("https://dash.example.com"),
                "DASH.example.com:443"
            ),
            PageOrigin::Own
        );
        assert_eq!(
            of(
                &[],
                Some("http://dash.example.com"),
                "dash.example.com:8080"
            ),
            PageOrigin::Foreign
        );
        assert_eq!(
            of(&[], Some("http://[::1]:3000"), "[::1]:3000"),
            PageOrigin::Own
        );
        assert_eq!(
            of(&[], Some("http://[::1]:3000"), "[::2]:3000"),
            PageOrigin::Foreign
        );
        assert_eq!(
            PageOrigin::of(&[], Some("http://127.0.0.1:3000"), None),
            PageOrigin::Foreign
        );
    }

    #[test]
    fn a_listed_origin_passes_and_a_star_lets_every_page_in_without_vouching_for_it() {
        let list = ["https://dash.example.com"];
        let host = "bff.internal:3000";
        assert_eq!(
            of(&list, Some("https://DASH.example.com"), host),
            PageOrigin::Listed
        );
        assert_eq!(
            of(&list, Some("https://evil.example"), host),
            PageOrigin::Foreign
        );
        let star = ["*"];
        let any = of(&star, Some("https://evil.example"), host);
        assert_eq!(any, PageOrigin::AnyAllowed);
        assert!(any.admitted() && !any.vouched());
        assert!(!listed(&["*".to_string()], "*"));
        assert!(PageOrigin::None.vouched() && PageOrigin::Own.vouched());
        assert!(!PageOrigin::Foreign.admitted());
    }
}
