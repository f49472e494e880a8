//! Remote hits installed off the call path.
//!
//! A value fetched from the remote tier is returned to its caller at once,
//! from the fetched bytes, and queued here; a worker thread stores it in
//! the local store in the background. Until it is stored, the queue itself
//! answers lookups of its key (`Engine::lookup_stored` asks it after a
//! local miss), so the next hit of a fetched value is local either way.
//!
//! What is queued is stored before the process lets go of it:
//! - the worker starts with the first queued value and leaves after
//!   `LINGER` with nothing to do (a thread per store only while remote
//!   hits come, none in a process that never has one);
//! - every `Store` method that looks at the store as a whole or changes it
//!   (`stats`, `len`, `remove`, `clear`, `trim`, `verify`, `push`, `pull`,
//!   the function views) first drains the queue (`Engine::settle_installs`),
//!   so within a process every change is seen in call order: a `remove`
//!   after a remote hit removes the installed value, and a `put` after one
//!   is never overwritten by it (an install never replaces a stored entry);
//! - dropping a `Store` drains it, and so does the process's normal exit
//!   (an `atexit` hook, for `static` stores that are never dropped).
//!
//! A process killed before its queue drained loses only local copies: the
//! values are still on the remote, and are fetched again. A process forked
//! with values queued (Python's `multiprocessing`) starts a worker of its
//! own for them when it next queues or drains.
//!
//! Bounds: at most `MAX_ENTRIES` values and `MAX_BYTES` bytes wait; a value
//! beyond either is installed on the call path, as before. A drain waits
//! for an install another thread is running at most `DRAIN_MAX`.
//!
//! Lock order: the queue's lock is a leaf. It is taken under the index's
//! read guard (a lookup) and never held while anything else is taken; the
//! install itself runs with no lock of this module held.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use super::Engine;
use crate::sync::{Condvar, Mutex, unpoison};
use crate::{Bytes, Key};

/// How long an idle worker waits for more before it leaves.
const LINGER: Duration = Duration::from_millis(100);
/// Values waiting at most (beyond: installed on the call path).
const MAX_ENTRIES: usize = 4096;
/// Bytes waiting at most.
const MAX_BYTES: usize = 64 << 20;
/// The longest a drain waits for installs running on other threads.
const DRAIN_MAX: Duration = Duration::from_secs(10);

/// A fetched value waiting to be stored: its bytes as stored (after the
/// remote object's header), its codec byte and cost word.
#[derive(Clone)]
pub(crate) struct Waiting {
    pub bytes: Bytes,
    pub codec: u8,
    pub cost: u32,
}

impl Waiting {
    /// A checked remote object's value (after its header), codec and cost.
    pub(crate) fn of(
        (checked, object): (crate::remote::object::Checked, Vec<u8>),
    ) -> Option<Waiting> {
        Some(Waiting {
            bytes: Bytes::owned(object).skip(crate::remote::object::HEADER_LEN)?,
            codec: checked.codec,
            cost: crate::format::cost_word(checked.cost_us),
        })
    }
}

/// The queue of values waiting to be installed, and the worker's state.
#[derive(Default)]
pub(crate) struct Queue {
    state: Mutex<State>,
    /// Signalled when a value is queued (the worker waits on it).
    queued: Condvar,
    /// Signalled when an install finished (drains wait on it).
    installed: Condvar,
    /// Values queued or being installed: a lookup that misses locally asks
    /// the queue only when there are some.
    waiting: AtomicUsize,
    /// Installs finished, ever: a lookup that missed in the index and then
    /// in the queue looks again if one finished in between (it was
    /// published before it left the queue).
    installed_count: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Keys not yet taken by an installer, oldest first.
    order: VecDeque<Key>,
    /// Every waiting value, taken or not: it answers lookups until stored.
    values: HashMap<Key, Waiting>,
    bytes: usize,
    /// The process whose worker is running, if one is: after a fork the
    /// child's state names its parent, whose worker it does not have.
    worker: Option<u32>,
    /// The worker waits for a value: an offer wakes it (otherwise it will
    /// look again before it waits, and a wake-up is a system call saved).
    idle: bool,
}

/// What `Queue::offer` did with a value.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Queued (or already waiting); `start` when no worker of this process
    /// runs, for the caller to start one.
    Queued { start: bool },
    /// The queue is full: the caller installs the value itself.
    Full,
}

impl Queue {
    /// Queues `key`'s fetched value.
    pub(crate) fn offer(&self, key: Key, value: Waiting, pid: u32) -> Offer {
        let mut st = unpoison(self.state.lock());
        if !st.values.contains_key(&key) {
            let len = value.bytes.len();
            if st.values.len() >= MAX_ENTRIES || st.bytes.saturating_add(len) > MAX_BYTES {
                return Offer::Full;
            }
            st.values.insert(key, value);
            st.order.push_back(key);
            st.bytes += len;
            self.waiting.fetch_add(1, Ordering::Release);
        }
        let start = st.worker != Some(pid);
        if start {
            st.adopt(pid);
        }
        let wake = st.idle;
        drop(st);
        if wake {
            self.queued.notify_one();
        }
        Offer::Queued { start }
    }

    /// The worker `offer` asked for could not be started: the next offer
    /// asks again (meanwhile values wait for a drain or, once the queue is
    /// full, each call installs its own).
    pub(crate) fn no_worker(&self, pid: u32) {
        let mut st = unpoison(self.state.lock());
        if st.worker == Some(pid) {
            st.worker = None;
        }
    }

    /// `key`'s value, if it is waiting to be installed.
    pub(crate) fn get(&self, key: &Key) -> Option<(Bytes, u8)> {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return None;
        }
        let st = unpoison(self.state.lock());
        st.values.get(key).map(|w| (w.bytes.clone(), w.codec))
    }

    /// Installs finished so far (see `installed_count`).
    pub(crate) fn installed(&self) -> u64 {
        self.installed_count.load(Ordering::Acquire)
    }

    /// Whether values are waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.waiting.load(Ordering::Acquire) == 0
    }

    /// Installs waiting values with `install` until none is left: the
    /// worker's loop when `linger` is set (it then waits that long for
    /// more before it leaves, and clears `worker` as it does), a drain's
    /// otherwise (it returns once every value is taken, and then waits up
    /// to `DRAIN_MAX` for those other threads are still installing).
    pub(crate) fn work(
        &self,
        linger: Option<Duration>,
        pid: u32,
        mut install: impl FnMut(&Key, &Waiting),
    ) {
        // A drain's bound on waiting for other threads' installs.
        let until = Instant::now() + DRAIN_MAX;
        let mut st = unpoison(self.state.lock());
        if linger.is_none() && st.worker.is_some_and(|p| p != pid) {
            // Forked: the parent's worker took values this process will
            // never see installed; they are this process's to install.
            st.adopt(pid);
            st.worker = None;
        }
        loop {
            if let Some(key) = st.order.pop_front() {
                let Some(value) = st.values.get(&key).cloned() else {
                    continue;
                };
                drop(st);
                install(&key, &value);
                st = unpoison(self.state.lock());
                if let Some(w) = st.values.remove(&key) {
                    st.bytes -= w.bytes.len();
                    self.waiting.fetch_sub(1, Ordering::Release);
                    self.installed_count.fetch_add(1, Ordering::Release);
                }
                self.installed.notify_all();
                continue;
            }
            if let Some(linger) = linger {
                st = self.wait_queued(st, linger);
                if st.order.is_empty() {
                    if st.worker == Some(pid) {
                        st.worker = None;
                    }
                    return;
                }
            } else {
                // Taken by other threads: wait until they are stored.
                while !st.values.is_empty() && st.order.is_empty() {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        tracing::warn!(
                            waiting = st.values.len(),
                            "memo: values fetched from the remote are still being installed after {DRAIN_MAX:?}; not waiting longer"
                        );
                        return;
                    }
                    st = self.wait_installed(st, left);
                }
                if st.order.is_empty() {
                    return;
                }
            }
        }
    }

    #[cfg(not(loom))]
    fn wait_queued<'a>(
        &self,
        st: crate::sync::MutexGuard<'a, State>,
        linger: Duration,
    ) -> crate::sync::MutexGuard<'a, State> {
        let mut st = st;
        st.idle = true;
        let mut st = self
            .queued
            .wait_timeout_while(st, linger, |s| s.order.is_empty())
            .map_or_else(|e| e.into_inner().0, |(g, _)| g);
        st.idle = false;
        st
    }

    #[cfg(not(loom))]
    fn wait_installed<'a>(
        &self,
        st: crate::sync::MutexGuard<'a, State>,
        left: Duration,
    ) -> crate::sync::MutexGuard<'a, State> {
        self.installed
            .wait_timeout(st, left)
            .map_or_else(|e| e.into_inner().0, |(g, _)| g)
    }

    /// loom has no timed waits (its `wait_timeout` never times out): the
    /// model's worker leaves as soon as the queue is empty, and a drain
    /// waits untimed, so a lost wake-up shows as a deadlock.
    #[cfg(loom)]
    #[allow(clippy::unused_self, reason = "the same signature as the real one")]
    fn wait_queued<'a>(
        &self,
        st: crate::sync::MutexGuard<'a, State>,
        _linger: Duration,
    ) -> crate::sync::MutexGuard<'a, State> {
        st
    }

    #[cfg(loom)]
    fn wait_installed<'a>(
        &self,
        st: crate::sync::MutexGuard<'a, State>,
        _left: Duration,
    ) -> crate::sync::MutexGuard<'a, State> {
        unpoison(self.installed.wait(st))
    }
}

impl State {
    /// Makes `pid` this queue's process: after a fork, values the parent's
    /// worker had taken go back in line.
    fn adopt(&mut self, pid: u32) {
        if self.worker.is_some_and(|p| p != pid) {
            self.order = self.values.keys().copied().collect();
        }
        self.worker = Some(pid);
    }
}

/// An engine's installs: its queue, and the engine its worker installs in.
pub(crate) struct Installs {
    pub(crate) queue: Queue,
    /// The engine, for a worker to hold while it runs (set once the engine
    /// is in its `Arc`).
    engine: OnceLock<Weak<Engine>>,
    /// Registered with the exit hook.
    at_exit: std::sync::Once,
}

impl Default for Installs {
    fn default() -> Installs {
        Installs {
            queue: Queue::default(),
            engine: OnceLock::new(),
            at_exit: std::sync::Once::new(),
        }
    }
}

impl Installs {
    /// Binds the installs to their engine, now in its `Arc`.
    pub(crate) fn bind(engine: &Arc<Engine>) {
        // Set once, just after the engine is made: a second call is a no-op.
        let _ = engine.installs.engine.set(Arc::downgrade(engine));
    }
}

impl Engine {
    /// Takes a value fetched from the remote tier (its object checked):
    /// its bytes and codec as stored, installed locally in the background,
    /// or here when the queue is full (`None` if it cannot be, as
    /// `install_fetched`); a read-only store returns it uninstalled.
    pub(super) fn take_fetched(
        &self,
        key: &Key,
        fetched: (crate::remote::object::Checked, Vec<u8>),
    ) -> Option<(Bytes, u8)> {
        let value = Waiting::of(fetched)?;
        if self.read_only() {
            // Nothing can be installed: the checked value, as it came.
            return Some((value.bytes, value.codec));
        }
        let Some(engine) = self.installs.engine.get().and_then(Weak::upgrade) else {
            return self.install_fetched(key, &value);
        };
        let pid = std::process::id();
        match self.installs.queue.offer(*key, value.clone(), pid) {
            Offer::Queued { start } => {
                if start {
                    start_worker(engine, pid);
                }
                self.installs
                    .at_exit
                    .call_once(|| exit_hook::register(self));
                Some((value.bytes, value.codec))
            }
            Offer::Full => self.install_fetched(key, &value),
        }
    }

    /// Stores a fetched value unless the key has an entry by now; `None`
    /// (reported) if it cannot be stored.
    pub(super) fn install_now(&self, key: &Key, w: &Waiting) -> Option<()> {
        match self.put_stored_absent(key, w.codec, &w.bytes, w.cost) {
            Ok(()) => Some(()),
            Err(e) => {
                tracing::warn!(%key, error = %e, "memo: a value found on the remote cannot be stored locally");
                None
            }
        }
    }

    /// Installs every value waiting to be, on this thread (and waits, at
    /// most `DRAIN_MAX`, for those another thread is installing). Called by
    /// the `Store` methods that look at or change the store as a whole,
    /// never under a lock of the engine.
    pub(crate) fn settle_installs(&self) {
        if self.installs.queue.is_empty() {
            return;
        }
        self.installs
            .queue
            .work(None, std::process::id(), |key, w| {
                self.install_now(key, w);
            });
    }
}

/// Installs every value fetched from the remote tier and still queued, in
/// every store of this process (`protocol::settle_installs`).
pub(crate) fn settle_all() {
    exit_hook::settle_all();
}

/// Starts the worker of `engine`'s queue; if no thread can be started,
/// the values wait for the next drain or offer.
fn start_worker(engine: Arc<Engine>, pid: u32) {
    let queue_of = engine.clone();
    let spawned = std::thread::Builder::new()
        .name("memo-install".into())
        .spawn(move || {
            // The lowest priority: installs take time no caller waits for,
            // so on a busy machine they run when a core would be idle (a
            // backlog is bounded: a full queue installs on the call path).
            let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
            engine.installs.queue.work(Some(LINGER), pid, |key, w| {
                engine.install_now(key, w);
            });
        });
    if let Err(e) = spawned {
        queue_of.installs.queue.no_worker(pid);
        tracing::warn!(error = %e, "memo: no thread to install remote values in the background; they are installed by the next drain");
    }
}

/// The process's exit drains every queue (`static` stores are never
/// dropped): a list of the engines that queued values, and the hook.
mod exit_hook {
    use std::sync::{Mutex, PoisonError, Weak};

    use super::Engine;

    static ENGINES: Mutex<Vec<Weak<Engine>>> = Mutex::new(Vec::new());

    /// Adds `engine` to the list, and registers the hook the first time.
    pub(super) fn register(engine: &Engine) {
        let Some(weak) = engine.installs.engine.get().cloned() else {
            return;
        };
        let mut list = ENGINES.lock().unwrap_or_else(PoisonError::into_inner);
        list.retain(|w| w.strong_count() > 0);
        if list.is_empty() {
            static HOOK: std::sync::Once = std::sync::Once::new();
            HOOK.call_once(|| crate::mmap::at_exit(drain_all));
        }
        list.push(weak);
    }

    /// The hook: drains every queue still alive. Never unwinds (it runs
    /// inside `exit`).
    extern "C" fn drain_all() {
        let _ = std::panic::catch_unwind(settle_all);
    }

    /// Drains the queue of every store of this process that has one.
    pub(crate) fn settle_all() {
        let engines: Vec<_> = ENGINES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for e in engines {
            e.settle_installs();
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn waiting(n: u8) -> Waiting {
        Waiting {
            bytes: Bytes::owned(vec![n; 100]),
            codec: 0,
            cost: 0,
        }
    }

    /// Queues keys 1 and 2: the first asks for a worker, the second not.
    fn offer_two(q: &Queue, pid: u32) {
        assert_eq!(
            q.offer(Key::of(&1), waiting(1), pid),
            Offer::Queued { start: true }
        );
        assert_eq!(
            q.offer(Key::of(&2), waiting(2), pid),
            Offer::Queued { start: false }
        );
    }

    #[test]
    fn a_value_is_found_until_installed_and_drains_install_each_once() {
        let (q, pid) = (Queue::default(), std::process::id());
        offer_two(&q, pid);
        // Offered again while waiting: still one.
        q.offer(Key::of(&1), waiting(9), pid);
        assert_eq!(&*q.get(&Key::of(&1)).unwrap().0, &[1; 100][..]);
        let mut seen = Vec::new();
        q.work(None, pid, |k, w| {
            assert!(q.get(k).is_some(), "found while being installed");
            seen.push((*k, w.bytes[0]));
        });
        assert_eq!(seen, vec![(Key::of(&1), 1), (Key::of(&2), 2)]);
        assert!(q.is_empty() && q.get(&Key::of(&1)).is_none());
    }

    #[test]
    fn a_full_queue_refuses() {
        let q = Queue::default();
        let pid = std::process::id();
        let big = Waiting {
            bytes: Bytes::owned(vec![0; MAX_BYTES]),
            codec: 0,
            cost: 0,
        };
        assert_eq!(
            q.offer(Key::of(&0), big, pid),
            Offer::Queued { start: true }
        );
        assert_eq!(q.offer(Key::of(&1), waiting(1), pid), Offer::Full);
        q.work(None, pid, |_, _| {});
        for i in 0..MAX_ENTRIES {
            assert_ne!(q.offer(Key::of(&i), waiting(1), pid), Offer::Full);
        }
        assert_eq!(q.offer(Key::of(&"one more"), waiting(1), pid), Offer::Full);
    }

    #[test]
    fn a_forked_queue_installs_what_its_parent_had_taken() {
        let q = Queue::default();
        q.offer(Key::of(&1), waiting(1), 1);
        q.offer(Key::of(&2), waiting(2), 1);
        // The parent's worker took key 1 and was mid-install at the fork:
        // it is no longer in line, still waiting.
        {
            let mut st = q.state.lock().unwrap();
            st.order.pop_front();
        }
        // In the child (another pid), a drain installs both.
        let mut seen = Vec::new();
        q.work(None, 2, |k, _| seen.push(*k));
        seen.sort();
        let mut want = vec![Key::of(&1), Key::of(&2)];
        want.sort();
        assert_eq!(seen, want);
        assert!(q.is_empty());
    }

    #[test]
    fn a_worker_that_could_not_start_is_asked_for_again() {
        let (q, pid) = (Queue::default(), std::process::id());
        offer_two(&q, pid);
        q.no_worker(pid);
        assert_eq!(
            q.offer(Key::of(&3), waiting(3), pid),
            Offer::Queued { start: true }
        );
    }

    #[test]
    fn the_worker_leaves_when_idle_and_a_new_offer_starts_another() {
        let q = Arc::new(Queue::default());
        let pid = std::process::id();
        assert_eq!(
            q.offer(Key::of(&1), waiting(1), pid),
            Offer::Queued { start: true }
        );
        let worker = {
            let q = q.clone();
            std::thread::spawn(move || q.work(Some(Duration::from_millis(1)), pid, |_, _| {}))
        };
        worker.join().unwrap();
        assert!(q.is_empty());
        assert_eq!(
            q.offer(Key::of(&2), waiting(2), pid),
            Offer::Queued { start: true }
        );
    }
}

/// The queue under the model checker (`--cfg loom`, run by
/// `scripts/test.sh`): a caller queueing while the worker installs and
/// another thread drains.
#[cfg(all(test, loom))]
mod loom_model {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::Arc;

    use super::*;

    /// Two values queued, a worker and a drain racing to install them: each
    /// is installed exactly once, a lookup finds it until then, the drain
    /// returns only when both are stored, and nobody waits forever.
    #[test]
    fn loom_installs_each_value_once_and_drains_wait_for_them() {
        loom::model(|| {
            let q = Arc::new(Queue::default());
            let stored = Arc::new(crate::sync::Mutex::new(Vec::<Key>::new()));
            let pid = 7;
            let w = |n: u8| Waiting {
                bytes: Bytes::owned(vec![n]),
                codec: 0,
                cost: 0,
            };
            let (a, b) = (Key::of(&1), Key::of(&2));
            assert_eq!(q.offer(a, w(1), pid), Offer::Queued { start: true });
            let worker = {
                let (q, stored) = (q.clone(), stored.clone());
                loom::thread::spawn(move || {
                    q.work(Some(LINGER), pid, |k, _| stored.lock().unwrap().push(*k));
                })
            };
            q.offer(b, w(2), pid);
            let drained = {
                let (q, stored) = (q.clone(), stored.clone());
                loom::thread::spawn(move || {
                    q.work(None, pid, |k, _| stored.lock().unwrap().push(*k));
                    // After a drain, everything is stored.
                    let s = stored.lock().unwrap();
                    assert!(s.contains(&a) && s.contains(&b), "a drain returned early");
                })
            };
            for k in [a, b] {
                // Looked up as `Engine::lookup_stored` does: the store (the
                // index), then the queue, again if an install finished in
                // between. Found either way: never neither.
                let found = loop {
                    let installed = q.installed();
                    if stored.lock().unwrap().contains(&k) || q.get(&k).is_some() {
                        break true;
                    }
                    if q.installed() == installed {
                        break false;
                    }
                };
                assert!(found, "a fetched value was neither waiting nor stored");
            }
            worker.join().unwrap();
            drained.join().unwrap();
            let mut s = stored.lock().unwrap().clone();
            s.sort();
            let mut want = vec![a, b];
            want.sort();
            assert_eq!(s, want, "each value installed exactly once");
            assert!(q.is_empty());
        });
    }
}
