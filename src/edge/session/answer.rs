//! What a session answers to what its client says: PING, SUBSCRIBE and UNSUBSCRIBE here;
//! commands are started in `command`. A reply's type follows the request's case, unless the
//! connection's encoding speaks lowercase only (a bridge path's).

use serde::Serialize;
use tokio::io::AsyncRead;
use tracing::debug;

use super::Session;
use crate::edge::connection::ending::Ending;
use crate::edge::connection::outbox::Outbox;
use crate::edge::session::channels::TELEMETRY;
use crate::edge::session::message::{self, ClientMessage};
use crate::hub::frame;
use crate::metrics::Frame;

impl<R, W> Session<R, W>
where
    R: AsyncRead + Unpin,
    W: Outbox,
{
    /// Answers one text frame from the client.
    pub(super) async fn answer(&mut self, text: &str) -> Result<(), Ending> {
        let encoding = self.encoding;
        match message::parse(text) {
            Ok(ClientMessage::Ping { lowercase }) => {
                let pong = if lowercase || encoding.lowercase() {
                    r#"{"type":"pong"}"#
                } else {
                    r#"{"type":"PONG"}"#
                };
                self.socket
                    .write(&frame::text_frame(pong), Frame::Reply)
                    .await
            }
            Ok(ClientMessage::Subscribe(mut asked)) => {
                if self.churning(asked.channels.len()) {
                    return Err(Ending::Churning);
                }
                // Offsets without an epoch belong to the one the client resumed in, if it did.
                asked.epoch = asked
                    .epoch
                    .or_else(|| self.resume_epoch.as_deref().map(String::from));
                let (answer, missed) =
                    self.channels
                        .subscribe(asked, &self.config, self.hub.relay(), encoding);
                let joined_telemetry = encoding.telemetry_is_a_channel()
                    && self.feed.is_none()
                    && answer.channels.iter().any(|c| c == TELEMETRY);
                self.send_json(&answer).await?;
                for update in missed {
                    self.socket
                        .write(update.frame_as(encoding, self.form), Frame::Update)
                        .await?;
                }
                if joined_telemetry {
                    // A dashboard that subscribes to the packet gets the latest at once, then
                    // every one.
                    self.follow(Frame::Update).await?;
                }
                Ok(())
            }
            Ok(ClientMessage::Unsubscribe {
                channels,
                lowercase,
            }) => {
                let answer = self
                    .channels
                    .unsubscribe(channels, lowercase || encoding.lowercase());
                if encoding.telemetry_is_a_channel() && !self.channels.telemetry {
                    self.feed = None;
                }
                self.send_json(&answer).await
            }
            Ok(ClientMessage::Command { action, id }) => Box::pin(self.command(action, id)).await,
            Ok(ClientMessage::Unknown(kind)) => {
                debug!(kind, "Unknown message type ignored");
                Ok(())
            }
            Err(why) => {
                debug!(%why, bytes = text.len(), "Malformed message ignored");
                Ok(())
            }
        }
    }

    /// Writes one answer as a JSON text frame.
    pub(super) async fn send_json(&mut self, answer: &impl Serialize) -> Result<(), Ending> {
        let json = serde_json::to_string(answer).expect("an answer always serializes");
        self.socket
            .write(&frame::text_frame(&json), Frame::Reply)
            .await
    }
}
