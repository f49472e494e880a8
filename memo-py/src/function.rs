//! A memoized Python function: `memo.memoize` makes one (its Python
//! subclass in `memo/_memoize.py` adds `map`, `lazy`, binding as a method
//! and pickling by reference). A call binds its arguments, encodes them
//! into the key, looks in the decoded in-process tier, then runs through
//! memo-core's call protocol with the GIL released while it waits: single
//! flight across threads, processes and machines, the registry and
//! per-function counts, `ttl`, `min_cost`, the remote tier.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use memo_core::Key;
use memo_core::protocol::{self, Encoded, Identity, Options};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::canon::{Dest, Top, encode};
use crate::errors::store_error;
use crate::memory::{KEYED, Memory, Slot};
use crate::sig::{ParamSpec, Signature};
use crate::store::{Fail, Handle, Store, duration, unstored_message, warn};
use crate::value;

/// A memoized function (the native half of `memo.memoize`'s result).
#[pyclass(frozen, subclass, module = "memo._memo", name = "Function")]
pub(crate) struct Function {
    rt: protocol::Function,
    body: Py<PyAny>,
    sig: Signature,
    /// The store, opened on the first call (importing a module of memoized
    /// functions touches no disk, and `MEMO_DIR` set after the import
    /// counts).
    store: OnceLock<Arc<Handle>>,
    place: Place,
    /// `memory=N` without a `ttl`.
    memory: Option<Mutex<Memory>>,
    /// `module.qualname`, for messages.
    name: String,
}

/// Where a function's store is.
enum Place {
    /// `store=`: given, already open.
    Given,
    /// `dir=`.
    Dir(PathBuf),
    /// The default store of a function of the project rooted here (or of
    /// no known project).
    Default(Option<PathBuf>),
}

/// What a call is, once its arguments are bound and encoded: its key is
/// hashed only when needed (an in-process hit needs only the bytes).
struct Call {
    key: std::cell::OnceCell<Key>,
    /// The arguments' canonical bytes (when small), or `KEYED` and the key.
    slot: Slot,
}

impl Drop for Call {
    fn drop(&mut self) {
        crate::canon::recycle(std::mem::take(&mut self.slot));
    }
}

#[pymethods]
impl Function {
    #[new]
    #[allow(
        clippy::needless_pass_by_value,
        reason = "pyo3 hands arguments over by value"
    )]
    #[pyo3(signature = (body, module, qualname, code, params, *, store=None, dir=None,
        project=None, ignore=Vec::new(), version="", helpers=None, ttl=None, min_cost=None,
        memory=0, compress=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        body: Py<PyAny>,
        module: &str,
        qualname: &str,
        code: &str,
        params: Vec<ParamSpec>,
        store: Option<PyRef<'_, Store>>,
        dir: Option<PathBuf>,
        project: Option<PathBuf>,
        ignore: Vec<String>,
        version: &str,
        helpers: Option<Vec<u8>>,
        ttl: Option<Bound<'_, PyAny>>,
        min_cost: Option<Bound<'_, PyAny>>,
        memory: usize,
        compress: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Function> {
        let helpers = match helpers {
            None => None,
            Some(h) => Some(<[u8; 32]>::try_from(h.as_slice()).map_err(|_| {
                pyo3::exceptions::PyValueError::new_err("helpers: a 32-byte digest")
            })?),
        };
        let mut options = Options::new();
        let has_ttl = ttl.is_some();
        if let Some(t) = ttl {
            options = options.ttl(duration(&t, "ttl")?);
        }
        if let Some(m) = min_cost {
            options = options.min_cost(duration(&m, "min_cost")?);
        }
        if let Some(c) = compress {
            options = options.compress(crate::store::compression(&c, "compress")?);
        }
        let rt = protocol::Function::new(
            &Identity {
                language: "python",
                module,
                name: qualname,
                code,
                version,
                helpers,
            },
            options,
        );
        Ok(Function {
            rt,
            body,
            sig: Signature::new(params, &ignore)?,
            store: store
                .as_ref()
                .map_or_else(OnceLock::new, |s| OnceLock::from(s.handle.clone())),
            place: match (store, dir) {
                (Some(_), _) => Place::Given,
                (None, Some(d)) => Place::Dir(d),
                (None, None) => Place::Default(project),
            },
            memory: (memory > 0 && !has_ttl).then(|| Mutex::new(Memory::new(memory))),
            name: format!("{module}.{qualname}"),
        })
    }

    /// The call: its stored result, or the body run once across threads,
    /// processes and machines and its result stored.
    #[pyo3(signature = (*args, **kwargs))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let Some(call) = self.prepare(args, kwargs)? else {
            return self.body.bind(py).call(args, kwargs);
        };
        if let Some(v) = self.remembered(py, &call) {
            return Ok(v);
        }
        let out = self.flight(py, &call, args, kwargs, true)?;
        out.ok_or_else(|| unreachable_busy(py))
    }

    /// As a call, except that when another thread or process is computing
    /// it now, `(False, None)` at once instead of waiting: `(True, value)`
    /// otherwise. What `map` does first.
    #[pyo3(signature = (*args, **kwargs))]
    fn _try_call<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<(bool, Bound<'py, PyAny>)> {
        let Some(call) = self.prepare(args, kwargs)? else {
            return Ok((true, self.body.bind(py).call(args, kwargs)?));
        };
        if let Some(v) = self.remembered(py, &call) {
            return Ok((true, v));
        }
        Ok(match self.flight(py, &call, args, kwargs, false)? {
            Some(v) => (true, v),
            None => (false, py.None().into_bound(py)),
        })
    }

    /// The call's stored result without computing anything: `(True,
    /// value)`, or `(False, None)` (what an `async def` looks up first).
    #[pyo3(signature = (*args, **kwargs))]
    fn _get<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<(bool, Bound<'py, PyAny>)> {
        let none = || (false, py.None().into_bound(py));
        let Some(call) = self.prepare(args, kwargs)? else {
            return Ok(none());
        };
        if let Some(v) = self.remembered(py, &call) {
            return Ok((true, v));
        }
        let key = *self.key_of(&call);
        let h = self.handle(py);
        let found = py.detach(|| self.rt.get(&h.store, &key));
        let Some(stored) = found else {
            return Ok(none());
        };
        Ok(
            match self.handle(py).decode(py, self.key_of(&call), &stored)? {
                Some(v) => {
                    self.remember(&call, &v);
                    (true, v)
                }
                None => none(),
            },
        )
    }

    /// Stores `value` as the call's result, computed in `took` seconds
    /// (what an `async def` does after awaiting its body).
    #[pyo3(signature = (took, value, *args, **kwargs))]
    fn _put(
        &self,
        py: Python<'_>,
        took: f64,
        value: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let Some(call) = self.prepare(args, kwargs)? else {
            return Ok(());
        };
        let took = std::time::Duration::try_from_secs_f64(took).unwrap_or_default();
        self.put_result(py, &call, value, took)
    }

    /// Runs the body and stores nothing.
    #[pyo3(signature = (*args, **kwargs))]
    fn uncached<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.body.bind(py).call(args, kwargs)
    }

    /// Runs the body and stores its result in place of any stored one.
    #[pyo3(signature = (*args, **kwargs))]
    fn recompute<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let Some(call) = self.prepare(args, kwargs)? else {
            return self.body.bind(py).call(args, kwargs);
        };
        self.compute_and_put(py, &call, args, kwargs)
    }

    /// Whether the call's result is stored.
    #[pyo3(signature = (*args, **kwargs))]
    fn is_cached(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<bool> {
        let Some(call) = self.prepare(args, kwargs)? else {
            return Ok(false);
        };
        let key = *self.key_of(&call);
        let h = self.handle(py);
        Ok(py.detach(|| self.rt.is_cached(&h.store, &key)))
    }

    /// The call's key: 64 lowercase hex characters.
    #[pyo3(signature = (*args, **kwargs))]
    fn key(
        &self,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<String> {
        if let Some(call) = self.prepare(args, kwargs)? {
            return Ok(self.key_of(&call).to_string());
        }
        // Arguments that do not fit: the body's own TypeError.
        self.body.bind(args.py()).call(args, kwargs)?;
        Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "arguments that do not fit {}",
            self.name
        )))
    }

    /// Removes every stored result of this function (of every version of
    /// its code); how many there were.
    fn clear(&self, py: Python<'_>) -> PyResult<u64> {
        if let Some(m) = &self.memory {
            let dropped = m.lock().unwrap_or_else(PoisonError::into_inner).clear();
            drop(dropped);
        }
        let h = self.handle(py);
        py.detach(|| self.rt.clear(&h.store))
            .map_err(|e| store_error(py, &e))
    }

    /// `entries`, `bytes`, `hits`, `misses`, `compute_secs`,
    /// `compute_saved_secs` of this function's results.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let h = self.handle(py);
        let s = py.detach(|| self.rt.stats(&h.store));
        let d = PyDict::new(py);
        d.set_item("entries", s.entries)?;
        d.set_item("bytes", s.bytes)?;
        d.set_item("hits", s.hits)?;
        d.set_item("misses", s.misses)?;
        d.set_item("compute_secs", s.compute_time.as_secs_f64())?;
        d.set_item("compute_saved_secs", s.compute_saved.as_secs_f64())?;
        d.set_item("stale_entries", s.stale_entries)?;
        Ok(d)
    }

    /// The store this function's results live in.
    #[getter]
    fn store(&self, py: Python<'_>) -> Store {
        Store {
            handle: self.handle(py).clone(),
        }
    }
}

fn unreachable_busy(py: Python<'_>) -> PyErr {
    crate::errors::memo_error(py, "a waiting call returned without a result")
}

impl Function {
    /// The function's store, opened on first use with the GIL released
    /// (the `OnceLock` and the map of open stores are leaf locks: opening
    /// never needs Python, so no thread waits on them holding the GIL
    /// while the opener waits for it).
    fn handle(&self, py: Python<'_>) -> &Arc<Handle> {
        if let Some(h) = self.store.get() {
            return h;
        }
        py.detach(|| {
            self.store.get_or_init(|| match &self.place {
                Place::Dir(d) => crate::store::shared(d),
                Place::Default(p) => {
                    crate::store::shared(&memo_core::Store::default_dir_for(p.as_deref()))
                }
                // Set at construction.
                Place::Given => crate::store::shared(std::path::Path::new(".memo")),
            })
        })
    }

    /// Binds and encodes the arguments; `None` when they do not fit the
    /// parameters (the body then raises Python's own error).
    fn prepare(
        &self,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Option<Call>> {
        let py = args.py();
        let start = || Dest::Call(self.rt.key_builder());
        let mut top = Top::new(&start);
        let mut put = |p: &crate::sig::Param, v: &Bound<'_, PyAny>| -> PyResult<()> {
            if p.ignored {
                return Ok(());
            }
            encode(v, &mut top, 0).map_err(|e| {
                crate::errors::unhashable(
                    py,
                    format!(
                        "argument `{}` of {}: {}",
                        p.name,
                        self.name,
                        message(py, &e)
                    ),
                )
            })
        };
        // Positional arguments only, for a function without `*args` and
        // `**kwargs`: no binding to build (the common call).
        if let Some(fill) = self.sig.positional_fill(args, kwargs) {
            let params = self.sig.params();
            for (p, v) in params.iter().zip(args.iter()) {
                put(p, &v)?;
            }
            for (p, d) in params[args.len()..].iter().zip(fill) {
                put(p, d.bind(py))?;
            }
        } else {
            let Some(bound) = self.sig.bind(args, kwargs)? else {
                return Ok(None);
            };
            for (p, v) in self.sig.params().iter().zip(&bound) {
                put(p, v)?;
            }
        }
        let key = std::cell::OnceCell::new();
        let slot = match top.finish_lazy() {
            Ok(bytes) => bytes,
            Err(k) => {
                let mut slot = Vec::with_capacity(33);
                slot.push(KEYED);
                slot.extend_from_slice(k.as_bytes());
                let _ = key.set(k);
                slot
            }
        };
        Ok(Some(Call { key, slot }))
    }

    /// The call's key.
    fn key_of<'c>(&self, call: &'c Call) -> &'c Key {
        call.key.get_or_init(|| self.rt.key(&call.slot))
    }

    fn remembered<'py>(&self, py: Python<'py>, call: &Call) -> Option<Bound<'py, PyAny>> {
        let m = self.memory.as_ref()?;
        let found = m
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(py, &call.slot);
        found.map(|v| v.into_bound(py))
    }

    fn remember(&self, call: &Call, v: &Bound<'_, PyAny>) {
        if let Some(m) = &self.memory {
            let dropped = m
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .put(call.slot.clone(), v.clone().unbind());
            drop(dropped);
        }
    }

    /// The call through the protocol; `None` only when `wait` is off and
    /// another thread or process is computing it.
    fn flight<'py>(
        &self,
        py: Python<'py>,
        call: &Call,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
        wait: bool,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let h = self.handle(py);
        let key = self.key_of(call);
        let (args_owned, kwargs_owned) =
            (args.clone().unbind(), kwargs.map(|k| k.clone().unbind()));
        let mut fresh: Option<Py<PyAny>> = None;
        let compute = || {
            Python::attach(|py| -> Result<Encoded, Fail> {
                let v = self
                    .body
                    .bind(py)
                    .call(
                        args_owned.bind(py),
                        kwargs_owned.as_ref().map(|k| k.bind(py)),
                    )
                    .map_err(Fail::Raised)?;
                fresh = Some(v.clone().unbind());
                match value::encode(&v, h.pickle).map_err(Fail::Raised)? {
                    Ok(e) => Ok(e),
                    Err(why) => Err(Fail::Unstored(why)),
                }
            })
        };
        let out = py.detach(|| {
            if wait {
                Some(self.rt.call(&h.store, key, compute))
            } else {
                self.rt.try_call(&h.store, key, compute)
            }
        });
        let Some(out) = out else { return Ok(None) };
        let v = match out {
            Ok(stored) => match fresh {
                Some(obj) => obj.into_bound(py),
                None => match h.decode(py, key, &stored)? {
                    Some(obj) => obj,
                    // Stored but unusable (a pickle from a store not
                    // trusted with code, bytes that do not decode): the
                    // body runs and its result replaces the entry.
                    None => self.compute_and_put(py, call, args, kwargs)?,
                },
            },
            Err(Fail::Raised(e)) => return Err(e),
            Err(Fail::Unstored(why)) => {
                self.said_unstored(py, h, &why);
                match fresh {
                    Some(obj) => obj.into_bound(py),
                    None => return Err(unreachable_busy(py)),
                }
            }
        };
        self.remember(call, &v);
        Ok(Some(v))
    }

    /// Runs the body and stores its result over any stored one.
    fn compute_and_put<'py>(
        &self,
        py: Python<'py>,
        call: &Call,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let began = Instant::now();
        let v = self.body.bind(py).call(args, kwargs)?;
        self.put_result(py, call, &v, began.elapsed())?;
        Ok(v)
    }

    /// Stores `v` as the call's result (computed in `took`) over any stored
    /// one, and keeps it in the in-process tier; a result that cannot be
    /// stored is said, not raised.
    fn put_result(
        &self,
        py: Python<'_>,
        call: &Call,
        v: &Bound<'_, PyAny>,
        took: std::time::Duration,
    ) -> PyResult<()> {
        let h = self.handle(py);
        match value::encode(v, h.pickle)? {
            Ok(e) => {
                let key = *self.key_of(call);
                py.detach(|| self.rt.put(&h.store, &key, &e, took));
            }
            Err(why) => self.said_unstored(py, h, &why),
        }
        self.remember(call, v);
        Ok(())
    }

    /// Says that this function's result cannot be stored, and why.
    fn said_unstored(&self, py: Python<'_>, h: &Handle, why: &crate::value::Unstored) {
        let text = unstored_message(h, why);
        warn(py, &format!("memo: the result of {}: {text}", self.name));
    }
}

/// An exception's message (its `str`).
fn message(py: Python<'_>, e: &PyErr) -> String {
    e.value(py)
        .str()
        .map_or_else(|_| "cannot be hashed".into(), |s| s.to_string())
}
