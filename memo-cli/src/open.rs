//! Which store a command works on, and opening it without creating one.

use std::path::{Path, PathBuf};

use memo_core::{Error, Store, StoreBuilder};

use crate::Failure;

/// `--dir`, else the store `Store::global` would use (`$MEMO_DIR`, else
/// the project's `.memo`: `Store::default_dir`).
pub(crate) fn store_dir(dir: Option<&Path>) -> PathBuf {
    dir.map_or_else(Store::default_dir, Path::to_path_buf)
}

/// Opens the store at `dir` if it is one, with the options `build` adds.
pub(crate) fn open(
    dir: &Path,
    build: impl FnOnce(StoreBuilder) -> StoreBuilder,
) -> Result<Store, Failure> {
    // Checked here first for a message that names the problem plainly.
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Failure::Usage(format!(
                "{}: no such directory",
                dir.display()
            )));
        }
        Err(e) => {
            return Err(Failure::Usage(format!(
                "{}: cannot be read: {e}",
                dir.display()
            )));
        }
        Ok(m) if !m.is_dir() => {
            return Err(Failure::Usage(format!(
                "{}: not a directory",
                dir.display()
            )));
        }
        Ok(_) => {}
    }
    build(Store::builder(dir).existing())
        .open()
        .map_err(|e| match e {
            Error::Remote { .. } => Failure::Usage(e.to_string()),
            Error::Refused { why, .. } => Failure::Usage(format!("{}: {why}", dir.display())),
            Error::IncompatibleFormat { found, supported, .. } => Failure::Usage(format!(
                "{}: a store of format version {found}, written by a newer memo; this memo reads version {supported}",
                dir.display()
            )),
            e => Failure::Usage(format!("{}: cannot be opened as a memo store: {e}", dir.display())),
        })
}

/// Opens the store at `dir`, creating it if the directory is missing or
/// empty (`memo pull` into a new machine's cache); an existing directory
/// that is neither empty nor a store is refused by memo-core as always.
pub(crate) fn open_or_create(
    dir: &Path,
    build: impl FnOnce(StoreBuilder) -> StoreBuilder,
) -> Result<Store, Failure> {
    let fresh = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Ok(mut entries) => entries.next().is_none(),
        Err(_) => false,
    };
    if !fresh {
        return open(dir, build);
    }
    build(Store::builder(dir)).open().map_err(|e| match e {
        Error::Remote { .. } => Failure::Usage(e.to_string()),
        e => Failure::Usage(format!(
            "{}: cannot be created as a memo store: {e}",
            dir.display()
        )),
    })
}

/// The failure of a store call that was not expected to fail.
pub(crate) fn failed(dir: &Path, e: &Error) -> Failure {
    match e {
        Error::Function { .. } => Failure::Usage(e.to_string()),
        _ => Failure::Found(format!("{}: {e}", dir.display())),
    }
}
