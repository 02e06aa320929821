//! Every way a connection can end, sorted out in one place: the close code each sends, its
//! label in the metrics, and whether it is worth a warning.

use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The client sent a close frame (with this code, if any).
    ClientClosed(Option<u16>),
    /// The socket ended without a close handshake, or failed.
    Vanished(String),
    /// The daemon is shutting down.
    Shutdown,
    /// The client fell more packets behind than its queue holds.
    TooSlow(u64),
    /// A frame could not be written within the send timeout: the client stopped reading.
    Stalled,
    /// Nothing heard from the client, not even a pong, within the idle timeout.
    IdleTimeout,
    /// The client sent a message over the size cap.
    TooBig,
    /// The client sent a text frame that is not UTF-8.
    BadUtf8,
    /// The client broke the WebSocket protocol.
    Protocol(String),
    /// The client sent messages faster than the rate limit.
    Flooding,
    /// Its token no longer verifies (a reload rotated the secret, or the previous secret's
    /// window ended), for this reason.
    TokenRevoked(&'static str),
    /// The client subscribed to channels faster than its rate (`clients.subscriptions_per_second`).
    Churning,
}

/// The close code for a connection whose token no longer verifies: 4401, in the private range,
/// so a dashboard can tell it needs a new token rather than a reconnect.
pub const TOKEN_REVOKED: u16 = 4401;

impl Ending {
    /// The close frame this ending sends, if the socket can still carry one.
    pub fn close_frame(&self) -> Option<CloseFrame> {
        let (code, reason) = match self {
            Ending::Shutdown => (CloseCode::Away, "server shutting down"),
            Ending::TooSlow(_) => (CloseCode::Policy, "too slow: fell behind the stream"),
            Ending::IdleTimeout => (CloseCode::Away, "keepalive timeout"),
            Ending::TooBig => (CloseCode::Size, "message too big"),
            Ending::BadUtf8 => (CloseCode::Invalid, "text frame is not UTF-8"),
            Ending::Protocol(_) => (CloseCode::Protocol, "protocol error"),
            Ending::Flooding => (CloseCode::Policy, "message rate limit exceeded"),
            Ending::TokenRevoked(_) => (CloseCode::from(TOKEN_REVOKED), "token no longer valid"),
            Ending::Churning => (CloseCode::Policy, "subscription rate limit exceeded"),
            Ending::ClientClosed(_) | Ending::Vanished(_) | Ending::Stalled => return None,
        };
        Some(CloseFrame {
            code,
            reason: reason.into(),
        })
    }

    /// A short name for metrics labels.
    pub fn label(&self) -> &'static str {
        match self {
            Ending::ClientClosed(_) => "client_closed",
            Ending::Vanished(_) => "vanished",
            Ending::Shutdown => "shutdown",
            Ending::TooSlow(_) => "too_slow",
            Ending::Stalled => "stalled",
            Ending::IdleTimeout => "idle_timeout",
            Ending::TooBig => "too_big",
            Ending::BadUtf8 => "bad_utf8",
            Ending::Protocol(_) => "protocol",
            Ending::Flooding => "flooding",
            Ending::TokenRevoked(_) => "token_revoked",
            Ending::Churning => "churning",
        }
    }

    /// The close code sent, or the client's own when it closed first.
    pub fn code(&self) -> Option<u16> {
        match self {
            Ending::ClientClosed(code) => *code,
            other => other.close_frame().map(|f| f.code.into()),
        }
    }

    /// Whether the client was cut off for not keeping up with the stream.
    pub fn is_slow(&self) -> bool {
        matches!(self, Ending::TooSlow(_) | Ending::Stalled)
    }

    /// Whether this is an ordinary end (client left, daemon stopping) rather than a fault.
    pub fn is_normal(&self) -> bool {
        matches!(
            self,
            Ending::ClientClosed(_) | Ending::Vanished(_) | Ending::Shutdown
        )
    }
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::ClientClosed(Some(code)) => write!(f, "client closed ({code})"),
            Ending::ClientClosed(None) => write!(f, "client closed"),
            Ending::Vanished(why) => write!(f, "connection lost: {why}"),
            Ending::Shutdown => write!(f, "server shutting down"),
            Ending::TooSlow(n) => write!(f, "too slow: {n} packets behind"),
            Ending::Stalled => write!(
                f,
                "stalled: a frame could not be sent within the send timeout"
            ),
            Ending::IdleTimeout => write!(f, "keepalive timeout"),
            Ending::TooBig => write!(f, "message over the size cap"),
            Ending::BadUtf8 => write!(f, "invalid UTF-8 in a text frame"),
            Ending::Protocol(why) => write!(f, "protocol error: {why}"),
            Ending::Flooding => write!(f, "message rate limit exceeded"),
            Ending::TokenRevoked(why) => write!(f, "token no longer valid: {why}"),
            Ending::Churning => write!(f, "subscription rate limit exceeded"),
        }
    }
}

impl From<WsError> for Ending {
    fn from(err: WsError) -> Self {
        match err {
            WsError::Capacity(_) => Ending::TooBig,
            WsError::Utf8(_) => Ending::BadUtf8,
            WsError::ConnectionClosed | WsError::AlreadyClosed => Ending::Vanished("closed".into()),
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                Ending::Vanished("reset without a close frame".into())
            }
            WsError::Io(e) => Ending::Vanished(e.to_string()),
            WsError::WriteBufferFull(_) => Ending::Stalled,
            other => Ending::Protocol(other.to_string()),
        }
    }
}
