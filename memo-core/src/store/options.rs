//! How a store is opened: [`StoreBuilder`], the limits, policy and
//! durability it carries.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{Engine, Store};
use crate::error::Result;
use crate::evict::Policy;

/// What a successful `put` promises to survive.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// The entry survives the crash of any process (the data is in the
    /// operating system's page cache before `put` returns), not power loss.
    #[default]
    Flush,
    /// The entry also survives power loss: the segment holding its record is
    /// synced before `put` returns (one `fdatasync`, shared by threads that
    /// put at the same moment). The index is not synced per put: after a
    /// restart, the first process to open the store replays what the index
    /// may have lost from the segments (`docs/format.md`).
    Sync,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Options {
    pub max_bytes: Option<u64>,
    pub max_entries: Option<u64>,
    pub max_age: Option<Duration>,
    pub policy: Policy,
    pub durability: Durability,
}

/// Options for opening a [`Store`]; made by [`Store::builder`].
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use memo_core::{Durability, Policy, Store};
///
/// let store = Store::builder(dir.path())
///     .max_bytes(10 << 30)
///     .policy(Policy::CostAware)
///     .durability(Durability::Sync)
///     .open()?;
/// # Ok::<(), memo_core::Error>(())
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct StoreBuilder {
    dir: PathBuf,
    opts: Options,
}

impl StoreBuilder {
    pub(super) fn new(dir: &Path) -> StoreBuilder {
        StoreBuilder {
            dir: dir.to_path_buf(),
            opts: Options::default(),
        }
    }

    /// Limit on the bytes the store takes on disk: records, blob files and
    /// the index.
    ///
    /// A put that takes the store past the limit evicts (by the
    /// [`Policy`](crate::Policy)) until live data fits in 80% of it, then compacts the
    /// oldest segments until everything fits in 90%; so after any put
    /// returns, the store is within the limit plus what one compaction
    /// could not reclaim. An entry larger than the limit is refused with
    /// [`Error::TooLarge`](crate::Error::TooLarge). Processes that open the store with different
    /// limits each enforce their own on their puts.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.opts.max_bytes = Some(bytes);
        self
    }

    /// Limit on the number of entries: a put past it evicts down to 80%.
    pub fn max_entries(mut self, entries: u64) -> Self {
        self.opts.max_entries = Some(entries);
        self
    }

    /// Entries not used (read or written) for this long are expired: by
    /// puts, at most every eighth of `age`, and by [`Store::trim`]. Last use
    /// is known to within 1/64 of the store's age.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.opts.max_age = Some(age);
        self
    }

    /// Which entries go first when a limit is reached (default [`Policy::Lru`](crate::Policy::Lru)).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.opts.policy = policy;
        self
    }

    /// What a successful `put` survives (default [`Durability::Flush`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.opts.durability = durability;
        self
    }

    /// Opens the store, creating the directory if it is missing.
    ///
    /// memo adopts only an empty directory or an existing store (whose
    /// `LOCK` file carries memo's marker): any other directory is refused
    /// before anything is created in it, so a mistyped `MEMO_DIR` never
    /// mixes memo's files with yours. Nothing inside a store is ever
    /// reached through a symbolic link (the store directory itself may be
    /// one).
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if the directory cannot be created or opened (naming the
    /// path), [`Error::Refused`](crate::Error::Refused) for a directory that is neither empty nor a
    /// store, or a store with a link or a file of the wrong type under one
    /// of memo's names, [`Error::Corrupt`](crate::Error::Corrupt) if its index is damaged,
    /// [`Error::IncompatibleFormat`](crate::Error::IncompatibleFormat) if it was written by another format
    /// version.
    pub fn open(self) -> Result<Store> {
        Ok(Store {
            engine: Some(Arc::new(Engine::open(&self.dir, self.opts)?)),
        })
    }
}
