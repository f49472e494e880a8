//! The canonical encoding of Python values: what a call's key hashes
//! (`docs/format.md`, "Canonical encoding", and its Python mapping). Equal
//! values give equal bytes in every process, run and machine: no
//! dependence on `PYTHONHASHSEED`, dict or set order, or addresses.
//!
//! Built-in scalars and containers are encoded here; numpy arrays by
//! dtype, shape and contents, read in place and hashed on several threads
//! with the GIL released when large; the rest (datetimes, decimals, enum
//! members, dataclasses, `__memo_key__`, `DataFile`, `Lazy`, pickles) by
//! `memo/_canon.py`, which reduces them to built-in values under a type
//! name.

use memo_core::Key;
use memo_core::protocol::{CallKey, ValueKey};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString, PyTuple,
};

use crate::errors::unhashable;

/// The tags of `docs/format.md`'s table.
mod tag {
    pub const BOOL: u8 = 1;
    pub const I64: u8 = 5;
    pub const I128: u8 = 6;
    pub const U64: u8 = 10;
    pub const F64: u8 = 13;
    pub const STR: u8 = 15;
    pub const BYTES: u8 = 16;
    pub const NONE: u8 = 17;
    pub const NEWTYPE: u8 = 22;
    pub const SEQ: u8 = 24;
    pub const TUPLE: u8 = 25;
    pub const TUPLE_STRUCT: u8 = 26;
    pub const MAP: u8 = 28;
    pub const SET: u8 = 31;
    pub const END: u8 = 32;
}

/// Containers nested deeper than this (or a container holding itself) are
/// refused rather than recursed into until the stack runs out.
const MAX_DEPTH: u32 = 200;

/// Byte strings at least this long are hashed with the GIL released (and
/// on several threads).
pub(crate) const LARGE: usize = 1 << 20;

/// Where encoded bytes go.
pub(crate) trait Sink {
    /// Takes the next bytes.
    fn put(&mut self, bytes: &[u8]);
    /// Takes the next bytes, a large run of them, with the GIL released.
    fn large(&mut self, py: Python<'_>, bytes: &[u8]);
}

impl Sink for blake3::Hasher {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
    fn large(&mut self, py: Python<'_>, bytes: &[u8]) {
        py.detach(|| {
            self.update_rayon(bytes);
        });
    }
}

/// The key a whole encoding streams into once it outgrows a buffer.
pub(crate) enum Dest {
    /// A call's key.
    Call(CallKey),
    /// A value's key (`memo.key`).
    Value(ValueKey),
}

impl Dest {
    fn feed(&mut self, bytes: &[u8]) {
        match self {
            Dest::Call(k) => k.feed(bytes),
            Dest::Value(k) => k.feed(bytes),
        }
    }

    fn finish(self) -> Key {
        match self {
            Dest::Call(k) => k.finish(),
            Dest::Value(k) => k.finish(),
        }
    }
}

/// The encoding of a call's arguments or of one value: kept in a buffer
/// while small (the decoded in-process tier looks calls up by these bytes,
/// without hashing them), streamed into the key once a large buffer comes.
pub(crate) struct Top<'a> {
    buf: Vec<u8>,
    dest: Option<Dest>,
    start: &'a dyn Fn() -> Dest,
}

thread_local! {
    /// A buffer a thread reuses for its calls' encodings (an allocation
    /// and a free were a tenth of an in-process hit).
    static SPARE: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Gives an encoding's buffer back to this thread for its next call.
pub(crate) fn recycle(buf: Vec<u8>) {
    if buf.capacity() <= 4096 {
        let _ = SPARE.try_with(|c| c.set(buf));
    }
}

impl<'a> Top<'a> {
    /// An empty encoding whose key `start` begins.
    pub(crate) fn new(start: &'a dyn Fn() -> Dest) -> Top<'a> {
        let mut buf = SPARE.try_with(std::cell::Cell::take).unwrap_or_default();
        buf.clear();
        buf.reserve(64);
        Top {
            buf,
            dest: None,
            start,
        }
    }

    /// The bytes when they were all kept (nothing large was fed: the key
    /// is hashed from them when needed), else the key.
    pub(crate) fn finish_lazy(self) -> Result<Vec<u8>, Key> {
        if let Some(mut d) = self.dest {
            d.feed(&self.buf);
            return Err(d.finish());
        }
        Ok(self.buf)
    }
}

impl Sink for Top<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }
    fn large(&mut self, py: Python<'_>, bytes: &[u8]) {
        let d = self.dest.get_or_insert_with(self.start);
        d.feed(&self.buf);
        self.buf.clear();
        py.detach(|| d.feed(bytes));
    }
}

fn len(out: &mut dyn Sink, n: usize) {
    out.put(&(n as u64).to_le_bytes());
}

fn name(out: &mut dyn Sink, s: &[u8]) {
    len(out, s.len());
    out.put(s);
}

fn end(out: &mut dyn Sink, count: usize) {
    out.put(&[tag::END]);
    len(out, count);
}

/// The Python half of the encoder (`memo/_canon.py`).
static REDUCE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static ARRAY_BLOCKS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Encodes `v`.
pub(crate) fn encode(v: &Bound<'_, PyAny>, out: &mut dyn Sink, depth: u32) -> PyResult<()> {
    let py = v.py();
    if depth > MAX_DEPTH {
        return Err(unhashable(
            py,
            format!("containers nested more than {MAX_DEPTH} deep (or one that holds itself)"),
        ));
    }
    if v.is_none() {
        out.put(&[tag::NONE]);
    } else if let Ok(b) = v.cast_exact::<PyBool>() {
        out.put(&[tag::BOOL, u8::from(b.is_true())]);
    } else if v.is_exact_instance_of::<PyInt>() {
        int(v, out)?;
    } else if let Ok(f) = v.cast_exact::<PyFloat>() {
        out.put(&[tag::F64]);
        out.put(&f.value().to_bits().to_le_bytes());
    } else if let Ok(s) = v.cast_exact::<PyString>() {
        out.put(&[tag::STR]);
        string(s, out)?;
    } else if let Ok(b) = v.cast_exact::<PyBytes>() {
        out.put(&[tag::BYTES]);
        let b = b.as_bytes();
        len(out, b.len());
        if b.len() >= LARGE {
            out.large(py, b);
        } else {
            out.put(b);
        }
    } else if let Ok(t) = v.cast_exact::<PyTuple>() {
        out.put(&[tag::TUPLE]);
        for x in t.iter() {
            encode(&x, out, depth + 1)?;
        }
        end(out, t.len());
    } else if let Ok(l) = v.cast_exact::<PyList>() {
        out.put(&[tag::SEQ]);
        let mut n = 0;
        // By index: the body of a list may change under us only through
        // this thread (the GIL is held), and an index past the end stops.
        while let Ok(x) = l.get_item(n) {
            encode(&x, out, depth + 1)?;
            n += 1;
        }
        end(out, n);
    } else if let Ok(d) = v.cast_exact::<PyDict>() {
        let mut digests = Vec::with_capacity(d.len());
        for (k, x) in d.iter() {
            let mut h = blake3::Hasher::new();
            encode(&k, &mut h, depth + 1)?;
            encode(&x, &mut h, depth + 1)?;
            digests.push(*h.finalize().as_bytes());
        }
        unordered(tag::MAP, digests, out);
    } else if let Ok(s) = v.cast_exact::<PySet>() {
        set(s.iter(), s.len(), out, depth)?;
    } else if let Ok(s) = v.cast_exact::<PyFrozenSet>() {
        out.put(&[tag::NEWTYPE]);
        name(out, b"frozenset");
        set(s.iter(), s.len(), out, depth)?;
    } else if is_ndarray(v)? {
        array(v, out, depth)?;
    } else {
        // Everything else: `_canon.reduce` gives (type name, built-in value).
        let reduce = REDUCE.import(py, "memo._canon", "reduce")?;
        let reduced = reduce.call1((v,))?;
        let (type_name, value): (Bound<'_, PyString>, Bound<'_, PyAny>) = reduced.extract()?;
        out.put(&[tag::NEWTYPE]);
        string(&type_name, out)?;
        encode(&value, out, depth + 1)?;
    }
    Ok(())
}

fn int(v: &Bound<'_, PyAny>, out: &mut dyn Sink) -> PyResult<()> {
    if let Ok(i) = v.extract::<i64>() {
        out.put(&[tag::I64]);
        out.put(&i.to_le_bytes());
    } else if let Ok(i) = v.extract::<i128>() {
        out.put(&[tag::I128]);
        out.put(&i.to_le_bytes());
    } else {
        // Wider than 128 bits: its two's complement, little-endian.
        let n: usize = v.call_method0("bit_length")?.extract()?;
        let kwargs = pyo3::types::PyDict::new(v.py());
        kwargs.set_item("signed", true)?;
        let bytes = v.call_method("to_bytes", (n / 8 + 1, "little"), Some(&kwargs))?;
        out.put(&[tag::NEWTYPE]);
        name(out, b"int");
        out.put(&[tag::BYTES]);
        name(out, bytes.cast::<PyBytes>()?.as_bytes());
    }
    Ok(())
}

/// A string's UTF-8 bytes as `name(s)`; a string with lone surrogates
/// (not UTF-8) by its `surrogatepass` bytes, which no valid string has.
fn string(s: &Bound<'_, PyString>, out: &mut dyn Sink) -> PyResult<()> {
    if let Ok(text) = s.to_cow() {
        name(out, text.as_bytes());
    } else {
        let b = s.call_method1("encode", ("utf-8", "surrogatepass"))?;
        name(out, b.cast::<PyBytes>()?.as_bytes());
    }
    Ok(())
}

fn set<'py>(
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    n: usize,
    out: &mut dyn Sink,
    depth: u32,
) -> PyResult<()> {
    let mut digests = Vec::with_capacity(n);
    for x in items {
        let mut h = blake3::Hasher::new();
        encode(&x, &mut h, depth + 1)?;
        digests.push(*h.finalize().as_bytes());
    }
    unordered(tag::SET, digests, out);
    Ok(())
}

/// A map or set: the count, then its entries' digests in ascending order.
fn unordered(t: u8, mut digests: Vec<[u8; 32]>, out: &mut dyn Sink) {
    digests.sort_unstable();
    out.put(&[t]);
    len(out, digests.len());
    for d in &digests {
        out.put(d);
    }
}

static NDARRAY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Whether `v` is a numpy array (without importing numpy when the program
/// has not: then nothing can be one).
fn is_ndarray(v: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = v.py();
    let ty = v.get_type();
    let module = ty.module()?;
    if module.to_cow()? != "numpy" {
        return Ok(false);
    }
    let nd = NDARRAY.import(py, "numpy", "ndarray")?;
    v.is_instance(nd)
}

/// A numpy array: `numpy.ndarray(dtype, shape, bytes)` as a tuple struct;
/// the bytes in C order and little-endian whatever the layout in memory,
/// so a transposed or big-endian copy of the same values keys the same.
/// Object arrays are encoded by their elements.
fn array(v: &Bound<'_, PyAny>, out: &mut dyn Sink, depth: u32) -> PyResult<()> {
    let py = v.py();
    let dtype = v.getattr("dtype")?;
    let shape: Vec<u64> = v.getattr("shape")?.extract()?;
    out.put(&[tag::TUPLE_STRUCT]);
    name(out, b"numpy.ndarray");
    let has_object: bool = dtype.getattr("hasobject")?.extract()?;
    let described = if dtype.getattr("fields")?.is_none() {
        dtype
            .getattr("newbyteorder")?
            .call1(("<",))?
            .getattr("str")?
    } else {
        dtype.getattr("descr")?.str()?.into_any()
    };
    out.put(&[tag::STR]);
    string(described.cast::<PyString>()?, out)?;
    out.put(&[tag::TUPLE]);
    for d in &shape {
        out.put(&[tag::U64]);
        out.put(&d.to_le_bytes());
    }
    end(out, shape.len());
    if has_object {
        encode(&v.call_method0("tolist")?, out, depth + 1)?;
        end(out, 3);
        return Ok(());
    }
    let nbytes: usize = v.getattr("nbytes")?.extract()?;
    out.put(&[tag::BYTES]);
    len(out, nbytes);
    let native = dtype.getattr("isnative")?.extract::<bool>()?
        || dtype.getattr("itemsize")?.extract::<usize>()? == 1
        || dtype.getattr("byteorder")?.extract::<String>()? == "<";
    let contiguous: bool = v.getattr("flags")?.getattr("c_contiguous")?.extract()?;
    if contiguous && native && cfg!(target_endian = "little") {
        feed_bytes(py, crate::mmap::array_bytes(v)?, out);
    } else {
        // Strided, or big-endian: contiguous little-endian blocks of about
        // a megabyte each, never a copy of the whole array.
        let blocks = ARRAY_BLOCKS.import(py, "memo._canon", "array_blocks")?;
        for block in blocks.call1((v,))?.try_iter()? {
            let block = block?;
            feed_bytes(py, crate::mmap::array_bytes(&block)?, out);
        }
    }
    end(out, 3);
    Ok(())
}

fn feed_bytes(py: Python<'_>, bytes: &[u8], out: &mut dyn Sink) {
    if bytes.len() >= LARGE {
        out.large(py, bytes);
    } else {
        out.put(bytes);
    }
}

/// The canonical key of any value, hashed as arguments are: 64 lowercase
/// hex characters. Equal to Rust's `Key::of` of a value with the same
/// encoding (`memo.key(7) == Key::of(&7_i64)`).
#[pyfunction]
pub(crate) fn key(value: &Bound<'_, PyAny>) -> PyResult<String> {
    let start = || Dest::Value(ValueKey::new());
    let mut top = Top::new(&start);
    encode(value, &mut top, 0)?;
    let key = match top.finish_lazy() {
        Ok(bytes) => {
            let mut k = ValueKey::new();
            k.feed(&bytes);
            k.finish()
        }
        Err(streamed) => streamed,
    };
    Ok(key.to_string())
}

/// blake3 of `data`, 32 bytes (helpers' code digests, `uses=`).
#[pyfunction]
pub(crate) fn digest<'py>(py: Python<'py>, data: &[u8]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, blake3::hash(data).as_bytes())
}

/// The digest of the file or directory at `path` (`memo_core::DataFile`'s:
/// blake3 of a file, of a directory's tree as `docs/format.md` draws it),
/// computed with the GIL released and kept for the process while the file
/// is unchanged (`DataFile`'s part of a key).
#[pyfunction]
#[allow(
    clippy::needless_pass_by_value,
    reason = "pyo3 hands arguments over by value"
)]
pub(crate) fn file_digest(
    py: Python<'_>,
    path: std::path::PathBuf,
) -> PyResult<Bound<'_, PyBytes>> {
    let file = memo_core::DataFile::new(&path);
    match py.detach(|| file.digest()) {
        Ok(d) => Ok(PyBytes::new(py, &d)),
        Err(e) => Err(crate::errors::memo_error(
            py,
            format!("memo.DataFile {}: cannot be read: {e}", path.display()),
        )),
    }
}
