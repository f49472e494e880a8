//! Locks: the store's writer lock, and single flight of computations.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::Key;
use crate::error::{IoContext, Result};

/// The writers' lock: a mutex for this process's threads (an OS file lock is
/// held per open file, so threads sharing the handle would not exclude each
/// other) and the exclusive lock on `LOCK` for other processes. `T` is the
/// writer state the lock protects.
pub(crate) struct WriterLock<T> {
    file: File,
    path: PathBuf,
    state: Mutex<T>,
}

/// Holds both locks; the file lock is released on drop, before the mutex.
pub(crate) struct WriterGuard<'a, T> {
    state: MutexGuard<'a, T>,
    lock: &'a WriterLock<T>,
}

impl<T> WriterLock<T> {
    pub(crate) fn open(path: &Path, state: T) -> Result<WriterLock<T>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .at(path)?;
        Ok(WriterLock {
            file,
            path: path.to_path_buf(),
            state: Mutex::new(state),
        })
    }

    /// Blocks until this thread is the store's only writer.
    pub(crate) fn lock(&self) -> Result<WriterGuard<'_, T>> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
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
#[derive(Default)]
pub(crate) struct Inflight {
    keys: Mutex<HashMap<Key, Arc<Mutex<()>>>>,
}

impl Inflight {
    /// Runs `f` while holding `key`'s flight; other callers for the same key
    /// wait until `f` returns.
    pub(crate) fn run<R>(&self, key: &Key, f: impl FnOnce() -> R) -> R {
        let flight = {
            let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
            keys.entry(*key).or_default().clone()
        };
        let held = flight.lock().unwrap_or_else(PoisonError::into_inner);
        let out = f();
        {
            let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
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

/// A per-key compute lock shared by every process: `locks/<key hex>`.
///
/// Protocol: open (creating) the file and lock it; the lock counts only if
/// the path still names the locked file afterwards (a holder unlinks the
/// file before it unlocks, so a waiter that wakes on an unlinked file tries
/// again). The file is removed when the computation ends, so lock files do
/// not pile up; one left by a process that died is taken over by the next
/// caller (the OS released its lock) or swept by [`sweep_unlocked`].
pub(crate) struct KeyLock {
    file: File,
    path: PathBuf,
}

impl KeyLock {
    /// Blocks until this process holds `key`'s compute lock.
    pub(crate) fn acquire(dir: &Path, key: &Key) -> Result<KeyLock> {
        let path = dir.join(key.to_string());
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .at(&path)?;
            file.lock().at(&path)?;
            if same_file(&file, &path) {
                return Ok(KeyLock { file, path });
            }
        }
    }
}

impl Drop for KeyLock {
    fn drop(&mut self) {
        // Unlink first, then unlock (on close): a waiter that gets the lock
        // then sees the path gone and retries on a fresh file.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// Whether `path` still names the open `file`.
pub(crate) fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Removes lock files nobody holds (left by processes that died) and tmp
/// files whose writer is gone: every file in `dir` that can be locked right
/// now is unlinked while locked, following the [`KeyLock`] protocol. Files
/// written under the store's writer lock are unlocked by design, so call
/// this on `tmp/` only while holding that lock.
pub(crate) fn sweep_unlocked(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut swept = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
            continue;
        };
        match file.try_lock() {
            Ok(()) => {
                if same_file(&file, &path) && std::fs::remove_file(&path).is_ok() {
                    swept += 1;
                }
                let _ = file.unlock();
            }
            Err(TryLockError::WouldBlock | TryLockError::Error(_)) => {}
        }
    }
    swept
}
