//! Tests that span modules: loom models of the lock-free parts (`cfg(loom)`) and, later,
//! scenarios on the simulated network.

#[cfg(loom)]
mod loom_ring;
