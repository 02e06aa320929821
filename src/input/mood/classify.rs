//! One packet read as crash, bull or neutral, by the `[regime]` thresholds.
//!
//! Crash wins over bull: a rally in a book a tenth under water is not euphoria. Velocity carries
//! the trend; acceleration is not read, because at one reading a second it is one tick's noise
//! that the dwell (see [`super::hysteresis`]) would throw away anyway.

use super::Regime;
use crate::config::RegimeConfig;
use crate::hub::packet::{Side, Telemetry};

/// The engine's word for the heavy-tailed regime, as `market.regime` carries it.
const CRITICAL: &str = "Critical";

/// The mood `packet` reads as, or `None` when its state is stale (`sources.state.ok` false):
/// the numbers are then the last good answer's, and an old picture must not change the mood.
///
/// - **crash**: `market.velocity` at or below `crash_velocity`; or the market is heavy-tailed
///   (`market.alpha` at or below `critical_alpha`, or the engine says `Critical`) and velocity
///   is at or below `critical_crash_velocity`; or `portfolio.max_drawdown` at or below
///   `crash_drawdown`.
/// - **bull**: not crash, velocity at or above `bull_velocity` and `signal.side` `BUY`.
/// - **neutral**: anything else, including a packet with no numbers yet (`null` is never read
///   as past a threshold).
pub fn classify(packet: &Telemetry, config: &RegimeConfig) -> Option<Regime> {
    if !packet.sources.state.ok {
        return None;
    }
    let market = &packet.state.market;
    let velocity = market.velocity;
    let falls_below = |bound: f64| velocity.is_some_and(|v| v <= bound);
    let heavy_tailed = market.alpha.is_some_and(|a| a <= config.critical_alpha)
        || market.regime.as_deref() == Some(CRITICAL);
    let deep_drawdown = packet
        .state
        .portfolio
        .max_drawdown
        .is_some_and(|d| d <= config.crash_drawdown);
    if falls_below(config.crash_velocity)
        || (heavy_tailed && falls_below(config.critical_crash_velocity))
        || deep_drawdown
    {
        return Some(Regime::Crash);
    }
    let rising = velocity.is_some_and(|v| v >= config.bull_velocity);
    if rising && packet.state.signal.side == Some(Side::Buy) {
        return Some(Regime::Bull);
    }
    Some(Regime::Neutral)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::packet::{SourceHealth, Telemetry};

    fn packet(velocity: f64, alpha: f64, side: Side, drawdown: f64) -> Telemetry {
        let mut p = Telemetry::initializing(chrono::DateTime::UNIX_EPOCH);
        p.sources.state = SourceHealth {
            ok: true,
            ..Default::default()
        };
        p.state.market.velocity = Some(velocity);
        p.state.market.alpha = Some(alpha);
        p.state.signal.side = Some(side);
        p.state.portfolio.max_drawdown = Some(drawdown);
        p
    }

    #[test]
    fn each_threshold_reads_as_documented() {
        let c = RegimeConfig::default();
        let read = |v, a, s, d| classify(&packet(v, a, s, d), &c);
        use Regime::*;
        let cases = [
            // A fall at the threshold is a crash; just above it is not.
            ((-0.005, 2.2, Side::Sell, -0.01), Crash),
            ((-0.0049, 2.2, Side::Sell, -0.01), Neutral),
            // Heavy tails: half the fall is enough.
            ((-0.0025, 1.5, Side::Sell, -0.01), Crash),
            ((-0.0025, 1.51, Side::Sell, -0.01), Neutral),
            // A deep drawdown is a crash even while the price rises with the engine buying.
            ((0.006, 2.2, Side::Buy, -0.10), Crash),
            ((0.006, 2.2, Side::Buy, -0.0999), Bull),
            // A rise without the engine buying is no euphoria.
            ((0.006, 2.2, Side::Flat, -0.01), Neutral),
            ((0.005, 2.2, Side::Buy, -0.01), Bull),
            ((0.0049, 2.2, Side::Buy, -0.01), Neutral),
        ];
        for ((v, a, s, d), want) in cases {
            assert_eq!(
                read(v, a, s, d),
                Some(want),
                "velocity {v} alpha {a} {s:?} dd {d}"
            );
        }
    }

    #[test]
    fn the_engines_critical_word_counts_when_alpha_is_missing() {
        let c = RegimeConfig::default();
        let mut p = packet(-0.003, 2.2, Side::Sell, 0.0);
        p.state.market.alpha = None;
        assert_eq!(classify(&p, &c), Some(Regime::Neutral));
        p.state.market.regime = Some("Critical".into());
        assert_eq!(classify(&p, &c), Some(Regime::Crash));
    }

    #[test]
    fn no_numbers_is_neutral_and_a_stale_state_reads_nothing() {
        let c = RegimeConfig::default();
        let mut p = Telemetry::initializing(chrono::DateTime::UNIX_EPOCH);
        assert_eq!(classify(&p, &c), None, "no state yet: not fresh");
        p.sources.state.ok = true;
        assert_eq!(classify(&p, &c), Some(Regime::Neutral));
        let mut crash = packet(-0.02, 1.2, Side::Sell, -0.2);
        crash.sources.state.ok = false;
        assert_eq!(classify(&crash, &c), None);
    }
}
