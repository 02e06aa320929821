//! The live page at `/` and the two scripts it runs, all embedded at build time: its own
//! (`page.js`) and the client library it connects with (`clients/js/bff.js`, the one copy of it),
//! each served next to the page so that its Content-Security-Policy allows scripts from its own
//! origin only.

use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};

use crate::config::Config;
use crate::edge::admission::origin;

use super::reply::{Body, ok, text};

/// The page: HTML and CSS, its scripts by URL.
const PAGE: &str = include_str!("index.html");

/// The scripts served next to the page, by path: read-only, exact paths, nothing else.
const SCRIPTS: [(&str, &str); 2] = [
    ("/page.js", include_str!("page.js")),
    ("/bff.js", include_str!("../../../../clients/js/bff.js")),
];

/// The page runs only scripts from its own origin (no inline code) and talks only to WebSocket
/// servers and its own origin.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; \
                      img-src data:; connect-src 'self' ws: wss:; base-uri 'none'; \
                      form-action 'none'";

/// `GET /`: the live page, pointed at the first WebSocket path, and told which other origins
/// its `?ws=` may point at (those listed in `server.allowed_origins`).
pub fn page(config: &Config) -> Response<Body> {
    let server = &config.server;
    let path = server.ws_paths.first().map_or("/", String::as_str);
    let listed: Vec<&str> = server
        .allowed_origins
        .iter()
        .map(String::as_str)
        .filter(|o| *o != origin::ANY)
        .collect();
    let html = PAGE
        .replacen(
            r#"<meta name="bff-ws-path" content="/">"#,
            &format!(
                r#"<meta name="bff-ws-path" content="{}">"#,
                escape_attribute(path)
            ),
            1,
        )
        .replacen(
            r#"<meta name="bff-ws-origins" content="">"#,
            &format!(
                r#"<meta name="bff-ws-origins" content="{}">"#,
                escape_attribute(&listed.join(" "))
            ),
            1,
        );
    let mut response = ok(html, "text/html; charset=utf-8");
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    response
}

/// Whether `path` is one of the page's scripts.
pub fn serves(path: &str) -> bool {
    SCRIPTS.iter().any(|(p, _)| *p == path)
}

/// The script at `path` (one [`serves`]): to GET and HEAD, as JavaScript the browser may not
/// take for anything else; any other method is told which two it may use.
pub fn script(method: &Method, path: &str) -> Response<Body> {
    let Some((_, body)) = SCRIPTS.iter().find(|(p, _)| *p == path) else {
        return text(StatusCode::NOT_FOUND, "Not found.\n");
    };
    if !matches!(*method, Method::GET | Method::HEAD) {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{path} is a script of the live page: GET or HEAD it.\n"),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let mut response = ok(*body, "text/javascript; charset=utf-8");
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `path` safe inside a double-quoted HTML attribute.
fn escape_attribute(path: &str) -> String {
    path.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
}
