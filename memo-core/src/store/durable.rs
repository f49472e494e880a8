//! Durable puts (`Durability::Sync`) with one sync each, shared between
//! concurrent puts, and the replay that makes that enough after a restart.
//!
//! A durable put appends its record, publishes its slot, releases the
//! writer lock and then waits until the segment that holds the record is
//! synced: one `fdatasync` on the common path. Threads of one process that
//! finish together share it (group commit): a thread that finds a sync
//! running waits for it, and if that one started before its record was
//! written, runs the next one for everyone then waiting. When the last sync
//! covered several puts, the next leader first waits a fraction of a sync
//! for as many to append, so the batch does not split in two. Processes
//! sync on their own; the file system merges their journal commits.
//!
//! The index is not synced per put. After a power loss, pages of the
//! mapped index may be older than the segments, and what they lost is in
//! the segments after the last checkpoint:
//!
//! - a **checkpoint** (`msync` of the index, then `CHECKPOINT` advanced to a
//!   position every earlier slot change precedes) is taken by a durable
//!   writer when it first appends to a new segment, outside the lock, and
//!   when a table is installed;
//! - every table records the **boot id** of the system it was last known
//!   to agree with the segments on. The first process to open it after a
//!   restart replays the records from `CHECKPOINT` (in a store no durable
//!   writer used, only the last segment, to find the true end of the log).
//!
//! A restart is the only way pages of a mapped file are lost without the
//! file system reporting an error, so the boot id tells exactly when the
//! replay is needed. Where it cannot be read (not Linux), durable puts sync
//! the index slot too, as before.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Engine;
use crate::error::{IoContext, Result};
use crate::format::{SEG_HEADER_LEN, hdr, loc};
use crate::index::Index;
use crate::sync::{Condvar, Mutex, MutexGuard, unpoison};

/// This process's durable appends not yet known to be on disk.
#[derive(Default)]
pub(crate) struct GroupSync {
    state: Mutex<SyncState>,
    done: Condvar,
    /// Signalled by every append, for a leader gathering a batch.
    appended: Condvar,
}

#[derive(Default)]
struct SyncState {
    /// End (a location word) of the last record this process appended, and
    /// the segment holding it. Records in earlier segments were synced when
    /// the appender left them (`Appender::switch`).
    last: Option<(u64, Arc<File>, PathBuf)>,
    /// Everything this process appended before this location is on disk.
    synced: u64,
    running: bool,
    /// Durable appends this process made, ever.
    appends: u64,
    /// `appends` when the last sync started.
    synced_appends: u64,
    /// Appends the last sync covered, and how long it took.
    batch: u64,
    took: Duration,
}

/// The longest a leader waits for its batch to gather.
const GATHER_MAX: Duration = Duration::from_micros(300);

/// What a durable write still owes once the writer lock is released.
#[must_use]
pub(super) struct Owed {
    /// End of the write's record (a location word).
    pub end: u64,
    /// A table to checkpoint at a position, when one is due.
    pub checkpoint: Option<(Arc<Index>, u64)>,
}

impl GroupSync {
    /// Notes an append ending at `end` in `file`; caller holds the writer
    /// lock, so appends are noted in order.
    pub(super) fn appended(&self, end: u64, file: Arc<File>, path: PathBuf) {
        let mut st = unpoison(self.state.lock());
        st.last = Some((end, file, path));
        st.appends += 1;
        drop(st);
        self.appended.notify_one();
    }

    /// Returns once every record this process appended up to `end` is on
    /// disk, syncing it unless a sync already under way covers it.
    ///
    /// Lock rule: `state` is a leaf, never held across the sync itself. A
    /// waiter waits for a sync that is running, which returns or fails in
    /// the time the file system takes; it is never left waiting with no
    /// sync running (the runner clears `running` and wakes everyone on
    /// every path, failure included).
    pub(super) fn wait(&self, end: u64) -> Result<()> {
        self.wait_by(end, |file, path| file.sync_data().at(path))
    }

    /// As `wait`, with `sync` making a file's appended data durable.
    fn wait_by(
        &self,
        end: u64,
        sync: impl Fn(&File, &std::path::Path) -> Result<()>,
    ) -> Result<()> {
        let mut st = unpoison(self.state.lock());
        loop {
            if st.synced >= end {
                return Ok(());
            }
            if st.running {
                st = unpoison(self.done.wait(st));
                continue;
            }
            st.running = true;
            if st.batch > 1 {
                // Other threads put durably at the same moment, and the
                // ones the last sync released are about to append again:
                // give them a fraction of a sync to do so, so this sync
                // covers them instead of leaving them the next one. Without
                // it 4 threads averaged 1.8 puts per sync; with it 3 to 4,
                // and 15-25% more puts/s (CI machine, 2026-12-01).
                let want = st.appends + st.batch - 1;
                let window = (st.took / 8).min(GATHER_MAX);
                st = self.gather(st, want, window);
            }
            let Some((upto, file, path)) = st.last.clone() else {
                st.running = false;
                self.done.notify_all();
                return Ok(());
            };
            let at_start = st.appends;
            drop(st);
            let t = Instant::now();
            let r = sync(&file, &path);
            let took = t.elapsed();
            st = unpoison(self.state.lock());
            st.running = false;
            if r.is_ok() {
                st.synced = st.synced.max(upto);
                st.batch = at_start - st.synced_appends;
                st.synced_appends = at_start;
                st.took = took;
            }
            self.done.notify_all();
            r?;
        }
    }

    /// Waits up to `window` for appends to reach `want`, so one sync covers
    /// a whole batch. Bounded by `window` (at most `GATHER_MAX`).
    #[cfg(not(loom))]
    fn gather<'a>(
        &self,
        st: MutexGuard<'a, SyncState>,
        want: u64,
        window: Duration,
    ) -> MutexGuard<'a, SyncState> {
        self.appended
            .wait_timeout_while(st, window, |s| s.appends < want)
            .map_or_else(|e| e.into_inner().0, |(g, _)| g)
    }

    /// loom has no timed waits (its `wait_timeout` never times out): the
    /// model checks the group commit without the gathering pause, which
    /// changes how many puts a sync covers, never whether each is covered.
    #[cfg(loom)]
    #[allow(clippy::unused_self, reason = "the same signature as the real one")]
    fn gather<'a>(
        &self,
        st: MutexGuard<'a, SyncState>,
        _want: u64,
        _window: Duration,
    ) -> MutexGuard<'a, SyncState> {
        st
    }
}

impl Engine {
    /// After a write appended up to the append position (caller holds the
    /// writer lock): for a durable store, what it owes once the lock is
    /// released. The append is noted for the group sync, and a checkpoint
    /// is due when it went to a segment the last checkpoint is before.
    /// Without a boot id to detect restarts, `slot` (or, for `None`, the
    /// whole table) is synced here instead.
    pub(super) fn owed(
        &self,
        w: &crate::segment::Appender,
        idx: &Arc<Index>,
        slot: Option<usize>,
    ) -> Result<Option<Owed>> {
        if !self.sync() {
            return Ok(None);
        }
        if crate::index::boot::boot_id().is_none() {
            match slot {
                Some(slot) => idx.flush_slot(slot)?,
                None => idx.flush_all()?,
            }
        }
        let end = idx.append_pos().word();
        if let Some((seg, file)) = w.file() {
            self.group.appended(end, file, self.files.segs.path(seg));
        }
        let seg = loc::decode(end).map_or(0, |(s, _)| s);
        let start = loc::encode(seg, SEG_HEADER_LEN as u64);
        let checkpoint =
            (seg != 0 && idx.word(hdr::CHECKPOINT) < start).then(|| (idx.clone(), start));
        Ok(Some(Owed { end, checkpoint }))
    }

    /// Pays what a durable write owes, once the writer lock is released.
    pub(super) fn settle(&self, owed: Option<Owed>) -> Result<()> {
        let Some(owed) = owed else { return Ok(()) };
        self.group.wait(owed.end)?;
        if let Some((idx, at)) = owed.checkpoint {
            checkpoint(&idx, at)?;
        }
        Ok(())
    }
}

/// Makes every slot change before `at` durable in `idx`, then records `at`
/// as its checkpoint. `at` must be a position every slot change made so far
/// for records before it precedes: the start of a segment a writer has
/// appended to (all earlier segments were finished under the lock), or the
/// append position read under the lock.
pub(crate) fn checkpoint(idx: &Index, at: u64) -> Result<()> {
    if idx.word(hdr::CHECKPOINT) >= at {
        return Ok(());
    }
    idx.flush_all()?;
    idx.raise(hdr::CHECKPOINT, at);
    Ok(())
}

/// The group commit under the model checker (`--cfg loom`, run by
/// `scripts/test.sh`): every interleaving of three durable writers.
#[cfg(all(test, loom))]
mod loom_model {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::GroupSync;
    use crate::sync::Mutex;

    /// Three writers append in order (under the writer lock, as puts do) and
    /// wait for their sync: each returns only after a sync that started
    /// after its append finished, and none waits forever (loom reports a
    /// deadlock as a failure).
    #[test]
    fn loom_group_commit_covers_every_append_and_never_stalls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let file = Arc::new(std::fs::File::create(&path).unwrap());
        loom::model(move || {
            let group = Arc::new(GroupSync::default());
            // What the "disk" holds: the end of the last append a finished
            // sync covered.
            let durable = Arc::new(AtomicU64::new(0));
            // The append position, advanced under the writer lock.
            let writer = Arc::new(Mutex::new(0_u64));
            let workers: Vec<_> = (0..3)
                .map(|_| {
                    let (group, durable, writer) = (group.clone(), durable.clone(), writer.clone());
                    let (file, path) = (file.clone(), path.clone());
                    loom::thread::spawn(move || {
                        let end = {
                            let mut w = writer.lock().unwrap();
                            *w += 10;
                            group.appended(*w, file.clone(), path.clone());
                            *w
                        };
                        group
                            .wait_by(end, |_, _| {
                                // A sync makes everything appended before
                                // it started durable: the writer position
                                // now is at least that.
                                let upto = *writer.lock().unwrap();
                                loom::thread::yield_now();
                                durable.fetch_max(upto, Ordering::SeqCst);
                                Ok(())
                            })
                            .unwrap();
                        assert!(
                            durable.load(Ordering::SeqCst) >= end,
                            "a durable put returned before its record was synced"
                        );
                    })
                })
                .collect();
            for w in workers {
                w.join().unwrap();
            }
        });
    }
}
