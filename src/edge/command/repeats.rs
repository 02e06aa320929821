//! The commands seen lately, by subject and `id`, so a repeat (a double-click, a retry after a
//! dropped connection) is answered from the first result instead of acting twice. Each entry
//! holds a cell the first command fills; a repeat that arrives while the first is still waiting
//! for the engine waits on the same cell.
//!
//! Bounded: entries older than the window are dropped as new ones come in, and past
//! [`MAX_ENTRIES`] the oldest go first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

/// The most commands remembered at once.
pub const MAX_ENTRIES: usize = 10_000;

/// A command's identity: its sender's subject and its `id`.
pub type Key = (String, String);

/// The first result of a command, filled once.
pub type First<T> = Arc<OnceCell<T>>;

/// Commands seen within the window, each with its result `T`.
#[derive(Debug)]
pub struct Repeats<T> {
    /// One short critical section per command; the order queue makes dropping expired entries
    /// cost nothing per lookup.
    seen: Mutex<Seen<T>>,
}

impl<T> Default for Repeats<T> {
    fn default() -> Self {
        Self {
            seen: Mutex::new(Seen {
                by_key: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }
}

#[derive(Debug)]
struct Seen<T> {
    by_key: HashMap<Key, (Instant, First<T>)>,
    order: VecDeque<(Instant, Key)>,
}

impl<T> Seen<T> {
    /// Drops what is older than `window`, and the oldest beyond `keep` entries.
    fn prune(&mut self, window: Duration, keep: usize) {
        let now = Instant::now();
        while let Some((at, key)) = self.order.front() {
            if now.duration_since(*at) < window && self.order.len() <= keep {
                break;
            }
            // A key entered again later has a newer time in the map; leave that one.
            if self.by_key.get(key).is_some_and(|(t, _)| t == at) {
                self.by_key.remove(key);
            }
            self.order.pop_front();
        }
    }
}

impl<T> Repeats<T> {
    /// The first result of `key` if it was seen within `window`.
    pub fn find(&self, key: &Key, window: Duration) -> Option<First<T>> {
        let mut seen = self.seen.lock().expect("repeats lock poisoned");
        seen.prune(window, MAX_ENTRIES);
        seen.by_key.get(key).map(|(_, first)| first.clone())
    }

    /// The cell for `key`: a new one (and `true`) when it was not seen within `window`, else
    /// the first command's.
    pub fn enter(&self, key: Key, window: Duration) -> (First<T>, bool) {
        let mut seen = self.seen.lock().expect("repeats lock poisoned");
        seen.prune(window, MAX_ENTRIES - 1);
        if let Some((_, first)) = seen.by_key.get(&key) {
            return (first.clone(), false);
        }
        let first = First::default();
        let now = Instant::now();
        seen.order.push_back((now, key.clone()));
        seen.by_key.insert(key, (now, first.clone()));
        (first, true)
    }

    /// Commands remembered now.
    pub fn len(&self) -> usize {
        self.seen
            .lock()
            .expect("repeats lock poisoned")
            .by_key
            .len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(subject: &str, id: &str) -> Key {
        (subject.into(), id.into())
    }

    #[test]
    fn a_repeat_within_the_window_gets_the_first_cell() {
        let repeats = Repeats::<u32>::default();
        let minute = Duration::from_secs(60);
        let (first, new) = repeats.enter(key("ann", "c-1"), minute);
        assert!(new);
        let (again, new) = repeats.enter(key("ann", "c-1"), minute);
        assert!(!new && Arc::ptr_eq(&first, &again));
        assert!(Arc::ptr_eq(
            &repeats.find(&key("ann", "c-1"), minute).unwrap(),
            &first
        ));
        // Another subject's `c-1` is another command.
        assert!(repeats.find(&key("bob", "c-1"), minute).is_none());
        assert!(repeats.enter(key("bob", "c-1"), minute).1);
    }

    #[test]
    fn entries_expire_after_the_window() {
        let repeats = Repeats::<u32>::default();
        repeats.enter(key("ann", "c-1"), Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            repeats
                .find(&key("ann", "c-1"), Duration::from_millis(1))
                .is_none()
        );
        assert!(repeats.is_empty());
    }

    #[test]
    fn the_store_stays_bounded() {
        let repeats = Repeats::<u32>::default();
        let hour = Duration::from_secs(3600);
        for i in 0..MAX_ENTRIES + 50 {
            repeats.enter(key("ann", &i.to_string()), hour);
        }
        assert_eq!(repeats.len(), MAX_ENTRIES);
        // The oldest went first.
        assert!(repeats.find(&key("ann", "0"), hour).is_none());
        assert!(
            repeats
                .find(&key("ann", &(MAX_ENTRIES + 49).to_string()), hour)
                .is_some()
        );
    }
}
