//! A persistent, multi-process function-memoization cache.
//!
//! Put `#[memoize]` on an expensive function and each distinct call is
//! computed once, ever: the result is stored in a directory on disk, shared
//! by every thread and process on the machine, and found again by the next
//! run of the program.
//!
//! # Quickstart
//!
//! ```
//! use memo_core::memoize;
//!
//! #[memoize(dir = "target/memo-doc")] // no option: `$MEMO_DIR`, else ./.memo
//! fn simulate(steps: u64, rate: f64) -> Vec<f64> {
//!     (0..steps).map(|i| (i as f64 * rate).sin()).collect()
//! }
//!
//! let first = simulate(10_000, 0.5); // computed and stored
//! let again = simulate(10_000, 0.5); // loaded, here and in every later run
//! assert_eq!(first, again);
//! ```
//!
//! [`memoize`] documents the attribute in full: its options, what the key is
//! made of, what is cached, and the per-function helpers. Without the
//! attribute, a [`Store`] is a key-value cache with the same guarantees:
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use memo_core::{Key, Store};
//!
//! fn simulate(steps: u64) -> Vec<f64> {
//!     (0..steps).map(|i| (i as f64).sqrt()).collect()
//! }
//!
//! let store = Store::open(dir.path())?;
//! let key = Key::of(&("simulate", 10_000_u64));
//! let first = store.get_or_compute(&key, || simulate(10_000))?; // computed
//! let again = store.get_or_compute(&key, || simulate(10_000))?; // loaded
//! assert_eq!(first, again);
//! # Ok::<(), memo_core::Error>(())
//! ```
//!
//! # The model
//!
//! A [`Store`] is a directory. Values under 2 MiB are appended to segment
//! files; larger ones get a file each, written aside and renamed in.
//! A shared, memory-mapped hash index finds them: readers probe it without
//! any lock, validating each slot with a sequence number, and writers
//! serialise on one file lock held only while they publish. [`Store::get_bytes`]
//! returns a view of the mapped file itself, so reading a gigabyte result
//! costs no copy.
//!
//! # Guarantees
//!
//! - **Exact or miss.** A lookup returns the bytes a `put` stored, or a miss:
//!   every value is checksummed (xxh3) and checked before it is returned.
//! - **Committed means visible.** After `put` returns `Ok`, every process
//!   sees the entry; with [`Durability::Sync`] it also survives power loss.
//! - **Bounded space.** With [`StoreBuilder::max_bytes`] set, the store's
//!   files are within the limit after every `put` returns: the writer that
//!   crosses it evicts by the [`Policy`] (LRU, LFU with ageing,
//!   cost-aware) and compacts.
//! - **Hostile files are harmless.** Every length and offset read from disk
//!   is checked before use and decoding is bounded by the input, so a damaged
//!   or foreign directory gives errors or misses, never a panic or undefined
//!   behaviour. Values are plain data: loading never runs code.
//! - **Only its own files.** A store is adopted only if its directory is
//!   empty or already a store; no symbolic link inside it is ever followed,
//!   and only files memo named are ever removed (see [`Error::Refused`]).
//!
//! The on-disk format is drawn byte by byte in `docs/format.md`.

// Files are reached through Unix directory handles (`openat`, `O_NOFOLLOW`),
// locked with `flock` semantics and mapped shared: other systems would need
// their own design of each, not a port.
#[cfg(not(unix))]
compile_error!("memo supports Unix systems only (Linux, macOS, the BSDs)");

// The format writes integers little-endian through native atomics.
#[cfg(target_endian = "big")]
compile_error!("memo's on-disk format is little-endian; big-endian targets are not supported");

mod array;
mod blob;
mod clock;
mod codec;
mod compress;
mod data_file;
mod dir;
mod error;
mod evict;
mod format;
mod index;
mod key;
mod lock;
mod mmap;
#[doc(hidden)]
pub mod __private {
    //! What the expansion of `#[memoize]` and `#[track]` names; not a
    //! public API (memo-core pins memo-macros at an exact version).
    pub use std::time::Instant;

    pub use crate::codec::{Number, PodVec};
    pub use crate::data_file::bytes_read as data_file_bytes_read;
    pub use crate::key::call::KeyBuilder;
    pub use crate::memoize::body::{run, typed_future};
    pub use crate::memoize::function::{Function, Miss, Turn};
    pub use crate::memoize::lazy::lazy;
    pub use crate::memoize::outcome::{
        Bulk, BulkOk, OkOnly, Outcome, Pick, Stamped, StoredAs, Timed, TimedOk, ViaBulk, ViaBulkOk,
        ViaOk, ViaWhole, Whole,
    };
    pub use crate::memoize::schema::{
        ArgShape, Schema, ViaTraced, ViaValue, cached as schema_cached,
    };
    pub use crate::memoize::store_at::StoreAt;
    pub use crate::memoize::track::{Track, Tracked};
}
mod memoize;
mod registry;
mod remote;
mod report;
mod segment;
mod stats;
mod store;
mod sync;
mod time;
pub mod units;

pub use array::Array;
/// The traits an [`Array`]'s element type needs (`Pod` for plain old data),
/// re-exported so a user needs no `bytemuck` dependency of their own for
/// the built-in number types.
pub use bytemuck::{self, Pod, Zeroable};
pub use compress::Compression;
pub use data_file::DataFile;
pub use error::{Error, Result};
pub use evict::Policy;
pub use key::{Key, ParseKeyError};
pub use memo_macros::{memoize, track};
pub use memoize::bounds::{Hashable, Storable};
#[doc(hidden)]
pub use memoize::bounds::{memoize_argument, memoize_result};
pub use memoize::lazy::Lazy;
pub use memoize::protocol;
pub use mmap::Bytes;
pub use remote::RemoteMode;
pub use stats::{FunctionInfo, FunctionStats, Selection, Stats, Transfer, VerifyReport};
pub use store::{Durability, Store, StoreBuilder};
