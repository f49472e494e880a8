//! The function registry of a store (`fns/`): for each memoized function,
//! by its tag, the name it has in the source, the code mark and `version`
//! that last ran, and when it was first and last run; and a shared table of
//! per-function miss counts. It is what lets `memo functions` name the
//! functions behind the entries, count the entries of code that no longer
//! runs, and lets a miss say why it missed.
//!
//! Everything here is statistics and names: a damaged or missing file costs
//! a name or a count, never a value, so nothing here is on the read path,
//! and a failure to write it is reported and ignored. Each entry is one
//! small file replaced whole by rename (written at most once per process
//! per function); `docs/format.md` ("Function registry") draws both files.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::OnceLock;
use std::sync::atomic::Ordering;

use crate::dir::{Dir, Kind};
use crate::error::{Error, Result};
use crate::format::{self, FNS_DIR};
use crate::mmap::SharedMap;

/// Magic of a registry entry file.
const ENTRY_MAGIC: [u8; 8] = *b"memo-fn\0";
/// Magic of the miss counter table.
const COUNTS_MAGIC: u64 = u64::from_le_bytes(*b"memo-cnt");
/// Magic of the table of what removed entries had earned.
const RETIRED_MAGIC: u64 = u64::from_le_bytes(*b"memo-ret");
/// Version of both layouts.
const VERSION: u32 = 1;
/// Fixed part of an entry file before the names.
const ENTRY_HEAD: usize = 56;
/// Code marks remembered besides the current one.
const EARLIER_MAX: usize = 16;
/// Longest name or version kept (longer ones are cut, marked with `…`).
const TEXT_MAX: usize = 4096;
/// A counter table: one page, a header line, then rows of a tag and its
/// counters (`misses`: the tag and a count; `retired`: the tag, hits and
/// compute time saved in microseconds).
const COUNTS_LEN: usize = 4096;
const COUNTS_FIRST_PAIR: usize = 8;
const COUNTS_WORDS: usize = COUNTS_LEN / 8;

/// One of the shared counter tables of `fns/`.
#[derive(Clone, Copy)]
struct Table {
    name: &'static str,
    magic: u64,
    /// Words per row, the tag's included.
    stride: usize,
}

/// Computations per function, ever (since the store was made or cleared).
const MISSES: Table = Table {
    name: format::FN_COUNTS_FILE,
    magic: COUNTS_MAGIC,
    stride: 2,
};

/// What the entries of each function that were evicted, replaced or
/// removed had earned (hits, compute time saved): with the live entries'
/// figures, per-function hits span the same time as its misses, so an
/// eviction does not make a function's history vanish.
const RETIRED: Table = Table {
    name: format::FN_RETIRED_FILE,
    magic: RETIRED_MAGIC,
    stride: 3,
};

/// What the registry knows of one function (one `Self` type of a method).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub tag: [u8; 8],
    /// `module::name`, or `module::Type::name` for a method.
    pub name: String,
    /// The `version` option that last ran (empty without one).
    pub version: String,
    /// The code mark that last ran (`key::call::CODE_AT`).
    pub code: u32,
    /// Unix seconds: first registered in this store.
    pub first_run: u64,
    /// Unix seconds: last registered (once per process that called it).
    pub last_run: u64,
    /// Unix seconds: since when `code` has been the code that runs.
    pub code_since: u64,
    /// Code marks that ran before, newest first, with when each last ran.
    pub earlier: Vec<(u32, u64)>,
}

/// What registering a function found.
#[derive(Clone, Debug, Default)]
pub(crate) struct Registered {
    /// The function had run with this store before this process.
    pub known: bool,
    /// The code mark that ran before this process's, if it differed.
    pub changed_from: Option<u32>,
}

impl Registered {
    /// What the registry's `entry` says of a function running with `code`.
    pub(crate) fn of(entry: Option<&Entry>, code: u32) -> Registered {
        Registered {
            known: entry.is_some(),
            changed_from: entry.filter(|o| o.code != code).map(|o| o.code),
        }
    }
}

/// The `fns/` directory of a store.
pub(crate) struct Registry {
    dir: Dir,
    tmp: Dir,
    counts: OnceLock<Option<SharedMap>>,
    retired: OnceLock<Option<SharedMap>>,
}

impl Registry {
    /// The registry of the store at `root`; with `create`, its directory is
    /// made if missing, else a store without one has `None`.
    pub(crate) fn open(root: &Dir, tmp: &Dir, create: bool) -> Result<Option<Registry>> {
        Ok(root.open_dir(FNS_DIR, create)?.map(|dir| Registry {
            dir,
            tmp: tmp.clone(),
            counts: OnceLock::new(),
            retired: OnceLock::new(),
        }))
    }

    /// The entry of function `tag`; `None` if it has none, or only a
    /// damaged one (reported).
    pub(crate) fn read(&self, tag: [u8; 8]) -> Option<Entry> {
        let name = format::fn_entry_name(tag);
        let mut file = match self.dir.open_file(&name, false) {
            Ok(Some(f)) => f,
            Ok(None) => return None,
            Err(e) => {
                tracing::debug!(error = %e, "memo: registry entry unreadable");
                return None;
            }
        };
        let mut bytes = Vec::new();
        // Entries are small; a huge file is not one of ours.
        let read = (&mut file)
            .take(2 * TEXT_MAX as u64 + 1024)
            .read_to_end(&mut bytes);
        let path = self.dir.child(&name);
        match read
            .map_err(|e| Error::io(&path, e))
            .and_then(|_| decode(&bytes, &path))
        {
            Ok(e) if e.tag == tag => Some(e),
            Ok(_) => {
                tracing::warn!(path = %path.display(), "memo: registry entry names another function; ignored");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "memo: damaged registry entry; it is rewritten on the function's next run");
                None
            }
        }
    }

    /// Every readable entry, and the names of files that are damaged.
    pub(crate) fn all(&self) -> Result<(Vec<Entry>, Vec<String>)> {
        let mut out = Vec::new();
        let mut bad = Vec::new();
        for (name, kind) in self.dir.entries()? {
            let Some(tag) = name.to_str().and_then(format::parse_fn_entry_name) else {
                continue;
            };
            if kind != Kind::File {
                bad.push(format!(
                    "{}: not a regular file",
                    self.dir.child(&format::fn_entry_name(tag)).display()
                ));
                continue;
            }
            match self.read(tag) {
                Some(e) => out.push(e),
                None => bad.push(format!(
                    "{}: damaged",
                    self.dir.child(&format::fn_entry_name(tag)).display()
                )),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((out, bad))
    }

    /// Records that function `tag` runs now with code mark `code`: written
    /// whole to `tmp/` and renamed over the old entry, so a reader sees the
    /// old entry or the new one. Two processes registering at once may
    /// lose one's `earlier` mark: these are statistics.
    pub(crate) fn record(
        &self,
        tag: [u8; 8],
        name: &str,
        version: &str,
        code: u32,
        now: u64,
    ) -> Result<Registered> {
        let old = self.read(tag);
        let found = Registered::of(old.as_ref(), code);
        let entry = match old {
            Some(mut e) => {
                if e.code != code {
                    e.earlier.retain(|&(c, _)| c != code);
                    e.earlier.insert(0, (e.code, e.last_run));
                    e.earlier.truncate(EARLIER_MAX);
                    e.code = code;
                    e.code_since = now;
                }
                name.clone_into(&mut e.name);
                version.clone_into(&mut e.version);
                e.last_run = now;
                e
            }
            None => Entry {
                tag,
                name: name.to_owned(),
                version: version.to_owned(),
                code,
                first_run: now,
                last_run: now,
                code_since: now,
                earlier: Vec::new(),
            },
        };
        let tmp_name = format::tmp_fn_name(tag, std::process::id());
        let mut file = self.tmp.create_new(&tmp_name).or_else(|_| {
            // A leftover of a process with the same pid that died.
            self.tmp.remove(&tmp_name)?;
            self.tmp.create_new(&tmp_name)
        })?;
        // Held while written, so a sweep of `tmp/` leaves it alone.
        let path = self.tmp.child(&tmp_name);
        let written = file
            .lock()
            .and_then(|()| file.write_all(&encode(&entry)))
            .map_err(|e| Error::io(&path, e))
            .and_then(|()| {
                self.tmp
                    .rename(&tmp_name, &self.dir, &format::fn_entry_name(tag))
            });
        if written.is_err() {
            let _ = self.tmp.remove(&tmp_name);
        }
        written.map(|()| found)
    }

    /// A shared counter table, made on first use; `None` if it cannot be
    /// (reported once).
    fn table(&self, t: Table, create: bool) -> Option<&SharedMap> {
        let cell = if t.magic == COUNTS_MAGIC {
            &self.counts
        } else {
            &self.retired
        };
        if let Some(c) = cell.get() {
            return c.as_ref();
        }
        match self.map_counts(t, create) {
            Ok(Some(m)) => cell.get_or_init(|| Some(m)).as_ref(),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "memo: per-function counts are off");
                cell.get_or_init(|| None).as_ref()
            }
        }
    }

    fn map_counts(&self, t: Table, create: bool) -> Result<Option<SharedMap>> {
        let name = t.name;
        if create && self.dir.kind(name)?.is_none() {
            // Made whole in `tmp/` and linked in: a reader never maps a
            // short table, and a second maker's link fails harmlessly.
            let tmp_name = format::tmp_fn_name([0; 8], std::process::id());
            let _ = self.tmp.remove(&tmp_name);
            let mut file = self.tmp.create_new(&tmp_name)?;
            let mut page = vec![0_u8; COUNTS_LEN];
            page[..8].copy_from_slice(&t.magic.to_le_bytes());
            page[8..12].copy_from_slice(&VERSION.to_le_bytes());
            let path = self.tmp.child(&tmp_name);
            let made = file
                .lock()
                .and_then(|()| file.write_all(&page))
                .map_err(|e| Error::io(&path, e))
                .and_then(|()| self.tmp.link_into(&tmp_name, &self.dir, name));
            let _ = self.tmp.remove(&tmp_name);
            match made {
                Ok(()) => {}
                Err(Error::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        let Some(file) = self
            .dir
            .open_file(name, true)
            .or_else(|_| self.dir.open_file(name, false))?
        else {
            return Ok(None);
        };
        let path = self.dir.child(name);
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        if len != COUNTS_LEN as u64 {
            return Err(Error::corrupt(&path, len, "counter table is not one page"));
        }
        let map = SharedMap::map(&file, &path, 0, false)?;
        let h = map.header();
        if h[0].load(Ordering::Relaxed) != t.magic {
            return Err(Error::corrupt(
                &path,
                0,
                "not a memo counter table (bad magic)",
            ));
        }
        let version = h[1].load(Ordering::Relaxed) as u32;
        if version != VERSION {
            return Err(Error::IncompatibleFormat {
                path,
                found: version,
                supported: VERSION,
            });
        }
        Ok(Some(map))
    }

    /// Counts a miss (a computation) of function `tag`. A tag claims a pair
    /// of words by compare-and-swap on first use; when the page is full,
    /// misses of further functions go uncounted.
    pub(crate) fn count_miss(&self, tag: [u8; 8]) {
        if let Some(map) = self.table(MISSES, true) {
            add(map, MISSES, tag, &[1]);
        }
    }

    /// Every function's miss count.
    pub(crate) fn misses(&self) -> HashMap<[u8; 8], u64> {
        self.table(MISSES, false)
            .map(|m| rows(m, MISSES).map(|(t, c)| (t, c[0])).collect())
            .unwrap_or_default()
    }

    /// Adds what a removed entry of function `tag` had earned: its hits and
    /// the compute time they saved.
    pub(crate) fn retire(&self, tag: [u8; 8], hits: u64, saved_us: u64) {
        if hits == 0 {
            return;
        }
        if let Some(map) = self.table(RETIRED, true) {
            add(map, RETIRED, tag, &[hits, saved_us]);
        }
    }

    /// Every function's retired hits and saved microseconds.
    pub(crate) fn retired(&self) -> HashMap<[u8; 8], (u64, u64)> {
        self.table(RETIRED, false)
            .map(|m| rows(m, RETIRED).map(|(t, c)| (t, (c[0], c[1]))).collect())
            .unwrap_or_default()
    }

    /// Zeroes every counter (`Store::clear`: the per-function counts then
    /// span the time since the clear, like the entries).
    pub(crate) fn reset_counts(&self) {
        for t in [MISSES, RETIRED] {
            if let Some(map) = self.table(t, false) {
                for w in &map.header()[COUNTS_FIRST_PAIR..COUNTS_WORDS] {
                    w.store(0, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Adds `by` to function `tag`'s counters in table `t`. A tag claims a row
/// by compare-and-swap on first use; when the page is full, further
/// functions go uncounted.
fn add(map: &SharedMap, t: Table, tag: [u8; 8], by: &[u64]) {
    let tag = u64::from_le_bytes(tag);
    if tag == 0 {
        return;
    }
    let h = map.header();
    let rows = (COUNTS_WORDS - COUNTS_FIRST_PAIR) / t.stride;
    let start = (tag % rows as u64) as usize;
    for k in 0..rows {
        let at = COUNTS_FIRST_PAIR + t.stride * ((start + k) % rows);
        match h[at].compare_exchange(0, tag, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {}
            Err(other) if other == tag => {}
            Err(_) => continue,
        }
        for (i, &n) in by.iter().enumerate().take(t.stride - 1) {
            h[at + 1 + i].fetch_add(n, Ordering::Relaxed);
        }
        return;
    }
}

/// Every claimed row of table `t`: its tag and counters (summed, should a
/// tag hold two rows after a race).
fn rows(map: &SharedMap, t: Table) -> impl Iterator<Item = ([u8; 8], [u64; 2])> {
    let h = map.header();
    let mut out: HashMap<[u8; 8], [u64; 2]> = HashMap::new();
    let rows = (COUNTS_WORDS - COUNTS_FIRST_PAIR) / t.stride;
    for r in 0..rows {
        let at = COUNTS_FIRST_PAIR + t.stride * r;
        let tag = h[at].load(Ordering::Acquire);
        if tag != 0 {
            let c = out.entry(tag.to_le_bytes()).or_default();
            for i in 0..(t.stride - 1).min(2) {
                c[i] = c[i].saturating_add(h[at + 1 + i].load(Ordering::Relaxed));
            }
        }
    }
    out.into_iter()
}

fn cut(s: &str) -> &str {
    if s.len() <= TEXT_MAX {
        return s;
    }
    let mut end = TEXT_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn encode(e: &Entry) -> Vec<u8> {
    let (name, version) = (cut(&e.name), cut(&e.version));
    let earlier = &e.earlier[..e.earlier.len().min(EARLIER_MAX)];
    let mut b =
        Vec::with_capacity(ENTRY_HEAD + name.len() + version.len() + 16 * earlier.len() + 8);
    b.extend_from_slice(&ENTRY_MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&e.code.to_le_bytes());
    b.extend_from_slice(&e.tag);
    b.extend_from_slice(&e.first_run.to_le_bytes());
    b.extend_from_slice(&e.last_run.to_le_bytes());
    b.extend_from_slice(&e.code_since.to_le_bytes());
    b.extend_from_slice(&(name.len() as u16).to_le_bytes());
    b.extend_from_slice(&(version.len() as u16).to_le_bytes());
    b.extend_from_slice(&(earlier.len() as u16).to_le_bytes());
    b.extend_from_slice(&0_u16.to_le_bytes());
    debug_assert_eq!(b.len(), ENTRY_HEAD);
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(version.as_bytes());
    for &(code, at) in earlier {
        b.extend_from_slice(&code.to_le_bytes());
        b.extend_from_slice(&0_u32.to_le_bytes());
        b.extend_from_slice(&at.to_le_bytes());
    }
    let sum = xxhash_rust::xxh3::xxh3_64(&b);
    b.extend_from_slice(&sum.to_le_bytes());
    b
}

fn decode(b: &[u8], path: &std::path::Path) -> Result<Entry> {
    let bad = |off: usize, what: &str| Error::corrupt(path, off as u64, what);
    if b.len() < ENTRY_HEAD + 8 || b[..8] != ENTRY_MAGIC {
        return Err(bad(0, "not a memo registry entry (bad magic or short)"));
    }
    let u16_at = |o: usize| usize::from(u16::from_le_bytes([b[o], b[o + 1]]));
    let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let u64_at = |o: usize| {
        let mut w = [0; 8];
        w.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(w)
    };
    let version = u32_at(8);
    if version != VERSION {
        return Err(Error::IncompatibleFormat {
            path: path.to_path_buf(),
            found: version,
            supported: VERSION,
        });
    }
    let (name_len, version_len, earlier) = (u16_at(48), u16_at(50), u16_at(52));
    let end = ENTRY_HEAD + name_len + version_len + 16 * earlier;
    if b.len() != end + 8 || earlier > EARLIER_MAX {
        return Err(bad(48, "lengths disagree with the file's size"));
    }
    if xxhash_rust::xxh3::xxh3_64(&b[..end]) != u64_at(end) {
        return Err(bad(end, "checksum mismatch"));
    }
    let text = |from: usize, len: usize| {
        std::str::from_utf8(&b[from..from + len])
            .map(str::to_owned)
            .map_err(|_| bad(from, "a name is not UTF-8"))
    };
    let mut tag = [0; 8];
    tag.copy_from_slice(&b[16..24]);
    let names_end = ENTRY_HEAD + name_len + version_len;
    Ok(Entry {
        tag,
        name: text(ENTRY_HEAD, name_len)?,
        version: text(ENTRY_HEAD + name_len, version_len)?,
        code: u32_at(12),
        first_run: u64_at(24),
        last_run: u64_at(32),
        code_since: u64_at(40),
        earlier: (0..earlier)
            .map(|k| (u32_at(names_end + 16 * k), u64_at(names_end + 16 * k + 8)))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> (tempfile::TempDir, Registry) {
        let t = tempfile::tempdir().unwrap();
        let root = Dir::open_root(t.path(), true).unwrap();
        let tmp = root.open_dir("tmp", true).unwrap().unwrap();
        let r = Registry::open(&root, &tmp, true).unwrap().unwrap();
        (t, r)
    }

    #[test]
    fn entries_round_trip_and_remember_earlier_code() {
        let (_t, r) = registry();
        let tag = [1, 2, 3, 4, 5, 6, 7, 8];
        let first = r.record(tag, "lab::fit", "", 0xaa, 100).unwrap();
        assert!(!first.known && first.changed_from.is_none());
        let same = r.record(tag, "lab::fit", "", 0xaa, 200).unwrap();
        assert!(same.known && same.changed_from.is_none());
        let changed = r.record(tag, "lab::fit", "2", 0xbb, 300).unwrap();
        assert_eq!(changed.changed_from, Some(0xaa));
        let e = r.read(tag).unwrap();
        assert_eq!(
            (
                e.name.as_str(),
                e.version.as_str(),
                e.code,
                e.first_run,
                e.last_run,
                e.code_since
            ),
            ("lab::fit", "2", 0xbb, 100, 300, 300)
        );
        assert_eq!(e.earlier, vec![(0xaa, 200)]);
        // Many code changes keep the newest marks only.
        for c in 0..40 {
            r.record(tag, "lab::fit", "", c, 400 + u64::from(c))
                .unwrap();
        }
        let e = r.read(tag).unwrap();
        assert_eq!(e.earlier.len(), EARLIER_MAX);
        assert_eq!(e.earlier[0], (38, 438));
        let (all, bad) = r.all().unwrap();
        assert_eq!((all.len(), bad.len()), (1, 0));
    }

    #[test]
    fn a_damaged_or_foreign_entry_is_ignored_then_rewritten() {
        let (t, r) = registry();
        let tag = [9; 8];
        r.record(tag, "lab::fit", "", 1, 10).unwrap();
        let path = t.path().join("fns").join(format::fn_entry_name(tag));
        let good = std::fs::read(&path).unwrap();
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            std::fs::write(&path, &bad).unwrap();
            assert_eq!(r.read(tag), None, "byte {at} flipped");
        }
        for len in 0..good.len() {
            std::fs::write(&path, &good[..len]).unwrap();
            assert_eq!(r.read(tag), None, "cut at {len}");
        }
        // Another function's entry under this name is not this one's.
        let other = [7; 8];
        r.record(other, "lab::other", "", 1, 10).unwrap();
        std::fs::copy(
            t.path().join("fns").join(format::fn_entry_name(other)),
            &path,
        )
        .unwrap();
        assert_eq!(r.read(tag), None);
        assert_eq!(r.all().unwrap().1.len(), 1, "named as damaged");
        // The next run rewrites it, as new.
        let again = r.record(tag, "lab::fit", "", 1, 20).unwrap();
        assert!(!again.known);
        assert_eq!(r.read(tag).unwrap().first_run, 20);
    }

    #[test]
    fn miss_counts_are_per_function_and_shared() {
        let (t, r) = registry();
        let (fit, other) = ([1; 8], [2; 8]);
        for _ in 0..3 {
            r.count_miss(fit);
        }
        r.count_miss(other);
        // A second opener (another process) sees and adds to the same page.
        let root = Dir::open_root(t.path(), true).unwrap();
        let tmp = root.open_dir("tmp", true).unwrap().unwrap();
        let r2 = Registry::open(&root, &tmp, false).unwrap().unwrap();
        r2.count_miss(other);
        let m = r.misses();
        assert_eq!((m.get(&fit), m.get(&other)), (Some(&3), Some(&2)));
        // More functions than pairs: the rest go uncounted, nothing breaks.
        for i in 0..300_u64 {
            r.count_miss((i + 1000).to_le_bytes());
        }
        assert_eq!(r.misses().len(), 252);
    }
}
