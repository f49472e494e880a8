//! Locks: the store's writer lock, and single flight of computations.

use std::collections::HashMap;
use std::fs::{File, TryLockError};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::sync::unpoison;

use nix::fcntl::FcntlArg;
use nix::libc;

use crate::Key;
use crate::dir::Dir;
use crate::error::{IoContext, Result};
use crate::format;

/// Tries for the writer lock before a blocking wait.
const SPINS: usize = 64;

/// The writers' lock: a mutex for this process's threads (an OS file lock is
/// held per open file, so threads sharing the handle would not exclude each
/// other) and the exclusive lock on `LOCK` for other processes. `T` is the
/// writer state the lock protects.
pub(crate) struct WriterLock<T> {
    file: File,
    path: PathBuf,
    state: Mutex<T>,
    /// The store directory of a read-only store, which has no writers.
    read_only: Option<PathBuf>,
}

/// Holds both locks; the file lock is released on drop, before the mutex.
pub(crate) struct WriterGuard<'a, T> {
    state: MutexGuard<'a, T>,
    lock: &'a WriterLock<T>,
}

impl<T> WriterLock<T> {
    /// The lock on `file` (the store's `LOCK`, opened by `Store::open`);
    /// `read_only` names the directory of a store opened read-only, whose
    /// lock is never had for writing.
    pub(crate) fn new(
        file: File,
        path: PathBuf,
        state: T,
        read_only: Option<PathBuf>,
    ) -> WriterLock<T> {
        WriterLock {
            file,
            path,
            state: Mutex::new(state),
            read_only,
        }
    }

    /// Blocks until this thread is the store's only writer; every write
    /// goes through here, so a read-only store refuses them all here.
    pub(crate) fn lock(&self) -> Result<WriterGuard<'_, T>> {
        if let Some(dir) = &self.read_only {
            return Err(crate::Error::ReadOnly { dir: dir.clone() });
        }
        self.exclude()
    }

    /// Blocks until no writer is in the store, for a reader that must see
    /// it still (`verify` confirming damage). Also on a read-only store: a
    /// lock is had through a read-only descriptor, and processes that can
    /// write there (another user's) honour it.
    pub(crate) fn exclude(&self) -> Result<WriterGuard<'_, T>> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        // Another process holds the lock for microseconds at a time. A
        // blocking wait is woken by the kernel after the holder unlocks, a
        // wake-up that costs more than a whole publish and lets the holder
        // take the lock again first; a few tries, each after yielding the
        // CPU, usually win it sooner. Puts of 100 B from 2 processes went
        // from 0.58-0.64x of one process's rate to 0.81-0.94x (CI machine,
        // 2 cores, 2026-11-30); 4 processes stay near 0.7x.
        for _ in 0..SPINS {
            match self.file.try_lock() {
                Ok(()) => return Ok(WriterGuard { state, lock: self }),
                Err(TryLockError::WouldBlock) => std::thread::yield_now(),
                Err(TryLockError::Error(e)) => return Err(e).at(&self.path),
            }
        }
        self.file.lock().at(&self.path)?;
        Ok(WriterGuard { state, lock: self })
    }
}

impl<T> Drop for WriterGuard<'_, T> {
    fn drop(&mut self) {
        // Unlock fails only for a handle that is not locked; the OS drops the
        // lock with the process in any case.
        let _ = self.lock.file.unlock();
    }
}

impl<T> std::ops::Deref for WriterGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.state
    }
}

impl<T> std::ops::DerefMut for WriterGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.state
    }
}

/// Computations in flight in this process, one mutex per key: the first
/// caller computes, the others wait on its mutex and then find the value.
///
/// Lock order: `keys` is a leaf (held only to find or drop an entry); a
/// key's gate is held while `f` runs — the user's computation, which may
/// take other keys' gates (a memoized function calling another) but never
/// its own key's again unless it recurses into the same call, which would
/// not terminate anyway. Waiting for a gate is bounded by the holder's `f`.
#[derive(Default)]
pub(crate) struct Inflight {
    keys: crate::sync::Mutex<HashMap<Key, Arc<crate::sync::Mutex<()>>>>,
}

impl Inflight {
    /// Runs `f` while holding `key`'s flight; other callers for the same key
    /// wait until `f` returns.
    pub(crate) fn run<R>(&self, key: &Key, f: impl FnOnce() -> R) -> R {
        let flight = {
            let mut keys = unpoison(self.keys.lock());
            keys.entry(*key).or_default().clone()
        };
        let held = unpoison(flight.lock());
        let out = f();
        {
            let mut keys = unpoison(self.keys.lock());
            // Only the last holder removes the entry; a waiter that already
            // cloned it still serialises on the same mutex.
            if keys.get(key).is_some_and(|f| Arc::strong_count(f) <= 2) {
                keys.remove(key);
            }
        }
        drop(held);
        out
    }
}

/// Single flight across processes: one byte-range lock per key on one file,
/// `locks/flight`, taken with open-file-description locks
/// (`F_OFD_SETLKW`).
///
/// The lock of a key is the byte at offset `key bytes 0..8 & (2^62 - 1)`:
/// no file is created or removed per key (the file stays empty; locks past
/// its end are allowed), so a miss pays two `fcntl` calls where a lock file
/// per key cost a create, a lock, a check, an unlink and a close — 17 times
/// a put on ext4. The kernel drops a dead process's locks with its file
/// description, so a waiter takes over from a killed computer. Two keys
/// share a byte with odds of 2^-62: they then compute one after the other.
///
/// An open file description is one owner: this process's threads do not
/// exclude each other through it, which `Inflight` (per key, in-process)
/// does first.
pub(crate) struct Flights {
    file: File,
    path: PathBuf,
}

/// The byte `Flights::open` probes: above every key's (`offset`).
const PROBE: i64 = 1 << 62;

/// A held key lock of [`Flights`]; released on drop.
pub(crate) struct Flight<'a> {
    flights: &'a Flights,
    at: i64,
}

impl Flights {
    /// The flight file of a store, in `dir` (`locks/`); `None` where the
    /// file system has no open-file-description locks (the caller falls
    /// back to a lock file per key).
    pub(crate) fn open(dir: &Dir) -> Result<Option<Flights>> {
        let file = dir.open_or_create(format::FLIGHT_FILE)?;
        let flights = Flights {
            file,
            path: dir.child(format::FLIGHT_FILE),
        };
        // A probe on a byte no key uses (keys use offsets below 2^62). It
        // is a shared lock: processes opening the store at the same moment
        // probe together, and an exclusive probe would fail for all but
        // one of them, which then fell back to lock files, and lock files
        // do not exclude byte-range locks: two processes computed one key
        // at once (CI, 2026-11-30). A conflict, should one happen, proves
        // the locks work as well as a grant does.
        match flights.set(PROBE, libc::F_RDLCK, false) {
            Ok(_) => {
                let _ = flights.set(PROBE, libc::F_UNLCK, false);
                Ok(Some(flights))
            }
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => Ok(Some(flights)),
            Err(e) => {
                tracing::debug!(path = %flights.path.display(), error = %e, "memo: no OFD locks here; a lock file per key instead");
                Ok(None)
            }
        }
    }

    /// Blocks until this process holds `key`'s lock.
    pub(crate) fn acquire(&self, key: &Key) -> Result<Flight<'_>> {
        let at = offset(key);
        loop {
            match self.set(at, libc::F_WRLCK, true) {
                Ok(_) => return Ok(Flight { flights: self, at }),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(std::io::Error::from(e)).at(&self.path),
            }
        }
    }

    /// `key`'s lock if no other process holds it now.
    pub(crate) fn try_acquire(&self, key: &Key) -> Result<Option<Flight<'_>>> {
        let at = offset(key);
        loop {
            match self.set(at, libc::F_WRLCK, false) {
                Ok(_) => return Ok(Some(Flight { flights: self, at })),
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => return Ok(None),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(std::io::Error::from(e)).at(&self.path),
            }
        }
    }

    /// `F_OFD_SETLK(W)` of one byte at `at` to `kind`.
    fn set(&self, at: i64, kind: i32, wait: bool) -> nix::Result<i32> {
        let lock = libc::flock {
            l_type: kind as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: at,
            l_len: 1,
            // OFD locks require 0.
            l_pid: 0,
        };
        let arg = if wait {
            FcntlArg::F_OFD_SETLKW(&lock)
        } else {
            FcntlArg::F_OFD_SETLK(&lock)
        };
        nix::fcntl::fcntl(&self.file, arg)
    }
}

impl Flights {
    /// Blocks until this process holds `key`'s lock, and keeps it: the
    /// caller releases it with [`Flights::release`]. For a lock taken on
    /// one thread (which waits) and released on another (an async task's).
    pub(crate) fn acquire_kept(&self, key: &Key) -> Result<()> {
        std::mem::forget(self.acquire(key)?);
        Ok(())
    }

    /// `key`'s lock, kept as by `acquire_kept`, if no other process holds
    /// it now.
    pub(crate) fn try_acquire_kept(&self, key: &Key) -> Result<bool> {
        Ok(self.try_acquire(key)?.map(std::mem::forget).is_some())
    }

    /// Releases a lock taken by `acquire_kept` or `try_acquire_kept`.
    pub(crate) fn release(&self, key: &Key) {
        drop(Flight {
            flights: self,
            at: offset(key),
        });
    }
}

/// The byte of `key`'s lock in the flight file.
fn offset(key: &Key) -> i64 {
    let mut b = [0; 8];
    b.copy_from_slice(&key.as_bytes()[..8]);
    // Below 2^62, so it fits an i64 (`off_t`).
    i64::try_from(u64::from_le_bytes(b) & ((1 << 62) - 1)).unwrap_or(0)
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        // Fails only for a bad descriptor; closing it (with the process)
        // releases the lock in any case.
        let _ = self.flights.set(self.at, libc::F_UNLCK, false);
    }
}

/// A per-key compute lock shared by every process: `locks/<key hex>`. The
/// fallback of [`Flights`] where a file system lacks OFD locks.
///
/// Protocol: open (creating) the file and lock it; the lock counts only if
/// the path still names the locked file afterwards (a holder unlinks the
/// file before it unlocks, so a waiter that wakes on an unlinked file tries
/// again). The file is removed when the computation ends, so lock files do
/// not pile up; one left by a process that died is taken over by the next
/// caller (the OS released its lock) or swept by [`sweep_unlocked`].
pub(crate) struct KeyLock {
    file: File,
    dir: Dir,
    name: String,
}

impl KeyLock {
    /// Blocks until this process holds `key`'s compute lock in `dir`
    /// (`locks/`).
    pub(crate) fn acquire(dir: &Dir, key: &Key) -> Result<KeyLock> {
        let name = format::lock_name(key);
        loop {
            let file = dir.open_or_create(&name)?;
            file.lock().at(&dir.child(&name))?;
            if dir.names(&name, &file) {
                return Ok(KeyLock {
                    file,
                    dir: dir.clone(),
                    name,
                });
            }
        }
    }
}

impl KeyLock {
    /// `key`'s compute lock if no other process holds it now.
    pub(crate) fn try_acquire(dir: &Dir, key: &Key) -> Result<Option<KeyLock>> {
        let name = format::lock_name(key);
        loop {
            let file = dir.open_or_create(&name)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => return Ok(None),
                Err(TryLockError::Error(e)) => return Err(e).at(&dir.child(&name)),
            }
            if dir.names(&name, &file) {
                return Ok(Some(KeyLock {
                    file,
                    dir: dir.clone(),
                    name,
                }));
            }
        }
    }
}

impl Drop for KeyLock {
    fn drop(&mut self) {
        // Unlink first, then unlock (on close): a waiter that gets the lock
        // then sees the name gone and retries on a fresh file.
        let _ = self.dir.remove(&self.name);
        let _ = self.file.unlock();
    }
}

/// Removes lock files nobody holds (left by processes that died) and tmp
/// files whose writer is gone: every regular file in `dir` whose name memo
/// gives such files (`ours`) and that can be locked right now is unlinked
/// while locked, following the [`KeyLock`] protocol. Anything else found
/// there is not memo's and is left alone. Files written under the store's
/// writer lock are unlocked by design, so call this on `tmp/` only while
/// holding that lock.
pub(crate) fn sweep_unlocked(dir: &Dir, ours: fn(&str) -> bool) -> usize {
    let Ok(names) = dir.own_files(ours) else {
        return 0;
    };
    let mut swept = 0;
    for name in names {
        // Opened without following links and checked to be a regular file,
        // so a link swapped in after the listing is refused, not followed.
        let Ok(Some(file)) = dir.open_file(&name, true) else {
            continue;
        };
        match file.try_lock() {
            Ok(()) => {
                if dir.names(&name, &file) && dir.remove(&name).is_ok_and(|gone| gone) {
                    swept += 1;
                }
                let _ = file.unlock();
            }
            Err(TryLockError::WouldBlock | TryLockError::Error(_)) => {}
        }
    }
    swept
}

/// The flight gate under the model checker (`--cfg loom`).
#[cfg(all(test, loom))]
mod loom_model {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::Inflight;
    use crate::Key;

    /// Threads missing one key at once: exactly one computes, the others
    /// find its value, nobody waits forever, and no gate is left behind.
    #[test]
    fn loom_one_computation_per_key_and_no_gate_left() {
        loom::model(|| {
            let flights = Arc::new(Inflight::default());
            let stored = Arc::new(AtomicBool::new(false));
            let computed = Arc::new(AtomicUsize::new(0));
            let key = Key::from_bytes([7; 32]);
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let (flights, stored, computed) =
                        (flights.clone(), stored.clone(), computed.clone());
                    loom::thread::spawn(move || {
                        flights.run(&key, || {
                            if !stored.load(Ordering::SeqCst) {
                                computed.fetch_add(1, Ordering::SeqCst);
                                stored.store(true, Ordering::SeqCst);
                            }
                        });
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(computed.load(Ordering::SeqCst), 1);
            assert!(flights.keys.lock().unwrap().is_empty(), "a gate leaked");
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn locks() -> (tempfile::TempDir, Dir) {
        let t = tempfile::tempdir().unwrap();
        let dir = Dir::open_root(t.path(), true).unwrap();
        (t, dir)
    }

    /// Opens racing a probe, or a process that holds the probe byte, still
    /// find OFD locks: they used to fall back to lock files, which do not
    /// exclude a byte-range lock holder.
    #[test]
    fn an_open_during_another_probe_still_uses_byte_range_locks() {
        let (_t, dir) = locks();
        let first = Flights::open(&dir).unwrap().expect("OFD locks on tmp");
        // Another open file description holding the probe byte exclusively
        // is the worst a concurrent opener could do.
        first.set(PROBE, libc::F_WRLCK, false).unwrap();
        let second = Flights::open(&dir).unwrap();
        assert!(second.is_some(), "a held probe byte means locks work");
        // Shared probes do not conflict at all.
        first.set(PROBE, libc::F_RDLCK, false).unwrap();
        assert!(Flights::open(&dir).unwrap().is_some());
    }

    #[test]
    fn two_open_file_descriptions_exclude_each_other_per_key() {
        let (_t, dir) = locks();
        let a = Flights::open(&dir).unwrap().unwrap();
        let b = Flights::open(&dir).unwrap().unwrap();
        let (k1, k2) = (Key::of(&1), Key::of(&2));
        let held = a.acquire(&k1).unwrap();
        assert!(b.try_acquire(&k1).unwrap().is_none());
        assert!(b.try_acquire(&k2).unwrap().is_some());
        drop(held);
        assert!(b.try_acquire(&k1).unwrap().is_some());
    }
}
