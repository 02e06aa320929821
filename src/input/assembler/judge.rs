//! The assembler's judging: each packet's mood and alerts read once and written into it
//! (logged and counted), carried on from another daemon's last packet when this one starts
//! polling after a failover, and taken from a reloaded config.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::{Assembler, RULES_VALIDATED};
use crate::config::{AlertLevel, Config};
use crate::hub::mode::Mode;
use crate::hub::packet::Telemetry;
use crate::input::cluster::Role;
use crate::input::mood::{Alert, Alerts, Mood, classify};

/// How many of its own packets the assembler remembers (see `Assembler::mine`): more than can
/// be on their way back through the cluster at once.
const MINE_KEPT: usize = 4;

impl Assembler {
    /// Reads `packet`'s mood and alerts (`super::mood`, once per packet) and writes them into
    /// it; each announced mood and each alert raised or cleared is logged and counted.
    pub(super) fn judge(&mut self, packet: &mut Telemetry, now: DateTime<Utc>) {
        if self.another_published() {
            self.carry_on();
        }
        let reading = classify(packet, &self.config.regime);
        if let Some(change) = self.mood.observe(reading, &packet.state.market, now) {
            let regime = change.mood.regime.as_str();
            info!(regime, previous = change.previous.as_str(), "Mood changed");
            self.metrics.mood_changed(regime);
        }
        let mood = self.mood.current().map(|mood| mood.regime);
        // In a cluster that lost its Redis every daemon polls alone, and says so; while
        // joining nothing is known yet.
        let cluster_lost = match self.hub.mode() {
            Mode::Single | Mode::Cluster(Role::Joining) => None,
            Mode::Cluster(role) => Some(role == Role::Fallback),
        };
        for alert in self.alerts.observe(packet, mood, cluster_lost, now) {
            self.report(&alert);
        }
        if let Some(mood) = self.mood.current() {
            packet.mood = mood.clone();
        }
        packet.alerts = self.alerts.active().to_vec();
    }

    /// Remembers a packet published here.
    pub(super) fn mine(&mut self, epoch: Arc<str>, seq: u64) {
        if self.mine.len() == MINE_KEPT {
            self.mine.pop_front();
        }
        self.mine.push_back((epoch, seq));
    }

    /// Whether the hub's latest packet is another daemon's: not the INITIALIZING one, not one
    /// published here, nor older than the last one published here in the same count (that one
    /// is on its way back through the cluster).
    pub(super) fn another_published(&self) -> bool {
        let latest = self.hub.latest();
        let ours = |(epoch, seq): &(Arc<str>, u64)| *epoch == latest.epoch && *seq == latest.seq;
        let older = self
            .mine
            .back()
            .is_some_and(|(epoch, seq)| *epoch == latest.epoch && latest.seq < *seq);
        latest.seq > 0 && !self.mine.iter().any(ours) && !older
    }

    /// Takes the mood and alerts from the hub's latest packet, another daemon's: a failover
    /// neither resets the mood to neutral nor raises every alert again.
    pub(super) fn carry_on(&mut self) {
        let latest = self.hub.latest();
        let Some(data) = latest.data() else {
            return;
        };
        self.mood = Mood::seeded(&self.config.regime, &data.mood);
        self.alerts = Alerts::seeded(&self.config.alerts, &data.alerts).expect(RULES_VALIDATED);
        info!(
            seq = latest.seq,
            regime = data.mood.regime.as_str(),
            alerts = data.alerts.len(),
            "Polling here now: the mood and alerts carry on from the last packet"
        );
    }

    /// Logs and counts one alert raised or cleared.
    pub(super) fn report(&self, alert: &Alert) {
        let (code, level) = (alert.code.as_str(), alert.level.as_str());
        match (alert.active, alert.level) {
            (true, AlertLevel::Info) => {
                info!(code, level, message = %alert.message, "Alert raised")
            }
            (true, _) => warn!(code, level, message = %alert.message, "Alert raised"),
            (false, _) => info!(code, level, "Alert cleared"),
        }
        self.metrics.alert(code, level, alert.active);
    }

    /// A reload: the new settings, and the mood's words and the alert rules from them at once
    /// (an alert whose rule is gone clears).
    pub(super) fn reconfigure(&mut self, config: Arc<Config>) {
        self.mood.reconfigure(&config.regime);
        match self.alerts.reconfigure(&config.alerts, Utc::now()) {
            Ok(cleared) => cleared.iter().for_each(|alert| self.report(alert)),
            Err(err) => warn!(%err, "Alert rules not reloaded: keeping the ones before"),
        }
        self.config = config;
    }
}
