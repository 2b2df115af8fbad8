//! The synchronisation primitives the lock-free parts are built on, behind one door.
//!
//! Under `cfg(loom)` every atomic the ring uses comes from `loom`, so the model checker
//! sees (and permutes) each access; otherwise they are the `std` types. `arc-swap` has no
//! loom support, so under loom a ring slot becomes a loom-visible stand-in with the same
//! contract (an atomic swap of an `Arc`): see [`AtomicSlot`].

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};

pub(crate) use slot::AtomicSlot;

#[cfg(not(loom))]
mod slot {
    use std::sync::Arc;

    use arc_swap::ArcSwapOption;

    /// A slot holding an optional `Arc<T>` that is replaced and read atomically, lock-free.
    ///
    /// `arc-swap` makes the pointer swap atomic and defers the release of the old value
    /// until no reader holds it, so a reader gets either the old or the new `Arc`, whole.
    pub(crate) struct AtomicSlot<T>(ArcSwapOption<T>);

    impl<T> AtomicSlot<T> {
        pub(crate) fn empty() -> Self {
            Self(ArcSwapOption::const_empty())
        }

        /// Replaces the value. `arc-swap` publishes with a `SeqCst` swap, so the store
        /// happens-before anything the writer does after it (the ring's `Release` of `head`).
        pub(crate) fn store(&self, value: Arc<T>) {
            self.0.store(Some(value));
        }

        /// Runs `read` on the current value without taking a lock or touching the
        /// reference count on the fast path.
        pub(crate) fn with<R>(&self, read: impl FnOnce(Option<&T>) -> R) -> R {
            let guard = self.0.load();
            read(guard.as_deref())
        }
    }
}

#[cfg(loom)]
mod slot {
    use std::sync::Arc;

    /// Loom stand-in for the `arc-swap` slot: the same "swap an `Arc` atomically"
    /// contract, expressed with a loom mutex so that loom explores every interleaving of
    /// slot accesses with the ring's atomics.
    pub(crate) struct AtomicSlot<T>(loom::sync::Mutex<Option<Arc<T>>>);

    impl<T> AtomicSlot<T> {
        pub(crate) fn empty() -> Self {
            Self(loom::sync::Mutex::new(None))
        }

        pub(crate) fn store(&self, value: Arc<T>) {
            *self.0.lock().unwrap() = Some(value);
        }

        pub(crate) fn with<R>(&self, read: impl FnOnce(Option<&T>) -> R) -> R {
            let value = self.0.lock().unwrap().clone();
            read(value.as_deref())
        }
    }
}
