//! The fan-out: the hub writes each packet to every stream connection itself, in one pass on the
//! publisher's thread, instead of waking each connection's task to do it. A connection's task
//! then sleeps through the ticks and wakes only for what is its own (a client's message, a
//! keepalive, a client found behind). This is the floor's way of sending, and the one that costs
//! nearly nothing beyond the sends themselves.
//!
//! Connections join through [`super::Hub::attach`], under the hub's lock, so a joining
//! connection's last packet from its own feed and the first the fan-out writes to it follow each
//! other with no gap and no repeat. The pass holds a lock of its own: packets are written in
//! order, and joining never waits for a pass.

use std::sync::{Mutex, MutexGuard, Weak};

use super::snapshot::Snapshot;

/// A connection the hub writes packets to itself.
pub trait Outlet: Send + Sync {
    /// Writes `snapshot`'s packet without waiting; `false` once the connection takes no more
    /// (behind, gone or closing), which drops it from the fan-out.
    fn offer(&self, snapshot: &Snapshot) -> bool;
}

/// The connections the fan-out writes to. Held weakly: a connection that ends is gone from it
/// at the next pass, and its socket closes at once rather than then.
#[derive(Default)]
pub(super) struct Outlets {
    fed: Mutex<Vec<Weak<dyn Outlet>>>,
}

impl std::fmt::Debug for Outlets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outlets").finish_non_exhaustive()
    }
}

impl Outlets {
    /// Takes the fan-out for one pass; taken before the hub's lock, so passes never overlap.
    pub(super) fn pass(&self) -> Pass<'_> {
        Pass(self.fed.lock().expect("fan-out lock poisoned"))
    }
}

/// One pass of the fan-out, holding it until the packet is written everywhere.
pub(super) struct Pass<'a>(MutexGuard<'a, Vec<Weak<dyn Outlet>>>);

impl Pass<'_> {
    /// Adds the connections that joined since the last pass.
    pub(super) fn join(&mut self, joined: &mut Vec<Weak<dyn Outlet>>) {
        self.0.append(joined);
    }

    /// Writes `snapshot` to every connection, dropping those that take no more; returns how
    /// many took it.
    pub(super) fn write(mut self, snapshot: &Snapshot) -> usize {
        let fed = &mut *self.0;
        let mut kept = 0;
        for i in 0..fed.len() {
            // Each send runs the kernel's whole TCP path and leaves little of the cache, so the
            // next connections' state is fetched ahead while it runs.
            if let Some(ahead) = fed.get(i + PREFETCH_AHEAD) {
                prefetch(ahead.as_ptr().cast());
            }
            if fed[i]
                .upgrade()
                .is_some_and(|outlet| outlet.offer(snapshot))
            {
                // Kept ones move up in order; the dropped ones end past `kept`.
                fed.swap(kept, i);
                kept += 1;
            }
        }
        fed.truncate(kept);
        kept
    }
}

/// How many connections ahead of the one being written the pass fetches the state of.
const PREFETCH_AHEAD: usize = 4;

/// Asks the CPU to bring the cache line at `at` in; reads nothing, so any address will do.
#[cfg(target_arch = "x86_64")]
fn prefetch(at: *const i8) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    // SAFETY: a prefetch is a hint: it never faults and reads nothing the program sees.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(at) }
}

#[cfg(not(target_arch = "x86_64"))]
fn prefetch(_: *const i8) {}
