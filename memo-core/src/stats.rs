//! Store-wide statistics and the report of `verify`.

/// Store-wide counters, shared by every process that opens the store.
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use memo_core::{Key, Store};
///
/// let store = Store::open(dir.path())?;
/// let k = Key::of(&1);
/// assert_eq!(store.get::<u32>(&k)?, None);
/// store.put(&k, &7_u32)?;
/// assert_eq!(store.get::<u32>(&k)?, Some(7));
/// let s = store.stats();
/// assert_eq!((s.hits, s.misses, s.entries), (1, 1, 1));
/// # Ok::<(), memo_core::Error>(())
/// ```
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Lookups (`get`, `get_bytes`, `get_or_compute`) that found a value.
    pub hits: u64,
    /// Lookups that found none.
    pub misses: u64,
    /// Live entries.
    pub entries: u64,
    /// Bytes the store takes on disk: live and not yet reclaimed records,
    /// blob files and the index.
    pub bytes: u64,
    /// What `bytes` would be with every value stored uncompressed: `bytes`
    /// plus what compression saves on the live values ([`Compression`](crate::Compression));
    /// `raw_bytes / bytes` is the store's compression ratio.
    pub raw_bytes: u64,
    /// Entries evicted to respect the limits.
    pub evictions: u64,
    /// Bytes of records that were replaced or removed and wait to be
    /// reclaimed by compaction (included in `bytes`).
    pub dead_bytes: u64,
    /// Size of the index file (included in `bytes`).
    pub index_bytes: u64,
    /// Bytes given back to the file system by eviction and compaction.
    pub bytes_reclaimed: u64,
    /// Local misses the remote tier answered with a verified value (this
    /// process's, unlike the counters above).
    pub remote_hits: u64,
    /// Local misses the remote tier did not have, or had only damaged,
    /// foreign or unsigned (this process's).
    pub remote_misses: u64,
    /// Remote operations that failed or timed out, and objects refused
    /// (this process's).
    pub remote_errors: u64,
    /// Values this process wrote through to the remote tier.
    pub uploads: u64,
    /// Local misses the remote tier answered with a verified value,
    /// store-wide: every process's (`memo stats`).
    pub store_remote_hits: u64,
    /// Local misses the remote tier did not answer with one, store-wide.
    pub store_remote_misses: u64,
    /// Values written through to the remote tier, store-wide.
    pub store_uploads: u64,
}

/// The entries of one memoized function: from the helpers that
/// `#[memoize(helpers)]` generates (`<name>_stats()`), and in each
/// [`FunctionInfo`] of [`Store::functions`](crate::Store::functions).
///
/// Store-wide: every process's entries and hits count.
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FunctionStats {
    /// Live entries of the function (of every version of its code).
    pub entries: u64,
    /// Bytes they take on disk: records and blob files.
    pub bytes: u64,
    /// What `bytes` would be with their values stored uncompressed.
    pub raw_bytes: u64,
    /// Calls answered from the store, store-wide: the live entries' hits
    /// plus those of entries since evicted, replaced or removed, so hits
    /// and misses span the same time — since the function first ran with
    /// the store, or since the store was last cleared.
    pub hits: u64,
    /// Calls that computed the function, store-wide, over the same span as
    /// `hits`.
    pub misses: u64,
    /// What computing them took, as timed when each was stored.
    pub compute_time: std::time::Duration,
    /// Compute time the hits saved: each hit times the cost of the entry
    /// it hit, over the span of `hits` (evicted entries' share included).
    pub compute_saved: std::time::Duration,
    /// Entries stored by code (or a `version`) other than the one that
    /// ran last: they are never hit again unless that code comes back.
    pub stale_entries: u64,
    /// Bytes the stale entries take.
    pub stale_bytes: u64,
    /// When an entry of the function was last used (hit or stored), to
    /// the precision of the store's time ring (it errs early); `None`
    /// without entries.
    pub last_used: Option<std::time::SystemTime>,
}

/// A memoized function as the store knows it: what
/// [`Store::functions`](crate::Store::functions) lists.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionInfo {
    /// The function's path as written: `module::name`, or
    /// `module::Type::name` for a method (module as `module_path!()` gives
    /// it, `Type` as `type_name` gives it without its path).
    pub name: String,
    /// The `version` option of the code that ran last (empty without one).
    pub version: String,
    /// When it first ran with this store.
    pub first_run: std::time::SystemTime,
    /// When a process last started calling it (registered once per
    /// process).
    pub last_run: std::time::SystemTime,
    /// Since when its current code has been running.
    pub code_since: std::time::SystemTime,
    /// Its entries.
    pub stats: FunctionStats,
}

/// Which entries [`Store::select`](crate::Store::select) and
/// [`Store::remove_selected`](crate::Store::remove_selected) take: all of
/// them, narrowed by each condition set (they combine with "and").
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use memo_core::Selection;
///
/// // Entries of `model::fit` left by older code and unused for a week.
/// let sel = Selection::all()
///     .function("model::fit")
///     .stale()
///     .older_than(Duration::from_secs(7 * 86_400));
/// # let _ = sel;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub(crate) function: Option<String>,
    pub(crate) stale: bool,
    pub(crate) older_than: Option<std::time::Duration>,
}

impl Selection {
    /// Every entry.
    #[must_use]
    pub fn all() -> Selection {
        Selection::default()
    }

    /// Only the entries of the memoized function `name`: its full path
    /// (`lab::model::fit`) or a `::`-suffix of it that fits one function
    /// (`fit`, `model::fit`).
    #[must_use]
    pub fn function(mut self, name: impl Into<String>) -> Selection {
        self.function = Some(name.into());
        self
    }

    /// Only entries of memoized functions stored by code (or a `version`)
    /// other than the one that ran last. Entries of functions the store
    /// has no registry entry for are never taken as stale.
    #[must_use]
    pub fn stale(mut self) -> Selection {
        self.stale = true;
        self
    }

    /// Only entries last used (hit or stored) longer ago than `age`. The
    /// store's time ring dates uses only so precisely; an entry it cannot
    /// place before the cutoff for certain is not taken.
    #[must_use]
    pub fn older_than(mut self, age: std::time::Duration) -> Selection {
        self.older_than = Some(age);
        self
    }
}

/// What [`Store::verify`](crate::Store::verify) found.
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries whose value was read and checksummed.
    pub entries_checked: u64,
    /// Entries whose value is damaged (they read as misses).
    pub corrupt: u64,
    /// Segment files whose records were walked.
    pub segments_checked: u64,
    /// Damaged records that no entry uses (replaced or removed values, or a
    /// failed write's leftovers): harmless until compaction reclaims them,
    /// but damage in them means the disk is failing.
    pub damaged_dead_records: u64,
    /// One line per problem, naming the file and offset or key.
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// Whether nothing was found wrong.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.corrupt == 0 && self.problems.is_empty()
    }
}

/// What [`Store::push`](crate::Store::push) or
/// [`Store::pull`](crate::Store::pull) did: reported after each entry to
/// their progress callback, and returned at the end.
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transfer {
    /// Entries to consider: the local store's (push) or the remote's (pull).
    pub total: u64,
    /// Entries considered so far.
    pub done: u64,
    /// Entries copied to the other side.
    pub copied: u64,
    /// Entries the other side had already.
    pub present: u64,
    /// Entries that could not be copied (named in the `tracing` log):
    /// a failed or refused remote call, or a local store that cannot take
    /// the value.
    pub failed: u64,
    /// Value bytes copied.
    pub bytes: u64,
}
