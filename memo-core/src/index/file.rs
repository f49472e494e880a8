//! The index file's life: opened and validated, created beside the store
//! in `tmp/`, and installed over `index` by a rename.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::Index;
use crate::clock::unix_now;
use crate::dir::Dir;
use crate::error::{Error, IoContext, Result};
use crate::format::{
    FORMAT_VERSION, INDEX_HEADER_LEN, INDEX_MAGIC, MAX_CAPACITY, MIN_CAPACITY, SLOT_LEN, hdr, le32,
    le64,
};
use crate::mmap::SharedMap;

impl Index {
    /// Opens and validates the index `name` in `dir`; `None` if there is
    /// none.
    pub(crate) fn open(dir: &Dir, name: &str) -> Result<Option<Index>> {
        let Some(file) = dir.open_file(name, true)? else {
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
        if version != FORMAT_VERSION {
            return Err(Error::IncompatibleFormat {
                path: path.clone(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if le32(&h[12..16]) as usize != SLOT_LEN {
            return Err(Error::corrupt(path, 12, "index slot size is not 32"));
        }
        let cap = le64(&h[16..24]);
        if !cap.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&cap) {
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
        Self::map(&file, name, path, cap).map(Some)
    }

    /// Whether `name` in `dir` is a regular file that starts with the index
    /// magic.
    pub(crate) fn has_magic(dir: &Dir, name: &str) -> bool {
        let mut m = [0u8; 8];
        matches!(dir.open_file(name, false), Ok(Some(f)) if f.read_exact_at(&mut m, 0).is_ok())
            && m == INDEX_MAGIC
    }

    fn map(file: &File, name: &str, path: &Path, cap: u64) -> Result<Index> {
        let map = SharedMap::map(file, path, cap as usize)?;
        Ok(Index {
            map,
            name: name.to_owned(),
            path: path.to_path_buf(),
            mask: cap as usize - 1,
        })
    }

    /// Creates an empty table of `cap` slots as `name` in `tmp`, to be
    /// filled and then renamed into place by [`Index::install`]. With
    /// `from`, the header copies the listed words of that index.
    pub(crate) fn create(
        tmp: &Dir,
        name: &str,
        cap: u64,
        from: Option<(&Index, &[usize])>,
    ) -> Result<Index> {
        let file = tmp.create_new(name)?;
        let path = &tmp.child(name);
        // Zeros written, not a sparse `set_len`: a hole in the mapping would
        // raise SIGBUS on a full disk instead of this call failing.
        let total = INDEX_HEADER_LEN as u64 + cap * SLOT_LEN as u64;
        let zeros = vec![0u8; 1 << 20];
        let mut off = 0;
        while off < total {
            let n = (total - off).min(zeros.len() as u64) as usize;
            file.write_all_at(&zeros[..n], off).at(path)?;
            off += n as u64;
        }
        let idx = Self::map(&file, name, path, cap)?;
        let h = idx.map.header();
        h[hdr::MAGIC].store(u64::from_le_bytes(INDEX_MAGIC), Ordering::Relaxed);
        h[hdr::VERSION].store(
            u64::from(FORMAT_VERSION) | (SLOT_LEN as u64) << 32,
            Ordering::Relaxed,
        );
        h[hdr::CAPACITY].store(cap, Ordering::Relaxed);
        h[hdr::EPOCH].store(unix_now(), Ordering::Relaxed);
        // A table is built under the writer lock from the segments or from
        // a table already consistent with them: it agrees on this boot.
        crate::store::stamp_boot(&idx);
        if let Some((old, words)) = from {
            for &w in words {
                h[w].store(old.word(w), Ordering::Relaxed);
            }
            // The rings go with their lengths.
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
        Ok(idx)
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
        tmp.rename(&self.name, dir, dest)?;
        dest.clone_into(&mut self.name);
        self.path = dir.child(dest);
        if let Some(old) = old {
            old.header()[hdr::REPLACED].store(1, Ordering::Release);
        }
        Ok(self)
    }
}
