//! What one value may be: the checks and parsers of single values (URLs, addresses, origins),
//! used by the whole-config pass in `validate` and by the command line (`--listen`). Each says
//! what to write instead.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use reqwest::Url;

/// Whether a Redis setting is empty (off) or a `redis://` / `rediss://` URL; the message shows
/// it with its password masked.
pub(super) fn redis_url(url: &super::RedisUrl) -> Result<(), String> {
    if url.expose().is_empty() {
        return Ok(());
    }
    if let Err(problem) = super::sentinel::parse(url.expose()) {
        return Err(format!("{}: {problem}", url.masked()));
    }
    if url.expose().starts_with(super::sentinel::SCHEME) {
        return Ok(());
    }
    match Url::parse(url.expose())
        .map(|u| u.scheme().to_owned())
        .as_deref()
    {
        Ok("redis" | "rediss") => Ok(()),
        _ => Err(format!(
            "{} is not a redis:// URL; write e.g. \"redis://127.0.0.1:6379\"",
            url.masked()
        )),
    }
}

/// Whether `text` can be polled or joined to: an http(s) URL with a host. A path is joined to
/// `engine.url`; joining is the engine client's business.
pub(super) fn http_url(text: &str) -> Result<(), String> {
    let url = Url::parse(text).map_err(|e| {
        format!("{text:?} is not a URL ({e}); write e.g. \"http://127.0.0.1:8000\"")
    })?;
    match url.scheme() {
        "http" | "https" if url.has_host() => Ok(()),
        _ => Err(format!(
            "{text:?} must be an http:// or https:// URL with a host"
        )),
    }
}

/// `server.listen` (and `--listen`): `IP:port`, or `localhost:port` for 127.0.0.1; other host
/// names are not resolved, so the address bound is the one written.
pub fn listen_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    if let Some((host, port)) = text.rsplit_once(':')
        && host.eq_ignore_ascii_case("localhost")
        && let Ok(port) = port.parse::<u16>()
    {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    Err(format!(
        "{text:?} is not an address to listen on; write IP:port, e.g. 127.0.0.1:3000 \
         (0.0.0.0:3000 for every interface) or localhost:3000"
    ))
}

/// One entry of `server.trusted_proxies`: an address (`10.0.0.5`, `::1`), which stands for
/// itself, or a network (`10.0.0.0/8`).
pub fn proxy_net(entry: &str) -> Result<IpNet, String> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    entry.parse::<IpNet>().map_err(|_| {
        format!(
            "{entry:?} is not an address or a network; write e.g. \"10.0.0.5\", \"10.0.0.0/8\" or \"fd00::/8\""
        )
    })
}

/// `scheme://host[:port]` with nothing after it, as browsers send in `Origin`.
pub(super) fn valid_origin(text: &str) -> bool {
    Url::parse(text).is_ok_and(|u| {
        u.has_host() && u.path() == "/" && !text.ends_with('/') && u.query().is_none()
    })
}
