//! The paper executor: follows the signal, closing its position when the signal leaves its side
//! and opening one on a BUY or SELL, and keeps the last trades for `trade.results`.

use serde_json::json;

use super::{Open, SYMBOL, Simulation};

/// The trades `trade.results` lists.
const RECENT_TRADES: usize = 10;

impl Simulation {
    /// The paper executor: closes its position when the signal leaves its side, and opens one
    /// on a BUY or SELL, sized by the approved size.
    pub(super) fn follow_signal(&mut self) {
        let wanted = match self.side() {
            "HOLD" => None,
            side => Some(side),
        };
        if self.open.map(|open| open.side) == wanted {
            return;
        }
        if let Some(open) = self.open.take() {
            let sign = if open.side == "BUY" { 1.0 } else { -1.0 };
            let pnl = (self.price - open.price) * sign * f64::from(open.shares);
            self.realized_pnl += pnl;
            if pnl >= 0.0 {
                self.wins += 1;
            } else {
                self.losses += 1;
            }
            let closing = if open.side == "BUY" { "SELL" } else { "BUY" };
            self.record_trade(closing, open.shares);
        }
        if let Some(side) = wanted {
            let shares = (self.approved_size() * self.nav / self.price)
                .round()
                .max(1.0) as u32;
            self.record_trade(side, shares);
            self.open = Some(Open {
                side,
                price: self.price,
                shares,
            });
        }
    }

    /// Notes one trade the executor made, for `trade.results`.
    fn record_trade(&mut self, side: &str, shares: u32) {
        self.trade_count += 1;
        if self.trades.len() == RECENT_TRADES {
            self.trades.pop_front();
        }
        self.trades.push_back(json!({
            "id": format!("t-{}", self.trade_count),
            "market": SYMBOL,
            "side": side,
            "price": format!("{:.2}", self.price),
            "size": shares.to_string(),
        }));
    }
}
