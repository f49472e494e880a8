//! [`DataFile`]: a file or directory argument, hashed by its contents.
//!
//! The digest of each file is kept for the process, by (device, inode,
//! size, modification time, change time): a call with an unchanged input
//! costs a `stat` per file, not a read. The change time is what a rewrite
//! cannot restore (setting the modification time back sets it), so a file
//! rewritten to the same size with its old modification time is read
//! again.
//!
//! File times are coarse (a kernel tick), so a file changed within a tick
//! of being digested could change again without its stamp changing (git
//! calls this "racily clean"). A digest is therefore only kept once the
//! file's change time is older than [`RACY`]; until then each call reads
//! the file again.

use std::collections::HashMap;
use std::fs::Metadata;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};

use serde::ser::{Serialize, SerializeStruct, Serializer};

/// A file or directory a function reads, as an argument: its key covers
/// the path and the contents (a directory: every file under it, by
/// relative path, and every symbolic link's target), so the same path
/// with new contents is a new call.
///
/// Digests are cached for the process by (device, inode, size, modified,
/// changed) times, so an unchanged multi-gigabyte input is read once per
/// process and then costs a `stat` per call.
///
/// A relative path is resolved against the process's working directory
/// when the key is made (as `std::fs` resolves it), not against the
/// project: a program run from a subdirectory should build its paths from
/// something fixed, such as `env!("CARGO_MANIFEST_DIR")`.
///
/// A file that cannot be read (missing, no permission) never becomes a
/// cached result: the call runs, nothing is stored or looked up for it,
/// and memo says so once per path on stderr, naming the path as resolved
/// and the reason. A later call with the file in place is cached as usual.
/// (Failing the call instead would take the choice from a function that
/// handles a missing input on purpose.)
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let csv = dir.path().join("points.csv");
/// # let _store = dir.path().join("store");
/// use memo_core::{DataFile, memoize};
///
/// #[memoize(dir = "target/memo-doc-data")]
/// fn row_count(input: DataFile) -> usize {
///     std::fs::read_to_string(input.path()).map_or(0, |t| t.lines().count())
/// }
///
/// std::fs::write(&csv, "x,y\n1,2\n")?;
/// assert_eq!(row_count(DataFile::new(&csv)), 2);
/// std::fs::write(&csv, "x,y\n1,2\n3,4\n")?; // new contents: computed again
/// assert_eq!(row_count(DataFile::new(&csv)), 3);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DataFile {
    path: PathBuf,
}

impl DataFile {
    /// The file or directory at `path`; nothing is read until a key is
    /// made of it.
    pub fn new(path: impl Into<PathBuf>) -> DataFile {
        DataFile { path: path.into() }
    }

    /// The path, as given.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The digest of the contents (blake3; a directory's over its tree),
    /// from the process's cache when the file is unchanged.
    ///
    /// # Errors
    ///
    /// The path cannot be read: it is missing, unreadable, or a directory
    /// holds something that cannot be.
    pub fn digest(&self) -> std::io::Result<[u8; 32]> {
        digest_path(&self.path)
    }
}

impl Serialize for DataFile {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("DataFile", 2)?;
        st.serialize_field("path", &self.path.to_string_lossy())?;
        match self.digest() {
            Ok(d) => st.serialize_field("content", &d)?,
            Err(e) => {
                unreadable(&self.path, &e);
                st.serialize_field("unreadable", &format!("{:?}", e.kind()))?;
            }
        }
        st.end()
    }
}

/// Notes an unreadable data file in the key being made, and says so once
/// per path.
fn unreadable(path: &Path, e: &std::io::Error) {
    static SAID: LazyLock<Mutex<std::collections::HashSet<PathBuf>>> =
        LazyLock::new(Mutex::default);
    crate::key::call::hashed_unreadable();
    if SAID
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(path.to_path_buf())
    {
        let cwd = std::env::current_dir().map_or_else(|_| "?".into(), |d| d.display().to_string());
        let shown = if path.is_absolute() {
            path.display().to_string()
        } else {
            format!(
                "{} (relative to the working directory {cwd})",
                path.display()
            )
        };
        let message = format!(
            "memo: the data file {shown} cannot be read ({e}); calls with it run and are not stored"
        );
        tracing::warn!("{message}");
        crate::report::on_stderr(&message);
    }
}

/// What identifies a file's contents without reading them.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// How old a file's last change must be for its digest to be kept.
const RACY: std::time::Duration = std::time::Duration::from_secs(1);

/// A file's digest, with the stamp it was taken under.
type Digested = (Stamp, [u8; 32]);

/// File digests of this process, by path.
static CACHE: LazyLock<Mutex<HashMap<PathBuf, Digested>>> = LazyLock::new(Mutex::default);

/// Bytes of files read to digest them, for tests that check an unchanged
/// input is not read again.
static READ: AtomicU64 = AtomicU64::new(0);

/// Bytes `DataFile` has read from files in this process.
#[doc(hidden)]
pub fn bytes_read() -> u64 {
    READ.load(Ordering::Relaxed)
}

fn digest_path(path: &Path) -> std::io::Result<[u8; 32]> {
    let m = std::fs::symlink_metadata(path)?;
    let m = if m.file_type().is_symlink() {
        // The argument itself may be a link (to a dataset elsewhere).
        std::fs::metadata(path)?
    } else {
        m
    };
    if m.is_dir() {
        digest_dir(path)
    } else {
        digest_file(path, &m)
    }
}

/// The digest of a regular file: cached while its stamp holds.
fn digest_file(path: &Path, m: &Metadata) -> std::io::Result<[u8; 32]> {
    let stamp = Stamp::of(m);
    let cached = CACHE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(path)
        .filter(|(s, _)| *s == stamp)
        .map(|(_, d)| *d);
    if let Some(d) = cached {
        return Ok(d);
    }
    // Read, then look again: a file written meanwhile is read again, so a
    // digest is only ever kept with the stamp it was taken under.
    let mut stamp = stamp;
    for _ in 0..3 {
        let d = read_digest(path)?;
        let after = std::fs::metadata(path)?;
        if Stamp::of(&after) == stamp {
            if settled(&after) {
                CACHE
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(path.to_path_buf(), (stamp, d));
            }
            return Ok(d);
        }
        let after = Stamp::of(&after);
        stamp = after;
    }
    // Still changing: this read's digest, not kept.
    read_digest(path)
}

/// Whether a file's last change is older than `RACY`, so a later change
/// cannot share its stamp.
fn settled(m: &Metadata) -> bool {
    let changed = std::time::UNIX_EPOCH
        + std::time::Duration::new(
            u64::try_from(m.ctime()).unwrap_or(0),
            u32::try_from(m.ctime_nsec()).unwrap_or(0),
        );
    std::time::SystemTime::now()
        .duration_since(changed)
        .is_ok_and(|age| age > RACY)
}

fn read_digest(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut f = std::fs::File::open(path)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        READ.fetch_add(n as u64, Ordering::Relaxed);
    }
    Ok(*h.finalize().as_bytes())
}

/// The digest of a directory's tree: each entry by name, in name order,
/// with its kind and its digest (a file's contents, a link's target, a
/// directory's tree). Links inside are not followed, so a tree cannot
/// loop.
fn digest_dir(dir: &Path) -> std::io::Result<[u8; 32]> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    let mut h = blake3::Hasher::new_derive_key("memo 2026-12 DataFile tree v1");
    for e in entries {
        let name = e.file_name();
        let name = name.as_encoded_bytes();
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name);
        let path = e.path();
        let m = std::fs::symlink_metadata(&path)?;
        let (kind, digest) = if m.file_type().is_symlink() {
            let target = std::fs::read_link(&path)?;
            (
                b'l',
                *blake3::hash(target.as_os_str().as_encoded_bytes()).as_bytes(),
            )
        } else if m.is_dir() {
            (b'd', digest_dir(&path)?)
        } else {
            (b'f', digest_file(&path, &m)?)
        };
        h.update(&[kind]);
        h.update(&digest);
    }
    Ok(*h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn a_tree_changes_with_any_file_name_or_link() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("data");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("a"), b"1").unwrap();
        std::fs::write(d.join("sub/b"), b"2").unwrap();
        let f = DataFile::new(&d);
        let first = f.digest().unwrap();
        assert_eq!(f.digest().unwrap(), first);
        std::fs::write(d.join("sub/b"), b"3").unwrap();
        let second = f.digest().unwrap();
        assert_ne!(second, first);
        std::fs::rename(d.join("a"), d.join("c")).unwrap();
        let third = f.digest().unwrap();
        assert_ne!(third, second);
        std::os::unix::fs::symlink("c", d.join("link")).unwrap();
        assert_ne!(f.digest().unwrap(), third);
        assert!(DataFile::new(t.path().join("missing")).digest().is_err());
    }
}
