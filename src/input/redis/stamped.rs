//! A merged value with its time ([`Stamped`]), the rules that keep the latest and drop what a
//! poll answered since, and the latest value per symbol ([`PerSymbol`], bounded by
//! [`MAX_SYMBOLS`]): the bookkeeping under `merge`'s overlay.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

/// Symbols whose latest tick (and physics) is kept; past it the symbol heard from longest ago
/// is forgotten, so a feed of many symbols cannot grow the overlay without end.
pub const MAX_SYMBOLS: usize = 1024;

/// A merged value with its time, and the order it arrived in to break ties between equal times
/// (the later arrival wins).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Stamped<T> {
    pub(super) value: T,
    pub(super) at: DateTime<Utc>,
    pub(super) seq: u64,
}

impl<T> Stamped<T> {
    pub(super) fn order(&self) -> (DateTime<Utc>, u64) {
        (self.at, self.seq)
    }

    pub(super) fn newer_than(&self, answer_time: DateTime<Utc>) -> bool {
        self.at > answer_time
    }
}

/// Keeps `next` in `slot` unless the value there is newer (an event that arrives late).
pub(super) fn keep_latest<T>(slot: &mut Option<Stamped<T>>, next: Stamped<T>) {
    if slot
        .as_ref()
        .is_none_or(|held| next.order() >= held.order())
    {
        *slot = Some(next);
    }
}

/// The value in `slot` if it is newer than the poll's answer.
pub(super) fn fresh<T>(
    slot: &Option<Stamped<T>>,
    answer_time: DateTime<Utc>,
) -> Option<&Stamped<T>> {
    slot.as_ref().filter(|held| held.newer_than(answer_time))
}

/// Empties `slot` when the poll's answer is as new as its value or newer.
pub(super) fn forget_older<T>(slot: &mut Option<Stamped<T>>, answer_time: DateTime<Utc>) {
    if slot
        .as_ref()
        .is_some_and(|held| !held.newer_than(answer_time))
    {
        *slot = None;
    }
}

/// The later of two stamped values.
pub(super) fn later<'a, T>(
    a: Option<&'a Stamped<T>>,
    b: Option<&'a Stamped<T>>,
) -> Option<&'a Stamped<T>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.order() > a.order() { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// The latest value per symbol, at most [`MAX_SYMBOLS`] of them, plus one for messages that
/// name no symbol.
#[derive(Debug, Clone)]
pub(super) struct PerSymbol<T> {
    pub(super) named: HashMap<String, Stamped<T>>,
    unnamed: Option<Stamped<T>>,
}

impl<T> Default for PerSymbol<T> {
    fn default() -> Self {
        Self {
            named: HashMap::new(),
            unnamed: None,
        }
    }
}

impl<T> PerSymbol<T> {
    pub(super) fn put(&mut self, symbol: Option<String>, next: Stamped<T>) {
        let Some(symbol) = symbol else {
            return keep_latest(&mut self.unnamed, next);
        };
        if let Some(held) = self.named.get_mut(&symbol) {
            if next.order() >= held.order() {
                *held = next;
            }
            return;
        }
        if self.named.len() >= MAX_SYMBOLS {
            let oldest = self
                .named
                .iter()
                .min_by_key(|(_, held)| held.order())
                .map(|(symbol, _)| symbol.clone());
            if let Some(oldest) = oldest {
                self.named.remove(&oldest);
            }
        }
        self.named.insert(symbol, next);
    }

    /// The value for `active` newer than the answer: its symbol's or an unnamed one, the later.
    /// With no active symbol only an unnamed value can be matched.
    pub(super) fn for_symbol(
        &self,
        active: Option<&str>,
        answer_time: DateTime<Utc>,
    ) -> Option<&Stamped<T>> {
        let named = active.and_then(|symbol| self.named.get(symbol));
        later(named, self.unnamed.as_ref()).filter(|held| held.newer_than(answer_time))
    }

    /// The most recent named value newer than the answer, with its symbol.
    pub(super) fn newest(&self, answer_time: DateTime<Utc>) -> Option<(&str, &Stamped<T>)> {
        self.named
            .iter()
            .filter(|(_, held)| held.newer_than(answer_time))
            .max_by_key(|(_, held)| held.order())
            .map(|(symbol, held)| (symbol.as_str(), held))
    }

    pub(super) fn forget_older(&mut self, answer_time: DateTime<Utc>) {
        self.named.retain(|_, held| held.newer_than(answer_time));
        forget_older(&mut self.unnamed, answer_time);
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.named.len() + usize::from(self.unnamed.is_some())
    }
}
