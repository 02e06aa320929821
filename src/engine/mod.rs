//! The engine's HTTP API as the daemon sees it: three JSON endpoints fetched with a deadline
//! and a body cap, each failure turned into a short reason a dashboard can show, and the
//! actions ([`action`]) commands send. Below the layers: the poller reads through it and the
//! command path acts through it.

pub(crate) mod action;

use std::time::Duration;

use reqwest::{Client, Url};
use serde_json::Value;

use crate::config::EngineConfig;

/// One of the three engine endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// The current snapshot.
    State,
    /// Per-agent performance.
    Agents,
    /// Per-model performance.
    Models,
}

impl SourceKind {
    /// All three, in the order they appear in `sources`.
    pub const ALL: [SourceKind; 3] = [SourceKind::State, SourceKind::Agents, SourceKind::Models];

    /// The name used in config keys, logs and `sources`.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::State => "state",
            SourceKind::Agents => "agents",
            SourceKind::Models => "models",
        }
    }
}

/// Why one fetch gave nothing usable. The `Display` text is what `sources.*.error` shows.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No whole answer within the deadline (ms).
    #[error("timed out after {0} ms")]
    Timeout(u64),
    /// The request could not be made or got no answer (the OS's reason).
    #[error("request failed: {0}")]
    Request(String),
    /// The engine answered with an error status.
    #[error("HTTP {0}")]
    Status(reqwest::StatusCode),
    /// The body passed the cap (bytes).
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
    /// The body broke off.
    #[error("answer interrupted: {0}")]
    Body(String),
    /// The body is not JSON.
    #[error("invalid JSON: {0}")]
    Json(String),
}

impl FetchError {
    /// A short name for the kind of failure, for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::Timeout(_) => "timeout",
            FetchError::Request(_) => "request",
            FetchError::Status(_) => "status",
            FetchError::TooLarge(_) => "too_large",
            FetchError::Body(_) => "body",
            FetchError::Json(_) => "json",
        }
    }
}

/// A client for the three endpoints, built once and reused so connections are kept alive.
#[derive(Debug, Clone)]
pub struct Engine {
    client: Client,
    urls: [Url; 3],
    /// One per [`action::Action`], `None` where its setting is empty (the action is off).
    actions: [Option<Url>; 4],
    timeout: Duration,
    max_body: usize,
}

impl Engine {
    /// Builds the client from a validated `[engine]`.
    pub fn new(config: &EngineConfig) -> anyhow::Result<Self> {
        // reqwest is built without a default TLS provider; ring is the lighter one to compile.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = Client::builder()
            .user_agent(concat!("bff/", env!("CARGO_PKG_VERSION")))
            .tcp_nodelay(true)
            .no_proxy()
            .build()?;
        let url = |kind| {
            endpoint(config, kind).map_err(|e| anyhow::anyhow!("engine.{}: {e}", kind.name()))
        };
        let action = |action: action::Action| {
            let value = action.setting(config);
            if value.is_empty() {
                return Ok(None);
            }
            resolve(&config.url, value)
                .map(Some)
                .map_err(|e| anyhow::anyhow!("engine.{}: {e}", action.key()))
        };
        Ok(Self {
            client,
            urls: [
                url(SourceKind::State)?,
                url(SourceKind::Agents)?,
                url(SourceKind::Models)?,
            ],
            actions: [
                action(action::Action::Halt)?,
                action(action::Action::Resume)?,
                action(action::Action::Rebalance)?,
                action(action::Action::ExportLogs)?,
            ],
            timeout: Duration::from_millis(config.timeout_ms),
            max_body: config.max_body_bytes,
        })
    }

    /// The URL polled for `kind`.
    pub fn url(&self, kind: SourceKind) -> &Url {
        &self.urls[kind as usize]
    }

    /// Fetches one endpoint and parses its JSON, all within the deadline.
    pub async fn fetch(&self, kind: SourceKind) -> Result<Value, FetchError> {
        let timeout_ms = self.timeout.as_millis() as u64;
        tokio::time::timeout(self.timeout, self.fetch_unbounded(kind))
            .await
            .unwrap_or(Err(FetchError::Timeout(timeout_ms)))
    }

    async fn fetch_unbounded(&self, kind: SourceKind) -> Result<Value, FetchError> {
        let mut response = self
            .client
            .get(self.url(kind).clone())
            .send()
            .await
            .map_err(|e| FetchError::Request(root_cause(&e)))?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status()));
        }
        let body = read_capped(&mut response, self.max_body).await?;
        serde_json::from_slice(&body).map_err(|e| FetchError::Json(e.to_string()))
    }
}

/// Reads a whole body chunk by chunk, so an endless or huge one is refused as soon as it passes
/// `max` bytes (and up front when its `Content-Length` says so).
async fn read_capped(response: &mut reqwest::Response, max: usize) -> Result<Vec<u8>, FetchError> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(FetchError::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| FetchError::Body(root_cause(&e)))?
    {
        if body.len() + chunk.len() > max {
            return Err(FetchError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The full URL polled for `kind`: its setting as is when absolute, else joined to `engine.url`.
pub fn endpoint(config: &EngineConfig, kind: SourceKind) -> Result<Url, String> {
    let value = match kind {
        SourceKind::State => &config.state,
        SourceKind::Agents => &config.agents,
        SourceKind::Models => &config.models,
    };
    resolve(&config.url, value)
}

/// `value` as is when it is a full URL, else appended to `base`'s path: with `base`
/// `http://host:8000/prefix`, `/api/x` is `http://host:8000/prefix/api/x`, so an engine served
/// under a path prefix is reached under it. (A plain URL join would put `/api/x` at the host's
/// root and drop the prefix.)
fn resolve(base: &str, value: &str) -> Result<Url, String> {
    let parse = |text: &str| Url::parse(text).map_err(|e| format!("{text:?} is not a URL ({e})"));
    if value.starts_with('/') {
        let mut base = parse(base)?;
        // The base is a directory: `/prefix` and `/prefix/` alike take the path under them.
        if !base.path().ends_with('/') {
            let dir = format!("{}/", base.path());
            base.set_path(&dir);
        }
        base.join(value.trim_start_matches('/'))
            .map_err(|e| format!("{value:?} cannot be joined to engine.url: {e}"))
    } else {
        parse(value)
    }
}

/// The innermost cause of an error (e.g. "Connection refused (os error 111)"), which is the part
/// an operator can act on.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn endpoints_are_paths_or_urls() {
        let cfg = Config::parse(
            "[engine]\nurl = \"http://engine:9000/base/\"\nstate = \"http://other:1/s\"\n",
        )
        .unwrap();
        assert_eq!(
            endpoint(&cfg.engine, SourceKind::State).unwrap().as_str(),
            "http://other:1/s"
        );
        assert_eq!(
            endpoint(&cfg.engine, SourceKind::Agents).unwrap().as_str(),
            "http://engine:9000/base/api/system/metrics/agents"
        );
    }

    #[test]
    fn paths_go_under_the_base_urls_path() {
        for (base, path, url) in [
            ("http://e:8000", "/api/x", "http://e:8000/api/x"),
            ("http://e:8000/", "/api/x", "http://e:8000/api/x"),
            (
                "http://e:8000/prefix",
                "/api/x",
                "http://e:8000/prefix/api/x",
            ),
            ("http://e:8000/a/b/", "/api/x", "http://e:8000/a/b/api/x"),
            (
                "http://e:8000/p",
                "/api/x?full=1",
                "http://e:8000/p/api/x?full=1",
            ),
        ] {
            assert_eq!(
                resolve(base, path).unwrap().as_str(),
                url,
                "{base} + {path}"
            );
        }
    }
}
