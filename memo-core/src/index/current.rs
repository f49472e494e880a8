//! The table a process uses now, and its replacement when another process
//! (or thread) grew, rebuilt or cleared the index.
//!
//! Lock rule (see `docs/architecture.md`, "Waits and lock order"): the
//! `RwLock` is a leaf. No method holds it while taking any other lock, and
//! none takes it twice: a read guard given to a caller (`with`) must not
//! call back into this `Current`, and a writer never reads it again before
//! letting go. std's `RwLock` queues new readers behind a waiting writer,
//! so a second read under a read guard, or a read under the write guard,
//! waits forever (issue 25: `reload` once read again while still holding
//! the write guard, and hung whenever two threads noticed the same
//! replacement).

use std::sync::Arc;

use crate::sync::{RwLock, unpoison};

/// A table that can tell when it has been replaced.
pub(crate) trait Table {
    /// Whether a newer table has replaced this one.
    fn stale(&self) -> bool;
}

/// The table in use: one `Arc` behind a read-mostly lock.
pub(crate) struct Current<T> {
    slot: RwLock<Arc<T>>,
}

impl<T: Table> Current<T> {
    pub(crate) fn new(table: Arc<T>) -> Current<T> {
        Current {
            slot: RwLock::new(table),
        }
    }

    /// The table now, stale or not (one read lock, one reference count).
    pub(crate) fn get(&self) -> Arc<T> {
        unpoison(self.slot.read()).clone()
    }

    /// Runs `f` on the table now under the read guard, which saves the
    /// reference count a clone costs on the hit path. `f` must not use this
    /// `Current` (see the lock rule above).
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&Arc<T>) -> R) -> R {
        let guard = unpoison(self.slot.read());
        f(&guard)
    }

    /// Replaces a stale table with the one `open` gives, once across the
    /// threads that noticed the same replacement: the others find it done.
    /// Returns the table now, and the one it replaced for the caller to let
    /// go of outside the lock (`index::release`).
    pub(crate) fn reload<E>(
        &self,
        open: impl FnOnce() -> Result<T, E>,
    ) -> Result<(Arc<T>, Option<Arc<T>>), E> {
        let mut slot = unpoison(self.slot.write());
        if !slot.stale() {
            // Another thread reloaded first: hand out what it installed,
            // from the guard already held.
            return Ok((slot.clone(), None));
        }
        let fresh = Arc::new(open()?);
        let old = std::mem::replace(&mut *slot, fresh.clone());
        drop(slot);
        Ok((fresh, Some(old)))
    }

    /// Installs `table` (a writer's growth, rebuild or clear, under the
    /// writer lock) and returns the one it replaced.
    pub(crate) fn install(&self, table: Arc<T>) -> Arc<T> {
        std::mem::replace(&mut *unpoison(self.slot.write()), table)
    }
}

/// A table that is replaced when told, for the tests and the models.
#[cfg(test)]
mod fake {
    use std::sync::atomic::{AtomicBool, Ordering};

    pub(super) struct T {
        pub(super) generation: usize,
        pub(super) stale: AtomicBool,
    }

    impl super::Table for T {
        fn stale(&self) -> bool {
            self.stale.load(Ordering::SeqCst)
        }
    }

    pub(super) fn table(generation: usize) -> T {
        T {
            generation,
            stale: AtomicBool::new(false),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::fake::table;
    use super::*;

    /// Issue 25's hang, reduced: threads that noticed the same replacement
    /// all reload; the first opens the new table, the others return it. On
    /// the code before the fix the second thread waited on itself forever,
    /// so the run is watched and fails after a bound instead of hanging.
    #[test]
    fn threads_reloading_the_same_replacement_all_return() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let cur = Current::new(Arc::new(table(0)));
            let opened = AtomicUsize::new(0);
            for generation in 1..=200 {
                cur.get().stale.store(true, Ordering::Release);
                std::thread::scope(|s| {
                    for _ in 0..4 {
                        s.spawn(|| {
                            let (now, _old) = cur
                                .reload(|| {
                                    opened.fetch_add(1, Ordering::Relaxed);
                                    Ok::<_, ()>(table(generation))
                                })
                                .unwrap();
                            assert_eq!(now.generation, generation);
                            assert!(!now.stale());
                        });
                    }
                });
            }
            tx.send(opened.load(Ordering::Relaxed)).unwrap();
        });
        let opened = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("reloading threads hung (issue 25)");
        assert_eq!(opened, 200, "one open per replacement");
    }
}

/// The table swap under the model checker (`--cfg loom`).
#[cfg(all(test, loom))]
mod loom_model {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::fake::{T, table};
    use super::{Current, Table};

    /// What `Engine::index` does: the table now, reloaded when stale.
    fn index(cur: &Current<T>, opened: &AtomicUsize) -> Arc<T> {
        let now = cur.get();
        if !now.stale() {
            return now;
        }
        drop(now);
        let (now, _old) = cur
            .reload(|| {
                opened.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>(table(1))
            })
            .unwrap();
        now
    }

    /// Issue 25: two threads notice the same replacement. Both return the
    /// new table, it is opened once, and neither waits on itself.
    #[test]
    fn loom_two_threads_reload_one_replacement() {
        loom::model(|| {
            let cur = Arc::new(Current::new(Arc::new(table(0))));
            let opened = Arc::new(AtomicUsize::new(0));
            cur.get().stale.store(true, Ordering::SeqCst);
            let other = {
                let (cur, opened) = (cur.clone(), opened.clone());
                loom::thread::spawn(move || index(&cur, &opened).generation)
            };
            let mine = index(&cur, &opened).generation;
            assert_eq!((mine, other.join().unwrap()), (1, 1));
            assert_eq!(opened.load(Ordering::SeqCst), 1);
        });
    }

    /// A writer installs a grown table (marking the old one replaced, as a
    /// growth does) while a reader looks up under the read guard and then
    /// reloads: the reader never waits forever, and once the writer is done
    /// every lookup sees a table that is not stale.
    #[test]
    fn loom_install_races_lookups_and_reloads() {
        loom::model(|| {
            let cur = Arc::new(Current::new(Arc::new(table(0))));
            let opened = Arc::new(AtomicUsize::new(0));
            let writer = {
                let cur = cur.clone();
                loom::thread::spawn(move || {
                    let old = cur.install(Arc::new(table(2)));
                    old.stale.store(true, Ordering::SeqCst);
                })
            };
            let seen = cur.with(|t| t.generation);
            assert!(seen == 0 || seen == 2);
            let now = index(&cur, &opened);
            assert!(now.generation == 0 || now.generation == 2 || now.generation == 1);
            writer.join().unwrap();
            assert!(
                !index(&cur, &opened).stale(),
                "a stale table after the swap"
            );
        });
    }
}
