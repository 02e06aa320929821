//! How a session follows the hub: it joins the feed (resuming where the client left off when
//! the history reaches back) and sends the first frames itself, then hands a stream
//! connection's packets over to the hub's fan-out; until then it reads the feed in its loop.

use std::sync::Arc;

use tokio::io::AsyncRead;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use super::Session;
use crate::edge::connection::ending::Ending;
use crate::edge::connection::outbox::Outbox;
use crate::edge::connection::outlet::Offered;
use crate::hub::{self, Snapshot};
use crate::metrics::Frame;

impl<R, W> Session<R, W>
where
    R: AsyncRead + Unpin,
    W: Outbox,
{
    /// Joins the hub's feed and sends the latest snapshot as `kind`, in the frame its encoding
    /// starts with (the WELCOME of a stream path, the first `telemetry` update of a bridge
    /// path). A client that asked to resume gets the first packet it missed as WELCOME
    /// (`"resumed": true`) and the rest after it, when the history reaches back; else the
    /// latest, with `"resumed": false`.
    pub(super) async fn follow(&mut self, kind: Frame) -> Result<(), Ending> {
        let resume = self.resume.take();
        let joined = self
            .hub
            .join(resume.as_deref(), self.encoding, self.form)
            .await;
        self.feed = Some(joined.rx);
        self.last_seq = joined.seq;
        self.epoch = Some(joined.epoch);
        for (i, frame) in joined.frames.iter().enumerate() {
            let kind = if i == 0 { kind } else { Frame::Telemetry };
            self.socket.write(frame, kind).await?;
        }
        Ok(())
    }

    /// Hands a stream connection's packets over to the hub's fan-out, where its transport lets
    /// the hub tell a client behind (see [`crate::hub::Outlet`]): what its feed still holds is
    /// written first, under the hub's lock, then the hub writes every packet after it.
    pub(super) async fn go_direct(&mut self) -> Result<(), Ending> {
        let outlet = self.socket.outlet().clone();
        if !self.encoding.fanned_out() || !outlet.direct() {
            return Ok(());
        }
        let Some(mut feed) = self.feed.take() else {
            return Ok(());
        };
        let (last_seq, epoch) = (self.last_seq, self.epoch.clone());
        let attached: Arc<dyn hub::Outlet> = outlet.clone();
        let lagged = self.hub.attach(Arc::downgrade(&attached), || {
            loop {
                match feed.try_recv() {
                    Ok(snapshot)
                        if snapshot.seq <= last_seq && epoch.as_ref() == Some(&snapshot.epoch) => {}
                    Ok(snapshot) => {
                        if outlet.offer_snapshot(&snapshot) == Offered::Refused {
                            return None;
                        }
                    }
                    Err(TryRecvError::Empty | TryRecvError::Closed) => return None,
                    Err(TryRecvError::Lagged(missed)) => return Some(missed),
                }
            }
        });
        drop(attached);
        if let Some(missed) = lagged {
            return Err(Ending::TooSlow(missed));
        }
        if outlet.trouble_found().is_some() {
            return Err(self.socket.troubled().await);
        }
        self.socket.flush().await
    }
}

/// The next snapshot of the feed; never, while there is no feed.
pub(super) async fn next_snapshot(
    feed: &mut Option<broadcast::Receiver<Arc<Snapshot>>>,
) -> Result<Arc<Snapshot>, RecvError> {
    match feed {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
