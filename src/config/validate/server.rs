//! The `[server]` checks: the listener, its limits, the proxies trusted, and the WebSocket
//! paths (none may take a path the daemon answers itself).

use crate::config::Config;
use crate::config::values::{proxy_net, valid_origin};

/// Paths the daemon answers itself, so no WebSocket path may take them.
pub(super) const RESERVED_PATHS: &[&str] = &[
    "/health",
    "/metrics",
    "/schema.json",
    "/api/actions",
    "/trade/force",
];

impl Config {
    /// The `[server]` checks: paths, origins, proxies and limits.
    pub(super) fn validate_server(&self, bad: &mut impl FnMut(&str, String)) {
        let s = &self.server;
        if s.ws_paths.is_empty() {
            bad(
                "server.ws_paths",
                "must list at least one path, e.g. [\"/\"]".into(),
            );
        }
        for path in &s.ws_paths {
            if !path.starts_with('/') || path == "/health" {
                bad(
                    "server.ws_paths",
                    format!("{path:?} must start with '/' and not be /health"),
                );
            }
        }
        for origin in &s.allowed_origins {
            if origin != "*" && !valid_origin(origin) {
                bad(
                    "server.allowed_origins",
                    format!(
                        "{origin:?} is not an origin; write scheme://host[:port], e.g. \"https://dash.example.com\", or [\"*\"] to let every page in"
                    ),
                );
            }
        }
        for (i, entry) in s.trusted_proxies.iter().enumerate() {
            if let Err(msg) = proxy_net(entry) {
                bad(&format!("server.trusted_proxies[{i}]"), msg);
            }
        }
        for (key, value) in [
            ("server.max_connections", s.max_connections),
            ("server.max_connections_per_ip", s.max_connections_per_ip),
            ("server.max_http_connections", s.max_http_connections),
            (
                "server.max_http_connections_per_ip",
                s.max_http_connections_per_ip,
            ),
        ] {
            if value == 0 {
                bad(key, "must be at least 1".into());
            }
        }
        for (key, value) in [
            ("server.header_timeout_ms", s.header_timeout_ms),
            (
                "server.handshakes_per_second_per_ip",
                s.handshakes_per_second_per_ip.into(),
            ),
            (
                "server.handshake_burst_per_ip",
                s.handshake_burst_per_ip.into(),
            ),
        ] {
            if value == 0 {
                bad(key, "must be above 0".into());
            }
        }
        for path in &s.bridge_paths {
            if !path.starts_with('/') || RESERVED_PATHS.contains(&path.as_str()) {
                bad(
                    "server.bridge_paths",
                    format!("{path:?} must start with '/' and not be one of {RESERVED_PATHS:?}"),
                );
            } else if s.ws_paths.contains(path) {
                bad(
                    "server.bridge_paths",
                    format!("{path:?} is in server.ws_paths too; a path speaks one dialect"),
                );
            }
        }
        for path in &s.market_stream_paths {
            let key = "server.market_stream_paths";
            if !path.starts_with('/') || RESERVED_PATHS.contains(&path.as_str()) {
                bad(
                    key,
                    format!("{path:?} must start with '/' and not be one of {RESERVED_PATHS:?}"),
                );
            } else if let Some(other) =
                [("ws_paths", &s.ws_paths), ("bridge_paths", &s.bridge_paths)]
                    .into_iter()
                    .find_map(|(name, paths)| paths.contains(path).then_some(name))
            {
                bad(
                    key,
                    format!("{path:?} is in server.{other} too; a path speaks one dialect"),
                );
            }
        }
    }
}
