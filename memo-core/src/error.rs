//! The crate's one error type.

use std::path::{Path, PathBuf};

use crate::Key;

/// Everything that can go wrong in memo-core.
///
/// Every variant names the file or key it is about, so a message in a log is
/// enough to find the problem.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system call on `path` failed.
    #[error("i/o error on {}: {source}", path.display())]
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// Bytes read from `path` are not what memo wrote there.
    #[error("corrupt data in {} at offset {offset}: {what}", path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Where in the file the damage was found.
        offset: u64,
        /// What was wrong.
        what: String,
    },
    /// `path` was written by a version of memo with another on-disk format.
    #[error(
        "{} has format version {found}; this build of memo reads version {supported}",
        path.display()
    )]
    IncompatibleFormat {
        /// The file whose header names the version.
        path: PathBuf,
        /// The version found in the file.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// A value could not be encoded, or stored bytes could not be decoded as the
    /// requested type.
    #[error("codec error for key {key}: {message}")]
    Codec {
        /// The entry's key.
        key: Key,
        /// What the codec said.
        message: String,
    },
    /// memo will not use `path`: a symbolic link or a file of the wrong
    /// type inside a store, or an existing directory that is neither empty
    /// nor a memo store. Nothing was created, changed or removed there.
    #[error("refusing {}: {why}", path.display())]
    Refused {
        /// The directory or file memo will not touch.
        path: PathBuf,
        /// Why, and what to do about it.
        why: String,
    },
    /// A value is larger than the store can hold.
    #[error("value for key {key} is {len} bytes; the limit is {limit} bytes")]
    TooLarge {
        /// The entry's key.
        key: Key,
        /// The value's length in bytes.
        len: u64,
        /// The largest length accepted.
        limit: u64,
    },
    /// `push` or `pull` on a store with no remote tier configured.
    #[error(
        "{op} needs a remote tier, and none is configured for {}: set MEMO_REMOTE, \
         use StoreBuilder::remote, or give `memo {op} --remote URL`",
        dir.display()
    )]
    NoRemote {
        /// The store directory.
        dir: PathBuf,
        /// `push` or `pull`.
        op: String,
    },
    /// The remote tier at `url` cannot be used as configured (a bad URL, an
    /// engine this build lacks), or one of its operations failed.
    #[error("remote {url}: {message}")]
    Remote {
        /// The remote's URL as given (without credentials).
        url: String,
        /// What was wrong.
        message: String,
    },
    /// A memoized function named by the user (`Selection::function`,
    /// `memo clear --function`) is not one the store at `dir` knows, or
    /// the name fits more than one.
    #[error("store {}: function `{name}`: {message}", dir.display())]
    Function {
        /// The store directory.
        dir: PathBuf,
        /// The name as given.
        name: String,
        /// What was wrong, with the names that would do.
        message: String,
    },
    /// The store at `dir` is open read-only (this process cannot write
    /// there, or [`StoreBuilder::read_only`](crate::StoreBuilder::read_only)
    /// asked for it): it serves hits, and nothing can be stored or removed.
    #[error(
        "store {} is read-only here (this process cannot write to it); nothing was stored or removed",
        dir.display()
    )]
    ReadOnly {
        /// The store directory.
        dir: PathBuf,
    },
}

/// `std::result::Result` with memo's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn refused(path: impl Into<PathBuf>, why: impl Into<String>) -> Error {
        Error::Refused {
            path: path.into(),
            why: why.into(),
        }
    }

    pub(crate) fn corrupt(path: &Path, offset: u64, what: impl Into<String>) -> Error {
        Error::Corrupt {
            path: path.to_path_buf(),
            offset,
            what: what.into(),
        }
    }
}

/// Attaches a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
