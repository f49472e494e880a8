//! The runtime of a memoized call, one room per job: a function's identity
//! and its calls (`function.rs`), what of a result is stored (`outcome.rs`),
//! tracked helpers (`track.rs`), the in-process tier (`memory.rs`), sweeps
//! (`sweep.rs`), results by reference (`lazy.rs`), the shapes of the types
//! in a key (`schema.rs`), the compile-time checks of argument and result
//! types (`bounds.rs`), the store of `dir = "..."` (`store_at.rs`) and how
//! a body is run (`body.rs`), and the same runtime for functions of other
//! languages (`protocol.rs`, public as `memo_core::protocol`).
//!
//! The engine (`store/`) knows none of this: it offers single flight
//! through one trait (`store::compute::Call`), and this room drives it.
//! `crate::__private` re-exports what the expansion of `#[memoize]` names.

pub(crate) mod body;
pub(crate) mod bounds;
pub(crate) mod call;
pub(crate) mod function;
pub(crate) mod lazy;
pub(crate) mod memory;
pub(crate) mod outcome;
pub mod protocol;
pub(crate) mod schema;
pub(crate) mod store_at;
pub(crate) mod sweep;
pub(crate) mod track;
