//! `memo.Store`: a store directory opened for Python, and the stores the
//! decorator finds by default (`$MEMO_DIR`, else the project's `.memo`,
//! the same rule as Rust's, `Store::default_dir_for`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use memo_core::protocol::{self, Encoded};
use memo_core::{Compression, Durability, Key, Policy, RemoteMode, Selection};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyString;

use crate::errors::{memo_error, store_error};
use crate::value::{self, Undecodable, Unstored};

/// An open store and what Python needs to know about it.
pub(crate) struct Handle {
    pub(crate) store: memo_core::Store,
    /// Where it is, as the user named it (for messages).
    pub(crate) label: String,
    /// `Err(why)` when pickled values must not be loaded from it.
    trust: Result<(), String>,
    /// Whether results that are not plain data may be pickled into it.
    pub(crate) pickle: bool,
    /// Said once: a pickle refused, a value that does not decode.
    said_untrusted: AtomicBool,
    said_undecodable: AtomicBool,
}

impl Handle {
    fn new(store: memo_core::Store, label: String, pickle: bool) -> Handle {
        let trust = trust(&store);
        Handle {
            store,
            label,
            trust,
            pickle,
            said_untrusted: AtomicBool::new(false),
            said_undecodable: AtomicBool::new(false),
        }
    }

    /// The Python value of a stored one, or `None` when it cannot be used
    /// (a pickle from a store that is not trusted with code, bytes that do
    /// not decode): a miss, said once per store.
    pub(crate) fn decode<'py>(
        &self,
        py: Python<'py>,
        key: &Key,
        v: &Encoded,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let out = match v.codec() {
            value::PLAIN => value::decode_plain(py, v)?,
            value::PICKLE => match &self.trust {
                Ok(()) => value::decode_pickle(py, v)?,
                Err(why) => {
                    if !self.said_untrusted.swap(true, Ordering::Relaxed) {
                        warn(
                            py,
                            &format!(
                                "memo: pickled results in {} are not loaded ({why}): \
                                 loading a pickle runs code; they are recomputed",
                                self.label
                            ),
                        );
                    }
                    return Ok(None);
                }
            },
            other => Err(Undecodable(format!("codec {other} is not Python's"))),
        };
        match out {
            Ok(v) => Ok(Some(v)),
            Err(Undecodable(why)) => {
                if !self.said_undecodable.swap(true, Ordering::Relaxed) {
                    warn(
                        py,
                        &format!(
                            "memo: the stored value of {key} in {} does not decode ({why}); \
                             recomputed",
                            self.label
                        ),
                    );
                }
                Ok(None)
            }
        }
    }
}

/// A `RuntimeWarning` (Python shows each message once per place).
pub(crate) fn warn(py: Python<'_>, message: &str) {
    let category = py.get_type::<pyo3::exceptions::PyRuntimeWarning>();
    let _ = PyErr::warn(
        py,
        &category,
        &std::ffi::CString::new(message).unwrap_or_default(),
        1,
    );
}

/// Whether this user may load pickles from `store`: it must own the
/// directory, others must not be able to write it, and a remote tier must
/// authenticate what it serves (remote values are installed locally, so a
/// remote without a secret makes every local value suspect).
fn trust(store: &memo_core::Store) -> Result<(), String> {
    if store.remote_authenticated() == Some(false) {
        return Err("its remote tier has no MEMO_REMOTE_SECRET".into());
    }
    let Some(dir) = store.dir() else {
        return Ok(());
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(format!(
                "{} belongs to user {}, not to this user ({me})",
                dir.display(),
                meta.uid()
            ));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(format!(
                "{} can be written by other users (mode {:o})",
                dir.display(),
                meta.mode() & 0o7777
            ));
        }
    }
    Ok(())
}

/// A store directory memo manages: see `memo.Store` in the package.
#[pyclass(frozen, module = "memo._memo", name = "Store")]
pub(crate) struct Store {
    pub(crate) handle: Arc<Handle>,
}

fn size(v: &Bound<'_, PyAny>, what: &str) -> PyResult<u64> {
    if let Ok(s) = v.cast::<PyString>() {
        let s = s.to_cow()?;
        return memo_core::units::parse_size(&s)
            .map_err(|e| PyValueError::new_err(format!("{what}={s:?}: {e}")));
    }
    v.extract::<u64>().map_err(|_| {
        PyTypeError::new_err(format!("{what}: an int of bytes or a str like \"20GiB\""))
    })
}

/// A compression as Python gives it: `None`/`False`/`"none"` for none,
/// `True` or `"zstd"` for zstd's default level, an int for a zstd level
/// (0: none), `"zstd:9"`.
pub(crate) fn compression(v: &Bound<'_, PyAny>, what: &str) -> PyResult<Compression> {
    if v.is_none() {
        return Ok(Compression::None);
    }
    if let Ok(b) = v.cast_exact::<pyo3::types::PyBool>() {
        return Ok(if b.is_true() {
            Compression::Zstd { level: 3 }
        } else {
            Compression::None
        });
    }
    if let Ok(s) = v.cast::<PyString>() {
        let s = s.to_cow()?;
        return s
            .parse()
            .map_err(|e: String| PyValueError::new_err(format!("{what}: {e}")));
    }
    match v.extract::<i32>() {
        Ok(0) => Ok(Compression::None),
        Ok(level @ 1..=22) => Ok(Compression::Zstd { level }),
        _ => Err(PyValueError::new_err(format!(
            "{what}={}: None, True, a zstd level from 1 to 22, or \"zstd:LEVEL\"",
            v.repr().map_or_else(|_| "?".into(), |r| r.to_string())
        ))),
    }
}

/// A duration: seconds (int or float) or a str like `"1h 30m"`.
pub(crate) fn duration(v: &Bound<'_, PyAny>, what: &str) -> PyResult<Duration> {
    if let Ok(s) = v.cast::<PyString>() {
        let s = s.to_cow()?;
        return memo_core::units::parse_duration(&s)
            .map_err(|e| PyValueError::new_err(format!("{what}={s:?}: {e}")));
    }
    let secs: f64 = v.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what}: seconds (int or float) or a str like \"30d\""
        ))
    })?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| PyValueError::new_err(format!("{what}={secs}: not a duration")))
}

fn parse_key(key: &str) -> PyResult<Key> {
    key.parse::<Key>().map_err(|e| {
        PyValueError::new_err(format!(
            "{key:?} is not a memo key (64 hex characters from memo.key or f.key): {e}"
        ))
    })
}

static PROJECT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

#[pymethods]
impl Store {
    #[new]
    #[pyo3(signature = (dir, *, max_bytes=None, max_entries=None, max_age=None, policy="lru",
        durability="flush", read_only=false, remote=None, remote_mode="read-write",
        remote_secret=None, pickle=true, compress=None))]
    #[allow(
        clippy::too_many_arguments,
        clippy::fn_params_excessive_bools,
        clippy::needless_pass_by_value,
        reason = "Python's keyword arguments, handed over by value by pyo3"
    )]
    fn new(
        py: Python<'_>,
        dir: PathBuf,
        max_bytes: Option<&Bound<'_, PyAny>>,
        max_entries: Option<u64>,
        max_age: Option<&Bound<'_, PyAny>>,
        policy: &str,
        durability: &str,
        read_only: bool,
        remote: Option<String>,
        remote_mode: &str,
        remote_secret: Option<&Bound<'_, PyAny>>,
        pickle: bool,
        compress: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Store> {
        let mut b = memo_core::Store::builder(&dir).read_only(read_only);
        if let Some(c) = compress {
            b = b.compress(compression(c, "compress")?);
        }
        if let Some(m) = max_bytes {
            b = b.max_bytes(size(m, "max_bytes")?);
        }
        if let Some(n) = max_entries {
            b = b.max_entries(n);
        }
        if let Some(a) = max_age {
            b = b.max_age(duration(a, "max_age")?);
        }
        b = b.policy(match policy {
            "lru" => Policy::Lru,
            "lfu" => Policy::Lfu,
            "cost-aware" => Policy::CostAware,
            "none" => Policy::None,
            other => {
                return Err(PyValueError::new_err(format!(
                    "policy={other:?}: one of \"lru\", \"lfu\", \"cost-aware\", \"none\""
                )));
            }
        });
        b = b.durability(match durability {
            "flush" => Durability::Flush,
            "sync" => Durability::Sync,
            other => {
                return Err(PyValueError::new_err(format!(
                    "durability={other:?}: \"flush\" or \"sync\""
                )));
            }
        });
        if let Some(url) = remote {
            b = b.remote(&url);
            let mode: RemoteMode = remote_mode
                .parse()
                .map_err(|e| PyValueError::new_err(format!("remote_mode={remote_mode:?}: {e}")))?;
            b = b.remote_mode(mode);
        }
        if let Some(s) = remote_secret {
            let secret: Vec<u8> = if let Ok(s) = s.cast::<PyString>() {
                s.to_cow()?.as_bytes().to_vec()
            } else {
                s.extract()
                    .map_err(|_| PyTypeError::new_err("remote_secret: bytes or str"))?
            };
            b = b.remote_secret(&secret);
        }
        let store = py.detach(|| b.open()).map_err(|e| store_error(py, &e))?;
        Ok(Store {
            handle: Arc::new(Handle::new(store, dir.display().to_string(), pickle)),
        })
    }

    /// Where the default store is: `$MEMO_DIR`, else an existing `.memo`
    /// from the working directory up to its project's root, else the
    /// `.memo` of the running program's project (the project of
    /// `__main__`), else the per-user cache directory.
    #[staticmethod]
    fn default_dir(py: Python<'_>) -> PyResult<String> {
        let project = PROJECT
            .import(py, "memo._project", "main_project")?
            .call0()?;
        let project: Option<PathBuf> = project.extract()?;
        Ok(memo_core::Store::default_dir_for(project.as_deref())
            .display()
            .to_string())
    }

    /// The store's directory.
    #[getter]
    fn dir(&self) -> String {
        self.handle
            .store
            .dir()
            .map_or_else(String::new, |d| d.display().to_string())
    }

    /// Whether it is open read-only (asked for, or a directory this
    /// process cannot write).
    #[getter]
    fn is_read_only(&self) -> bool {
        self.handle.store.is_read_only()
    }

    /// The value stored under `key` (a 64-hex str), else `default`. A local
    /// miss asks the store's remote tier, if it has one.
    #[pyo3(signature = (key, default=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let key = parse_key(key)?;
        let found = py
            .detach(|| protocol::load(&self.handle.store, &key))
            .map_err(|e| store_error(py, &e))?;
        if let Some(v) = found
            && let Some(obj) = self.handle.decode(py, &key, &v)?
        {
            return Ok(obj);
        }
        Ok(default.unwrap_or_else(|| py.None().into_bound(py)))
    }

    /// Stores `value` under `key`, and writes it through to the store's
    /// remote tier, if it has one.
    fn put(&self, py: Python<'_>, key: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let key = parse_key(key)?;
        let encoded = encode_or_raise(py, &self.handle, value)?;
        py.detach(|| protocol::save(&self.handle.store, &key, &encoded))
            .map_err(|e| store_error(py, &e))
    }

    /// The value stored under `key`, or `fn()`'s, run once across threads
    /// and processes and stored.
    #[allow(
        clippy::needless_pass_by_value,
        reason = "pyo3 hands arguments over by value"
    )]
    fn get_or_compute<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        r#fn: Py<PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let key = parse_key(key)?;
        let handle = &self.handle;
        let mut fresh: Option<Py<PyAny>> = None;
        let out = py.detach(|| {
            protocol::load_or_compute(&handle.store, &key, || {
                Python::attach(|py| -> Result<Encoded, Fail> {
                    let v = r#fn.call0(py).map_err(Fail::Raised)?;
                    fresh = Some(v.clone_ref(py));
                    match value::encode(v.bind(py), handle.pickle).map_err(Fail::Raised)? {
                        Ok(e) => Ok(e),
                        Err(why) => Err(Fail::Unstored(why)),
                    }
                })
            })
        });
        let out = out.map_err(|e| store_error(py, &e))?;
        finish(py, handle, &key, out, fresh)
    }

    /// Removes `key`'s entry; whether there was one.
    fn remove(&self, py: Python<'_>, key: &str) -> PyResult<bool> {
        let key = parse_key(key)?;
        py.detach(|| self.handle.store.remove(&key))
            .map_err(|e| store_error(py, &e))
    }

    fn __contains__(&self, py: Python<'_>, key: &str) -> PyResult<bool> {
        let key = parse_key(key)?;
        Ok(py.detach(|| self.handle.store.contains(&key)))
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        py.detach(|| self.handle.store.len()) as usize
    }

    /// As `memo stats --json`, plus this process's remote counters.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let store = &self.handle.store;
        let (s, all) = py.detach(|| (store.stats(), store.select(&Selection::all())));
        let all = all.map_err(|e| store_error(py, &e))?;
        let dir = store.dir().unwrap_or(Path::new(""));
        let mut doc = memo_cli::json::stats(dir, &s, &all);
        if let Some(m) = doc.as_object_mut() {
            m.insert("remote_errors".into(), s.remote_errors.into());
        }
        json(py, &doc)
    }

    /// As `memo functions --json`: one dict per memoized function.
    fn functions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let list = py
            .detach(|| self.handle.store.functions())
            .map_err(|e| store_error(py, &e))?;
        json(py, &memo_cli::json::functions(&list))
    }

    /// Checks every checksum and structure: `entries_checked`, `corrupt`,
    /// `problems`, ...
    fn verify<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let r = py
            .detach(|| self.handle.store.verify())
            .map_err(|e| store_error(py, &e))?;
        json(py, &memo_cli::json::verify(&r))
    }

    /// Evicts and compacts down to the store's limits now.
    fn trim(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.handle.store.trim())
            .map_err(|e| store_error(py, &e))
    }

    /// Removes every entry.
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.handle.store.clear())
            .map_err(|e| store_error(py, &e))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let label = PyString::new(py, &self.handle.label).repr()?;
        Ok(format!("memo.Store({label})"))
    }

    /// The store the decorator uses by default for a function of the
    /// project rooted at `project` (shared by every function that resolves
    /// to the same directory).
    #[staticmethod]
    #[pyo3(signature = (project=None))]
    #[allow(
        clippy::needless_pass_by_value,
        reason = "pyo3 hands arguments over by value"
    )]
    fn _default(py: Python<'_>, project: Option<PathBuf>) -> Store {
        let handle = py.detach(|| shared(&memo_core::Store::default_dir_for(project.as_deref())));
        Store { handle }
    }

    /// The store of `memoize(dir=...)`: limits and remote tier from the
    /// environment, once per directory and process.
    #[staticmethod]
    #[allow(
        clippy::needless_pass_by_value,
        reason = "pyo3 hands arguments over by value"
    )]
    fn _at(py: Python<'_>, dir: PathBuf) -> Store {
        let handle = py.detach(|| shared(&dir));
        Store { handle }
    }
}

/// One open store per directory and process for the decorator's stores
/// (each open store is an engine with its own mappings and locks). Called
/// with the GIL released: the map's lock is a leaf, and opening a store
/// never needs Python.
pub(crate) fn shared(dir: &Path) -> Arc<Handle> {
    static OPEN: LazyLock<Mutex<HashMap<PathBuf, Arc<Handle>>>> = LazyLock::new(Mutex::default);
    let path = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(h) = open.get(&path) {
        return h.clone();
    }
    let store = memo_core::Store::open_from_env(&path);
    let h = Arc::new(Handle::new(store, dir.display().to_string(), true));
    open.insert(path, h.clone());
    h
}

fn json<'py>(py: Python<'py>, doc: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    let text = doc.to_string();
    py.import("json")?.call_method1("loads", (text,))
}

/// Why a computed value was not stored.
pub(crate) enum Fail {
    /// The body raised: re-raised, nothing stored.
    Raised(PyErr),
    /// It was computed but cannot be stored: returned, said once.
    Unstored(Unstored),
}

/// The encoding of `value` for `put`, or the error saying why it cannot be
/// stored.
fn encode_or_raise(py: Python<'_>, h: &Handle, value: &Bound<'_, PyAny>) -> PyResult<Encoded> {
    match value::encode(value, h.pickle)? {
        Ok(e) => Ok(e),
        Err(why) => Err(memo_error(py, unstored_message(h, &why))),
    }
}

pub(crate) fn unstored_message(h: &Handle, why: &Unstored) -> String {
    match why {
        Unstored::NeedsPickle(t) => format!(
            "a {t} is not plain data and {} was opened with pickle=False: not stored",
            h.label
        ),
        Unstored::Unpicklable(e) => format!("cannot be stored in {}: {e}", h.label),
    }
}

/// A flight's end as Python sees it: the fresh object when this thread
/// computed it, else the stored value decoded.
pub(crate) fn finish<'py>(
    py: Python<'py>,
    h: &Handle,
    key: &Key,
    out: Result<Encoded, Fail>,
    fresh: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    match out {
        Ok(v) => {
            if let Some(obj) = fresh {
                return Ok(obj.into_bound(py));
            }
            match h.decode(py, key, &v)? {
                Some(obj) => Ok(obj),
                None => Err(memo_error(
                    py,
                    format!("the stored value of {key} in {} cannot be used", h.label),
                )),
            }
        }
        Err(Fail::Raised(e)) => Err(e),
        Err(Fail::Unstored(why)) => {
            warn(py, &unstored_message(h, &why));
            match fresh {
                Some(obj) => Ok(obj.into_bound(py)),
                None => Err(memo_error(py, unstored_message(h, &why))),
            }
        }
    }
}
