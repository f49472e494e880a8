//! The synchronisation primitives of the in-process parts that the model
//! checker explores: `std`'s in a normal build, `loom`'s under `--cfg loom`
//! (`scripts/test.sh` runs those models; see `docs/architecture.md`,
//! "Waits and lock order").
//!
//! Only the parts whose interleavings are modelled take their primitives
//! from here — the current index table (`index/current.rs`), the group
//! commit of durable puts (`store/durable.rs`), the flight gate of single
//! flight (`lock.rs`) and the memory tier's map (`memory.rs`) — so the
//! models exercise the code that ships, not a copy of it.

#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard, RwLock};

#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard, RwLock};

/// Recovers the guard of a poisoned lock: a panic in another thread (a
/// user's function, say) leaves the state it guards consistent in every
/// lock of this crate, because none is held across code that can panic
/// halfway through an update.
pub(crate) fn unpoison<G>(r: std::sync::LockResult<G>) -> G {
    r.unwrap_or_else(std::sync::PoisonError::into_inner)
}
