//! What a packet announces after the one before it (`docs/PROTOCOL.md` §12.5): a `REGIME` when
//! the mood changed, an `ALERT` for each alert raised or cleared. Read from the two packets
//! alone, once per snapshot, so every daemon of a cluster and every resuming client hears the
//! same; each encoding writes them before the packet ([`super::Encoding::packet_frames`]).

use serde::Serialize;

use super::mood::{Alert, MoodNow, Regime};
use super::packet::{Market, Telemetry};

/// A change of mood, announced once: the `data` of a `REGIME` message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema, ts_rs::TS))]
pub struct MoodChange {
    /// The new mood.
    #[serde(flatten)]
    pub mood: MoodNow,
    /// The mood it replaces.
    pub previous: Regime,
    /// The market of the packet that confirmed it, so the message explains itself.
    pub market: Market,
}

/// What one packet announces after the one before it (PROTOCOL §12.5).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Announcements {
    /// The mood changed: a `REGIME`.
    pub regime: Option<MoodChange>,
    /// Alerts cleared, then alerts raised: one `ALERT` each.
    pub alerts: Vec<Alert>,
}

impl Announcements {
    /// Whether there is nothing to say.
    pub fn is_empty(&self) -> bool {
        self.regime.is_none() && self.alerts.is_empty()
    }
}

/// What `next` announces after `previous`, read from the two packets alone: a new regime; the
/// alert codes no longer active (cleared at `next`'s timestamp), then those newly active.
/// Every daemon of a cluster, and a client resuming, therefore hears the same.
pub fn announcements(previous: &Telemetry, next: &Telemetry) -> Announcements {
    let regime = (previous.mood.regime != next.mood.regime).then(|| MoodChange {
        mood: next.mood.clone(),
        previous: previous.mood.regime,
        market: next.state.market.clone(),
    });
    let had = |code: &str| previous.alerts.iter().any(|a| a.code == code);
    let has = |code: &str| next.alerts.iter().any(|a| a.code == code);
    let raised = next.alerts.iter().filter(|a| !had(&a.code)).cloned();
    let cleared = previous
        .alerts
        .iter()
        .filter(|a| !has(&a.code))
        .map(|a| Alert {
            timestamp: next.timestamp,
            active: false,
            ..a.clone()
        });
    Announcements {
        regime,
        alerts: cleared.chain(raised).collect(),
    }
}
