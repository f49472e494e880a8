//! The write path: everything here runs under the writer lock, except
//! encoding values and writing blob files, which happen before it is taken.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::Engine;
use super::account::Publish;
use crate::Key;
use crate::blob::{self, Encoded, Spill, TmpBlob};
use crate::codec::{Bincode, Codec, RAW_ID};
use crate::compress::{self, Compression};
use crate::error::{Error, Result};
use crate::format::{
    self, BLOB_HEADER_LEN, FLAG_BLOB, FLAG_TOMBSTONE, INLINE_MAX, MIN_CAPACITY, VALUE_MAX,
    encode_blob_ptr, hdr, loc,
};
use crate::index::{Index, Probe, Snap};
use crate::segment::{self, Append, Appender, Read, Record, RecordParts, Segments};

/// Header words a grown table carries over from the one it replaces.
pub(super) const CARRY_ALL: [usize; 25] = [
    hdr::ENTRIES,
    hdr::SAVED,
    hdr::CHECKPOINT,
    hdr::DURABLE,
    hdr::TICK,
    hdr::LFU_AGED,
    hdr::GDSF_CLOCK,
    hdr::RECLAIMED,
    hdr::AGE_SCAN,
    hdr::TIME_RING_LEN,
    hdr::TIME_RING_SPACING,
    hdr::CLOCK_RING_LEN,
    hdr::CUR_SEG,
    hdr::CUR_OFF,
    hdr::NEXT_SEG,
    hdr::LIVE_BYTES,
    hdr::DEAD_BYTES,
    hdr::EVICTIONS,
    hdr::HITS,
    hdr::MISSES,
    hdr::REMOTE_HITS,
    hdr::REMOTE_MISSES,
    hdr::UPLOADS,
    hdr::EPOCH,
    hdr::TOMBSTONES,
];
/// Header words an emptied (cleared) table keeps.
const CARRY_CLEAR: [usize; 11] = [
    hdr::DURABLE,
    hdr::TICK,
    hdr::RECLAIMED,
    hdr::NEXT_SEG,
    hdr::EVICTIONS,
    hdr::HITS,
    hdr::MISSES,
    hdr::REMOTE_HITS,
    hdr::REMOTE_MISSES,
    hdr::UPLOADS,
    hdr::EPOCH,
];

/// A value ready to publish.
enum Payload<'a> {
    Inline(&'a [u8]),
    Blob(TmpBlob),
}

/// Whether a put replaces an entry its key already has.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Replace {
    Always,
    Never,
}

/// What a put asks of compression (`compress.rs`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Pack {
    /// The store's setting (`StoreBuilder::compress`, `MEMO_COMPRESS`),
    /// unless the value holds arrays read in place (`views`): those stay
    /// uncompressed, so hits stay views of the file.
    Store { views: bool },
    /// What the function asked for (`#[memoize(compress = ...)]`), arrays
    /// or not; `Compression::None` keeps its values raw in any store.
    Explicit(Compression),
}

impl Engine {
    /// The zstd level a put asking `pack` compresses at, if any.
    fn level(&self, pack: Pack) -> Option<i32> {
        match pack {
            Pack::Store { views: true } => None,
            Pack::Store { views: false } => self.opts.compress.level(),
            Pack::Explicit(c) => c.level(),
        }
    }

    pub(crate) fn put_value<V: Serialize + ?Sized>(
        &self,
        key: &Key,
        value: &V,
        cost: u32,
    ) -> Result<()> {
        self.put_value_as(key, value, cost, None)
    }

    /// As `put_value`, compressed as `explicit` says, else as the store's
    /// setting says for values without arrays.
    pub(crate) fn put_value_as<V: Serialize + ?Sized>(
        &self,
        key: &Key,
        value: &V,
        cost: u32,
        explicit: Option<Compression>,
    ) -> Result<()> {
        let mut spill = Spill::new(&self.files.tmp, *key);
        let views = Bincode::encode(key, value, &mut spill)?;
        let level = self.level(explicit.map_or(Pack::Store { views }, Pack::Explicit));
        match (spill.finish(Bincode::ID, self.sync())?, level) {
            (Encoded::Inline(v), level) => self.put_packed(key, Bincode::ID, &v, cost, level),
            (Encoded::Blob(b), None) => {
                self.publish(key, Bincode::ID, Payload::Blob(b), cost, 0, Replace::Always)
            }
            (Encoded::Blob(b), Some(level)) => {
                // Large values are written out as they are encoded (never
                // held twice in memory); compression reads the file back
                // through a mapping, and the raw file stays if it does not pay.
                let region = b.map()?;
                let raw = region.get(BLOB_HEADER_LEN, b.len as usize).unwrap_or(&[]);
                match compress::pack(level, raw) {
                    Some(packed) => {
                        drop(b);
                        self.put_stored(key, Bincode::ID | compress::COMPRESSED, &packed, cost)
                    }
                    None => {
                        self.publish(key, Bincode::ID, Payload::Blob(b), cost, 0, Replace::Always)
                    }
                }
            }
        }
    }

    pub(super) fn put_raw(&self, key: &Key, value: &[u8], cost: u32) -> Result<()> {
        let level = self.level(Pack::Store { views: false });
        self.put_packed(key, RAW_ID, value, cost, level)
    }

    /// Stores bytes a binding's codec (`codec`) encoded, compressed as
    /// `pack` says.
    pub(crate) fn put_encoded(
        &self,
        key: &Key,
        codec: u8,
        value: &[u8],
        cost: u32,
        pack: Pack,
    ) -> Result<()> {
        self.put_packed(key, codec, value, cost, self.level(pack))
    }

    /// Stores `value` (encoded by `codec`), compressed at `level` where
    /// that pays.
    fn put_packed(
        &self,
        key: &Key,
        codec: u8,
        value: &[u8],
        cost: u32,
        level: Option<i32>,
    ) -> Result<()> {
        match level.and_then(|l| compress::pack(l, value)) {
            Some(packed) => self.put_stored(key, codec | compress::COMPRESSED, &packed, cost),
            None => self.put_stored(key, codec, value, cost),
        }
    }

    /// Stores bytes in their stored form (`codec` says whether they are
    /// compressed), as a codec encoded them (values from the remote tier
    /// go through `put_stored_absent`).
    pub(crate) fn put_stored(&self, key: &Key, codec: u8, value: &[u8], cost: u32) -> Result<()> {
        self.put_stored_as(key, codec, value, cost, Replace::Always)
    }

    /// As `put_stored`, unless `key` has an entry by the time the writer
    /// lock is held: a value fetched from the remote and installed in the
    /// background never replaces one put since (`install.rs`).
    pub(super) fn put_stored_absent(
        &self,
        key: &Key,
        codec: u8,
        value: &[u8],
        cost: u32,
    ) -> Result<()> {
        self.put_stored_as(key, codec, value, cost, Replace::Never)
    }

    fn put_stored_as(
        &self,
        key: &Key,
        codec: u8,
        value: &[u8],
        cost: u32,
        replace: Replace,
    ) -> Result<()> {
        if value.len() as u64 > VALUE_MAX {
            return Err(Error::TooLarge {
                key: *key,
                len: value.len() as u64,
                limit: VALUE_MAX,
            });
        }
        let saved = super::account::saving(codec, compress::raw_len(value), value.len() as u64);
        if value.len() < INLINE_MAX {
            return self.publish(key, codec, Payload::Inline(value), cost, saved, replace);
        }
        let blob = blob::write_tmp(&self.files.tmp, key, codec, value, self.sync())?;
        self.publish(key, codec, Payload::Blob(blob), cost, saved, replace)
    }

    /// Appends `bytes` (whole records, none of them aligned) to the
    /// current segment; their location. Caller holds the writer lock.
    pub(super) fn append(&self, w: &mut Appender, idx: &Index, bytes: &[u8]) -> Result<u64> {
        let what = Append::Records(bytes);
        let (at, _) = w.append(
            &self.files.segs,
            &idx.append_pos(),
            &self.files.tmp,
            &what,
            self.sync(),
        )?;
        Ok(at)
    }

    /// Appends one record, after a pad record if its payload must be
    /// aligned: its location and the pad's size (dead bytes). Caller holds
    /// the writer lock.
    pub(super) fn append_record(
        &self,
        w: &mut Appender,
        idx: &Index,
        rec: &RecordParts<'_>,
    ) -> Result<(u64, u64)> {
        let what = Append::Record(rec);
        w.append(
            &self.files.segs,
            &idx.append_pos(),
            &self.files.tmp,
            &what,
            self.sync(),
        )
    }

    /// Appends the record, points the key's slot at it and settles the
    /// accounting: the publish step, the only one under the lock.
    fn publish(
        &self,
        key: &Key,
        codec: u8,
        payload: Payload<'_>,
        cost: u32,
        saved: u64,
        replace: Replace,
    ) -> Result<()> {
        let ptr;
        let (rec, mut blob) = match payload {
            Payload::Inline(p) => (RecordParts::new(key, codec, 0, p), None),
            Payload::Blob(b) => {
                ptr = encode_blob_ptr(b.id, b.len);
                (RecordParts::new(key, codec, FLAG_BLOB, &ptr), Some(b))
            }
        };
        let len = blob.as_ref().map_or(rec.payload_len(), |b| b.len as usize);
        let size = rec.size() as u64 + blob.as_ref().map_or(0, TmpBlob::file_size);
        if let Some(limit) = self.opts.max_bytes
            && size > limit
        {
            // Storing it would evict everything else and still not fit.
            return Err(Error::TooLarge {
                key: *key,
                len: size,
                limit,
            });
        }
        let mut w = self.writer.lock()?;
        let idx = self.writer_index()?;
        self.prepare_growth(&idx);
        let finished = self.move_some(&idx)?;
        let idx = self.room_for_one(idx)?;
        if replace == Replace::Never
            && matches!(find(&self.files.segs, &idx, key)?, Probe::Found(_))
        {
            // A temporary blob is removed as it drops.
            drop(w);
            self.settle_growth(finished)?;
            return Ok(());
        }
        if let Some(b) = &mut blob {
            self.files.blobs.install(b, key, self.sync())?;
        }
        let mut p = Publish::begin(&idx);
        let loc = match self.append_record(&mut w, &idx, &rec) {
            Ok((l, pad)) => {
                p.dead(pad);
                l
            }
            Err(e) => {
                // Nothing points at the bytes: the store is as it was. A blob
                // already renamed in stays an unreferenced file.
                p.unchanged();
                if let Some(b) = &blob {
                    self.files.blobs.unlink(key, b.id);
                }
                return Err(e);
            }
        };
        let (slot, old) = match find(&self.files.segs, &idx, key)? {
            Probe::Found(found) => (found.0, Some(found.1)),
            Probe::Absent { free: Some(i) } => (i, None),
            Probe::Absent { free: None } => {
                p.unchanged();
                return Err(Error::corrupt(
                    idx.path(),
                    0,
                    "index table has no free slot",
                ));
            }
        };
        let reused_tombstone = old.is_none() && idx.read(slot).loc == loc::TOMBSTONE;
        if old.is_some() {
            self.retire_stats(&idx, slot, key);
        }
        idx.write(
            slot,
            Snap {
                tag: key.tag32(),
                loc,
                len: u32::try_from(len).unwrap_or(u32::MAX),
            },
        );
        idx.reset_stats(slot, idx.tick(), 0, cost);
        p.live(size);
        p.saved(saved);
        let old_blob = if let Some(o) = &old {
            p.retire(o, self.saved_by(o))
        } else {
            p.added(reused_tombstone);
            None
        };
        p.commit();
        let owed = self.owed(&w, &idx, Some(slot))?;
        let unlinks = self.after_publish(&mut w, &idx, slot);
        drop(w);
        if let Some(id) = old_blob {
            self.files.blobs.unlink(key, id);
        }
        self.unlink_all(unlinks);
        self.settle_growth(finished)?;
        self.settle(owed)
    }

    /// `idx`, or the table it grew into if it had no room for one more
    /// key. Caller holds the writer lock.
    fn room_for_one(&self, idx: Arc<Index>) -> Result<Arc<Index>> {
        if idx.has_room() {
            return Ok(idx);
        }
        // The counters come from disk: ones claiming more than the table
        // holds are recounted before they size a new table.
        if idx
            .word(hdr::ENTRIES)
            .saturating_add(idx.word(hdr::TOMBSTONES))
            > idx.capacity() as u64
        {
            let (live, tombstones) = idx.count_slots();
            idx.set(hdr::ENTRIES, live);
            idx.set(hdr::TOMBSTONES, tombstones);
        }
        if !idx.has_room()
            && let Some(new) = self.grow(&idx)?
        {
            return Ok(new);
        }
        Ok(idx)
    }

    /// Unlinks blob files whose entries are gone, once the lock is released.
    pub(super) fn unlink_all(&self, unlinks: Vec<(Key, u64)>) {
        for (key, id) in unlinks {
            self.files.blobs.unlink(&key, id);
        }
    }

    pub(super) fn remove(&self, key: &Key) -> Result<bool> {
        self.settle_installs();
        let mut w = self.writer.lock()?;
        let idx = self.writer_index()?;
        let Probe::Found((slot, old)) = find(&self.files.segs, &idx, key)? else {
            return Ok(false);
        };
        let old_blob = self.remove_slot(&mut w, &idx, slot, &old)?;
        let owed = self.owed(&w, &idx, Some(slot))?;
        drop(w);
        if let Some(id) = old_blob {
            self.files.blobs.unlink(key, id);
        }
        self.settle(owed)?;
        Ok(true)
    }

    /// Removes every entry whose key `matches`, the way `remove` removes
    /// one; returns how many there were.
    pub(crate) fn remove_matching(&self, matches: impl Fn(&Key) -> bool) -> Result<u64> {
        self.settle_installs();
        let mut w = self.writer.lock()?;
        let idx = self.writer_index()?;
        let mut blobs = Vec::new();
        let mut removed = 0;
        let mut result = Ok(());
        for (slot, snap) in idx.live() {
            let rec = match self.files.segs.record(snap.loc, None) {
                Ok(Read::Found(rec)) if !rec.header.is_tombstone() => rec,
                Ok(_) => continue,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            let key = rec.header.key;
            if key.tag32() != snap.tag || !matches(&key) {
                continue;
            }
            match self.remove_slot(&mut w, &idx, slot, &rec) {
                Ok(blob) => {
                    removed += 1;
                    blobs.extend(blob.map(|id| (key, id)));
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let owed = match (removed, self.sync()) {
            (1.., true) => self.owed(&w, &idx, None)?,
            _ => None,
        };
        drop(w);
        self.unlink_all(blobs);
        self.settle(owed)?;
        result.map(|()| removed)
    }

    /// Tombstones `slot`, which holds `old`; returns the blob to unlink once
    /// the lock is released. Caller holds the writer lock.
    fn remove_slot(
        &self,
        w: &mut Appender,
        idx: &Arc<Index>,
        slot: usize,
        old: &Record,
    ) -> Result<Option<u64>> {
        let mut p = Publish::begin(idx);
        // The tombstone record keeps a rebuild from bringing the entry back.
        let tomb = segment::build_record(&old.header.key, RAW_ID, FLAG_TOMBSTONE, &[]);
        if let Err(e) = self.append(w, idx, &tomb) {
            p.unchanged();
            return Err(e);
        }
        p.dead(tomb.len() as u64);
        self.retire_stats(idx, slot, &old.header.key);
        p.tombstone(slot);
        let old_blob = p.retire(old, self.saved_by(old));
        p.commit();
        Ok(old_blob)
    }

    /// Replaces the table at once with one sized for `entries`, dropping
    /// tombstones: the restart path, where nobody waits (puts grow the
    /// table without stopping, `grow.rs`).
    pub(super) fn grow_for(&self, old: &Arc<Index>, entries: u64) -> Result<Arc<Index>> {
        let cap = Index::capacity_for(entries);
        let new = Index::create(
            &self.files.tmp,
            &tmp_index_name(),
            cap,
            Some((old, &CARRY_ALL)),
        )?;
        old.copy_into(&new);
        new.set(hdr::TOMBSTONES, 0);
        self.install(new, old)
    }

    /// Renames a table built in `tmp/` over `index`; every process moves to
    /// it when it next looks.
    pub(super) fn install(&self, new: Index, old: &Index) -> Result<Arc<Index>> {
        let tmp_path = new.path().to_path_buf();
        let installed = new.install(
            &self.files.tmp,
            &self.files.root,
            format::INDEX_FILE,
            Some(old),
            self.sync(),
        );
        let new = match installed {
            Ok(i) => Arc::new(i),
            Err(e) => {
                if let Some(name) = tmp_path.file_name().and_then(|n| n.to_str()) {
                    let _ = self.files.tmp.remove(name);
                }
                return Err(e);
            }
        };
        // A growth this replaces is over: its old table is not needed.
        self.files.root.remove(format::PREV_INDEX_FILE)?;
        if self.sync() {
            self.files.root.sync()?;
        }
        self.index.install(new.clone());
        Ok(new)
    }

    pub(super) fn clear(&self) -> Result<()> {
        self.settle_installs();
        let mut w = self.writer.lock()?;
        let old = self.index()?;
        let new = Index::create(
            &self.files.tmp,
            &tmp_index_name(),
            MIN_CAPACITY,
            Some((&old, &CARRY_CLEAR)),
        )?;
        self.install(new, &old)?;
        w.reset();
        // Per-function counts span the time since the last clear, like the
        // entries they describe.
        if let Some(r) = self.registry(false) {
            r.reset_counts();
        }
        // Unlinking keeps other processes' mappings (and our `Bytes`) valid.
        // Only files memo named are removed: anything else is left alone.
        self.files.segs.remove_all()?;
        self.files.blobs.remove_all()?;
        Ok(())
    }
}

/// A fresh name in `tmp/` for an index being built.
pub(super) fn tmp_index_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format::tmp_index_name(std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Finds `key`'s live slot and record; caller holds the writer lock.
pub(super) fn find(segs: &Segments, idx: &Index, key: &Key) -> Result<Probe<(usize, Record)>> {
    let probe = idx.probe(key.tag32(), |slot, snap| {
        match segs.record(snap.loc, Some(key)) {
            Ok(Read::Found(rec)) => Some(Ok((slot, rec))),
            Ok(Read::OtherKey | Read::Missing | Read::Damaged(_)) => None,
            Err(e) => Some(Err(e)),
        }
    });
    Ok(match probe {
        Probe::Found(r) => Probe::Found(r?),
        Probe::Absent { free } => Probe::Absent { free },
    })
}
