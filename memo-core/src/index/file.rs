//! The index file's life: opened and validated, created beside the store
//! in `tmp/`, and installed over `index` by a rename.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Index;
use crate::dir::Dir;
use crate::error::{Error, IoContext, Result};
use crate::format::{
    CAPACITY_STEP, INDEX_FILE, INDEX_HEADER_LEN, INDEX_MAGIC, INDEX_VERSION, MAX_CAPACITY,
    MIN_CAPACITY, PREV_INDEX_FILE, SLOT_LEN, hdr, le32, le64,
};
use crate::mmap::SharedMap;
use crate::time::unix_now;

impl Index {
    /// Opens and validates the index `name` in `dir`; `None` if there is
    /// none.
    pub(crate) fn open(dir: &Dir, name: &str) -> Result<Option<Index>> {
        Self::open_as(dir, name, false)
    }

    /// `open`, or for a read-only store (`read_only`) without write access
    /// to the file and with nothing this process does reaching it.
    pub(crate) fn open_as(dir: &Dir, name: &str, read_only: bool) -> Result<Option<Index>> {
        let Some(file) = dir.open_file(name, !read_only)? else {
            return Ok(None);
        };
        let path = &dir.child(name);
        let len = file.metadata().at(path)?.len();
        let mut h = [0u8; 24];
        if len < INDEX_HEADER_LEN as u64 {
            return Err(Error::corrupt(
                path,
                0,
                format!("index is {len} bytes, shorter than its header"),
            ));
        }
        file.read_exact_at(&mut h, 0).at(path)?;
        if h[0..8] != INDEX_MAGIC {
            return Err(Error::corrupt(path, 0, "not a memo index (bad magic)"));
        }
        let version = le32(&h[8..12]);
        if !(1..=INDEX_VERSION).contains(&version) {
            return Err(Error::IncompatibleFormat {
                path: path.clone(),
                found: version,
                supported: INDEX_VERSION,
            });
        }
        if le32(&h[12..16]) as usize != SLOT_LEN {
            return Err(Error::corrupt(path, 12, "index slot size is not 32"));
        }
        let cap = le64(&h[16..24]);
        let low_bits = version == 1;
        let shape_ok = if low_bits {
            cap.is_power_of_two()
        } else {
            cap.is_multiple_of(CAPACITY_STEP)
        };
        if !shape_ok || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&cap) {
            return Err(Error::corrupt(
                path,
                16,
                format!("index capacity {cap} is invalid"),
            ));
        }
        if len != INDEX_HEADER_LEN as u64 + cap * SLOT_LEN as u64 {
            return Err(Error::corrupt(
                path,
                len,
                format!("index is {len} bytes, which does not match its capacity {cap}"),
            ));
        }
        Self::map(&file, name, path, cap, low_bits, read_only).map(Some)
    }

    /// Opens the store's `index` in `root` and, while a growth moves the
    /// previous table into it, `index.prev`; `None` if there is no index.
    /// `read_only` as in [`Index::open_as`].
    pub(crate) fn open_current(root: &Dir, read_only: bool) -> Result<Option<Index>> {
        // Each round follows a growth that began or ended meanwhile.
        for _ in 0..16 {
            let Some(mut idx) = Self::open_as(root, INDEX_FILE, read_only)? else {
                return Ok(None);
            };
            if !idx.header_says_moving() {
                return Ok(Some(idx));
            }
            if let Ok(Some(prev)) = Self::open_as(root, PREV_INDEX_FILE, read_only)
                && prev.word(hdr::TABLE_ID) == idx.word(hdr::MIGRATE_PREV_ID)
                && prev.cap as u64 == idx.word(hdr::MIGRATE_FROM)
            {
                idx.prev = Some(Arc::new(prev));
                return Ok(Some(idx));
            }
            if !idx.header_says_moving() {
                return Ok(Some(idx));
            }
            if !idx.replaced() {
                return Err(Error::corrupt(
                    &root.child(PREV_INDEX_FILE),
                    0,
                    "the table a growth of the index is moving is missing, or is another table",
                ));
            }
        }
        Err(Error::corrupt(
            &root.child(INDEX_FILE),
            0,
            "the index was replaced 16 times while being opened",
        ))
    }

    /// Whether `name` in `dir` is a regular file that starts with the index
    /// magic.
    pub(crate) fn has_magic(dir: &Dir, name: &str) -> bool {
        let mut m = [0u8; 8];
        matches!(dir.open_file(name, false), Ok(Some(f)) if f.read_exact_at(&mut m, 0).is_ok())
            && m == INDEX_MAGIC
    }

    fn map(
        file: &File,
        name: &str,
        path: &Path,
        cap: u64,
        low_bits: bool,
        read_only: bool,
    ) -> Result<Index> {
        let map = SharedMap::map(file, path, cap as usize, read_only)?;
        Ok(Index {
            read_only,
            map,
            name: name.to_owned(),
            path: path.to_path_buf(),
            cap: cap as usize,
            low_bits,
            prev: None,
        })
    }

    /// Makes `name` in `tmp` an empty version 2 table of `cap` slots, its
    /// magic written last, so that a table read back with its magic is
    /// whole; the file comes back locked. Used to build a table ahead of a
    /// growth, off the writer lock.
    pub(crate) fn prepare(tmp: &Dir, name: &str, cap: u64) -> Result<File> {
        let file = tmp.create_new(name)?;
        let path = &tmp.child(name);
        // Locked while its maker holds it: a sweep of `tmp/` leaves it.
        let _ = file.try_lock();
        let total = INDEX_HEADER_LEN as u64 + cap * SLOT_LEN as u64;
        allocate(&file, path, total)?;
        let mut h = vec![0u8; INDEX_HEADER_LEN];
        let mut put = |w: usize, v: u64| h[w * 8..w * 8 + 8].copy_from_slice(&v.to_le_bytes());
        put(
            hdr::VERSION,
            u64::from(INDEX_VERSION) | (SLOT_LEN as u64) << 32,
        );
        put(hdr::CAPACITY, cap);
        put(hdr::EPOCH, unix_now());
        put(hdr::TABLE_ID, table_id());
        put(hdr::COST_UNITS, 1);
        file.write_all_at(&h[8..], 8).at(path)?;
        file.write_all_at(&INDEX_MAGIC, (hdr::MAGIC * 8) as u64)
            .at(path)?;
        Ok(file)
    }

    /// Copies the listed header words of `old` into this table, which no
    /// other process sees yet; the rings go with their lengths.
    pub(crate) fn carry(&self, old: &Index, words: &[usize]) {
        let h = self.map.header();
        for &w in words {
            h[w].store(old.word(w), Ordering::Relaxed);
        }
        let rings = [
            (hdr::TIME_RING_LEN, hdr::TIME_RING, hdr::TIME_RING_CAP),
            (hdr::CLOCK_RING_LEN, hdr::CLOCK_RING, hdr::CLOCK_RING_CAP),
        ];
        for (len, at, cap) in rings {
            if words.contains(&len) {
                for (w, word) in h.iter().enumerate().skip(at).take(2 * cap) {
                    word.store(old.word(w), Ordering::Relaxed);
                }
            }
        }
    }

    /// Creates an empty table of `cap` slots (a multiple of
    /// `CAPACITY_STEP`) as `name` in `tmp`, to be
    /// filled and then renamed into place by [`Index::install`]. With
    /// `from`, the header copies the listed words of that index.
    pub(crate) fn create(
        tmp: &Dir,
        name: &str,
        cap: u64,
        from: Option<(&Index, &[usize])>,
    ) -> Result<Index> {
        let file = Self::prepare(tmp, name, cap)?;
        let idx = Self::map(&file, name, &tmp.child(name), cap, false, false)?;
        // A table is built under the writer lock from the segments or from
        // a table already consistent with them: it agrees on this boot.
        super::boot::stamp_boot(&idx);
        if let Some((old, words)) = from {
            idx.carry(old, words);
        }
        Ok(idx)
    }

    /// The table's file name in its directory.
    pub(crate) fn file_name(&self) -> &str {
        &self.name
    }

    /// Puts the table's file in `tmp` in the place of `dest` in `dir` by
    /// swapping the two names, and removes the other file's name from
    /// `tmp`: the caller gave it another first. Not a rename over `dest`:
    /// ext4 then writes the renamed file's new blocks out in the call
    /// (`auto_da_alloc`), 4-20 ms under the writer lock for a table of
    /// 100 MB whose zeros were still in the page cache (measured).
    pub(crate) fn swap_into(&mut self, tmp: &Dir, dir: &Dir, dest: &str) -> Result<()> {
        match tmp.exchange(&self.name, dir, dest) {
            Ok(()) => {
                tmp.remove(&self.name)?;
            }
            // A file system without `RENAME_EXCHANGE`: a plain rename, which
            // may flush the file in the call but is as atomic.
            Err(Error::Io { source, .. })
                if source.raw_os_error().is_some_and(|raw| {
                    use rustix::io::Errno;
                    [Errno::INVAL, Errno::NOSYS, Errno::OPNOTSUPP]
                        .contains(&Errno::from_raw_os_error(raw))
                }) =>
            {
                tmp.rename(&self.name, dir, dest)?;
            }
            Err(e) => return Err(e),
        }
        dest.clone_into(&mut self.name);
        self.path = dir.child(dest);
        Ok(())
    }

    /// Renames the table's file from `tmp` to `dest` in `dir`.
    pub(crate) fn rename_into(&mut self, tmp: &Dir, dir: &Dir, dest: &str) -> Result<()> {
        tmp.rename(&self.name, dir, dest)?;
        dest.clone_into(&mut self.name);
        self.path = dir.child(dest);
        Ok(())
    }

    /// Renames a table built by [`Index::create`] in `tmp` to `dest` in
    /// `dir` and marks `old` replaced, so every process moves to the new
    /// one.
    pub(crate) fn install(
        mut self,
        tmp: &Dir,
        dir: &Dir,
        dest: &str,
        old: Option<&Index>,
        sync: bool,
    ) -> Result<Index> {
        if sync {
            // Synced whole before it is named: its checkpoint is where the
            // log ends now (caller holds the writer lock).
            self.set(hdr::CHECKPOINT, self.append_pos().word());
            self.map.flush(&self.path)?;
        }
        self.rename_into(tmp, dir, dest)?;
        if let Some(old) = old {
            old.header()[hdr::REPLACED].store(1, Ordering::Release);
        }
        Ok(self)
    }
}

/// Gives a new file its `len` bytes as written zeros: not sparse, so that
/// a full disk fails here and not as SIGBUS in a mapping. Not `fallocate`
/// either: on ext4 the first write to each page of an allocated-unwritten
/// file converts its extent in a journal transaction, and puts that touched
/// a fresh table stalled for 10-40 ms behind those (measured).
fn allocate(file: &File, path: &Path, len: u64) -> Result<()> {
    let zeros = vec![0u8; 1 << 20];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], off).at(path)?;
        off += n as u64;
    }
    Ok(())
}

/// A number no other table of this store is likely to have: the time, the
/// process and a counter, hashed.
fn table_id() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut b = [0u8; 24];
    b[..8].copy_from_slice(&nanos.to_le_bytes());
    b[8..16].copy_from_slice(&u64::from(std::process::id()).to_le_bytes());
    b[16..].copy_from_slice(&N.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    // Never 0, which version 1 tables (which have none) read as.
    xxhash_rust::xxh3::xxh3_64(&b).max(1)
}
