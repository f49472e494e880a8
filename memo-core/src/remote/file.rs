//! `file:///path`: a directory on a shared filesystem (NFS, Lustre, GPFS).
//! Plain reads and writes only: no mmap (not coherent across NFS clients)
//! and no flock (not everywhere). An object is written to `tmp/` and
//! hard-linked to its name, which fails if the name exists: a
//! create-only write on every POSIX filesystem, NFS included. Objects are
//! not fsynced: every reader checks them, so a torn one is a miss. A lease is a
//! file created exclusively, holding its holder and deadline.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Backend, LeaseState, unix_ms};

pub(crate) struct FileBackend {
    root: PathBuf,
}

impl FileBackend {
    /// `rest` is the URL after `file://`: an absolute path.
    pub(crate) fn open(rest: &str) -> Result<FileBackend, String> {
        let path = Path::new(rest);
        if !path.is_absolute() {
            return Err("a file:// URL needs an absolute path (file:///shared/cache)".into());
        }
        Ok(FileBackend {
            root: path.to_path_buf(),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// A fresh file in `tmp/`, created exclusively (never through a link).
    fn tmp_file(&self) -> io::Result<(PathBuf, File)> {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = self.root.join("memo/tmp");
        fs::create_dir_all(&dir)?;
        let name = format!(
            "{}.{}.{}",
            std::process::id(),
            unix_ms(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)?;
        Ok((path, f))
    }

    /// Writes `parts` aside and links them in as `name`; `false` if `name`
    /// exists. `replace` renames instead (a lease renewal).
    fn write_aside(&self, name: &str, parts: &[&[u8]], replace: bool) -> io::Result<bool> {
        let dest = self.path(name);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)?;
        }
        let (tmp, mut f) = self.tmp_file()?;
        // Not synced: a reader checks every object, so one torn by a crash
        // is a miss, and NFS writes the data back at close (close-to-open).
        let written = parts.iter().try_for_each(|p| f.write_all(p));
        drop(f);
        let placed = written.and_then(|()| {
            if replace {
                fs::rename(&tmp, &dest).map(|()| true)
            } else {
                match fs::hard_link(&tmp, &dest) {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(e),
                }
            }
        });
        let _ = fs::remove_file(&tmp);
        placed.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dest.display())))
    }

    /// The holder and deadline a lease file names, if it is one.
    fn read_lease(&self, name: &str) -> io::Result<Option<(String, u64)>> {
        let text = match fs::read_to_string(self.path(name)) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut it = text.split_whitespace();
        let holder = it.next().unwrap_or("").to_string();
        // An unreadable deadline has expired: nobody could renew it.
        let deadline = it.next().and_then(|d| d.parse().ok()).unwrap_or(0);
        Ok(Some((holder, deadline)))
    }
}

fn lease_text(holder: &str, ttl: Duration) -> String {
    format!("{holder} {}\n", unix_ms() + ttl.as_millis() as u64)
}

impl Backend for FileBackend {
    fn get(&self, name: &str, max: u64) -> io::Result<Option<Vec<u8>>> {
        let path = self.path(name);
        let f = match OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits().cast_signed())
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        };
        let len = f.metadata()?.len();
        if len > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {len} bytes, more than any entry", path.display()),
            ));
        }
        // Read to the end, never past `max`: the file may grow meanwhile.
        let mut buf = Vec::with_capacity(len as usize);
        f.take(max + 1).read_to_end(&mut buf)?;
        Ok(Some(buf))
    }

    fn create(&self, name: &str, header: &[u8], value: &[u8]) -> io::Result<bool> {
        if self.path(name).exists() {
            return Ok(false);
        }
        self.write_aside(name, &[header, value], false)
    }

    fn lease(&self, name: &str, holder: &str, ttl: Duration) -> io::Result<LeaseState> {
        for _ in 0..3 {
            if self.write_aside(name, &[lease_text(holder, ttl).as_bytes()], false)? {
                return Ok(LeaseState::Acquired);
            }
            let seen = self.read_lease(name)?;
            if let Some((h, deadline)) = &seen
                && h != holder
                && *deadline > unix_ms()
            {
                return Ok(LeaseState::Held);
            }
            // Released meanwhile (try again), or expired because its holder
            // died: removed if it still is the one seen. Two waiters racing
            // here may both compute; never a wrong value.
            if seen.is_some() && self.read_lease(name)? == seen {
                let _ = fs::remove_file(self.path(name));
            }
        }
        Ok(LeaseState::Held)
    }

    fn renew(&self, name: &str, holder: &str, ttl: Duration) -> io::Result<bool> {
        match self.read_lease(name)? {
            Some((h, _)) if h == holder => {
                self.write_aside(name, &[lease_text(holder, ttl).as_bytes()], true)
            }
            _ => Ok(false),
        }
    }

    fn release(&self, name: &str, holder: &str) -> io::Result<()> {
        if let Some((h, _)) = self.read_lease(name)?
            && h == holder
        {
            match fs::remove_file(self.path(name)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}
