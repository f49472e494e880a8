//! Single flight for `async` memoized functions: concurrent misses of one
//! call — from tasks on any runtime, other threads and other processes —
//! compute once, and no executor thread ever blocks while waiting.
//!
//! In the process, the first task to miss a key leads and the others await
//! a [`Gate`] it opens when done. Across processes, the leader takes the
//! key's byte-range lock without waiting if it can; if another process
//! holds it, a thread of its own waits for the lock while the task awaits
//! that thread's gate. Whoever gets the lock looks for the value again
//! before computing it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use super::engine::Engine;
use crate::Key;
use crate::lock::KeyLock;

/// Opened once; wakes every task that awaits it. Runtime-agnostic: it
/// keeps the tasks' wakers.
///
/// Lock rule: `state` is a leaf; wakers are woken after it is let go.
#[derive(Default)]
pub(crate) struct Gate {
    state: crate::sync::Mutex<(bool, Vec<Waker>)>,
}

impl Gate {
    /// Opens the gate: every waiting task is woken.
    pub(crate) fn open(&self) {
        let wakers = {
            let mut s = crate::sync::unpoison(self.state.lock());
            s.0 = true;
            std::mem::take(&mut s.1)
        };
        for w in wakers {
            w.wake();
        }
    }

    /// Resolves once the gate is open.
    pub(crate) fn wait(self: &Arc<Gate>) -> Opened {
        Opened(self.clone())
    }
}

/// The future of [`Gate::wait`].
pub(crate) struct Opened(Arc<Gate>);

impl Future for Opened {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = crate::sync::unpoison(self.0.state.lock());
        if s.0 {
            return Poll::Ready(());
        }
        if !s.1.iter().any(|w| w.will_wake(cx.waker())) {
            s.1.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Async computations in flight in this process, by key.
#[derive(Default)]
pub(crate) struct AsyncInflight {
    keys: Mutex<HashMap<Key, Arc<Gate>>>,
}

/// What `Engine::async_flight` found.
pub(crate) enum Led<V> {
    /// The value, stored by another task or process meanwhile.
    Found(V),
    /// This task computes: it holds the key's flight until the guard drops.
    Compute(FlightGuard),
}

/// The flight of a key an async task computes: in the process and across
/// processes. Dropping it (after the value is stored, or on failure or
/// cancellation) lets the others go on.
pub(crate) struct FlightGuard {
    engine: Arc<Engine>,
    key: Key,
    gate: Arc<Gate>,
    cross: Cross,
}

/// How the guard holds the key across processes.
enum Cross {
    /// A byte-range lock of `Flights`, released by key.
    Range,
    /// A lock file.
    File(#[allow(dead_code, reason = "held for its drop")] KeyLock),
    /// None could be taken (a read-only directory): computed without.
    Nothing,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if matches!(self.cross, Cross::Range)
            && let Some(f) = &self.engine.flight.cross
        {
            f.release(&self.key);
        }
        self.engine
            .flight
            .tasks
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
        self.gate.open();
    }
}

impl Engine {
    /// Leads or follows the async flight of `key`: `Found` with the value
    /// if it is stored (by this process's leader or another process, while
    /// this task waited without blocking its thread), else `Compute` with
    /// the guard this task holds while it computes and stores the value.
    /// `look` reads the value (a miss, a stale value or a damaged one:
    /// `None`).
    pub(crate) async fn async_flight<V>(
        self: &Arc<Self>,
        key: &Key,
        look: impl Fn() -> Option<V>,
    ) -> Led<V> {
        loop {
            if let Some(v) = look() {
                return Led::Found(v);
            }
            let (gate, leads) = {
                let mut keys = self
                    .flight
                    .tasks
                    .keys
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if let Some(g) = keys.get(key) {
                    (g.clone(), false)
                } else {
                    let g = Arc::new(Gate::default());
                    keys.insert(*key, g.clone());
                    (g, true)
                }
            };
            if !leads {
                // Another task of this process computes it: wait, then
                // look again (it may have failed, and not stored).
                gate.wait().await;
                continue;
            }
            let cross = self.cross_lock(key).await;
            let guard = FlightGuard {
                engine: self.clone(),
                key: *key,
                gate,
                cross,
            };
            // Another process may have stored it while this one waited.
            if let Some(v) = look() {
                drop(guard);
                return Led::Found(v);
            }
            return Led::Compute(guard);
        }
    }

    /// The key's lock across processes, waited for on a thread of its own
    /// when another process holds it, so the task's thread never blocks.
    async fn cross_lock(self: &Arc<Self>, key: &Key) -> Cross {
        if self.read_only() {
            return Cross::Nothing;
        }
        match &self.flight.cross {
            Some(f) => match f.try_acquire_kept(key) {
                Ok(true) => Cross::Range,
                Ok(false) => {
                    let engine = self.clone();
                    let key = *key;
                    let got = self
                        .blocking(move || {
                            engine
                                .flight
                                .cross
                                .as_ref()
                                .is_some_and(|f| f.acquire_kept(&key).is_ok())
                        })
                        .await;
                    if got { Cross::Range } else { Cross::Nothing }
                }
                Err(e) => {
                    tracing::warn!(%key, error = %e, "memo: no compute lock; computing without");
                    Cross::Nothing
                }
            },
            None => match KeyLock::try_acquire(&self.flight.locks, key) {
                Ok(Some(l)) => Cross::File(l),
                Ok(None) => {
                    let locks = self.flight.locks.clone();
                    let key = *key;
                    self.blocking(move || KeyLock::acquire(&locks, &key).ok())
                        .await
                        .map_or(Cross::Nothing, Cross::File)
                }
                Err(e) => {
                    tracing::warn!(%key, error = %e, "memo: no compute lock; computing without");
                    Cross::Nothing
                }
            },
        }
    }

    /// Runs `wait` (which blocks) on a thread of its own; resolves with
    /// its result without blocking the awaiting task's thread.
    async fn blocking<T: Default + Send + 'static>(
        &self,
        wait: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let gate = Arc::new(Gate::default());
        let out = Arc::new(Mutex::new(None));
        let (g, o) = (gate.clone(), out.clone());
        let spawned = std::thread::Builder::new()
            .name("memo-flight".into())
            .spawn(move || {
                let v = wait();
                *o.lock().unwrap_or_else(PoisonError::into_inner) = Some(v);
                g.open();
            });
        if spawned.is_err() {
            // No thread to wait on: computed without the lock.
            return T::default();
        }
        gate.wait().await;
        let v = out.lock().unwrap_or_else(PoisonError::into_inner).take();
        v.unwrap_or_default()
    }
}

/// The async flight's gate under the model checker (`--cfg loom`).
#[cfg(all(test, loom))]
mod loom_model {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::Arc;

    use super::Gate;

    /// Tasks awaiting a gate while the leader opens it: no wake-up is lost,
    /// whichever comes first (a lost one would leave a task pending forever,
    /// which loom reports as a deadlock).
    #[test]
    fn loom_a_gate_wakes_every_waiter() {
        loom::model(|| {
            let gate = Arc::new(Gate::default());
            let waiters: Vec<_> = (0..2)
                .map(|_| {
                    let gate = gate.clone();
                    loom::thread::spawn(move || loom::future::block_on(gate.wait()))
                })
                .collect();
            gate.open();
            for w in waiters {
                w.join().unwrap();
            }
        });
    }
}
