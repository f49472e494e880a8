//! Results as stored bytes, and back: memo's plain-data encoding (codec
//! 16: built-in values, numpy arrays and scalars; loading it never runs
//! code) and pickles (codec 17: protocol 5, array buffers out of band).
//! `docs/format.md` ("Python values") draws both byte for byte.
//!
//! Arrays, at any depth, come back as read-only numpy views of the stored
//! bytes (the mapped file), as do the out-of-band buffers of a pickle.
//! A stored value that does not decode (damage the checksum cannot see,
//! a hostile store) is a miss, never an object built from bad bytes: every
//! length is checked against what is there, nesting is bounded, and array
//! types that hold Python objects are refused.

use memo_core::protocol::Encoded;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyComplex, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet,
    PyString, PyTuple,
};

use crate::mmap::View;

/// memo's plain-data encoding of Python values.
pub(crate) const PLAIN: u8 = 16;
/// A pickle (protocol 5) with its out-of-band buffers.
pub(crate) const PICKLE: u8 = 17;

/// The first byte of both encodings: their layout's version.
const VERSION: u8 = 1;

/// Value tags of the plain encoding.
mod t {
    pub const NONE: u8 = 0;
    pub const FALSE: u8 = 1;
    pub const TRUE: u8 = 2;
    pub const INT: u8 = 3;
    pub const BIGINT: u8 = 4;
    pub const FLOAT: u8 = 5;
    pub const COMPLEX: u8 = 6;
    pub const STR: u8 = 7;
    pub const BYTES: u8 = 8;
    pub const BYTEARRAY: u8 = 9;
    pub const LIST: u8 = 10;
    pub const TUPLE: u8 = 11;
    pub const DICT: u8 = 12;
    pub const SET: u8 = 13;
    pub const FROZENSET: u8 = 14;
    pub const ARRAY: u8 = 15;
    pub const SCALAR: u8 = 16;
    pub const EXTRA: u8 = 17;
}

/// Array data starts at a multiple of this within the value (so at a
/// multiple of 8 in memory: payloads start 8-aligned in their file).
const ARRAY_ALIGN: usize = 16;
/// Pickle buffers start at a multiple of this within the value.
const BUFFER_ALIGN: usize = 64;
/// Nesting deeper than this does not decode (nor encode plainly).
const MAX_DEPTH: u32 = 200;

static REDUCE_PLAIN: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static REBUILD: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static ASARRAY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static NP_DTYPE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static NP_GENERIC: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static NDARRAY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Why a result was not encoded for storing.
pub(crate) enum Unstored {
    /// It is not plain data and the store refuses pickles (`pickle=False`).
    NeedsPickle(String),
    /// Pickling it failed.
    Unpicklable(String),
}

/// Encodes `v` for storing: plainly when it is plain data, else as a
/// pickle when `pickle` allows.
/// Values holding arrays are marked as such (`Encoded::views`): a store's
/// own compression setting leaves them raw, so their hits stay views.
pub(crate) fn encode(v: &Bound<'_, PyAny>, pickle: bool) -> PyResult<Result<Encoded, Unstored>> {
    let mut out = Vec::with_capacity(64);
    out.push(VERSION);
    VIEWS.with(|w| w.set(false));
    if plain(v, &mut out, 0)? {
        let views = VIEWS.with(std::cell::Cell::get);
        return Ok(Ok(Encoded::new(PLAIN, out).views(views)));
    }
    let type_name = v.get_type().fully_qualified_name()?.to_string();
    if !pickle {
        return Ok(Err(Unstored::NeedsPickle(type_name)));
    }
    match pickled(v) {
        Ok((bytes, views)) => Ok(Ok(Encoded::new(PICKLE, bytes).views(views))),
        Err(e) => Ok(Err(Unstored::Unpicklable(format!("{type_name}: {e}")))),
    }
}

fn len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u64).to_le_bytes());
}

fn short_str(out: &mut Vec<u8>, s: &str) -> bool {
    let Ok(n) = u8::try_from(s.len()) else {
        return false;
    };
    out.push(n);
    out.extend_from_slice(s.as_bytes());
    true
}

/// Appends `v` in the plain encoding; `false` (with `out` partly written)
/// if some part of it is not plain data.
#[allow(
    clippy::too_many_lines,
    reason = "one arm per type, as the format lists them"
)]
fn plain(v: &Bound<'_, PyAny>, out: &mut Vec<u8>, depth: u32) -> PyResult<bool> {
    let py = v.py();
    if depth > MAX_DEPTH {
        return Ok(false);
    }
    if v.is_none() {
        out.push(t::NONE);
    } else if let Ok(b) = v.cast_exact::<PyBool>() {
        out.push(if b.is_true() { t::TRUE } else { t::FALSE });
    } else if v.is_exact_instance_of::<PyInt>() {
        if let Ok(i) = v.extract::<i64>() {
            out.push(t::INT);
            out.extend_from_slice(&i.to_le_bytes());
        } else {
            let n: usize = v.call_method0("bit_length")?.extract()?;
            let kwargs = PyDict::new(py);
            kwargs.set_item("signed", true)?;
            let b = v.call_method("to_bytes", (n / 8 + 1, "little"), Some(&kwargs))?;
            let b = b.cast::<PyBytes>()?.as_bytes();
            out.push(t::BIGINT);
            len(out, b.len());
            out.extend_from_slice(b);
        }
    } else if let Ok(f) = v.cast_exact::<PyFloat>() {
        out.push(t::FLOAT);
        out.extend_from_slice(&f.value().to_le_bytes());
    } else if let Ok(c) = v.cast_exact::<PyComplex>() {
        out.push(t::COMPLEX);
        out.extend_from_slice(&c.real().to_le_bytes());
        out.extend_from_slice(&c.imag().to_le_bytes());
    } else if let Ok(s) = v.cast_exact::<PyString>() {
        let Ok(text) = s.to_cow() else {
            return Ok(false);
        };
        out.push(t::STR);
        len(out, text.len());
        out.extend_from_slice(text.as_bytes());
    } else if let Ok(b) = v.cast_exact::<PyBytes>() {
        out.push(t::BYTES);
        len(out, b.as_bytes().len());
        out.extend_from_slice(b.as_bytes());
    } else if let Ok(b) = v.cast_exact::<PyByteArray>() {
        let b = b.to_vec();
        out.push(t::BYTEARRAY);
        len(out, b.len());
        out.extend_from_slice(&b);
    } else if let Ok(l) = v.cast_exact::<PyList>() {
        out.push(t::LIST);
        let at = out.len();
        len(out, 0);
        let mut n = 0usize;
        while let Ok(x) = l.get_item(n) {
            if !plain(&x, out, depth + 1)? {
                return Ok(false);
            }
            n += 1;
        }
        out[at..at + 8].copy_from_slice(&(n as u64).to_le_bytes());
    } else if let Ok(tu) = v.cast_exact::<PyTuple>() {
        out.push(t::TUPLE);
        len(out, tu.len());
        for x in tu.iter() {
            if !plain(&x, out, depth + 1)? {
                return Ok(false);
            }
        }
    } else if let Ok(d) = v.cast_exact::<PyDict>() {
        out.push(t::DICT);
        len(out, d.len());
        for (k, x) in d.iter() {
            if !plain(&k, out, depth + 1)? || !plain(&x, out, depth + 1)? {
                return Ok(false);
            }
        }
    } else if let Ok(s) = v.cast_exact::<PySet>() {
        out.push(t::SET);
        len(out, s.len());
        for x in s.iter() {
            if !plain(&x, out, depth + 1)? {
                return Ok(false);
            }
        }
    } else if let Ok(s) = v.cast_exact::<PyFrozenSet>() {
        out.push(t::FROZENSET);
        len(out, s.len());
        for x in s.iter() {
            if !plain(&x, out, depth + 1)? {
                return Ok(false);
            }
        }
    } else if numpy_type(v)? {
        return numpy(v, out);
    } else {
        let reduce = REDUCE_PLAIN.import(py, "memo._values", "reduce_plain")?;
        let reduced = reduce.call1((v,))?;
        if reduced.is_none() {
            return Ok(false);
        }
        let (name, payload): (String, Bound<'_, PyAny>) = reduced.extract()?;
        out.push(t::EXTRA);
        if !short_str(out, &name) {
            return Ok(false);
        }
        return plain(&payload, out, depth + 1);
    }
    Ok(true)
}

/// Whether `v`'s type is numpy's (an array or a scalar), without
/// importing numpy.
fn numpy_type(v: &Bound<'_, PyAny>) -> PyResult<bool> {
    Ok(v.get_type().module()?.to_cow()? == "numpy")
}

fn numpy(v: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<bool> {
    let py = v.py();
    let dtype = v.getattr("dtype")?;
    if dtype.getattr("hasobject")?.extract::<bool>()? || !dtype.getattr("fields")?.is_none() {
        return Ok(false);
    }
    let typestr: String = dtype.getattr("str")?.extract()?;
    if v.is_instance(NDARRAY.import(py, "numpy", "ndarray")?)? {
        let shape: Vec<u64> = v.getattr("shape")?.extract()?;
        let Ok(ndim) = u8::try_from(shape.len()) else {
            return Ok(false);
        };
        let contiguous: bool = v.getattr("flags")?.getattr("c_contiguous")?.extract()?;
        let array = if contiguous {
            v.clone()
        } else {
            py.import("numpy")?
                .call_method1("ascontiguousarray", (v,))?
        };
        let bytes = crate::mmap::array_bytes(&array)?;
        VIEWS.with(|w| w.set(true));
        out.push(t::ARRAY);
        if !short_str(out, &typestr) {
            return Ok(false);
        }
        out.push(ndim);
        for d in &shape {
            out.extend_from_slice(&d.to_le_bytes());
        }
        len(out, bytes.len());
        out.resize(out.len().next_multiple_of(ARRAY_ALIGN), 0);
        out.extend_from_slice(bytes);
        return Ok(true);
    }
    if v.is_instance(NP_GENERIC.import(py, "numpy", "generic")?)? {
        let b = v.call_method0("tobytes")?;
        let b = b.cast::<PyBytes>()?.as_bytes();
        out.push(t::SCALAR);
        if !short_str(out, &typestr) {
            return Ok(false);
        }
        len(out, b.len());
        out.extend_from_slice(b);
        return Ok(true);
    }
    Ok(false)
}

thread_local! {
    /// Whether the plain encoding under way wrote an array.
    static VIEWS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `v` pickled (protocol 5) with its buffers out of band, framed as
/// `docs/format.md` draws it; whether it has such buffers (loaded as views).
fn pickled(v: &Bound<'_, PyAny>) -> PyResult<(Vec<u8>, bool)> {
    let py = v.py();
    let dumps = DUMPS.import(py, "pickle", "dumps")?;
    let buffers = PyList::empty(py);
    let kwargs = PyDict::new(py);
    kwargs.set_item("protocol", 5)?;
    kwargs.set_item("buffer_callback", buffers.getattr("append")?)?;
    let data = dumps.call((v,), Some(&kwargs))?;
    let data = data.cast::<PyBytes>()?.as_bytes();
    let mut raw = Vec::with_capacity(buffers.len());
    for b in buffers.iter() {
        let bytes = b.call_method0("raw")?.call_method0("tobytes")?;
        raw.push(bytes.cast_into::<PyBytes>()?);
    }
    let header = 1 + 8 + raw.len() * 16 + 16;
    let mut offsets = Vec::with_capacity(raw.len());
    let mut at = header;
    for b in &raw {
        at = at.next_multiple_of(BUFFER_ALIGN);
        offsets.push((at, b.as_bytes().len()));
        at += b.as_bytes().len();
    }
    let pickle_at = at;
    let mut out = Vec::with_capacity(pickle_at + data.len());
    out.push(VERSION);
    len(&mut out, raw.len());
    for (o, n) in &offsets {
        len(&mut out, *o);
        len(&mut out, *n);
    }
    len(&mut out, pickle_at);
    len(&mut out, data.len());
    for (b, (o, _)) in raw.iter().zip(&offsets) {
        out.resize(*o, 0);
        out.extend_from_slice(b.as_bytes());
    }
    out.resize(pickle_at, 0);
    out.extend_from_slice(data);
    Ok((out, !raw.is_empty()))
}

/// A stored value that does not decode.
pub(crate) struct Undecodable(pub(crate) String);

/// What decoding gives: the object, or why the bytes are not a value.
pub(crate) type Decoded<'py> = PyResult<Result<Bound<'py, PyAny>, Undecodable>>;

/// The Python value of a stored plain-data value.
pub(crate) fn decode_plain<'py>(py: Python<'py>, value: &Encoded) -> Decoded<'py> {
    let mut r = Reader { value, at: 0 };
    match r.u8() {
        Some(VERSION) => {}
        Some(v) => return Ok(Err(Undecodable(format!("plain encoding version {v}")))),
        None => return Ok(Err(Undecodable("empty value".into()))),
    }
    let out = r.value(py, 0)?;
    if let Ok(_) = &out
        && r.at != value.len()
    {
        return Ok(Err(Undecodable("bytes after the value".into())));
    }
    Ok(out)
}

struct Reader<'a> {
    value: &'a Encoded,
    at: usize,
}

fn bad(what: &str) -> Undecodable {
    Undecodable(format!("truncated or damaged {what}"))
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.at.checked_add(n)?;
        let b = self.value.get(self.at..end)?;
        self.at = end;
        Some(b)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u64(&mut self) -> Option<u64> {
        let mut w = [0; 8];
        w.copy_from_slice(self.take(8)?);
        Some(u64::from_le_bytes(w))
    }
    fn len(&mut self) -> Option<usize> {
        usize::try_from(self.u64()?).ok()
    }
    /// A count of items each at least one byte long: bounded by what is left.
    fn count(&mut self) -> Option<usize> {
        let n = self.len()?;
        (n <= self.value.len() - self.at).then_some(n)
    }
    fn short_str(&mut self) -> Option<String> {
        let n = usize::from(self.u8()?);
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }

    #[allow(
        clippy::too_many_lines,
        reason = "one arm per tag, as the format lists them"
    )]
    fn value<'py>(&mut self, py: Python<'py>, depth: u32) -> Decoded<'py> {
        if depth > MAX_DEPTH {
            return Ok(Err(Undecodable("nested too deep".into())));
        }
        let Some(tag) = self.u8() else {
            return Ok(Err(bad("value")));
        };
        macro_rules! need {
            ($e:expr, $what:expr) => {
                match $e {
                    Some(v) => v,
                    None => return Ok(Err(bad($what))),
                }
            };
        }
        macro_rules! item {
            ($e:expr) => {
                match $e? {
                    Ok(v) => v,
                    Err(u) => return Ok(Err(u)),
                }
            };
        }
        let v: Bound<'py, PyAny> = match tag {
            t::NONE => py.None().into_bound(py),
            t::FALSE => PyBool::new(py, false).to_owned().into_any(),
            t::TRUE => PyBool::new(py, true).to_owned().into_any(),
            t::INT => {
                let b = need!(self.u64(), "int");
                b.cast_signed().into_pyobject(py)?.into_any()
            }
            t::BIGINT => {
                let n = need!(self.len(), "int");
                let b = need!(self.take(n), "int");
                let kwargs = PyDict::new(py);
                kwargs.set_item("signed", true)?;
                py.get_type::<PyInt>().call_method(
                    "from_bytes",
                    (PyBytes::new(py, b), "little"),
                    Some(&kwargs),
                )?
            }
            t::FLOAT => {
                let b = need!(self.u64(), "float");
                PyFloat::new(py, f64::from_bits(b)).into_any()
            }
            t::COMPLEX => {
                let re = need!(self.u64(), "complex");
                let im = need!(self.u64(), "complex");
                PyComplex::from_doubles(py, f64::from_bits(re), f64::from_bits(im)).into_any()
            }
            t::STR => {
                let n = need!(self.len(), "str");
                let b = need!(self.take(n), "str");
                match std::str::from_utf8(b) {
                    Ok(s) => PyString::new(py, s).into_any(),
                    Err(_) => return Ok(Err(bad("str (not UTF-8)"))),
                }
            }
            t::BYTES => {
                let n = need!(self.len(), "bytes");
                PyBytes::new(py, need!(self.take(n), "bytes")).into_any()
            }
            t::BYTEARRAY => {
                let n = need!(self.len(), "bytearray");
                PyByteArray::new(py, need!(self.take(n), "bytearray")).into_any()
            }
            t::LIST | t::TUPLE | t::SET | t::FROZENSET => {
                let n = need!(self.count(), "container");
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(item!(self.value(py, depth + 1)));
                }
                match tag {
                    t::LIST => PyList::new(py, items)?.into_any(),
                    t::TUPLE => PyTuple::new(py, items)?.into_any(),
                    t::SET => PySet::new(py, &items)?.into_any(),
                    _ => PyFrozenSet::new(py, &items)?.into_any(),
                }
            }
            t::DICT => {
                let n = need!(self.count(), "dict");
                let d = PyDict::new(py);
                for _ in 0..n {
                    let k = item!(self.value(py, depth + 1));
                    let x = item!(self.value(py, depth + 1));
                    d.set_item(k, x)?;
                }
                d.into_any()
            }
            t::ARRAY => item!(self.array(py)),
            t::SCALAR => {
                let typestr = need!(self.short_str(), "numpy scalar");
                let n = need!(self.len(), "numpy scalar");
                let b = need!(self.take(n), "numpy scalar").to_vec();
                let Some(dtype) = checked_dtype(py, &typestr)? else {
                    return Ok(Err(bad("numpy scalar type")));
                };
                if dtype.getattr("itemsize")?.extract::<usize>()? != n {
                    return Ok(Err(bad("numpy scalar")));
                }
                let np = py.import("numpy")?;
                np.call_method1("frombuffer", (PyBytes::new(py, &b), dtype))?
                    .get_item(0)?
            }
            t::EXTRA => {
                let name = need!(self.short_str(), "value type");
                let payload = item!(self.value(py, depth + 1));
                let rebuild = REBUILD.import(py, "memo._values", "rebuild")?;
                match rebuild.call1((name.as_str(), payload)) {
                    Ok(v) => v,
                    Err(e) => return Ok(Err(Undecodable(format!("{name}: {e}")))),
                }
            }
            other => return Ok(Err(Undecodable(format!("unknown value tag {other}")))),
        };
        Ok(Ok(v))
    }

    fn array<'py>(&mut self, py: Python<'py>) -> Decoded<'py> {
        let Some(typestr) = self.short_str() else {
            return Ok(Err(bad("array type")));
        };
        let Some(ndim) = self.u8() else {
            return Ok(Err(bad("array shape")));
        };
        let mut shape = Vec::with_capacity(usize::from(ndim));
        for _ in 0..ndim {
            let Some(d) = self.len() else {
                return Ok(Err(bad("array shape")));
            };
            shape.push(d);
        }
        let Some(nbytes) = self.len() else {
            return Ok(Err(bad("array length")));
        };
        let start = self.at.next_multiple_of(ARRAY_ALIGN);
        if start > self.value.len() {
            return Ok(Err(bad("array data")));
        }
        self.at = start;
        if self.take(nbytes).is_none() {
            return Ok(Err(bad("array data")));
        }
        let Some(dtype) = checked_dtype(py, &typestr)? else {
            return Ok(Err(bad("array type")));
        };
        let itemsize: usize = dtype.getattr("itemsize")?.extract()?;
        let covered = shape
            .iter()
            .try_fold(itemsize, |acc, d| acc.checked_mul(*d));
        if covered != Some(nbytes) {
            return Ok(Err(bad("array (shape and length disagree)")));
        }
        let shape = PyTuple::new(py, &shape)?;
        Ok(Ok(view(py, self.value, start, &typestr, &shape)?))
    }
}

/// `numpy.dtype(typestr)`, if it is a type whose bytes are only data (no
/// Python objects: an array of those made from stored bytes would
/// dereference them).
fn checked_dtype<'py>(py: Python<'py>, typestr: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
    let make = NP_DTYPE.import(py, "numpy", "dtype")?;
    let Ok(dtype) = make.call1((typestr,)) else {
        return Ok(None);
    };
    let ok = !dtype.getattr("hasobject")?.extract::<bool>()? && dtype.getattr("fields")?.is_none();
    Ok(ok.then_some(dtype))
}

/// A read-only numpy array over `len(shape) * itemsize` bytes of `value`
/// at `offset` (checked by the caller).
fn view<'py>(
    py: Python<'py>,
    value: &Encoded,
    offset: usize,
    typestr: &str,
    shape: &Bound<'py, PyTuple>,
) -> PyResult<Bound<'py, PyAny>> {
    let asarray = ASARRAY.import(py, "numpy", "asarray")?;
    let v = View::new(py, value, offset, typestr, shape)?;
    asarray.call1((v,))
}

/// The Python value of a stored pickle. The caller has decided that this
/// store's pickles may be loaded.
pub(crate) fn decode_pickle<'py>(py: Python<'py>, value: &Encoded) -> Decoded<'py> {
    let mut r = Reader { value, at: 0 };
    if r.u8() != Some(VERSION) {
        return Ok(Err(bad("pickle frame")));
    }
    let Some(n) = r.count() else {
        return Ok(Err(bad("pickle frame")));
    };
    let mut spans = Vec::with_capacity(n + 1);
    for _ in 0..=n {
        let (Some(o), Some(l)) = (r.len(), r.len()) else {
            return Ok(Err(bad("pickle frame")));
        };
        if o.checked_add(l).is_none_or(|end| end > value.len()) {
            return Ok(Err(bad("pickle frame")));
        }
        spans.push((o, l));
    }
    let Some((data_at, data_len)) = spans.pop() else {
        return Ok(Err(bad("pickle frame")));
    };
    let numpy = py.import("numpy").ok();
    let buffers = PyList::empty(py);
    for (o, l) in spans {
        let b = match numpy {
            Some(_) => view(py, value, o, "|u1", &PyTuple::new(py, [l])?)?,
            None => PyBytes::new(py, &value[o..o + l]).into_any(),
        };
        buffers.append(b)?;
    }
    let data = PyBytes::new(py, &value[data_at..data_at + data_len]);
    let loads = LOADS.import(py, "pickle", "loads")?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("buffers", buffers)?;
    match loads.call((data,), Some(&kwargs)) {
        Ok(v) => Ok(Ok(v)),
        Err(e) => Ok(Err(Undecodable(format!("the pickle does not load: {e}")))),
    }
}
