//! Adopting a directory as a store: only an empty one, or one that is
//! already a store, whose `LOCK` carries memo's marker (`docs/format.md`).
//! Whatever else a user's directory holds, nothing is created, changed or
//! removed in it.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex, PoisonError};

use crate::dir::{Dir, Kind};
use crate::error::{Error, IoContext, Result};
use crate::format::{self, INDEX_FILE, LOCK_FILE, MARKER_LEN, Marker};
use crate::index::Index;

/// Makes sure `root` is a memo store before anything is created in it, and
/// returns its `LOCK` file, which carries the store's marker.
///
/// An empty directory becomes a store: `LOCK` is created with the marker
/// before anything else, so a directory holding more than `LOCK` always has
/// its marker written. An empty `LOCK` is a store being made by another
/// process (it writes the same bytes), one whose maker died before writing
/// them, or a store made before the marker existed (it has an index):
/// those are adopted. Anything else is not memo's, and is refused.
pub(super) fn adopt(root: &Dir, sync: bool) -> Result<File> {
    let path = root.child(LOCK_FILE);
    let marker = |f: &File| read_marker(f, &path);
    let mark = |f: &File| {
        f.write_all_at(&format::encode_marker(), 0).at(&path)?;
        if sync {
            f.sync_all().at(&path)?;
            root.sync()?;
        }
        Ok::<(), Error>(())
    };
    // Three passes at most: a later pass only follows another process's
    // create of `LOCK`, seen either by the listing or by `create_new`.
    for _ in 0..3 {
        let Some(f) = root.open_file(LOCK_FILE, true)? else {
            let entries = root.entries()?;
            if entries.iter().any(|(n, _)| n == LOCK_FILE) {
                // Another process made `LOCK` since we looked: read it.
                continue;
            }
            if !entries.is_empty() {
                return Err(foreign(root, &entries));
            }
            match root.create_new(LOCK_FILE) {
                Ok(f) => {
                    mark(&f)?;
                    return Ok(f);
                }
                Err(Error::Io { ref source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            }
        };
        return match marker(&f)? {
            Marker::Ok => Ok(f),
            Marker::Version(found) => Err(incompatible(path, found)),
            Marker::Foreign => Err(not_a_marker(&path)),
            Marker::Empty => {
                let entries = root.entries()?;
                if marker(&f)? == Marker::Ok {
                    return Ok(f);
                }
                let only_lock = entries.iter().all(|(n, _)| n == LOCK_FILE);
                if only_lock || Index::has_magic(root, INDEX_FILE) {
                    mark(&f)?;
                    Ok(f)
                } else {
                    Err(foreign(root, &entries))
                }
            }
        };
    }
    Err(Error::refused(
        &path,
        "it keeps changing under memo while the store is being made",
    ))
}

/// The `LOCK` of a store this process opens read-only: it must be there
/// and carry the marker (or be the empty `LOCK` of a store older than the
/// marker, which has an index). Nothing is created or written.
pub(super) fn check_read_only(root: &Dir) -> Result<File> {
    let path = root.child(LOCK_FILE);
    let Some(f) = root.open_file(LOCK_FILE, false)? else {
        return Err(Error::refused(
            root.path(),
            "memo cannot write here, so it opens the directory read-only, and it is not \
             a memo store (it has no LOCK file); nothing was created there",
        ));
    };
    match read_marker(&f, &path)? {
        Marker::Ok => Ok(f),
        Marker::Empty if Index::has_magic(root, INDEX_FILE) => Ok(f),
        Marker::Empty => Err(Error::refused(
            &path,
            "memo cannot write here, and this store was never finished (its LOCK is empty \
             and it has no index); open it once where it is writable",
        )),
        Marker::Version(found) => Err(incompatible(path, found)),
        Marker::Foreign => Err(not_a_marker(&path)),
    }
}

/// The marker `LOCK` (at `path`) holds.
fn read_marker(f: &File, path: &std::path::Path) -> Result<Marker> {
    let mut b = [0u8; MARKER_LEN + 1];
    let n = f.read_at(&mut b, 0).at(path)?;
    Ok(format::check_marker(&b[..n]))
}

fn incompatible(path: PathBuf, found: u32) -> Error {
    Error::IncompatibleFormat {
        path,
        found,
        supported: format::FORMAT_VERSION,
    }
}

fn not_a_marker(path: &std::path::Path) -> Error {
    Error::refused(
        path,
        "this file is not memo's store marker, so the directory is not a memo store; \
         memo adopts only an empty directory or an existing store",
    )
}

/// The refusal of a directory that is neither empty nor a store.
fn foreign(root: &Dir, entries: &[(OsString, Kind)]) -> Error {
    let mut names: Vec<String> = entries
        .iter()
        .map(|(n, _)| n.to_string_lossy().into_owned())
        .collect();
    names.sort();
    let shown = names.iter().take(6).cloned().collect::<Vec<_>>().join(", ");
    let more = if names.len() > 6 { ", …" } else { "" };
    Error::refused(
        root.path(),
        format!(
            "the directory is neither empty nor a memo store (it holds {shown}{more}); \
             memo adopts only an empty directory or an existing store, so that it never \
             touches files that are not its own: choose a new or empty directory"
        ),
    )
}

/// Whether `warning` has not yet been given for `root` in this process
/// (and is now).
fn first_time(root: &Dir, warning: &'static str) -> bool {
    static GIVEN: LazyLock<Mutex<HashSet<(PathBuf, &'static str)>>> = LazyLock::new(Mutex::default);
    GIVEN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert((root.path().to_path_buf(), warning))
}

/// Warns once per directory and process when other users may write into
/// the store: they could plant values there (checksums stop accidents, not
/// forgers).
pub(super) fn warn_if_world_writable(root: &Dir) {
    if root.world_writable() && first_time(root, "world-writable") {
        tracing::warn!(
            dir = %root.path().display(),
            "memo: the store directory is writable by every user; anyone on this machine \
             can change its results (chmod o-w it, or keep it in a private directory)"
        );
    }
}

/// Says once per directory, when the store is on a network or cluster
/// filesystem, what is and is not safe there.
pub(super) fn warn_if_network_fs(root: &Dir) {
    if let Some(fs) = root.network_fs()
        && first_time(root, "network filesystem")
    {
        tracing::warn!(
            dir = %root.path().display(),
            filesystem = fs,
            "memo: the store is on a network filesystem. Processes on this machine share it \
             safely, but processes on other machines must not open it: memory maps and locks \
             are not coherent across clients there. To share results across machines, keep \
             the store on a local disk and give it a remote tier on the shared directory: \
             MEMO_REMOTE=file:///path/on/the/shared/fs (see `StoreBuilder::remote`)"
        );
    }
}
