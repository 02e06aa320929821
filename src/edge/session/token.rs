//! A session's token, checked again when it may have stopped verifying: at every reload (a
//! rotated secret, a new issuer or audience) and when the previous secret's window ends. A token
//! that no longer verifies loses its command rights and its connection is closed with 4401.
//! Sessions without a token hold none of this, and none of it runs per packet.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use chrono::Utc;
use tokio::io::AsyncRead;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep, sleep_until};
use tokio_stream::Stream;
use tokio_stream::wrappers::WatchStream;
use tracing::{info, warn};

use super::Session;
use crate::config::Config;
use crate::edge::admission::auth::Auth;
use crate::edge::command::Token;
use crate::edge::connection::ending::Ending;
use crate::edge::connection::outbox::Outbox;

/// What a session with a token keeps to check it again.
pub struct TokenCheck {
    /// The token as presented: the claims alone cannot be verified again.
    token: Box<str>,
    /// The running config, read at each check; a change is a reload, after which the token is
    /// checked again before the next command.
    settings: watch::Receiver<Arc<Config>>,
    /// The same config's changes, which wake the session to check its token: a stream, whose
    /// one future is made once and reused, so the session's loop keeps no wait of its own.
    reloads: WatchStream<Arc<Config>>,
    /// When the token verified with the previous secret only: the end of that secret's window.
    window_end: Option<Pin<Box<Sleep>>>,
}

impl TokenCheck {
    /// The check of `token`, verified under the config `settings` holds now; `window_end` (in
    /// seconds since the epoch) when it verified with the previous secret.
    pub fn new(
        token: &str,
        mut settings: watch::Receiver<Arc<Config>>,
        window_end: Option<i64>,
    ) -> Box<Self> {
        settings.mark_unchanged();
        let mut check = Box::new(Self {
            token: token.into(),
            reloads: WatchStream::from_changes(settings.clone()),
            settings,
            window_end: None,
        });
        check.set_window_end(window_end);
        check
    }

    fn set_window_end(&mut self, end: Option<i64>) {
        self.window_end = end.map(|end| {
            let left_ms = (end * 1000 - Utc::now().timestamp_millis()).max(0) as u64;
            Box::pin(sleep_until(Instant::now() + Duration::from_millis(left_ms)))
        });
    }

    /// Whether a reload happened that the token was not checked against yet.
    fn reloaded(&self) -> bool {
        self.settings.has_changed().unwrap_or(false)
    }
}

/// Resolves when the token must be checked again (a reload, the end of its window); never
/// without one. Polled by hand, so the session's loop holds a reference, not a wait.
pub(super) fn due(check: &mut Option<Box<TokenCheck>>) -> impl Future<Output = ()> + '_ {
    std::future::poll_fn(move |cx| {
        let Some(check) = check.as_mut() else {
            return Poll::Pending;
        };
        if let Some(end) = check.window_end.as_mut()
            && end.as_mut().poll(cx).is_ready()
        {
            check.window_end = None;
            return Poll::Ready(());
        }
        // `None`: no more reloads, the daemon is stopping; nothing to check then.
        match Pin::new(&mut check.reloads).poll_next(cx) {
            Poll::Ready(Some(_)) => Poll::Ready(()),
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    })
}

impl<R, W> Session<R, W>
where
    R: AsyncRead + Unpin,
    W: Outbox,
{
    /// Checks the token again when a reload came since the last check: before a command, so
    /// none goes out on a token the running config no longer accepts.
    pub(super) fn recheck_if_reloaded(&mut self) -> Result<(), Ending> {
        if self.token_check.as_ref().is_some_and(|c| c.reloaded()) {
            self.recheck_token()
        } else {
            Ok(())
        }
    }

    /// Checks the token against the running config: still good, its claims are renewed (a
    /// window end included); no longer, the connection loses its commands and ends.
    pub(super) fn recheck_token(&mut self) -> Result<(), Ending> {
        let Some(check) = self.token_check.as_mut() else {
            return Ok(());
        };
        let config = check.settings.borrow_and_update().clone();
        let verdict = Auth::from_config(&config.auth)
            .ok_or("auth.secret is no longer set")
            .and_then(|auth| auth.verify(&check.token));
        let caller = self.commands.as_mut().map(|(_, caller)| caller);
        match verdict {
            Ok(verified) => {
                check.set_window_end(verified.window_end);
                if let Some(caller) = caller {
                    caller.token = Token::Valid(Box::new(verified.claims));
                }
                Ok(())
            }
            Err(reason) => {
                self.token_check = None;
                let peer = caller.map(|caller| {
                    caller.token = Token::Invalid(reason);
                    caller.peer
                });
                match peer {
                    Some(peer) => {
                        warn!(%peer, reason, "Token no longer valid: closing the connection")
                    }
                    None => info!(reason, "Token no longer valid: closing the connection"),
                }
                Err(Ending::TokenRevoked(reason))
            }
        }
    }
}
