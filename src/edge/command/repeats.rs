//! The commands seen lately, by subject and `id`, so a repeat (a double-click, a retry after a
//! dropped connection) is answered from the first result instead of acting twice. Each entry
//! holds the action it was for and a cell the first command fills; a repeat that arrives while
//! the first is still waiting for the engine waits on the same cell, and the same `id` for
//! another action is a conflict, never answered with the first's result.
//!
//! Bounded: entries older than the window are dropped as new ones come in, and past
//! [`MAX_ENTRIES`] the oldest go first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// The most commands remembered at once.
pub const MAX_ENTRIES: usize = 10_000;

/// A command's identity: its sender's subject and its `id`.
pub type Key = (String, String);

/// The first result of a command: `None` until the first command fills it, which wakes every
/// repeat waiting for it.
pub type First<T> = Arc<watch::Sender<Option<T>>>;

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

/// What [`Repeats::enter`] found for a command.
#[derive(Debug)]
pub enum Entry<T> {
    /// Not seen within the window: this command is the first, and fills the cell.
    New(First<T>),
    /// The same action was seen: its cell, filled or about to be.
    Repeat(First<T>),
    /// The `id` was used for this other action.
    Conflict(&'static str),
}

#[derive(Debug)]
struct Seen<T> {
    by_key: HashMap<Key, (Instant, &'static str, First<T>)>,
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
            if self.by_key.get(key).is_some_and(|(t, _, _)| t == at) {
                self.by_key.remove(key);
            }
            self.order.pop_front();
        }
    }
}

impl<T> Repeats<T> {
    /// Looks `key` up for `action` and, when it was not seen within `window`, enters it with a
    /// new cell for this command to fill. One critical section, so two commands with one `id`
    /// never both count as the first.
    pub fn enter(&self, key: Key, action: &'static str, window: Duration) -> Entry<T> {
        let mut seen = self.seen.lock().expect("repeats lock poisoned");
        seen.prune(window, MAX_ENTRIES - 1);
        if let Some((_, first_action, first)) = seen.by_key.get(&key) {
            return if *first_action == action {
                Entry::Repeat(first.clone())
            } else {
                Entry::Conflict(first_action)
            };
        }
        let first = Arc::new(watch::Sender::new(None));
        let now = Instant::now();
        seen.order.push_back((now, key.clone()));
        seen.by_key.insert(key, (now, action, first.clone()));
        Entry::New(first)
    }

    /// Forgets `key` if `first` is still its cell: a command refused after it was entered (by
    /// the rate) is not remembered, so its `id` may be sent again.
    pub fn forget(&self, key: &Key, first: &First<T>) {
        let mut seen = self.seen.lock().expect("repeats lock poisoned");
        if seen
            .by_key
            .get(key)
            .is_some_and(|(_, _, cell)| Arc::ptr_eq(cell, first))
        {
            seen.by_key.remove(key);
        }
    }

    /// Commands remembered now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.seen
            .lock()
            .expect("repeats lock poisoned")
            .by_key
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(subject: &str, id: &str) -> Key {
        (subject.into(), id.into())
    }

    fn cell(entry: Entry<u32>) -> (First<u32>, bool) {
        match entry {
            Entry::New(first) => (first, true),
            Entry::Repeat(first) => (first, false),
            Entry::Conflict(action) => panic!("a conflict with {action}"),
        }
    }

    #[test]
    fn a_repeat_within_the_window_gets_the_first_cell() {
        let repeats = Repeats::<u32>::default();
        let minute = Duration::from_secs(60);
        let (first, new) = cell(repeats.enter(key("ann", "c-1"), "halt", minute));
        assert!(new);
        let (again, new) = cell(repeats.enter(key("ann", "c-1"), "halt", minute));
        assert!(!new && Arc::ptr_eq(&first, &again));
        // Another subject's `c-1` is another command.
        assert!(cell(repeats.enter(key("bob", "c-1"), "halt", minute)).1);
    }

    #[test]
    fn the_same_id_for_another_action_is_a_conflict_not_a_repeat() {
        let repeats = Repeats::<u32>::default();
        let minute = Duration::from_secs(60);
        cell(repeats.enter(key("ann", "1"), "halt", minute));
        assert!(matches!(
            repeats.enter(key("ann", "1"), "resume", minute),
            Entry::Conflict("halt")
        ));
        // The conflict did not replace the first: a repeat of it is still a repeat.
        assert!(!cell(repeats.enter(key("ann", "1"), "halt", minute)).1);
    }

    #[test]
    fn a_forgotten_entry_may_be_sent_again_but_only_its_own_cell_is_forgotten() {
        let repeats = Repeats::<u32>::default();
        let minute = Duration::from_secs(60);
        let (first, _) = cell(repeats.enter(key("ann", "1"), "halt", minute));
        repeats.forget(&key("ann", "1"), &first);
        let (second, new) = cell(repeats.enter(key("ann", "1"), "halt", minute));
        assert!(new);
        repeats.forget(&key("ann", "1"), &first);
        assert!(!cell(repeats.enter(key("ann", "1"), "halt", minute)).1);
        assert!(!Arc::ptr_eq(&first, &second));
    }

    #[test]
    fn entries_expire_after_the_window() {
        let repeats = Repeats::<u32>::default();
        repeats.enter(key("ann", "c-1"), "halt", Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(5));
        let (_, new) = cell(repeats.enter(key("ann", "c-1"), "halt", Duration::from_millis(1)));
        assert!(new);
        assert_eq!(repeats.len(), 1);
    }

    #[test]
    fn the_store_stays_bounded() {
        let repeats = Repeats::<u32>::default();
        let hour = Duration::from_secs(3600);
        for i in 0..MAX_ENTRIES + 50 {
            repeats.enter(key("ann", &i.to_string()), "halt", hour);
        }
        assert_eq!(repeats.len(), MAX_ENTRIES);
        // The oldest went first.
        assert!(cell(repeats.enter(key("ann", "0"), "halt", hour)).1);
        let newest = (MAX_ENTRIES + 49).to_string();
        assert!(!cell(repeats.enter(key("ann", &newest), "halt", hour)).1);
    }
}
