//! The opened store: the [`Engine`] behind a `Store`, and opening it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::durable::GroupSync;
use super::{Durability, Options, adopt, read, recover};
use crate::blob::Blobs;
use crate::dir::Dir;
use crate::error::{Error, Result};
use crate::evict::Budget;
use crate::format::{self, BLOB_DIR, INDEX_FILE, LOCK_FILE, LOCKS_DIR, SEG_DIR, TMP_DIR};
use crate::index::{Current, Index};
use crate::lock::{self, Flights, Inflight, WriterLock};

use crate::remote::Remote;
use crate::segment::{Appender, Segments};

/// The opened store behind a `Store`: its directory handles, the mapped
/// index, this process's mappings of segments and blobs, and the locks.
pub(crate) struct Engine {
    /// The store's directories and this process's mappings of its files.
    pub(super) files: Files,
    pub(super) opts: Options,
    /// The table in use (`index/current.rs`).
    pub(super) index: Current<Index>,
    /// The writer lock, guarding the appender of the current segment.
    pub(super) writer: WriterLock<Appender>,
    /// Single flight: this process's gates and the cross-process locks
    /// (`compute.rs`, `flight_async.rs`).
    pub(super) flight: super::compute::SingleFlight,
    /// Damaged entries this process read, for its next write to remove.
    pub(super) damaged: Mutex<Vec<read::Damage>>,
    /// Durable appends waiting for their sync (`durable.rs`).
    pub(super) group: GroupSync,
    /// The table being built for the next growth (`grow.rs`).
    pub(super) prep: super::grow::Prepare,
    /// The shared tier behind this store, if any (`tier.rs`).
    pub(super) remote: Option<Arc<Remote>>,
    /// Values fetched from the remote tier waiting to be installed
    /// (`install.rs`).
    pub(super) installs: super::install::Installs,
    /// The memoized functions this store knows (`functions.rs`).
    pub(super) functions: super::functions::Functions,
    /// Names this opened store among the process's (`Engine::serial`).
    pub(super) serial: u64,
    /// A read-only store said that its misses are not stored.
    pub(super) said_not_stored: std::sync::Once,
}

/// A store's files as this process reaches them: the directory as the user
/// named it, handles of the store directory and its subdirectories (every
/// file is reached through one, never through a path: `dir.rs`), and the
/// segments and blobs with this process's mappings of them.
pub(crate) struct Files {
    pub(super) dir: PathBuf,
    pub(super) root: Dir,
    pub(super) tmp: Dir,
    pub(super) segs: Segments,
    pub(super) blobs: Blobs,
}

/// The next `Engine::serial`; 0 is never one.
static SERIAL: AtomicU64 = AtomicU64::new(1);

impl Engine {
    pub(super) fn open(dir: &Path, mut opts: Options) -> Result<Engine> {
        // A bad URL is refused before anything is created.
        let remote = if opts.remote.url.is_empty() {
            None
        } else {
            let mut cfg = opts.remote.clone();
            if let Some(m) = opts.max_bytes {
                cfg.max_value = m;
            }
            Some(Arc::new(Remote::open(cfg)?))
        };
        let root = Dir::open_root(dir, !opts.existing)?;
        // A directory this process cannot write is opened read-only rather
        // than not at all: a published result set, a read-only mount, a
        // colleague's cache still serve their hits.
        opts.read_only |= !root.writable();
        let read_only = opts.read_only;
        let sync = opts.durability == Durability::Sync;
        if opts.existing && !read_only && root.kind(LOCK_FILE)?.is_none() {
            return Err(Error::refused(
                dir,
                "not a memo store (it has no LOCK file); nothing was created there",
            ));
        }
        let lock_file = if read_only {
            adopt::check_read_only(&root)?
        } else {
            adopt::adopt(&root, sync)?
        };
        adopt::warn_if_world_writable(&root);
        adopt::warn_if_network_fs(&root);
        let sub = |name: &str| {
            root.open_dir(name, !read_only)?
                .ok_or_else(|| Error::io(root.child(name), std::io::ErrorKind::NotFound.into()))
        };
        let (seg, blob, locks, tmp) = (
            sub(SEG_DIR)?,
            sub(BLOB_DIR)?,
            sub(LOCKS_DIR)?,
            sub(TMP_DIR)?,
        );
        let writer = WriterLock::new(
            lock_file,
            root.child(LOCK_FILE),
            Appender::new(segment_limit(&opts)),
            read_only.then(|| dir.to_path_buf()),
        );
        let segs = Segments::new(seg);
        let blobs = Blobs::new(blob);
        let index = if read_only {
            Index::open_current(&root, true)?.ok_or_else(|| {
                Error::refused(
                    root.child(INDEX_FILE),
                    "memo cannot write here, so it opens the store read-only, and the store \
                     has no index to read (it is rebuilt from the segments by any process \
                     that can write there: open it once where it is writable)",
                )
            })?
        } else {
            Self::open_index(&root, &writer, &segs, &blobs, &tmp, sync)?
        };
        if !read_only {
            // Leftovers of processes that died: compute locks nobody holds,
            // and tmp files (the latter only under the writer lock, see
            // `sweep_unlocked`). Both are usually empty: one directory read
            // each.
            lock::sweep_unlocked(&locks, format::is_lock_name);
            if !tmp.own_files(format::is_tmp_name)?.is_empty() {
                let _w = writer.lock()?;
                lock::sweep_unlocked(&tmp, format::is_tmp_name);
            }
        }
        // A read-only store computes its misses without a flight: it cannot
        // store what it computes, so there is nothing for others to wait for.
        let flights = if opts.lock_files || read_only {
            None
        } else {
            Flights::open(&locks).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "memo: no flight file; a lock file per key instead");
                None
            })
        };
        let engine = Engine {
            files: Files {
                dir: dir.to_path_buf(),
                root,
                tmp,
                segs,
                blobs,
            },
            opts,
            index: Current::new(Arc::new(index)),
            writer,
            flight: super::compute::SingleFlight {
                local: Inflight::default(),
                tasks: super::flight_async::AsyncInflight::default(),
                cross: flights,
                locks,
            },
            damaged: Mutex::new(Vec::new()),
            group: GroupSync::default(),
            prep: super::grow::Prepare::default(),
            remote,
            installs: super::install::Installs::default(),
            functions: super::functions::Functions::default(),
            serial: SERIAL.fetch_add(1, Ordering::Relaxed),
            said_not_stored: std::sync::Once::new(),
        };
        engine.catch_up(sync)?;
        Ok(engine)
    }

    /// What the first writer to open a store after something happened
    /// does: a restart's replay, old costs' units, the durability mark.
    fn catch_up(&self, sync: bool) -> Result<()> {
        if self.read_only() {
            // Nothing of what follows can be written; a restart's replay,
            // old costs' units and durability marks wait for a writer.
            return Ok(());
        }
        let idx = self.index()?;
        if !crate::index::boot::same_boot(&idx) {
            self.after_restart()?;
        }
        if idx.word(format::hdr::COST_UNITS) == 0 {
            // A table of a memo from before 2026-12: costs in plain
            // microseconds, re-encoded once (`format::cost_word`).
            let _w = self.writer.lock()?;
            self.writer_index()?.convert_costs();
        }
        if sync && idx.word(format::hdr::DURABLE) == 0 {
            self.start_durable()?;
        }
        Ok(())
    }

    /// Opens the index of a store this process can write; builds it from
    /// the segments if there is none or it is damaged.
    fn open_index(
        root: &Dir,
        writer: &WriterLock<Appender>,
        segs: &Segments,
        blobs: &Blobs,
        tmp: &Dir,
        sync: bool,
    ) -> Result<Index> {
        Ok(match Index::open_current(root, false) {
            Ok(Some(i)) => i,
            // First open, a deleted index, or a damaged one: build it from
            // the segments under the writer lock, so concurrent openers
            // build it once.
            Ok(None) | Err(Error::Corrupt { .. }) => {
                let _w = writer.lock()?;
                match Index::open_current(root, false) {
                    Ok(Some(i)) => i,
                    Ok(None) => recover::rebuild(segs, blobs, tmp, root, sync)?,
                    // Only a memo index (by its magic) is set aside: a foreign
                    // file that happens to be called `index` is not touched.
                    Err(e @ Error::Corrupt { .. }) if Index::has_magic(root, INDEX_FILE) => {
                        recover::set_aside_damaged_index(root, &e)?;
                        recover::rebuild(segs, blobs, tmp, root, sync)?
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        })
    }

    /// Whether the store is open read-only (`StoreBuilder::read_only`, or
    /// a directory this process cannot write).
    pub(crate) fn read_only(&self) -> bool {
        self.opts.read_only
    }

    /// Says once that a read-only store computes misses without storing
    /// them (`report::misses_not_stored`).
    pub(super) fn say_not_stored(&self) {
        self.said_not_stored
            .call_once(|| crate::report::misses_not_stored(&self.files.dir));
    }

    /// Whether puts must survive power loss.
    pub(super) fn sync(&self) -> bool {
        self.opts.durability == Durability::Sync
    }

    /// Whether any limit is set, so writers must look after each put.
    pub(super) fn has_limits(&self) -> bool {
        let o = &self.opts;
        o.max_bytes.is_some() || o.max_entries.is_some() || o.max_age.is_some()
    }
}

/// Segment size for a store with these options (see `Budget::SEGMENT_DIV`).
fn segment_limit(opts: &Options) -> u64 {
    opts.max_bytes.map_or(format::SEGMENT_SIZE, |m| {
        (m / Budget::SEGMENT_DIV).max(Budget::SEGMENT_FLOOR)
    })
}
