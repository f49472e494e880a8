//! Locks: the store's writer lock, and single flight of computations.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
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
