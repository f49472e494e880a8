//! Memory mappings: the only module allowed `unsafe`.
//!
//! # Safety model
//!
//! 1. **Only write-once bytes are read through a [`Region`].** Segment records
//!    and blob files are written completely (segments by `pwrite` beyond the
//!    published append offset, blobs in `tmp/` before the rename) before any
//!    index slot points at them, and memo never writes them again. A slice is
//!    only ever formed over a range a reader was pointed at, so no slice
//!    aliases bytes another process may be writing.
//! 2. **Files are removed only by unlink, and never shrink.** A mapping
//!    stays valid after its file is unlinked or replaced by rename, so
//!    compaction, eviction, `clear` and growth never pull memory from under a
//!    reader. memo never truncates a file that may be mapped. A segment is
//!    mapped at its full reservation while its file is shorter and growing:
//!    only bytes below the file length last read by `fstat` are touched, and
//!    files never shrink, so no access lands past end-of-file. (A file
//!    truncated by someone else while mapped raises SIGBUS on access, as in
//!    every mmap-based store; memo cannot prevent that and does not try.)
//! 3. **Every slice is bounds-checked** against the mapping's length before it
//!    is formed ([`Region::get`]), and its content is checksummed by the caller
//!    before it is trusted.
//! 4. **The shared index is touched only through atomics.** Other processes
//!    write it concurrently, so it is viewed as `AtomicU64`/[`Slot`] only,
//!    never as plain bytes.
//! 5. **Nothing mapped has holes.** Touching a hole of a shared mapping makes
//!    the kernel allocate a page, which on a full tmpfs raises SIGBUS. Index
//!    files are written out with zeros before they are mapped, and segments
//!    and blobs are written sequentially, so every mapped byte below the file
//!    length is allocated.
//! 6. **Only memo's regular files are mapped.** Files are opened through
//!    directory handles without following links and checked to be regular
//!    files (`dir.rs`), so a link in a store cannot make memo map a device,
//!    a FIFO or another program's file.

#![allow(
    unsafe_code,
    reason = "the one module that maps files; see the safety model above"
)]

use std::collections::HashSet;
use std::fs::File;
use std::ops::Deref;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::error::{IoContext, Result};
use crate::format::{INDEX_HEADER_LEN, SLOT_LEN, hdr};

/// A read-only mapping of a write-once file (a blob), or of an append-only
/// one (a segment) reserved at its largest size.
pub(crate) struct Region {
    map: Mem,
    /// Bytes that may be read: the file's length when last looked at, never
    /// more than the mapping.
    valid: AtomicUsize,
    /// The file of a growing region, to look at its length again.
    file: Option<File>,
    /// Offsets of long records this process has checksummed (segments).
    checked: RwLock<HashSet<usize>>,
}

/// What a region's bytes live in.
enum Mem {
    Map(memmap2::Mmap),
    /// A value decoded into memory (a compressed one): owned, so every
    /// [`Bytes`] of it keeps it alive as one of a mapping does.
    Heap(Box<[u8]>),
}

impl Mem {
    fn as_ptr(&self) -> *const u8 {
        match self {
            Mem::Map(m) => m.as_ptr(),
            Mem::Heap(h) => h.as_ptr(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Mem::Map(m) => m.len(),
            Mem::Heap(h) => h.len(),
        }
    }
}

impl Region {
    /// Bytes decoded into memory, read as a mapping's are.
    pub(crate) fn heap(bytes: Vec<u8>) -> Region {
        let bytes = bytes.into_boxed_slice();
        Region {
            valid: AtomicUsize::new(bytes.len()),
            map: Mem::Heap(bytes),
            file: None,
            checked: RwLock::default(),
        }
    }

    /// Maps all of `file` as it is now.
    pub(crate) fn map(file: &File, path: &Path) -> Result<Region> {
        // SAFETY: (1) memo only reads ranges that are complete and never
        // rewritten; (2) memo never truncates a mapped file; (6) `file` is
        // one of memo's regular files. The mapping is read-only, so nothing
        // here writes through it.
        let map = unsafe { memmap2::MmapOptions::new().map(file) }.at(path)?;
        let valid = AtomicUsize::new(map.len());
        Ok(Region {
            map: Mem::Map(map),
            valid,
            file: None,
            checked: RwLock::default(),
        })
    }

    /// Maps `reserve` bytes of a file that grows by appending; only its
    /// current length is readable until [`Region::refresh`] sees more.
    pub(crate) fn map_growing(file: File, path: &Path, reserve: usize) -> Result<Region> {
        let len = file.metadata().at(path)?.len();
        // SAFETY: as in `map`; the mapping may extend past end-of-file, and
        // (2) only bytes below `valid`, which is never more than a length the
        // file had (and files never shrink), are ever touched.
        let map = unsafe { memmap2::MmapOptions::new().len(reserve).map(&file) }.at(path)?;
        let valid = AtomicUsize::new(usize::try_from(len).unwrap_or(usize::MAX).min(reserve));
        Ok(Region {
            map: Mem::Map(map),
            valid,
            file: Some(file),
            checked: RwLock::default(),
        })
    }

    /// Looks at a growing file's length again; `true` if more can be read.
    pub(crate) fn refresh(&self) -> bool {
        let Some(len) = self
            .file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| m.len())
        else {
            return false;
        };
        let len = usize::try_from(len)
            .unwrap_or(usize::MAX)
            .min(self.map.len());
        self.valid.fetch_max(len, Ordering::AcqRel) < len
    }

    /// Readable bytes.
    pub(crate) fn len(&self) -> usize {
        self.valid.load(Ordering::Acquire)
    }

    /// The bytes `off..off + len`, or `None` if that range is not readable.
    #[inline]
    pub(crate) fn get(&self, off: usize, len: usize) -> Option<&[u8]> {
        let end = off.checked_add(len)?;
        if end > self.len() {
            return None;
        }
        // SAFETY: the range is below `valid`, so inside the mapping and the
        // file, or inside the owned buffer (checked just above, (2), (3)),
        // the mapping lives as long as `self`, and by (1) no one writes these
        // bytes while they are borrowed.
        Some(unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(off), len) })
    }

    /// Whether the record at `off` was checksummed through this mapping.
    pub(crate) fn is_checked(&self, off: usize) -> bool {
        self.checked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&off)
    }

    /// Notes that the record at `off` checksummed correctly; its bytes are
    /// written once and never change under this mapping.
    pub(crate) fn mark_checked(&self, off: usize) {
        self.checked
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(off);
    }

    /// Tells the kernel the whole region will be read soon.
    pub(crate) fn advise_sequential(&self) {
        // Advice only: failure changes nothing but speed.
        if let Mem::Map(m) = &self.map {
            let _ = m.advise(memmap2::Advice::Sequential);
        }
    }
}

/// A value's bytes, borrowed from the mapped file that holds them (or,
/// for a value stored compressed, decoded into memory the `Bytes` owns).
///
/// `Bytes` derefs to `[u8]` with no copy. It keeps its mapping alive: it stays
/// valid after the [`Store`](crate::Store) that returned it is dropped, and
/// after the entry is removed, evicted or replaced (the file is unlinked, not
/// overwritten). It is `Send + Sync`.
///
/// Values of 64 KiB and more start at a 64-byte aligned address (16-byte
/// aligned when decoded into memory).
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use memo_core::{Key, Store};
///
/// let store = Store::open(dir.path())?;
/// let key = Key::of("greeting");
/// store.put_bytes(&key, b"hello")?;
/// let bytes = store.get_bytes(&key)?.expect("just stored");
/// drop(store);
/// assert_eq!(&*bytes, b"hello");
/// # Ok::<(), memo_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Bytes {
    region: Arc<Region>,
    off: usize,
    len: usize,
}

impl Bytes {
    /// `None` if the range is not inside the region.
    pub(crate) fn new(region: Arc<Region>, off: usize, len: usize) -> Option<Bytes> {
        region.get(off, len)?;
        Some(Bytes { region, off, len })
    }

    /// `bytes`, decoded into memory, as a value (a compressed one, once
    /// decoded); `Array`s in it view this memory as they view a mapping.
    pub(crate) fn owned(bytes: Vec<u8>) -> Bytes {
        let len = bytes.len();
        Bytes {
            region: Arc::new(Region::heap(bytes)),
            off: 0,
            len,
        }
    }

    /// The bytes after the first `skip`, viewing the same mapping; `None`
    /// if there are fewer.
    pub(crate) fn skip(&self, skip: usize) -> Option<Bytes> {
        Bytes::new(
            self.region.clone(),
            self.off + skip,
            self.len.checked_sub(skip)?,
        )
    }
}

impl Deref for Bytes {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        // `new` checked the range; a mapping never shrinks.
        self.region.get(self.off, self.len).unwrap_or(&[])
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bytes({} bytes)", self.len)
    }
}

impl PartialEq for Bytes {
    fn eq(&self, other: &Bytes) -> bool {
        **self == **other
    }
}

impl Eq for Bytes {}

impl PartialEq<[u8]> for Bytes {
    fn eq(&self, other: &[u8]) -> bool {
        **self == *other
    }
}

thread_local! {
    /// The value this thread is decoding (`decoding_from`), so that an
    /// [`Array`](crate::Array) found in it can keep a view of the mapping
    /// instead of copying. Null outside a decode.
    static SOURCE: std::cell::Cell<*const Bytes> = const { std::cell::Cell::new(std::ptr::null()) };
}

/// Runs `f` on `bytes` with `bytes` as this thread's decode source, so that
/// [`view_of`] can turn a slice of them back into a [`Bytes`].
pub(crate) fn decoding_from<R>(bytes: &Bytes, f: impl FnOnce(&[u8]) -> R) -> R {
    /// Puts the previous source back, on return and on unwinding alike, so
    /// `SOURCE` never outlives the borrow it was made from.
    struct Restore(*const Bytes);
    impl Drop for Restore {
        fn drop(&mut self) {
            SOURCE.with(|s| s.set(self.0));
        }
    }
    let previous = SOURCE.with(|s| s.replace(std::ptr::from_ref(bytes)));
    let _restore = Restore(previous);
    f(bytes)
}

/// `slice` as a [`Bytes`] sharing its mapping, if it lies inside the value
/// this thread is decoding (`decoding_from`); `None` otherwise.
pub(crate) fn view_of(slice: &[u8]) -> Option<Bytes> {
    let source = SOURCE.with(std::cell::Cell::get);
    if source.is_null() {
        return None;
    }
    // SAFETY: a non-null `SOURCE` was set by `decoding_from` on this thread
    // from a `&Bytes` that is borrowed for the whole of that call, and its
    // guard resets `SOURCE` before the call returns or unwinds. `view_of`
    // only runs inside `f` there (it is called from within the decode), so
    // the `Bytes` is alive and only shared-borrowed.
    let source = unsafe { &*source };
    let base = source.as_ptr() as usize;
    let off = (slice.as_ptr() as usize).checked_sub(base)?;
    if off.checked_add(slice.len())? > source.len {
        return None;
    }
    Bytes::new(source.region.clone(), source.off + off, slice.len())
}

/// One index slot as it lies in the shared file (32 bytes, see
/// `docs/format.md`). Every field is atomic because other processes write it.
#[repr(C)]
pub(crate) struct Slot {
    /// Seqlock: odd while a writer changes `tag`, `loc` or `len`.
    pub seq: AtomicU32,
    /// Bytes 0..4 of the key (`Key::tag32`).
    pub tag: AtomicU32,
    /// The entry's segment record (`format::loc`).
    pub loc: AtomicU64,
    /// Value length (saturated at `u32::MAX` for blobs).
    pub len: AtomicU32,
    /// The access clock (`hdr::TICK`, low 32 bits) at the last use.
    pub atime: AtomicU32,
    /// Hits since the entry was stored.
    pub hits: AtomicU32,
    /// What computing the value cost, in microseconds (saturating).
    pub cost: AtomicU32,
}

const _: () = assert!(std::mem::size_of::<Slot>() == SLOT_LEN);
const _: () = assert!(std::mem::align_of::<Slot>() <= 8);

/// A read-write shared mapping of the index file, viewed through atomics.
pub(crate) struct SharedMap {
    map: memmap2::MmapMut,
    slots: usize,
}

impl SharedMap {
    /// Maps `file`, which must be exactly one header page plus `slots` slots
    /// (the caller checked its length). A `private` mapping (of a file
    /// opened read-only, for a read-only store) keeps the file's pages until
    /// this process writes one, which then becomes its own copy and never
    /// reaches the file: a read-only store writes none, and should a
    /// counter slip through, it changes this process's copy rather than
    /// fault on a read-only page.
    pub(crate) fn map(file: &File, path: &Path, slots: usize, private: bool) -> Result<SharedMap> {
        let opts = memmap2::MmapOptions::new();
        let map = if private {
            // SAFETY: as below; a private mapping of a read-only descriptor
            // may be written, and the writes stay in this process.
            unsafe { opts.map_copy(file) }
        } else {
            // SAFETY: (4) the bytes are only ever accessed through the
            // atomic views below, so concurrent writes by other processes
            // are data-race free; (2) the index file is replaced by rename,
            // never truncated.
            unsafe { opts.map_mut(file) }
        }
        .at(path)?;
        let need = INDEX_HEADER_LEN + slots * SLOT_LEN;
        if map.len() < need {
            return Err(crate::Error::corrupt(
                path,
                map.len() as u64,
                "index shorter than its slot table",
            ));
        }
        Ok(SharedMap { map, slots })
    }

    /// The header page as words.
    #[inline]
    #[allow(
        clippy::cast_ptr_alignment,
        reason = "the mapping is page-aligned; see the SAFETY comment"
    )]
    pub(crate) fn header(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is page-aligned (so 8-aligned) and at least
        // INDEX_HEADER_LEN long (checked in `map`); AtomicU64 has the size and
        // alignment of u64 and any bit pattern is valid; (4) all access is
        // atomic. The slice borrows `self`, which owns the mapping.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().cast::<AtomicU64>(), hdr::WORDS) }
    }

    /// The slot table.
    #[inline]
    #[allow(
        clippy::cast_ptr_alignment,
        reason = "the table is 8-aligned; see the SAFETY comment"
    )]
    pub(crate) fn slots(&self) -> &[Slot] {
        // SAFETY: the table starts INDEX_HEADER_LEN (a multiple of 8) past a
        // page-aligned base and `map` checked it holds `slots` slots; `Slot`
        // is repr(C) of atomics, valid for any bits, 8-aligned; (4).
        unsafe {
            std::slice::from_raw_parts(
                self.map.as_ptr().add(INDEX_HEADER_LEN).cast::<Slot>(),
                self.slots,
            )
        }
    }

    /// Writes dirty pages of the range to disk (`Durability::Sync`).
    pub(crate) fn flush_range(&self, off: usize, len: usize, path: &Path) -> Result<()> {
        self.map.flush_range(off, len).at(path)
    }

    pub(crate) fn flush(&self, path: &Path) -> Result<()> {
        self.map.flush().at(path)
    }

    /// Maps every page of the mapping writable now (`MADV_POPULATE_WRITE`,
    /// Linux 5.14), so that later writes take no page fault; where it is not
    /// supported, pages fault in as they are written.
    pub(crate) fn populate(&self) {
        let _ = self.map.advise(memmap2::Advice::PopulateWrite);
    }

    /// Drops this process's page-table entries for the mapping, a chunk at
    /// a time, before it is unmapped: `munmap` of a large populated mapping
    /// holds the address-space lock for writing throughout, stalling every
    /// page fault of the process's other threads, while `MADV_DONTNEED`
    /// holds it for reading.
    pub(crate) fn drop_pages(&self) {
        const CHUNK: usize = 4 << 20;
        let mut off = 0;
        while off < self.map.len() {
            let len = CHUNK.min(self.map.len() - off);
            // SAFETY: a shared file mapping: MADV_DONTNEED only drops page
            // table entries, and the next access maps the same page-cache
            // pages again, so no thread (of this process or another) sees
            // its contents change; (4) all access is through atomics.
            let _ = unsafe {
                self.map
                    .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, off, len)
            };
            off += len;
            std::thread::yield_now();
        }
    }
}

/// Runs `hook` when the process exits normally (`exit`, or a return from
/// `main`), after Rust's own shutdown: the one place memo needs code to run
/// at exit for `static` stores, which are never dropped (`store/install.rs`
/// drains its queues there). Not a mapping, but `unsafe`, so it lives here.
pub(crate) fn at_exit(hook: extern "C" fn()) {
    // SAFETY: `atexit` only records the pointer; `hook` is a plain `extern
    // "C"` function of this crate with no arguments, valid for the life of
    // the process, that never unwinds (it catches panics itself).
    let rc = unsafe { nix::libc::atexit(hook) };
    if rc != 0 {
        tracing::warn!(
            "memo: cannot register the exit hook; values fetched from the remote but not yet installed at exit are fetched again next time"
        );
    }
}
