//! The synchronisation primitives the lock-free parts are built on, behind one door.
//!
//! The ring, the room's publish path, the rejection log and the shard wake-up take their
//! atomics, locks, published pointers and wakers from here. Normally they are the real
//! types (`std` atomics, `parking_lot::Mutex`, `arc_swap::ArcSwap`, `mio::Waker`, and a
//! `crossbeam-epoch` pointer per ring slot). Under `cfg(loom)` each becomes a type the
//! model checker sees and permutes (tokio's `src/loom/` does the same), so the models in
//! `src/tests/loom_*.rs` check the orderings written here and in the callers, not ones a
//! stand-in adds by itself:
//!
//! - the atomics and the mutex are loom's;
//! - a ring slot ([`AtomicSlot`]) and an `ArcSwap` are a loom `AtomicPtr` to a heap entry
//!   whose value sits in a loom `UnsafeCell`, loaded and swapped with the real types'
//!   orderings (the slot's: swap `AcqRel`, load `Acquire`; arc-swap's documented contract:
//!   a load sees everything done before the store it reads). A load that is not ordered
//!   after the store it reads is reported by loom as a causality violation when the
//!   entry's value is read. Entries are not reclaimed until the stand-in is dropped:
//!   reclamation is crossbeam-epoch's and arc-swap's, model-checked upstream, not here;
//! - a shard's `mio::Waker` is a flag with `Relaxed` accesses, so a wake-up tells the
//!   shard to look but orders nothing: whatever the shard must see after it woke is
//!   ordered by the caller's own atomics (`ShardWake`'s flag), as the real waker (an
//!   `eventfd` write) is not promised to order anything either.
//!
//! The models (ring, room publish and snapshot, shard wake-up, rejection log) and the
//! ordering each one fails without are listed in `docs/reliability.md` ("The lock-free
//! parts, model-checked").
//!
//! This is the one module that may use `unsafe`; each block says why it is sound.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use arc_swap::ArcSwap;
#[cfg(not(loom))]
pub(crate) use mio::Waker;
#[cfg(not(loom))]
pub(crate) use parking_lot::Mutex;

#[cfg(loom)]
pub(crate) use model::{ArcSwap, Mutex, Waker};

pub(crate) use slot::{AtomicSlot, Guard, pin};

#[cfg(not(loom))]
#[allow(unsafe_code)]
#[deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
mod slot {
    use crossbeam_epoch::{self as epoch, Atomic, Owned};
    use std::sync::atomic::Ordering;

    /// Keeps the entries a reader loaded alive while it holds it.
    pub(crate) type Guard = epoch::Guard;

    /// Pins the current thread: entries loaded under the guard are not freed before it
    /// is dropped. Pin once per read of a range, not once per slot.
    pub(crate) fn pin() -> Guard {
        epoch::pin()
    }

    /// A slot holding an optional `T` that is replaced and read atomically, lock-free.
    ///
    /// The writer swaps in a new heap entry; the old one is freed by `crossbeam-epoch` once
    /// every thread that could have loaded it has unpinned, possibly on another thread:
    /// hence `T: Send`. A reader's load is one atomic load: it sees the old entry or the
    /// new one, whole.
    pub(crate) struct AtomicSlot<T: Send>(Atomic<T>);

    impl<T: Send> AtomicSlot<T> {
        pub(crate) fn empty() -> Self {
            Self(Atomic::null())
        }

        /// Replaces the value.
        pub(crate) fn store(&self, value: T, guard: &Guard) {
            // Release: pairs with the Acquire in `with`, so a reader that loads the new
            // pointer sees the entry's contents. Acquire: the old entry's contents are
            // visible here before it is handed to the collector (it was written by this same
            // writer, but the ring's single-writer rule is the caller's, so do not rely on it).
            let old = self.0.swap(Owned::new(value), Ordering::AcqRel, guard);
            if !old.is_null() {
                // SAFETY: `old` was unlinked from the slot by the swap above, so no reader can
                // load it from now on; readers that loaded it earlier are pinned, and
                // `defer_destroy` frees it only after all of them have unpinned. It came
                // from `Owned::new` in an earlier `store` and is destroyed only here, once.
                // The collector may run the destructor on another thread: `T: Send`.
                unsafe { guard.defer_destroy(old) };
            }
        }

        /// Runs `read` on the current value.
        pub(crate) fn with<R>(&self, guard: &Guard, read: impl FnOnce(Option<&T>) -> R) -> R {
            // Acquire: pairs with the Release of the swap in `store`.
            let shared = self.0.load(Ordering::Acquire, guard);
            // SAFETY: `shared` is null or an entry that `store` published (a valid `Owned`
            // allocation). Entries are freed only through `defer_destroy` after being
            // unlinked, which waits for `guard` to be dropped, and the reference given to
            // `read` cannot outlive this call, so it stays valid for its whole use.
            read(unsafe { shared.as_ref() })
        }
    }

    impl<T: Send> Drop for AtomicSlot<T> {
        fn drop(&mut self) {
            // SAFETY: `&mut self` means no other thread can reach this slot any more, so no
            // guard protects its entry and it can be taken and freed at once; it came from
            // `Owned::new` and was never handed to `defer_destroy` (that only happens to
            // entries swapped out).
            unsafe {
                let entry = self.0.load(Ordering::Relaxed, epoch::unprotected());
                if !entry.is_null() {
                    drop(entry.into_owned());
                }
            }
        }
    }
}

#[cfg(loom)]
mod slot {
    use super::model::Published;

    /// Under loom there is no epoch to pin: entries live until the slot is dropped.
    pub(crate) struct Guard;

    pub(crate) fn pin() -> Guard {
        Guard
    }

    /// Loom stand-in for the epoch-reclaimed slot: a loom `AtomicPtr` to an entry, swapped
    /// and loaded with the real slot's orderings (see [`Published`]).
    pub(crate) struct AtomicSlot<T: Send>(Published<T>);

    impl<T: Send> AtomicSlot<T> {
        pub(crate) fn empty() -> Self {
            Self(Published::empty())
        }

        pub(crate) fn store(&self, value: T, _guard: &Guard) {
            self.0.store(value);
        }

        pub(crate) fn with<R>(&self, _guard: &Guard, read: impl FnOnce(Option<&T>) -> R) -> R {
            read(self.0.load().map(|(_, value)| value))
        }
    }
}

#[cfg(loom)]
#[allow(unsafe_code)]
#[deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
mod model {
    use std::sync::{Arc, PoisonError};

    use loom::cell::UnsafeCell;
    use loom::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

    /// A published value. It is written once, when the entry is made on the storing thread,
    /// and only read afterwards; the loom cell records that write, so a read on another
    /// thread that does not happen after it is reported.
    struct Entry<T>(UnsafeCell<T>);

    /// An atomic pointer to an immutable heap entry: the loom stand-in for a
    /// `crossbeam-epoch` `Atomic` and for an `ArcSwap`.
    ///
    /// Every entry ever published stays allocated until the `Published` is dropped, so a
    /// reference handed out by [`Published::load`] lives as long as `&self`.
    pub(crate) struct Published<T> {
        current: AtomicPtr<Entry<T>>,
        /// Every entry made by this cell (published or not), to free on drop. A `std`
        /// mutex: loom does not see it, so it orders nothing in the model, and no loom
        /// operation runs while it is held, so it cannot stall loom's scheduler.
        entries: std::sync::Mutex<Vec<*mut Entry<T>>>,
    }

    // SAFETY: a `Published<T>` owns its entries (raw pointers only because readers share
    // them): sending it sends the `T`s, hence `T: Send`.
    unsafe impl<T: Send> Send for Published<T> {}
    // SAFETY: through `&Published<T>` other threads get `&T` (`T: Sync`) and may store a
    // `T` that is dropped on whichever thread drops the cell (`T: Send`). The raw pointers
    // are only dereferenced as documented at each use.
    unsafe impl<T: Send + Sync> Sync for Published<T> {}

    impl<T> Published<T> {
        pub(crate) fn empty() -> Self {
            Self {
                current: AtomicPtr::new(std::ptr::null_mut()),
                entries: std::sync::Mutex::new(Vec::new()),
            }
        }

        pub(crate) fn new(value: T) -> Self {
            let cell = Self::empty();
            cell.store(value);
            cell
        }

        /// A new entry holding `value`, owned by this cell.
        fn make(&self, value: T) -> *mut Entry<T> {
            let entry = Box::into_raw(Box::new(Entry(UnsafeCell::new(value))));
            self.entries
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(entry);
            entry
        }

        /// Publishes `value` (the old entry stays allocated until drop).
        pub(crate) fn store(&self, value: T) {
            let entry = self.make(value);
            // AcqRel, as the real slot's swap: Release pairs with the Acquire in `load`.
            self.current.swap(entry, Ordering::AcqRel);
        }

        /// Publishes `value` if the current entry is still `expected`; whether it did.
        pub(crate) fn compare_and_set(&self, expected: *const (), value: T) -> bool {
            let entry = self.make(value);
            // AcqRel: Release pairs with the Acquire in `load`, Acquire as in `load` (the
            // failure ordering) for the caller's next attempt.
            self.current
                .compare_exchange(
                    expected.cast::<Entry<T>>().cast_mut(),
                    entry,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        }

        /// The current entry's identity and value, if there is one.
        pub(crate) fn load(&self) -> Option<(*const (), &T)> {
            // Acquire: pairs with the Release of the swap in `store`.
            let entry = self.current.load(Ordering::Acquire);
            // SAFETY: `entry` is null or came from `make` (a live `Box`), and entries are
            // freed only in `drop`, which `&self` excludes; so it is valid for `&self`.
            let entry = unsafe { entry.as_ref() }?;
            // The read that loom checks: it must happen after the write that made the
            // entry, which only the Acquire above (with the storer's Release) provides.
            let value = entry.0.with(|value| {
                // SAFETY: the value is never written after `make` (no `with_mut` anywhere),
                // so a shared reference to it is valid as long as the entry is.
                unsafe { &*value }
            });
            Some((std::ptr::from_ref(entry).cast::<()>(), value))
        }
    }

    impl<T> Drop for Published<T> {
        fn drop(&mut self) {
            let entries = self
                .entries
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner);
            for entry in entries.drain(..) {
                // SAFETY: each pointer came from `Box::into_raw` in `make` and is freed only
                // here, once; `&mut self` means no reference from `load` is still alive.
                drop(unsafe { Box::from_raw(entry) });
            }
        }
    }

    /// Loom stand-in for `arc_swap::ArcSwap`, with the part of its API the room uses.
    pub(crate) struct ArcSwap<T>(Published<Arc<T>>);

    impl<T: Send + Sync> ArcSwap<T> {
        pub(crate) fn from_pointee(value: T) -> Self {
            Self(Published::new(Arc::new(value)))
        }

        pub(crate) fn load_full(&self) -> Arc<T> {
            self.load()
        }

        /// arc-swap's `load` gives a guard that dereferences to the `Arc`; so does this.
        pub(crate) fn load(&self) -> Arc<T> {
            match self.0.load() {
                Some((_, value)) => Arc::clone(value),
                None => unreachable!("an ArcSwap always holds a value"),
            }
        }

        pub(crate) fn store(&self, value: Arc<T>) {
            self.0.store(value);
        }

        /// Replaces the value with `update(current)`, retrying if another store came first.
        pub(crate) fn rcu(&self, mut update: impl FnMut(&Arc<T>) -> T) {
            loop {
                let Some((seen, current)) = self.0.load() else {
                    unreachable!("an ArcSwap always holds a value")
                };
                if self.0.compare_and_set(seen, Arc::new(update(current))) {
                    return;
                }
            }
        }
    }

    /// Loom stand-in for `parking_lot::Mutex`: loom's, with `lock` returning the guard.
    /// (A real lock would block loom's single OS thread when another model thread holds it.)
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    /// Loom stand-in for a shard's `mio::Waker`: a flag the shard's poll takes. `Relaxed`
    /// throughout on purpose: see the module documentation.
    #[derive(Clone)]
    pub(crate) struct Waker(Arc<AtomicBool>);

    impl Waker {
        /// The real constructor's signature, so the server compiles under loom (it never
        /// runs there).
        pub(crate) fn new(_registry: &mio::Registry, _token: mio::Token) -> std::io::Result<Self> {
            Ok(Self::for_model())
        }

        /// A waker for a model; clone it to keep a handle for the shard's side.
        pub(crate) fn for_model() -> Self {
            Self(Arc::new(AtomicBool::new(false)))
        }

        pub(crate) fn wake(&self) -> std::io::Result<()> {
            // Relaxed: a wake-up orders nothing (module documentation). A read-modify-write
            // like the eventfd's counter add, so that it and the poll's swap are ordered.
            self.0.swap(true, Ordering::Relaxed);
            Ok(())
        }

        /// The shard's side: whether a poll now would return for a wake-up (and consume it).
        /// Only the models call it (the server's loop never runs under loom).
        #[cfg(test)]
        pub(crate) fn poll(&self) -> bool {
            // Relaxed: as in `wake`.
            self.0.swap(false, Ordering::Relaxed)
        }
    }
}

// The real slot only: under loom the stand-in is exercised by the models.
#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::{AtomicSlot, pin};

    /// Counts its drops.
    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_dropped_slot_frees_its_entry_at_once() {
        // The current entry is never handed to the collector, so the slot's `Drop` must free
        // it. (CI's Miri run ignores leaks, since epoch garbage may outlive the program, so
        // this is what checks it.)
        let drops = Arc::new(AtomicUsize::new(0));
        let slot = AtomicSlot::empty();
        slot.store(Counted(Arc::clone(&drops)), &pin());
        let seen = slot.with(&pin(), |entry| entry.map(|c| Arc::ptr_eq(&c.0, &drops)));
        assert_eq!(seen, Some(true));
        assert_eq!(drops.load(Ordering::Relaxed), 0);
        drop(slot);
        assert_eq!(drops.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn an_empty_slot_reads_none() {
        let slot: AtomicSlot<Counted> = AtomicSlot::empty();
        assert!(slot.with(&pin(), |entry| entry.is_none()));
    }
}
