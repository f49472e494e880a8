//! The lock-free read path.

use std::sync::{Arc, PoisonError, Weak};

use serde::de::DeserializeOwned;

use super::Engine;
use crate::blob::BlobRead;
use crate::codec::{Bincode, Codec, RAW_ID};
use crate::compress;
use crate::error::{Error, Result};
use crate::format::{INDEX_FILE, hdr};
use crate::index::{Index, Probe};
use crate::segment::Read;
use crate::{Bytes, Key, Stats};

/// How often a lookup starts over when the index or a file changed under
/// it. Each retry follows a writer's completed publish, so this bounds work
/// only against a writer that replaces the same entry continuously.
const RETRIES: usize = 8;

impl Engine {
    /// The current index: one atomic load when nothing changed.
    pub(super) fn index(&self) -> Result<Arc<Index>> {
        let cur = self.index.get();
        if !cur.stale() {
            return Ok(cur);
        }
        // Not kept across the reload: the old table must go to the thread
        // that lets go of it with no reference left here (`release`).
        drop(cur);
        self.reload_index()
    }

    pub(super) fn reload_index(&self) -> Result<Arc<Index>> {
        let (now, old) = self.index.reload(|| {
            Index::open_current(&self.files.root, self.read_only())?.ok_or_else(|| {
                Error::corrupt(&self.files.root.child(INDEX_FILE), 0, "index file vanished")
            })
        })?;
        if let Some(old) = old {
            crate::index::release(old);
        }
        Ok(now)
    }

    /// Finds `key`'s value: its bytes and the id of the codec that wrote
    /// them, decompressed if it was stored compressed (a value whose frame
    /// does not decode is a miss, reported). Counts a hit or a miss when
    /// `count` is set.
    pub(crate) fn lookup(&self, key: &Key, count: bool) -> Result<Option<(Bytes, u8)>> {
        Ok(self
            .lookup_stored(key, count)?
            .and_then(|(bytes, codec)| unpacked(key, bytes, codec)))
    }

    /// As `lookup`, the bytes as stored: compressed ones as they are, with
    /// `COMPRESSED` in their codec byte (what the remote tier moves).
    pub(crate) fn lookup_stored(&self, key: &Key, count: bool) -> Result<Option<(Bytes, u8)>> {
        for _ in 0..RETRIES {
            // Under the read guard, not a clone of the Arc: one uncontended
            // read lock instead of two reference-count updates on a shared
            // line. Nothing in `lookup_once` uses `self.index` (its lock rule).
            let found = self.index.with(|idx| {
                if idx.stale() {
                    return Ok(None);
                }
                let installed = self.installs.queue.installed();
                let mut found = self.lookup_once(idx, key)?;
                if let Found::Nothing = found {
                    if let Some((bytes, codec)) = self.installs.queue.get(key) {
                        // Fetched from the remote, not yet installed: as local.
                        found = Found::Installing(bytes, codec);
                    } else if self.installs.queue.installed() != installed {
                        // Installed between the probe and the queue: look again.
                        found = Found::Changed;
                    }
                }
                match &found {
                    Found::Value(_, _, slot) if count => {
                        idx.bump(hdr::HITS, 1);
                        idx.touch(*slot, idx.tick());
                    }
                    Found::Installing(..) if count => idx.bump(hdr::HITS, 1),
                    Found::Nothing if count => idx.bump(hdr::MISSES, 1),
                    _ => {}
                }
                Ok::<_, Error>(Some(found))
            })?;
            match found {
                // Replaced: reload, outside the read guard, and look again.
                None => {
                    self.reload_index()?;
                }
                Some(Found::Value(bytes, codec, _) | Found::Installing(bytes, codec)) => {
                    return Ok(Some((bytes, codec)));
                }
                Some(Found::Nothing) => return Ok(None),
                // A file vanished under the lookup: look again.
                Some(Found::Changed) => {}
            }
        }
        if count {
            self.index()?.bump(hdr::MISSES, 1);
        }
        Ok(None)
    }

    fn lookup_once(&self, idx: &Arc<Index>, key: &Key) -> Result<Found> {
        let mut changed = false;
        let probe = idx.probe(key.tag32(), |slot, snap| {
            match self.files.segs.record(snap.loc, Some(key)) {
                Ok(Read::Found(rec)) => Some(Ok((slot, snap.loc, rec))),
                Ok(Read::OtherKey) => None,
                Ok(Read::Missing) => {
                    changed = true;
                    None
                }
                Ok(Read::Damaged(what)) => {
                    self.damaged(idx, slot, snap.loc, None, key, &what);
                    None
                }
                Err(e) => Some(Err(e)),
            }
        });
        let (slot, loc, rec) = match probe {
            Probe::Found(found) => found?,
            Probe::Absent { .. } if changed => return Ok(Found::Changed),
            Probe::Absent { .. } => return Ok(Found::Nothing),
        };
        let h = rec.header;
        if h.is_tombstone() {
            self.damaged(
                idx,
                slot,
                loc,
                None,
                key,
                "index points at a tombstone record",
            );
            return Ok(Found::Nothing);
        }
        if !h.is_blob() {
            return Ok(match rec.into_payload() {
                Some(b) => Found::Value(b, h.codec, slot),
                None => Found::Nothing,
            });
        }
        let Some((id, len)) = rec.blob() else {
            self.damaged(idx, slot, loc, None, key, "bad blob pointer");
            return Ok(Found::Nothing);
        };
        Ok(match self.files.blobs.get(key, id, len)? {
            BlobRead::Found(b, codec) if codec == h.codec => Found::Value(b, codec, slot),
            BlobRead::Found(..) => {
                let what = "blob codec differs from its record";
                self.damaged(idx, slot, loc, Some(id), key, what);
                Found::Nothing
            }
            // Replaced or removed since the slot was read.
            BlobRead::Missing => Found::Changed,
            BlobRead::Damaged(what) => {
                self.damaged(idx, slot, loc, Some(id), key, &what);
                Found::Nothing
            }
        })
    }

    /// `key`'s value decoded as `V`: from the local store, else from the
    /// remote tier (installed locally on the way).
    pub(crate) fn get<V: DeserializeOwned>(&self, key: &Key, count: bool) -> Result<Option<V>> {
        let Some((bytes, codec)) = self.find(key, count)? else {
            return Ok(None);
        };
        decode(key, &bytes, codec)
    }

    /// As `get`, from the local store only.
    pub(crate) fn get_local<V: DeserializeOwned>(
        &self,
        key: &Key,
        count: bool,
    ) -> Result<Option<V>> {
        let Some((bytes, codec)) = self.lookup(key, count)? else {
            return Ok(None);
        };
        decode(key, &bytes, codec)
    }

    /// Counts a hit found by an uncounted lookup.
    pub(crate) fn count_hit(&self) {
        if let Ok(idx) = self.index() {
            idx.bump(hdr::HITS, 1);
        }
    }

    pub(super) fn stats(&self) -> Stats {
        self.settle_installs();
        let Ok(idx) = self.index() else {
            return Stats::default();
        };
        let index_bytes = idx.file_len();
        let live = idx.word(hdr::LIVE_BYTES);
        let dead = idx.word(hdr::DEAD_BYTES);
        Stats {
            hits: idx.word(hdr::HITS),
            misses: idx.word(hdr::MISSES),
            entries: idx.word(hdr::ENTRIES),
            bytes: live.saturating_add(dead).saturating_add(index_bytes),
            raw_bytes: live
                .saturating_add(dead)
                .saturating_add(index_bytes)
                .saturating_add(idx.word(hdr::SAVED)),
            evictions: idx.word(hdr::EVICTIONS),
            dead_bytes: dead,
            index_bytes,
            bytes_reclaimed: idx.word(hdr::RECLAIMED),
            store_remote_hits: idx.word(hdr::REMOTE_HITS),
            store_remote_misses: idx.word(hdr::REMOTE_MISSES),
            store_uploads: idx.word(hdr::UPLOADS),
            ..self.remote_stats()
        }
    }
}

/// A stored value as its codec wrote it: compressed ones decoded into
/// memory; `None` (reported) for a frame that does not decode, so the
/// caller computes and replaces it.
pub(super) fn unpacked(key: &Key, bytes: Bytes, codec: u8) -> Option<(Bytes, u8)> {
    if !compress::is_compressed(codec) {
        return Some((bytes, codec));
    }
    match compress::unpack(&bytes) {
        Ok(raw) => Some((Bytes::owned(raw), codec & !compress::COMPRESSED)),
        Err(problem) => {
            tracing::warn!(%key, %problem, "memo: damaged entry read as a miss");
            None
        }
    }
}

/// Decodes a stored value written by codec `codec`.
fn decode<V: DeserializeOwned>(key: &Key, bytes: &Bytes, codec: u8) -> Result<Option<V>> {
    match codec {
        // With the mapped bytes as the decode source, an `Array` in the
        // value is a view of them, not a copy.
        Bincode::ID => crate::mmap::decoding_from(bytes, |b| Bincode::decode(key, b)).map(Some),
        RAW_ID => Err(Error::Codec {
            key: *key,
            message: "the entry holds raw bytes stored by put_bytes; read it with get_bytes".into(),
        }),
        // Written by a codec this build does not have: never decoded by
        // another, so it is a miss.
        _ => Ok(None),
    }
}

enum Found {
    Value(Bytes, u8, usize),
    /// Fetched from the remote tier and waiting to be installed
    /// (`install.rs`).
    Installing(Bytes, u8),
    Nothing,
    /// A file vanished under the lookup: start over.
    Changed,
}

/// Damage a reader found, for this process's next write to remove.
pub(super) struct Damage {
    pub index: Weak<Index>,
    pub slot: usize,
    pub loc: u64,
    /// The entry's key and blob id, if its value is a blob file.
    pub blob: Option<(Key, u64)>,
    /// The damaged entry's key (for a miss to say why it missed).
    pub key: Key,
}

/// Damage remembered at most; more is found again by later reads.
const DAMAGE_MAX: usize = 1024;

impl Engine {
    /// Reports a damaged entry (read as a miss) and remembers its slot so the
    /// next write removes it: readers take no lock, so they cannot.
    fn damaged(
        &self,
        idx: &Arc<Index>,
        slot: usize,
        loc: u64,
        blob: Option<u64>,
        key: &Key,
        what: &str,
    ) {
        tracing::warn!(%key, problem = what, "memo: damaged entry read as a miss");
        let mut list = self.damaged.lock().unwrap_or_else(PoisonError::into_inner);
        if list.len() < DAMAGE_MAX && !list.iter().any(|d| d.slot == slot && d.loc == loc) {
            list.push(Damage {
                index: Arc::downgrade(idx),
                slot,
                loc,
                blob: blob.map(|id| (*key, id)),
                key: *key,
            });
        }
    }
}
