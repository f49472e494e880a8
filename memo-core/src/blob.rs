//! Blob files: one file per large value, written in `tmp/` outside the
//! writer lock and renamed into `blob/` under it; payload 64-byte aligned.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use xxhash_rust::xxh3::{Xxh3, xxh3_128};

use crate::Key;
use crate::dir::{Dir, Kind};
use crate::error::{Error, IoContext, Result};
use crate::format::{self, BLOB_HEADER_LEN, BlobHeader, BlobHeaderError, INLINE_MAX};
use crate::mmap::{Bytes, Region};

/// Verified mappings a process keeps, so that repeated hits on a large value
/// are O(1): its checksum is computed once, when the process first maps it.
/// Bounded because a cached mapping keeps an unlinked file's space in use.
const CACHE_ENTRIES: usize = 64;
const CACHE_BYTES: u64 = 4 << 30;

/// Payloads at least this large are hashed on a second thread while the
/// first writes them: the hash then costs no wall time.
const PARALLEL_HASH_MIN: usize = 4 << 20;

/// What reading a blob found.
pub(crate) enum BlobRead {
    Found(Bytes, u8),
    /// The file is gone: replaced or removed after the slot was read.
    Missing,
    Damaged(String),
}

/// A complete blob file in `tmp/`, not yet visible. Removed on drop unless
/// installed.
pub(crate) struct TmpBlob {
    tmp: Dir,
    name: String,
    pub id: u64,
    pub len: u64,
    installed: bool,
    /// Held locked until the blob is installed or dropped: a sweep of
    /// `tmp/` removes only files nobody holds (their writer died).
    lock: File,
}

impl Drop for TmpBlob {
    fn drop(&mut self) {
        if !self.installed {
            let _ = self.tmp.remove(&self.name);
        }
    }
}

impl TmpBlob {
    /// Bytes the file takes.
    pub(crate) fn file_size(&self) -> u64 {
        self.len + BLOB_HEADER_LEN as u64
    }

    fn path(&self) -> PathBuf {
        self.tmp.child(&self.name)
    }

    /// The file as written so far, mapped read-only (its payload at
    /// `BLOB_HEADER_LEN`): what compression reads a spilled value from.
    pub(crate) fn map(&self) -> Result<Region> {
        Region::map(&self.lock, &self.path())
    }
}

/// A verified mapping and the codec its header names.
type Verified = (Arc<Region>, u8);

#[derive(Default)]
struct Cache {
    map: HashMap<(Key, u64), Verified>,
    order: VecDeque<(Key, u64)>,
    bytes: u64,
}

/// The blob directory and this process's verified mappings.
pub(crate) struct Blobs {
    dir: Dir,
    cache: Mutex<Cache>,
}

impl Blobs {
    /// The blobs in `dir` (the store's `blob/`).
    pub(crate) fn new(dir: Dir) -> Blobs {
        Blobs {
            dir,
            cache: Mutex::new(Cache::default()),
        }
    }

    /// The path of a blob file, for messages.
    pub(crate) fn path(&self, key: &Key, id: u64) -> PathBuf {
        self.dir
            .child(&format::blob_fanout(key))
            .join(format::blob_name(key, id))
    }

    /// The fan-out directory of `key`'s blobs, opened without following a
    /// link; `None` if it does not exist and `create` is unset.
    fn fanout(&self, key: &Key, create: bool) -> Result<Option<Dir>> {
        self.dir.open_dir(&format::blob_fanout(key), create)
    }

    /// Opens blob `id` of `key` for reading; `None` if it is gone.
    pub(crate) fn open(&self, key: &Key, id: u64) -> Result<Option<File>> {
        match self.fanout(key, false)? {
            Some(fan) => fan.open_file(&format::blob_name(key, id), false),
            None => Ok(None),
        }
    }

    /// The value of blob `id` of `key`, which the index says is `len` bytes.
    pub(crate) fn get(&self, key: &Key, id: u64, len: u64) -> Result<BlobRead> {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .get(&(*key, id))
            .cloned();
        let (region, codec) = match cached {
            Some(v) => v,
            None => match self.map_verified(key, id, len)? {
                Ok(v) => self.remember(key, id, v),
                Err(read) => return Ok(read),
            },
        };
        Ok(match Bytes::new(region, BLOB_HEADER_LEN, len as usize) {
            Some(b) => BlobRead::Found(b, codec),
            None => BlobRead::Damaged(format!(
                "{}: shorter than its header says",
                self.path(key, id).display()
            )),
        })
    }

    /// Maps a blob file and checks its header against what the index says and
    /// its payload against its checksum.
    fn map_verified(
        &self,
        key: &Key,
        id: u64,
        len: u64,
    ) -> Result<std::result::Result<Verified, BlobRead>> {
        let path = self.path(key, id);
        let Some(file) = self.open(key, id)? else {
            return Ok(Err(BlobRead::Missing));
        };
        let region = Region::map(&file, &path)?;
        Ok(check_blob(&region, key, id, len)
            .map(|h| (Arc::new(region), h.codec))
            .map_err(|what| BlobRead::Damaged(format!("{}: {what}", path.display()))))
    }

    fn remember(&self, key: &Key, id: u64, verified: Verified) -> Verified {
        let mut c = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let size = verified.0.len() as u64;
        while !c.order.is_empty()
            && (c.order.len() >= CACHE_ENTRIES || c.bytes + size > CACHE_BYTES)
        {
            if let Some(old) = c.order.pop_front()
                && let Some((r, _)) = c.map.remove(&old)
            {
                c.bytes -= r.len() as u64;
            }
        }
        if c.map.insert((*key, id), verified.clone()).is_none() {
            c.order.push_back((*key, id));
            c.bytes += size;
        }
        verified
    }

    /// Drops this process's mapping of `key`'s blob `id`.
    pub(crate) fn forget(&self, key: &Key, id: u64) {
        let mut c = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((r, _)) = c.map.remove(&(*key, id)) {
            c.bytes -= r.len() as u64;
            c.order.retain(|k| *k != (*key, id));
        }
    }

    pub(crate) fn forget_all(&self) {
        *self.cache.lock().unwrap_or_else(PoisonError::into_inner) = Cache::default();
    }

    /// Renames a finished blob into `blob/ab/`. Called under `LOCK`.
    pub(crate) fn install(&self, blob: &mut TmpBlob, key: &Key, sync: bool) -> Result<()> {
        let fan = self.fanout(key, true)?.ok_or_else(|| {
            Error::io(self.path(key, blob.id), std::io::ErrorKind::NotFound.into())
        })?;
        blob.tmp
            .rename(&blob.name, &fan, &format::blob_name(key, blob.id))?;
        blob.installed = true;
        if sync {
            fan.sync()?;
        }
        Ok(())
    }

    /// The raw length a compressed blob's payload starts with (its
    /// `compress` prefix), read without mapping the file; `None` if the
    /// file is gone or short. For the byte counters, not for values: what
    /// a reader uses is checksummed first.
    pub(crate) fn packed_raw_len(&self, key: &Key, id: u64) -> Option<u64> {
        let file = self.open(key, id).ok()??;
        let mut prefix = [0; crate::compress::PREFIX];
        file.read_exact_at(&mut prefix, BLOB_HEADER_LEN as u64)
            .ok()?;
        Some(u64::from_le_bytes(prefix))
    }

    /// Unlinks a blob file; a mapping of it stays readable.
    pub(crate) fn unlink(&self, key: &Key, id: u64) {
        self.forget(key, id);
        let removed = match self.fanout(key, false) {
            Ok(Some(fan)) => fan.remove(&format::blob_name(key, id)).map(drop),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = removed {
            tracing::warn!(error = %e, "memo: could not remove a replaced blob");
        }
    }

    /// Unlinks every blob file (`clear`), and the fan-out directories they
    /// leave empty. Only names memo gives blobs are removed; a link or any
    /// other file found in `blob/` is left alone and reported.
    pub(crate) fn remove_all(&self) -> Result<()> {
        for (name, kind) in self.dir.entries()? {
            let Some(name) = name.to_str().filter(|n| format::is_blob_fanout(n)) else {
                continue;
            };
            if kind != Kind::Dir {
                tracing::warn!(path = %self.dir.child(name).display(), "memo: not a directory; left alone");
                continue;
            }
            let Some(fan) = self.dir.open_dir(name, false)? else {
                continue;
            };
            for file in fan.own_files(|n| format::is_blob_name(name, n))? {
                fan.remove(&file)?;
            }
            self.dir.remove_empty_dir(name);
        }
        self.forget_all();
        Ok(())
    }
}

/// Writes `payload` as a complete blob file in `tmp/`.
pub(crate) fn write_tmp(
    tmp: &Dir,
    key: &Key,
    codec: u8,
    payload: &[u8],
    sync: bool,
) -> Result<TmpBlob> {
    let mut blob = new_tmp(tmp, key)?;
    let path = blob.path();
    let file = blob.lock.try_clone().at(&path)?;
    let hash = write_and_hash(&file, payload).at(&path)?;
    blob.len = payload.len() as u64;
    finish(
        &file,
        &path,
        &BlobHeader {
            codec,
            key: *key,
            id: blob.id,
            len: blob.len,
            hash,
        },
        sync,
    )?;
    Ok(blob)
}

/// A new tmp blob file, locked. Another process opening the store sweeps
/// unlocked files from `tmp/`, and a file is unlocked between its creation
/// and our lock: so after locking, the name must still be ours (the
/// `KeyLock` protocol), else the file was swept and a new one is made.
/// Found by `tests/multiprocess.rs` under load: a blob put failed with
/// `NotFound` at its rename.
fn new_tmp(tmp: &Dir, key: &Key) -> Result<TmpBlob> {
    let mut attempts = 0;
    loop {
        let id = fresh_id(key);
        let name = format::tmp_blob_name(key, id);
        let lock = tmp.create_new(&name)?;
        lock.lock().at(&tmp.child(&name))?;
        attempts += 1;
        // Sweeps happen when a process opens the store or repairs it, so a
        // second loss in a row is rare; a hundred means something else
        // removes our files.
        if tmp.names(&name, &lock) || attempts >= 100 {
            return Ok(TmpBlob {
                tmp: tmp.clone(),
                name,
                id,
                len: 0,
                installed: false,
                lock,
            });
        }
    }
}

/// Checks a mapped blob: header fields, then the payload checksum (O(size),
/// once per process and blob thanks to the cache); its header.
pub(crate) fn check_blob(
    region: &Region,
    key: &Key,
    id: u64,
    len: u64,
) -> std::result::Result<BlobHeader, String> {
    let h = region
        .get(0, BLOB_HEADER_LEN)
        .ok_or("shorter than a blob header")?;
    let header = format::decode_blob_header(h).map_err(|e| match e {
        BlobHeaderError::Version(v) => format!("blob format version {v}"),
        BlobHeaderError::Bad(w) => w.to_string(),
    })?;
    if header.key != *key || header.id != id || header.len != len {
        return Err("blob header does not match the index".into());
    }
    let payload = usize::try_from(len)
        .ok()
        .and_then(|l| region.get(BLOB_HEADER_LEN, l))
        .ok_or("blob file shorter than its length")?;
    region.advise_sequential();
    if xxh3_128(payload) != header.hash {
        return Err("blob checksum mismatch".into());
    }
    Ok(header)
}

/// Writes `payload` at the payload offset and returns its xxh3-128 hash,
/// hashing on a second thread for large payloads.
fn write_and_hash(file: &File, payload: &[u8]) -> std::io::Result<u128> {
    if payload.len() >= PARALLEL_HASH_MIN {
        let joined = std::thread::scope(|s| {
            let hasher = std::thread::Builder::new().spawn_scoped(s, || xxh3_128(payload));
            let written = file.write_all_at(payload, BLOB_HEADER_LEN as u64);
            (written, hasher.ok().and_then(|h| h.join().ok()))
        });
        let (written, hash) = joined;
        written?;
        return Ok(hash.unwrap_or_else(|| xxh3_128(payload)));
    }
    file.write_all_at(payload, BLOB_HEADER_LEN as u64)?;
    Ok(xxh3_128(payload))
}

fn finish(file: &File, path: &Path, header: &BlobHeader, sync: bool) -> Result<()> {
    file.write_all_at(&format::encode_blob_header(header), 0)
        .at(path)?;
    if sync {
        file.sync_all().at(path)?;
    }
    Ok(())
}

/// A blob id no other writer picks for the same key: blake3 of the key, the
/// process, the time and a counter.
fn fresh_id(key: &Key) -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = blake3::Hasher::new();
    h.update(key.as_bytes());
    h.update(&std::process::id().to_le_bytes());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.update(&nanos.to_le_bytes());
    h.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    format::le64(&h.finalize().as_bytes()[..8])
}

/// Encoded values in the making: in memory while below `INLINE_MAX`, then
/// streamed to a blob file in `tmp/` and hashed as they go, so a huge result
/// is never held twice in memory.
pub(crate) struct Spill<'a> {
    tmp: &'a Dir,
    key: Key,
    buf: Vec<u8>,
    file: Option<SpillFile>,
}

struct SpillFile {
    blob: TmpBlob,
    out: BufWriter<File>,
    hasher: Xxh3,
}

/// Where an encoded value ended up.
pub(crate) enum Encoded {
    Inline(Vec<u8>),
    Blob(TmpBlob),
}

impl<'a> Spill<'a> {
    pub(crate) fn new(tmp: &'a Dir, key: Key) -> Spill<'a> {
        Spill {
            tmp,
            key,
            buf: Vec::new(),
            file: None,
        }
    }

    fn spill_to_file(&mut self) -> std::io::Result<()> {
        let blob = new_tmp(self.tmp, &self.key).map_err(std::io::Error::other)?;
        let mut f = blob.lock.try_clone()?;
        f.seek(SeekFrom::Start(BLOB_HEADER_LEN as u64))?;
        let mut out = BufWriter::with_capacity(1 << 20, f);
        let mut hasher = Xxh3::new();
        out.write_all(&self.buf)?;
        hasher.update(&self.buf);
        self.buf = Vec::new();
        self.file = Some(SpillFile { blob, out, hasher });
        Ok(())
    }

    /// Completes the value written so far.
    pub(crate) fn finish(self, codec: u8, sync: bool) -> Result<Encoded> {
        let Some(SpillFile {
            mut blob,
            out,
            hasher,
        }) = self.file
        else {
            return Ok(Encoded::Inline(self.buf));
        };
        let path = blob.path();
        let mut file = out
            .into_inner()
            .map_err(|e| Error::io(&path, e.into_error()))?;
        blob.len = file.stream_position().at(&path)? - BLOB_HEADER_LEN as u64;
        let header = BlobHeader {
            codec,
            key: self.key,
            id: blob.id,
            len: blob.len,
            hash: hasher.digest128(),
        };
        finish(&file, &path, &header, sync)?;
        Ok(Encoded::Blob(blob))
    }
}

impl Write for Spill<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.file.is_none() && self.buf.len() + data.len() >= INLINE_MAX {
            self.spill_to_file()?;
        }
        match &mut self.file {
            None => self.buf.extend_from_slice(data),
            Some(f) => {
                f.out.write_all(data)?;
                f.hasher.update(data);
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
