//! Tests that span modules: loom models of the lock-free parts (`cfg(loom)`), and
//! scenarios on the simulated network (`sim`).

#[cfg(loom)]
mod loom_rejections;
#[cfg(loom)]
mod loom_ring;
#[cfg(loom)]
mod loom_room;
#[cfg(loom)]
mod loom_wake;

#[cfg(not(loom))]
mod sim;
#[cfg(not(loom))]
mod sim_scenarios;
