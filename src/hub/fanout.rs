//! The fan-out: the hub writes each packet to every stream connection itself, in one pass on the
//! publisher's thread, instead of waking each connection's task to do it. A connection's task
//! then sleeps through the ticks and wakes only for what is its own (a client's message, a
//! keepalive, a client found behind). This is the floor's way of sending, and the one that costs
//! nearly nothing beyond the sends themselves.
//!
//! A long pass is shared between the cores: helper threads, one per core beyond the first, take
//! batches of connections from it as the publisher's thread does, so the last client gets its
//! copy sooner. Each send is the kernel's work, and a pass over many thousand clients is tens of
//! milliseconds of it on one core (`docs/BENCHMARKS-JOURNAL.md`, "The pass shared between the
//! cores"); a pass of a few hundred is not worth a thread, and passes that follow each
//! other closely (pushes a few times a second) are not shared either: see [`SHARED_APART`]. The
//! hub counts the packets a pass wrote once, at its end.
//!
//! Connections join through [`super::Hub::attach`], under the hub's lock, so a joining
//! connection's last packet from its own feed and the first the fan-out writes to it follow each
//! other with no gap and no repeat. The pass holds a lock of its own: packets are written in
//! order, and joining never waits for a pass.

use std::sync::{Mutex, MutexGuard, Weak};
use std::thread;
use std::time::{Duration, Instant};

use super::snapshot::Snapshot;

/// A connection the hub writes packets to itself.
pub trait Outlet: Send + Sync {
    /// Writes `snapshot`'s packet without waiting; `true` when it took it (the hub counts it as
    /// sent), `false` once the connection takes no more (behind, gone or closing), which drops
    /// it from the fan-out.
    fn offer(&self, snapshot: &Snapshot) -> bool;
}

/// The connections the fan-out writes to. Held weakly: a connection that ends is gone from it
/// at the next pass, and its socket closes at once rather than then.
pub(super) struct Outlets {
    /// Who the passes write to; a pass holds it until it is done.
    roster: Mutex<Roster>,
    /// The most threads that write one pass, the publisher's among them.
    writers: usize,
}

/// What the passes hold, one at a time.
#[derive(Default)]
struct Roster {
    /// The connections written to, in the order they joined.
    outlets: Vec<Weak<dyn Outlet>>,
    /// When the last pass began.
    last_pass: Option<Instant>,
}

impl Default for Outlets {
    /// Up to one writer per core.
    fn default() -> Self {
        Self::with_writers(thread::available_parallelism().map_or(1, |cores| cores.get()))
    }
}

impl std::fmt::Debug for Outlets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outlets")
            .field("writers", &self.writers)
            .finish_non_exhaustive()
    }
}

impl Outlets {
    /// Passes written by up to `writers` threads.
    pub(super) fn with_writers(writers: usize) -> Self {
        Self {
            roster: Mutex::default(),
            writers: writers.max(1),
        }
    }

    /// Takes the fan-out for one pass; taken before the hub's lock, so passes never overlap.
    pub(super) fn pass(&self) -> Pass<'_> {
        Pass {
            roster: self.roster.lock().expect("fan-out lock poisoned"),
            writers: self.writers,
        }
    }
}

/// One pass of the fan-out, holding it until the packet is written everywhere.
pub(super) struct Pass<'a> {
    roster: MutexGuard<'a, Roster>,
    writers: usize,
}

impl Pass<'_> {
    /// Adds the connections that joined since the last pass.
    pub(super) fn join(&mut self, joined: &mut Vec<Weak<dyn Outlet>>) {
        self.roster.outlets.append(joined);
    }

    /// Writes `snapshot` to every connection, dropping those that take no more; returns how
    /// many took it. Those kept stay in the order they joined in.
    pub(super) fn write(mut self, snapshot: &Snapshot) -> usize {
        let now = Instant::now();
        let apart = self
            .roster
            .last_pass
            .replace(now)
            .is_none_or(|last| now - last >= SHARED_APART);
        let writers = if apart {
            self.writers.min(self.roster.outlets.len() / PER_WRITER)
        } else {
            1
        };
        let outlets = &mut self.roster.outlets;
        let kept = if writers > 1 {
            write_shared(outlets, snapshot, writers)
        } else {
            write_batch(outlets, snapshot)
        };
        outlets.truncate(kept);
        kept
    }
}

/// A pass is shared only when the last one began at least this long ago. Packets a few times a
/// second (pushes) keep the publisher's core busy much of the time, and the daemon's other work
/// needs the other one: at five a second, shared passes gave a longer spread p99 for more CPU
/// (`docs/BENCHMARKS-JOURNAL.md`, "Passes close together written by one thread"), and every
/// per-send cost counts five times there.
const SHARED_APART: Duration = Duration::from_millis(500);

/// The fewest connections each writer of a shared pass has: a thread starts in tens of
/// microseconds, and this many sends take milliseconds.
const PER_WRITER: usize = 1024;

/// How many connections a writer takes at a time. A writer that is held up (the load on a
/// core, a slow socket) leaves the others no more than this to wait on it for.
const BATCH: usize = 256;

/// Writes `snapshot` to `outlets` in batches taken by `writers` threads, this one among them, and
/// moves those kept to its front in order; returns how many.
fn write_shared(outlets: &mut [Weak<dyn Outlet>], snapshot: &Snapshot, writers: usize) -> usize {
    // Each batch's index and how many of it were kept, at its front.
    let mut written: Vec<(usize, usize)> = {
        let batches = Mutex::new(outlets.chunks_mut(BATCH).enumerate());
        // The helpers write within the publisher's span, as its own thread does.
        let span = tracing::Span::current();
        let take = || -> Vec<(usize, usize)> {
            let _entered = span.enter();
            let mut written = Vec::new();
            loop {
                let next = batches.lock().expect("fan-out batches poisoned").next();
                let Some((index, batch)) = next else {
                    return written;
                };
                written.push((index, write_batch(batch, snapshot)));
            }
        };
        thread::scope(|scope| {
            // A helper that cannot start leaves its batches to the others.
            let helpers: Vec<_> = (1..writers)
                .filter_map(|_| {
                    thread::Builder::new()
                        .name("bff-fanout".into())
                        .spawn_scoped(scope, take)
                        .ok()
                })
                .collect();
            let mut written = take();
            for helper in helpers {
                written.extend(helper.join().expect("a fan-out writer panicked"));
            }
            written
        })
    };
    written.sort_unstable();
    let mut kept = 0;
    for (index, batch_kept) in written {
        // Each batch's kept ones move down in order, past the ones kept before them; what
        // they leave behind is dropped ones.
        let start = index * BATCH;
        for i in 0..batch_kept {
            outlets.swap(kept + i, start + i);
        }
        kept += batch_kept;
    }
    kept
}

/// Writes `snapshot` to every connection of `outlets`, moving those kept to its front in order;
/// returns how many.
fn write_batch(outlets: &mut [Weak<dyn Outlet>], snapshot: &Snapshot) -> usize {
    let mut kept = 0;
    for i in 0..outlets.len() {
        // Each send runs the kernel's whole TCP path and leaves little of the cache, so the
        // next connections' state is fetched ahead while it runs.
        if let Some(ahead) = outlets.get(i + PREFETCH_AHEAD) {
            crate::os::prefetch(ahead.as_ptr().cast());
        }
        if outlets[i]
            .upgrade()
            .is_some_and(|outlet| outlet.offer(snapshot))
        {
            // Kept ones move up in order; the dropped ones end past `kept`.
            outlets.swap(kept, i);
            kept += 1;
        }
    }
    kept
}

/// How many connections ahead of the one being written the pass fetches the state of.
const PREFETCH_AHEAD: usize = 4;

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::thread::ThreadId;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::hub::packet::{self, Telemetry};

    /// An outlet that counts the packets offered to it and notes which threads wrote; while
    /// `hold` is set, the first one holds its writer up until another thread has written.
    struct Counting {
        id: usize,
        offers: AtomicUsize,
        refuse: bool,
        writers: Arc<Mutex<HashSet<ThreadId>>>,
        hold: Arc<AtomicBool>,
    }

    impl Outlet for Counting {
        fn offer(&self, _: &Snapshot) -> bool {
            self.offers.fetch_add(1, Ordering::Relaxed);
            self.writers.lock().unwrap().insert(thread::current().id());
            if self.id == 0 && self.hold.load(Ordering::Relaxed) {
                let until = Instant::now() + Duration::from_secs(5);
                while self.writers.lock().unwrap().len() < 2 && Instant::now() < until {
                    thread::sleep(Duration::from_millis(1));
                }
            }
            !self.refuse
        }
    }

    /// `n` connections, every `refuse`-th one refusing, sharing `writers` and `hold`.
    fn counting(
        n: usize,
        refuse: impl Fn(usize) -> bool,
        writers: &Arc<Mutex<HashSet<ThreadId>>>,
        hold: &Arc<AtomicBool>,
    ) -> Vec<Arc<Counting>> {
        (0..n)
            .map(|id| {
                Arc::new(Counting {
                    id,
                    offers: AtomicUsize::new(0),
                    refuse: refuse(id),
                    writers: Arc::clone(writers),
                    hold: Arc::clone(hold),
                })
            })
            .collect()
    }

    fn joining(all: &[Arc<Counting>]) -> Vec<Weak<dyn Outlet>> {
        all.iter()
            .map(|outlet| Arc::downgrade(outlet) as Weak<dyn Outlet>)
            .collect()
    }

    fn snapshot(seq: u64) -> Snapshot {
        let data = Telemetry::initializing(chrono::Utc::now());
        let body = packet::body(&data);
        Snapshot::new(seq, "epoch".into(), data, body)
    }

    /// A pass long enough to share: every connection is written once, by more than one thread,
    /// and those kept stay in the order they joined in for the next pass, while those that
    /// refuse or are gone drop out from anywhere in it.
    #[test]
    fn a_shared_pass_writes_each_connection_once_and_keeps_their_order() {
        let outlets = Outlets::with_writers(3);
        let (writers, hold) = (Arc::default(), Arc::new(AtomicBool::new(true)));
        let all = counting(5_000, |id| id % 7 == 3, &writers, &hold);
        let mut joined = joining(&all);
        let mut all: Vec<Option<Arc<Counting>>> = all.into_iter().map(Some).collect();
        for (id, outlet) in all.iter_mut().enumerate() {
            if id % 11 == 5 {
                *outlet = None; // the connection ended before the pass
            }
        }
        let ids_of = |outlets: &[Weak<dyn Outlet>]| -> Vec<usize> {
            outlets
                .iter()
                .map(|weak| {
                    let at = weak.as_ptr().cast::<()>();
                    all.iter()
                        .flatten()
                        .find(|outlet| Arc::as_ptr(outlet).cast::<()>() == at)
                        .expect("a kept connection is alive")
                        .id
                })
                .collect()
        };
        let mut pass = outlets.pass();
        pass.join(&mut joined);
        let kept = pass.write(&snapshot(1));

        let expected: Vec<usize> = (0..5_000)
            .filter(|id| id % 7 != 3 && id % 11 != 5)
            .collect();
        assert_eq!(kept, expected.len());
        assert!(
            writers.lock().unwrap().len() >= 2,
            "the pass was shared between threads"
        );
        assert!(
            all.iter()
                .flatten()
                .all(|outlet| outlet.offers.load(Ordering::Relaxed) == 1),
            "each connection written once"
        );
        assert_eq!(ids_of(&outlets.roster.lock().unwrap().outlets), expected);

        hold.store(false, Ordering::Relaxed);
        assert_eq!(outlets.pass().write(&snapshot(2)), expected.len());
        for outlet in all.iter().flatten() {
            let offers = if outlet.refuse { 1 } else { 2 };
            assert_eq!(
                outlet.offers.load(Ordering::Relaxed),
                offers,
                "{}",
                outlet.id
            );
        }
    }

    /// A pass that begins soon after the last one is written by the publisher's thread alone;
    /// once they are `SHARED_APART` apart again, passes are shared again.
    #[test]
    fn a_pass_close_after_the_last_is_not_shared() {
        let outlets = Outlets::with_writers(3);
        let (writers, hold) = (Arc::default(), Arc::new(AtomicBool::new(true)));
        let all = counting(5_000, |_| false, &writers, &hold);
        let mut pass = outlets.pass();
        pass.join(&mut joining(&all));
        assert_eq!(pass.write(&snapshot(1)), 5_000);
        assert!(writers.lock().unwrap().len() >= 2, "the first pass shared");

        hold.store(false, Ordering::Relaxed);
        writers.lock().unwrap().clear();
        assert_eq!(outlets.pass().write(&snapshot(2)), 5_000);
        assert_eq!(
            *writers.lock().unwrap(),
            HashSet::from([thread::current().id()]),
            "the pass right after it written by this thread alone"
        );

        thread::sleep(SHARED_APART);
        hold.store(true, Ordering::Relaxed);
        writers.lock().unwrap().clear();
        assert_eq!(outlets.pass().write(&snapshot(3)), 5_000);
        assert!(writers.lock().unwrap().len() >= 2, "shared again");
        assert!(
            all.iter()
                .all(|outlet| outlet.offers.load(Ordering::Relaxed) == 3)
        );
    }
}
