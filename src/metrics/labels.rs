//! The labels of the metrics: the kinds of frame written ([`Frame`], a closed set, each with its
//! counter resolved once), and one label set per family that has labels.

use prometheus_client::encoding::EncodeLabelSet;

/// What kind of frame a connection wrote, for `bff_frames_sent_total{kind}`.
#[derive(Debug, Clone, Copy)]
pub enum Frame {
    /// The first packet a client gets.
    Welcome,
    /// A packet of the stream.
    Telemetry,
    /// A keepalive ping.
    Ping,
    /// A PONG, a pong or a close reply: an answer to something the client sent.
    Reply,
    /// A relayed message from a Redis channel.
    Update,
}

impl Frame {
    /// Every kind, in the order of the discriminants (the index of each one's counter).
    pub const ALL: [Frame; 5] = [
        Frame::Welcome,
        Frame::Telemetry,
        Frame::Ping,
        Frame::Reply,
        Frame::Update,
    ];

    /// The `kind` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Frame::Welcome => "welcome",
            Frame::Telemetry => "telemetry",
            Frame::Ping => "ping",
            Frame::Reply => "reply",
            Frame::Update => "update",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct KindLabel {
    pub(super) kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct SourceLabel {
    pub(super) source: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PollErrorLabels {
    pub(super) source: &'static str,
    pub(super) kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct DisconnectLabels {
    pub(super) reason: &'static str,
    pub(super) code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct CommandLabels {
    pub(super) action: &'static str,
    pub(super) outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RoleLabel {
    pub(super) role: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReasonLabel {
    pub(super) reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct StatusLabel {
    pub(super) status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RegimeLabel {
    pub(super) regime: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct AlertLabels {
    pub(super) code: String,
    pub(super) level: &'static str,
    pub(super) active: &'static str,
}
