//! The synchronisation primitives the lock-free parts are built on, behind one door.
//!
//! Under `cfg(loom)` every atomic the ring uses comes from `loom`, so the model checker
//! sees (and permutes) each access; otherwise they are the `std` types. A ring slot is a
//! `crossbeam-epoch` atomic pointer with deferred reclamation (the one `unsafe` module of the
//! crate); under loom it becomes a loom-visible stand-in with the same contract (an atomic
//! swap of a whole entry): see `AtomicSlot`.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};

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
    /// every thread that could have loaded it has unpinned. A reader's load is one atomic
    /// load: it sees the old entry or the new one, whole.
    pub(crate) struct AtomicSlot<T>(Atomic<T>);

    impl<T> AtomicSlot<T> {
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

    impl<T> Drop for AtomicSlot<T> {
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
    use std::sync::Arc;

    /// Under loom there is no epoch to pin.
    pub(crate) type Guard = ();

    pub(crate) fn pin() -> Guard {}

    /// Loom stand-in for the epoch-reclaimed slot: the same "swap an entry atomically,
    /// readers see the old one or the new one whole" contract, expressed with a loom mutex
    /// so that loom explores every interleaving of slot accesses with the ring's atomics.
    /// (Reclamation itself is crossbeam-epoch's, which is model-checked upstream.)
    pub(crate) struct AtomicSlot<T>(loom::sync::Mutex<Option<Arc<T>>>);

    impl<T> AtomicSlot<T> {
        pub(crate) fn empty() -> Self {
            Self(loom::sync::Mutex::new(None))
        }

        pub(crate) fn store(&self, value: T, _guard: &Guard) {
            *self.0.lock().unwrap() = Some(Arc::new(value));
        }

        pub(crate) fn with<R>(&self, _guard: &Guard, read: impl FnOnce(Option<&T>) -> R) -> R {
            let value = self.0.lock().unwrap().clone();
            read(value.as_deref())
        }
    }
}
