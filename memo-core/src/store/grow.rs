//! Growing the index while the writers keep going; `index/grow.rs` has the
//! table side and why lookups stay exact.
//!
//! 1. When a table is three quarters full, a put starts building its
//!    successor in a background thread, off the writer lock:
//!    `tmp/index.next.<table id>`, allocated whole and its magic written
//!    last. One process builds it (the name is created exclusively).
//! 2. When the table reaches its load limit, the put that finds it full
//!    takes that file (if it is not ready yet, the table may fill a little
//!    more while it waits), links `index` as `index.prev` and swaps the new
//!    table's name with `index`: a few syscalls under the lock, whatever
//!    the size, and `index` names a whole table at every moment.
//! 3. Every put then moves at least `STEP` slots of `index.prev` into the
//!    new table before adding its own entry, more if the new table would
//!    otherwise fill before the move ends.
//! 4. The put that moves the last slot removes `index.prev`. A durable
//!    store first syncs the new table (after the lock) and checkpoints it;
//!    until then the old table stays, and a restart rebuilds the index
//!    from the segments.

use std::fs::File;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::Engine;
use super::account::Publish;
use super::write::{CARRY_ALL, tmp_index_name};
use crate::error::{Error, Result};
use crate::format::{self, INDEX_FILE, PREV_INDEX_FILE, hdr};
use crate::index::Index;

/// Old slots a put moves at least, while a growth is in progress: a few
/// microseconds, and a growth of a table of C slots ends after C / 64 puts.
const STEP: usize = 64;
/// The load (entries and tombstones over slots) at which the next table is
/// prepared: 0.75, ahead of the limit of 0.8.
const PREPARE_AT: (u64, u64) = (3, 4);
/// The load a table may reach while the table for its growth is still
/// being prepared; past it, a put builds one itself.
const WAIT_UNTIL: (u64, u64) = (17, 20);

/// This process's preparation of the next table.
#[derive(Default)]
pub(super) struct Prepare {
    /// The table it is for (its `TABLE_ID`).
    for_table: AtomicU64,
    state: Arc<AtomicU8>,
    /// The prepared table, mapped with its pages already writable, and
    /// its file, held locked until a growth takes it, so that a sweep of
    /// `tmp/` by another process leaves it alone.
    held: Arc<Mutex<Option<(File, Index)>>>,
}

// `Prepare::state`; 0 before the first preparation.
const RUNNING: u8 = 1;
const READY: u8 = 2;
const FAILED: u8 = 3;

/// A growth whose last slot moved in a durable store: what the put that
/// finished it still owes once the writer lock is released.
pub(super) struct Finished {
    idx: Arc<Index>,
    at: u64,
}

impl Engine {
    /// Starts building the table for the next growth when `idx` nears its
    /// load limit: a thread does the work, so under the writer lock this
    /// costs two header loads, and a thread spawn once per growth.
    pub(super) fn prepare_growth(&self, idx: &Index) {
        if idx.moving().is_some() || idx.fits(1, PREPARE_AT.0, PREPARE_AT.1) {
            return;
        }
        let id = idx.word(hdr::TABLE_ID);
        if self.prep.for_table.swap(id, Ordering::AcqRel) == id {
            return;
        }
        // Sized for the entries it will have at the limit: puts from here
        // on mostly add entries.
        let at_limit = (idx.capacity() as u64 * 4 / 5).saturating_sub(idx.word(hdr::TOMBSTONES));
        let cap = Index::capacity_for(at_limit.saturating_add(1));
        let (tmp, name) = (self.files.tmp.clone(), format::next_index_name(id));
        let (state, held) = (self.prep.state.clone(), self.prep.held.clone());
        state.store(RUNNING, Ordering::Release);
        let spawned = std::thread::Builder::new()
            .name("memo-index-grow".into())
            .spawn(move || {
                let made = Index::prepare(&tmp, &name, cap)
                    .and_then(|file| Ok((Index::open(&tmp, &name)?, file)));
                let done = match made {
                    Ok((Some(t), file)) => {
                        // The first write to each page of a mapping goes
                        // through the file system (`page_mkwrite`): a
                        // quarter of a growing store's put time, done here
                        // instead of in the puts that fill the table.
                        t.populate();
                        *held.lock().unwrap_or_else(PoisonError::into_inner) = Some((file, t));
                        READY
                    }
                    Ok((None, _)) => FAILED,
                    Err(Error::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::AlreadyExists =>
                    {
                        // Another process builds it.
                        FAILED
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "memo: preparing the next index table failed; the growth will build it");
                        let _ = tmp.remove(&name);
                        FAILED
                    }
                };
                state.store(done, Ordering::Release);
            });
        if spawned.is_err() {
            self.prep.state.store(FAILED, Ordering::Release);
        }
    }

    /// The table prepared for `old`'s growth, if it is whole and large
    /// enough for `entries` with room to spare; an unfit one is removed.
    fn take_prepared(&self, old: &Index, entries: u64) -> Option<Index> {
        let id = old.word(hdr::TABLE_ID);
        let ours = self.prep.for_table.load(Ordering::Acquire) == id;
        if ours && self.prep.state.load(Ordering::Acquire) == RUNNING {
            return None;
        }
        let name = format::next_index_name(id);
        let mine = self
            .prep
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let t = match mine {
            // Ours, mapped and populated, if its name still names it.
            Some((file, t)) if ours && self.files.tmp.names(&name, &file) => t,
            // Not there, or still being written by another process: none.
            _ => Index::open(&self.files.tmp, &name).ok()??,
        };
        // At most 0.75 full once every entry is in, and not oversized.
        let cap = t.capacity() as u64;
        let need = entries.saturating_add(1);
        if cap * 3 >= need * 4 && cap <= 2 * Index::capacity_for(need) && t.word(hdr::ENTRIES) == 0
        {
            return Some(t);
        }
        let _ = self.files.tmp.remove(&name);
        None
    }

    /// Starts a growth of the full table `old`: a table of 0.6 load takes
    /// its place and the move begins. `None` when the table prepared for it
    /// is still being built and `old` may fill some more meanwhile. Caller
    /// holds the writer lock.
    pub(super) fn grow(&self, old: &Arc<Index>) -> Result<Option<Arc<Index>>> {
        if old.moving().is_some() {
            // The new table filled before the move ended, which only counts
            // that were off can cause: finish that growth first.
            let p = Publish::begin(old);
            old.move_step(usize::MAX);
            p.unchanged();
            if self.sync() {
                old.flush_all()?;
            }
            self.files.root.remove(PREV_INDEX_FILE)?;
        }
        let entries = old.word(hdr::ENTRIES);
        let new = match self.take_prepared(old, entries) {
            Some(t) => t,
            None if old.fits(1, WAIT_UNTIL.0, WAIT_UNTIL.1) => {
                if self.prep.for_table.load(Ordering::Acquire) != old.word(hdr::TABLE_ID)
                    || self.prep.state.load(Ordering::Acquire) == FAILED
                {
                    self.prep.for_table.store(0, Ordering::Release);
                    self.prepare_growth(old);
                }
                return Ok(None);
            }
            None => {
                let cap = Index::capacity_for(entries.saturating_add(1));
                Index::create(&self.files.tmp, &tmp_index_name(), cap, None)?
            }
        };
        let mut new = new;
        crate::index::boot::stamp_boot(&new);
        new.carry(old, &CARRY_ALL);
        new.set(hdr::TOMBSTONES, 0);
        if !new.begin_move(old.clone()) {
            // No empty slot to start a move from: copy it whole.
            old.copy_into(&new);
            return self.install(new, old).map(Some);
        }
        // The old table gets its second name first, so that `index` names
        // a whole table at every moment; a leftover second name of an
        // earlier growth (a writer died) goes first.
        self.files.root.remove(PREV_INDEX_FILE)?;
        self.files.root.link(INDEX_FILE, PREV_INDEX_FILE)?;
        let tmp_name = new.file_name().to_owned();
        if let Err(e) = new.swap_into(&self.files.tmp, &self.files.root, INDEX_FILE) {
            let _ = self.files.root.remove(PREV_INDEX_FILE);
            let _ = self.files.tmp.remove(&tmp_name);
            return Err(e);
        }
        old.set(hdr::REPLACED, 1);
        let new = Arc::new(new);
        self.index.install(new.clone());
        tracing::debug!(
            from = old.capacity(),
            to = new.capacity(),
            "memo: the index grows"
        );
        Ok(Some(new))
    }

    /// One step of a growth in progress, before a put adds its entry: at
    /// least `STEP` old slots, and enough that the move ends while the new
    /// table has room. Caller holds the writer lock.
    pub(super) fn move_some(&self, idx: &Arc<Index>) -> Result<Option<Finished>> {
        let Some(m) = idx.moving() else {
            return Ok(None);
        };
        let left = m.left();
        let budget = STEP.max(left / (idx.room() as usize / 2).max(1) + 1);
        let p = Publish::begin(idx);
        let done = idx.move_step(budget);
        p.unchanged();
        if done {
            self.finish_move(idx)
        } else {
            Ok(None)
        }
    }

    /// Moves every slot still to move; `Store::trim` and repairs use it.
    /// Caller holds the writer lock.
    pub(super) fn move_all(&self, idx: &Arc<Index>) -> Result<Option<Finished>> {
        if idx.moving().is_none() {
            return Ok(None);
        }
        let p = Publish::begin(idx);
        idx.move_step(usize::MAX);
        p.unchanged();
        self.finish_move(idx)
    }

    /// Every slot moved: the old table goes, at once unless the new one
    /// must be synced first (then after the lock, in `settle_growth`).
    fn finish_move(&self, idx: &Arc<Index>) -> Result<Option<Finished>> {
        if self.sync() {
            return Ok(Some(Finished {
                idx: idx.clone(),
                at: idx.append_pos().word(),
            }));
        }
        self.files.root.remove(PREV_INDEX_FILE)?;
        Ok(None)
    }

    /// After the lock, in a durable store: syncs the table a growth
    /// finished, checkpoints it, and then removes the old table, unless
    /// another growth has taken its name meanwhile.
    pub(super) fn settle_growth(&self, f: Option<Finished>) -> Result<()> {
        let Some(f) = f else { return Ok(()) };
        // Whatever its checkpoint says: one taken during the move did not
        // cover the slots moved since.
        f.idx.flush_all()?;
        f.idx.raise(hdr::CHECKPOINT, f.at);
        let _w = self.writer.lock()?;
        let cur = self.index()?;
        if cur.word(hdr::TABLE_ID) == f.idx.word(hdr::TABLE_ID) && !cur.header_says_moving() {
            self.files.root.remove(PREV_INDEX_FILE)?;
        }
        Ok(())
    }
}
