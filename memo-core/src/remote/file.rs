//! `file:///path`: a directory on a shared filesystem (NFS, Lustre, GPFS).
//! Plain reads and writes only: no mmap (not coherent across NFS clients)
//! and no flock (not everywhere). An object is written to `tmp/` and
//! hard-linked to its name, which fails if the name exists: a
//! create-only write on every POSIX filesystem, NFS included. Objects are
//! not fsynced: every reader checks them, so a torn one is a miss. A lease is a
//! file created exclusively, holding its holder and deadline. The calls run
//! on worker threads with a timeout: a hung mount costs a timeout (and the
//! tier's back-off), never a hung program.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{Backend, LeaseState, unix_ms};

/// The `file://` engine: the filesystem calls (`Files`) run on a few worker
/// threads, so that a call on a hung mount (NFS that lost its server) costs
/// the caller its timeout, not forever.
pub(crate) struct FileBackend {
    files: Arc<Files>,
    timeout: Duration,
    jobs: mpsc::Sender<Job>,
}

type Job = Box<dyn FnOnce() + Send>;

/// Worker threads: a hung call holds one, the others go on.
const WORKERS: usize = 4;
/// How long a caller, and a worker between jobs, wait awake before they
/// sleep.
const SPIN: Duration = Duration::from_micros(50);
/// Objects up to this size are read by the call that opens them.
const READ_AT_OPEN: u64 = 1 << 20;

/// The next job for a worker: looked for awake for `SPIN` after the last
/// one (calls come in runs: a sweep's misses), then asleep. `None` once
/// the backend is gone.
fn next_job(queue: &Mutex<mpsc::Receiver<Job>>) -> Option<Job> {
    let q = queue.lock().unwrap_or_else(PoisonError::into_inner);
    let spin = Instant::now();
    while spin.elapsed() < SPIN {
        match q.try_recv() {
            Ok(job) => return Some(job),
            Err(mpsc::TryRecvError::Empty) => std::hint::spin_loop(),
            Err(mpsc::TryRecvError::Disconnected) => return None,
        }
    }
    q.recv().ok()
}

impl FileBackend {
    /// `rest` is the URL after `file://`: an absolute path.
    pub(crate) fn open(rest: &str, timeout: Duration) -> Result<FileBackend, String> {
        let path = Path::new(rest);
        if !path.is_absolute() {
            return Err("a file:// URL needs an absolute path (file:///shared/cache)".into());
        }
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..WORKERS {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name("memo-file-remote".into())
                .spawn(move || {
                    while let Some(job) = next_job(&queue) {
                        job();
                    }
                })
                .map_err(|e| format!("cannot start a worker thread: {e}"))?;
        }
        Ok(FileBackend {
            files: Arc::new(Files {
                root: path.to_path_buf(),
            }),
            timeout,
            jobs,
        })
    }

    /// Runs `f` on a worker, waiting at most `limit`.
    fn run<T: Send + 'static>(
        &self,
        limit: Duration,
        f: impl FnOnce(&Files) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        let files = self.files.clone();
        let job: Job = Box::new(move || {
            let _ = tx.send(f(&files));
        });
        self.jobs
            .send(job)
            .map_err(|_| io::Error::other("the file:// worker threads are gone"))?;
        // A call on a healthy filesystem answers within microseconds: wait
        // for it awake first, as an adaptive mutex does, since being woken
        // costs more than the call on a 2-core machine.
        let spin = Instant::now();
        while spin.elapsed() < SPIN {
            match rx.try_recv() {
                Ok(r) => return r,
                Err(mpsc::TryRecvError::Empty) => std::hint::spin_loop(),
                Err(mpsc::TryRecvError::Disconnected) => break,
            }
        }
        match rx.recv_timeout(limit) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{}: no answer within {limit:?} (a hung mount?)",
                    self.files.root.display()
                ),
            )),
            Err(RecvTimeoutError::Disconnected) => {
                Err(io::Error::other("a file:// worker thread stopped"))
            }
        }
    }

    /// The time a transfer of `len` bytes may take: the timeout, plus a
    /// second per 16 MiB.
    fn limit(&self, len: u64) -> Duration {
        self.timeout + Duration::from_secs(len >> 24)
    }
}

impl Backend for FileBackend {
    fn list(&self, prefix: &str) -> io::Result<Vec<String>> {
        // Objects are files of one directory: the prefix names it.
        let dir = prefix.trim_end_matches('/').to_owned();
        // A listing reads one directory entry per object: allow it a
        // second per 100k on top of the timeout.
        self.run(self.timeout * 4, move |files| {
            let mut out = Vec::new();
            let entries = match fs::read_dir(files.path(&dir)) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                if entry.file_type()?.is_file()
                    && let Some(name) = entry.file_name().to_str()
                {
                    out.push(format!("{dir}/{name}"));
                }
            }
            Ok(out)
        })
    }

    fn get(&self, name: &str, max: u64) -> io::Result<Option<Vec<u8>>> {
        let name = name.to_string();
        // Opened first (and read, if small), to learn the size a large
        // read may take time for.
        let opened = self.run(self.timeout, move |f| {
            Ok(match f.open(&name, max)? {
                Some((file, len)) if len <= READ_AT_OPEN => Opened::Read(read_all(file, len, max)?),
                Some((file, len)) => Opened::Large(file, len),
                None => Opened::Missing,
            })
        })?;
        match opened {
            Opened::Read(buf) => Ok(Some(buf)),
            Opened::Large(file, len) => self
                .run(self.limit(len), move |_| read_all(file, len, max))
                .map(Some),
            Opened::Missing => Ok(None),
        }
    }

    fn create(&self, name: &str, header: &[u8], value: &[u8]) -> io::Result<bool> {
        let (name, header, value) = (name.to_string(), header.to_vec(), value.to_vec());
        let limit = self.limit(value.len() as u64);
        self.run(limit, move |f| f.create(&name, &header, &value))
    }

    fn create_bytes(&self, name: &str, header: &[u8], value: &crate::Bytes) -> io::Result<bool> {
        // The mapping goes to the worker, not a copy of the value.
        let (name, header, value) = (name.to_string(), header.to_vec(), value.clone());
        let limit = self.limit(value.len() as u64);
        self.run(limit, move |f| f.create(&name, &header, &value))
    }

    fn lease(&self, name: &str, holder: &str, ttl: Duration) -> io::Result<LeaseState> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.run(self.timeout, move |f| f.lease(&name, &holder, ttl))
    }

    fn renew(&self, name: &str, holder: &str, ttl: Duration) -> io::Result<bool> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.run(self.timeout, move |f| f.renew(&name, &holder, ttl))
    }

    fn release(&self, name: &str, holder: &str) -> io::Result<()> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.run(self.timeout, move |f| f.release(&name, &holder))
    }
}

/// What opening an object found.
enum Opened {
    Read(Vec<u8>),
    Large(File, u64),
    Missing,
}

/// The filesystem calls of `file://`, on the workers of `FileBackend::run`.
pub(crate) struct Files {
    root: PathBuf,
}

/// Reads an opened object to its end, never past `max`: the file may grow
/// meanwhile.
fn read_all(file: File, len: u64, max: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len as usize);
    file.take(max + 1).read_to_end(&mut buf)?;
    Ok(buf)
}

impl Files {
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

impl Files {
    /// Opens object `name`: the file and its size, or `None`.
    fn open(&self, name: &str, max: u64) -> io::Result<Option<(File, u64)>> {
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
        Ok(Some((f, len)))
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
