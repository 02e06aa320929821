//! The demo's Redis publisher: the messages the simulator hands it are published on their
//! channels, in order, over one multiplexed connection.
//!
//! The simulator never waits for it: [`Outbox::send`] queues a message, and drops it when the
//! queue is full. Every Redis call has a deadline ([`CALL_TIMEOUT`]); a call that fails or hangs
//! drops the connection, and a new one is made after a backoff (250 ms, doubling up to 5 s).
//! Messages handed over while Redis is away are dropped: a tick is worth nothing later. One
//! warning when Redis goes away, one line when it is back.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

/// Messages waiting to be published; a step hands over seven at once.
const QUEUE: usize = 64;
/// Time one connect or publish may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Waits between failed connections: doubling from the first, up to the last.
const BACKOFF: [Duration; 2] = [Duration::from_millis(250), Duration::from_secs(5)];

/// One message for a channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The channel it is published on.
    pub channel: String,
    /// Its JSON, published as text.
    pub payload: Value,
}

impl Message {
    /// A message of `payload` for `channel`.
    pub fn new(channel: impl Into<String>, payload: Value) -> Self {
        Self {
            channel: channel.into(),
            payload,
        }
    }
}

/// Where the simulator hands its messages to the publisher.
#[derive(Debug, Clone)]
pub struct Outbox(mpsc::Sender<Message>);

impl Outbox {
    /// Queues `message` for publishing; never waits. A full queue (Redis slow) drops it, and a
    /// publisher gone (shutting down) takes nothing.
    pub fn send(&self, message: Message) {
        if let Err(TrySendError::Full(message)) = self.0.try_send(message) {
            debug!(channel = %message.channel, "Demo event dropped: the Redis publisher is behind");
        }
    }
}

/// Starts publishing to the Redis at `url` until `shutdown`, connecting in the background;
/// fails only when `url` cannot be read as a Redis URL.
pub fn start(url: &str, shutdown: CancellationToken) -> redis::RedisResult<Outbox> {
    let client = redis::Client::open(url)?;
    let (tx, rx) = mpsc::channel(QUEUE);
    let publisher = Publisher {
        client,
        queue: rx,
        down_since: None,
    };
    tokio::spawn(publisher.run(shutdown).instrument(info_span!("demo")));
    Ok(Outbox(tx))
}

/// Why a connection ended: Redis trouble, or nothing more to publish.
enum Ended {
    Lost(String),
    Done,
}

struct Publisher {
    client: redis::Client,
    queue: mpsc::Receiver<Message>,
    /// Since when Redis has been away, while it is.
    down_since: Option<Instant>,
}

impl Publisher {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut wait = BACKOFF[0];
        loop {
            let ended = tokio::select! {
                _ = shutdown.cancelled() => return,
                ended = self.connection() => ended,
            };
            let lost = match ended {
                Ended::Done => return,
                Ended::Lost(lost) => lost,
            };
            if self.down_since.is_none() {
                warn!(
                    error = %lost,
                    "Demo events not published: Redis is unreachable; trying again with backoff"
                );
                self.down_since = Some(Instant::now());
                wait = BACKOFF[0];
            } else {
                debug!(error = %lost, "Demo publisher: Redis still unreachable");
                wait = (wait * 2).min(BACKOFF[1]);
            }
            // Wait, dropping what the simulator hands over meanwhile.
            let pause = sleep(wait);
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = &mut pause => break,
                    queued = self.queue.recv() => if queued.is_none() { return },
                }
            }
        }
    }

    /// One connection: publishes until a call fails or hangs, or the simulator is gone.
    async fn connection(&mut self) -> Ended {
        let mut connection =
            match timeout(CALL_TIMEOUT, self.client.get_multiplexed_async_connection()).await {
                Ok(Ok(connection)) => connection,
                Ok(Err(err)) => return Ended::Lost(format!("cannot connect: {err}")),
                Err(_) => return Ended::Lost("connecting timed out".into()),
            };
        if let Some(since) = self.down_since.take() {
            info!(
                down_s = since.elapsed().as_secs(),
                "Demo events published to Redis again"
            );
        }
        while let Some(message) = self.queue.recv().await {
            let mut publish = redis::cmd("PUBLISH");
            publish
                .arg(&message.channel)
                .arg(message.payload.to_string());
            match timeout(CALL_TIMEOUT, publish.query_async::<i64>(&mut connection)).await {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => {
                    return Ended::Lost(format!("publishing on {} failed: {err}", message.channel));
                }
                Err(_) => {
                    return Ended::Lost(format!("publishing on {} timed out", message.channel));
                }
            }
        }
        Ended::Done
    }
}
