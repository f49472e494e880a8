//! Directory handles: every file of a store is reached relative to one.
//!
//! A store directory may come from elsewhere (a tarball, a shared mount,
//! a colleague's `cp -r`), so a name inside it may be a symbolic link to
//! the user's other files. memo never follows one: each subdirectory is
//! opened once with `O_DIRECTORY | O_NOFOLLOW`, and every create, open,
//! rename and unlink is an `*at` call relative to such a handle with
//! `O_NOFOLLOW`. A link swapped in after a check cannot redirect a call
//! either: there is no check-then-use by path, only the handle. The store
//! directory itself may be a link (users point `MEMO_DIR` at a bigger disk
//! that way); nothing below it may.

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};

/// What a name in a directory is, links not followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Link,
    Other,
}

impl Kind {
    fn of(t: FileType) -> Kind {
        match t {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Link,
            _ => Kind::Other,
        }
    }

    /// Why memo refuses a name of this kind where it expected `want`.
    fn refusal(self, want: Kind) -> &'static str {
        match (self, want) {
            (Kind::Link, _) => {
                "it is a symbolic link, and memo never follows links inside a store; \
                 remove the link (the store directory itself may be one)"
            }
            (_, Kind::Dir) => "memo expects a directory here",
            _ => "memo expects a regular file here",
        }
    }
}

/// An open directory, and its path for messages. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Dir(Arc<Inner>);

struct Inner {
    fd: OwnedFd,
    path: PathBuf,
}

/// Permission bits for new files and directories; the umask applies.
const FILE_MODE: u32 = 0o666;
const DIR_MODE: u32 = 0o777;

impl Dir {
    /// Opens the store directory at `path`, creating it (and its parents)
    /// if missing. `path` itself may be a link.
    pub(crate) fn open_root(path: &Path, create: bool) -> Result<Dir> {
        if create && !path.exists() {
            std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        match rustix::fs::open(path, flags, Mode::empty()) {
            Ok(fd) => Ok(Dir::new(fd, path.to_path_buf())),
            Err(Errno::NOTDIR) => Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
            )),
            Err(e) => Err(Error::io(path, e.into())),
        }
    }

    fn new(fd: OwnedFd, path: PathBuf) -> Dir {
        Dir(Arc::new(Inner { fd, path }))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0.path
    }

    /// The path of `name` in this directory, for messages.
    pub(crate) fn child(&self, name: &str) -> PathBuf {
        self.0.path.join(name)
    }

    fn io(&self, name: &str, e: Errno) -> Error {
        Error::io(self.child(name), e.into())
    }

    /// What `name` is, links not followed; `None` if nothing has that name.
    pub(crate) fn kind(&self, name: &str) -> Result<Option<Kind>> {
        match rustix::fs::statat(&self.0.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(Kind::of(FileType::from_raw_mode(st.st_mode)))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(self.io(name, e)),
        }
    }

    /// The refusal for `name`, which an open with `O_NOFOLLOW` rejected or
    /// which is not of kind `want`.
    fn refuse(&self, name: &str, want: Kind, found: Option<Kind>) -> Error {
        let found = found.or_else(|| self.kind(name).ok().flatten());
        let why = found.map_or("memo cannot use it", |k| k.refusal(want));
        Error::refused(self.child(name), why)
    }

    /// Opens subdirectory `name` (creating it first with `create`); `None`
    /// if it is missing. A link or a file there is refused.
    pub(crate) fn open_dir(&self, name: &str, create: bool) -> Result<Option<Dir>> {
        if create {
            match rustix::fs::mkdirat(&self.0.fd, name, Mode::from_raw_mode(DIR_MODE)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(self.io(name, e)),
            }
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(&self.0.fd, name, flags, Mode::empty()) {
            Ok(fd) => Ok(Some(Dir::new(fd, self.child(name)))),
            Err(Errno::NOENT) => Ok(None),
            // A link (ELOOP; ENOTDIR on some systems) or a file.
            Err(Errno::LOOP | Errno::NOTDIR) => Err(self.refuse(name, Kind::Dir, None)),
            Err(e) => Err(self.io(name, e)),
        }
    }

    /// Opens regular file `name` for reading (and writing with `write`);
    /// `None` if it is missing. A link, directory, FIFO or device there is
    /// refused (`O_NONBLOCK` keeps a FIFO from blocking the open).
    pub(crate) fn open_file(&self, name: &str, write: bool) -> Result<Option<File>> {
        let access = if write { OFlags::RDWR } else { OFlags::RDONLY };
        let flags = access | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        match rustix::fs::openat(&self.0.fd, name, flags, Mode::empty()) {
            Ok(fd) => self.regular(name, fd).map(Some),
            Err(Errno::NOENT) => Ok(None),
            Err(Errno::LOOP | Errno::ISDIR) => Err(self.refuse(name, Kind::File, None)),
            Err(e) => Err(self.io(name, e)),
        }
    }

    /// Opens regular file `name` for reading and writing, creating it if
    /// missing (`LOCK`, compute locks).
    pub(crate) fn open_or_create(&self, name: &str) -> Result<File> {
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK;
        let flags = flags | OFlags::CLOEXEC;
        match rustix::fs::openat(&self.0.fd, name, flags, Mode::from_raw_mode(FILE_MODE)) {
            Ok(fd) => self.regular(name, fd),
            Err(Errno::LOOP | Errno::ISDIR) => Err(self.refuse(name, Kind::File, None)),
            Err(e) => Err(self.io(name, e)),
        }
    }

    /// Creates regular file `name`, which must not exist.
    pub(crate) fn create_new(&self, name: &str) -> Result<File> {
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        let flags = flags | OFlags::CLOEXEC;
        rustix::fs::openat(&self.0.fd, name, flags, Mode::from_raw_mode(FILE_MODE))
            .map(File::from)
            .map_err(|e| self.io(name, e))
    }

    fn regular(&self, name: &str, fd: OwnedFd) -> Result<File> {
        let st = rustix::fs::fstat(&fd).map_err(|e| self.io(name, e))?;
        match Kind::of(FileType::from_raw_mode(st.st_mode)) {
            Kind::File => Ok(File::from(fd)),
            k => Err(self.refuse(name, Kind::File, Some(k))),
        }
    }

    /// Unlinks `name` (a link is removed itself, never its target); `false`
    /// if it was already gone.
    pub(crate) fn remove(&self, name: &str) -> Result<bool> {
        match rustix::fs::unlinkat(&self.0.fd, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(self.io(name, e)),
        }
    }

    /// Removes subdirectory `name` if it is empty.
    pub(crate) fn remove_empty_dir(&self, name: &str) -> bool {
        rustix::fs::unlinkat(&self.0.fd, name, AtFlags::REMOVEDIR).is_ok()
    }

    /// Makes `to` a second name of file `from`, both in this directory;
    /// `to` must not exist.
    pub(crate) fn link(&self, from: &str, to: &str) -> Result<()> {
        rustix::fs::linkat(&self.0.fd, from, &self.0.fd, to, AtFlags::empty())
            .map_err(|e| self.io(to, e))
    }

    /// Makes `to` in `dest` a second name of file `from` in this directory;
    /// fails with `AlreadyExists` if `to` exists.
    pub(crate) fn link_into(&self, from: &str, dest: &Dir, to: &str) -> Result<()> {
        rustix::fs::linkat(&self.0.fd, from, &dest.0.fd, to, AtFlags::empty())
            .map_err(|e| dest.io(to, e))
    }

    /// Swaps the files named `from` in this directory and `to` in `dest`,
    /// atomically (`RENAME_EXCHANGE`); both must exist.
    pub(crate) fn exchange(&self, from: &str, dest: &Dir, to: &str) -> Result<()> {
        rustix::fs::renameat_with(
            &self.0.fd,
            from,
            &dest.0.fd,
            to,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .map_err(|e| dest.io(to, e))
    }

    /// Renames `from` in this directory to `to` in `dest` (replacing it).
    pub(crate) fn rename(&self, from: &str, dest: &Dir, to: &str) -> Result<()> {
        rustix::fs::renameat(&self.0.fd, from, &dest.0.fd, to).map_err(|e| dest.io(to, e))
    }

    /// The length of regular file `name`; `None` if it is missing.
    pub(crate) fn len(&self, name: &str) -> Result<Option<u64>> {
        match rustix::fs::statat(&self.0.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(u64::try_from(st.st_size).unwrap_or(0))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(self.io(name, e)),
        }
    }

    /// Every name in the directory with its kind (links not followed).
    pub(crate) fn entries(&self) -> Result<Vec<(OsString, Kind)>> {
        let err = |e: Errno| Error::io(self.path(), e.into());
        let mut out = Vec::new();
        for entry in rustix::fs::Dir::read_from(&self.0.fd).map_err(err)? {
            let entry = entry.map_err(err)?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let name = std::ffi::OsStr::from_bytes(name).to_os_string();
            let kind = match entry.file_type() {
                FileType::Unknown => match name.to_str() {
                    Some(n) => self.kind(n)?.unwrap_or(Kind::Other),
                    None => Kind::Other,
                },
                t => Kind::of(t),
            };
            out.push((name, kind));
        }
        Ok(out)
    }

    /// The names of the regular files for which `ours` holds: what memo
    /// made, never anything else found there.
    pub(crate) fn own_files(&self, ours: impl Fn(&str) -> bool) -> Result<Vec<String>> {
        Ok(self
            .entries()?
            .into_iter()
            .filter(|(_, k)| *k == Kind::File)
            .filter_map(|(n, _)| n.into_string().ok())
            .filter(|n| ours(n))
            .collect())
    }

    /// Makes the names in this directory durable (after renames and
    /// creations, for `Durability::Sync`).
    pub(crate) fn sync(&self) -> Result<()> {
        rustix::fs::fsync(&self.0.fd).map_err(|e| Error::io(self.path(), e.into()))
    }

    /// Whether `name` still names the open `file` (it was not unlinked or
    /// replaced since it was opened).
    pub(crate) fn names(&self, name: &str, file: &File) -> bool {
        let here = rustix::fs::statat(&self.0.fd, name, AtFlags::SYMLINK_NOFOLLOW);
        match (rustix::fs::fstat(file.as_fd()), here) {
            (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
            _ => false,
        }
    }

    /// Whether this process may create and change files here: `false` on
    /// a read-only mount, or without write permission.
    pub(crate) fn writable(&self) -> bool {
        !matches!(
            rustix::fs::accessat(
                &self.0.fd,
                ".",
                rustix::fs::Access::WRITE_OK,
                AtFlags::EACCESS
            ),
            Err(Errno::ROFS | Errno::ACCESS | Errno::PERM)
        )
    }

    /// Whether users other than the owner and group may write here.
    pub(crate) fn world_writable(&self) -> bool {
        rustix::fs::fstat(&self.0.fd).is_ok_and(|st| st.st_mode & 0o002 != 0)
    }

    /// The name of the network or cluster filesystem the directory is on,
    /// if it is one (by `statfs`'s magic number).
    pub(crate) fn network_fs(&self) -> Option<&'static str> {
        let st = rustix::fs::fstatfs(&self.0.fd).ok()?;
        // From statfs(2) and the filesystems' sources.
        Some(match st.f_type as u64 {
            0x6969 => "NFS",
            0xFF53_4D42 => "CIFS/SMB",
            0xFE53_4D42 => "SMB2",
            0x517B => "SMB",
            0x0BD0_0BD0 => "Lustre",
            0x4750_4653 => "GPFS",
            0x00C3_6400 => "CephFS",
            0x0102_1997 => "9p",
            0x6573_5546 => "FUSE",
            0xA501_FCF5 => "BeeGFS",
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn links_and_wrong_kinds_are_refused_never_followed() {
        let t = tempfile::tempdir().unwrap();
        let decoys = t.path().join("decoys");
        std::fs::create_dir(&decoys).unwrap();
        std::fs::write(decoys.join("f"), b"keep").unwrap();
        let store = t.path().join("store");
        std::fs::create_dir(&store).unwrap();
        std::os::unix::fs::symlink(&decoys, store.join("tmp")).unwrap();
        std::os::unix::fs::symlink(decoys.join("f"), store.join("LOCK")).unwrap();
        std::fs::write(store.join("seg"), b"a file").unwrap();
        let d = Dir::open_root(&store, true).unwrap();
        for (name, e) in [
            ("tmp", d.open_dir("tmp", true).err().unwrap()),
            ("LOCK", d.open_or_create("LOCK").err().unwrap()),
            ("LOCK", d.open_file("LOCK", true).err().unwrap()),
            ("seg", d.open_dir("seg", true).err().unwrap()),
        ] {
            let msg = e.to_string();
            assert!(matches!(e, Error::Refused { .. }), "{msg}");
            assert!(msg.contains(name), "{msg}");
        }
        assert!(
            d.open_dir("tmp", true)
                .err()
                .unwrap()
                .to_string()
                .contains("symbolic link")
        );
        assert_eq!(d.kind("tmp").unwrap(), Some(Kind::Link));
        // Removing a link removes the link, not what it points at.
        assert!(d.remove("LOCK").unwrap());
        assert_eq!(std::fs::read(decoys.join("f")).unwrap(), b"keep");
        assert!(d.open_file("LOCK", false).unwrap().is_none());
        let f = d.open_or_create("LOCK").unwrap();
        assert!(d.names("LOCK", &f));
        let names: Vec<_> = d.own_files(|n| n == "LOCK").unwrap();
        assert_eq!(names, ["LOCK"]);
    }
}
