//! Where Python objects and raw memory meet: the bytes of a numpy array
//! read in place (keys and values are made from them without a copy into
//! Python), and stored values handed to numpy as views of the mapped file.
//!
//! The extension is built for the stable ABI of Python 3.9, which has no
//! buffer protocol; numpy's `__array_interface__` (an address, a type and
//! a shape) is how memory crosses in both directions.

#![allow(unsafe_code)]

use memo_core::protocol::Encoded;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

/// A stored value's bytes as numpy sees them: an array made from it with
/// `numpy.asarray` keeps this object (its `base`), and this object keeps
/// the value's mapping, so the memory stays valid as long as the array.
#[pyclass(frozen, module = "memo._memo")]
pub(crate) struct View {
    /// Owns the mapping (or the owned bytes of a value from a remote).
    _value: Encoded,
    interface: Py<PyDict>,
}

#[pymethods]
impl View {
    /// numpy's array interface (version 3): read-only data at the value's
    /// address plus `offset`.
    #[getter]
    fn __array_interface__(&self, py: Python<'_>) -> Py<PyDict> {
        self.interface.clone_ref(py)
    }
}

impl View {
    /// A read-only view of `len` bytes at `offset` in `value`, as an array
    /// of `typestr` with `shape`. The caller has checked that the shape and
    /// type cover exactly `len` bytes and that `offset + len` is inside
    /// the value.
    pub(crate) fn new<'py>(
        py: Python<'py>,
        value: &Encoded,
        offset: usize,
        typestr: &str,
        shape: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, View>> {
        let interface = PyDict::new(py);
        let address = value.as_ptr() as usize + offset;
        interface.set_item("data", (address, true))?;
        interface.set_item("typestr", typestr)?;
        interface.set_item("shape", shape)?;
        interface.set_item("version", 3)?;
        Bound::new(
            py,
            View {
                _value: value.clone(),
                interface: interface.unbind(),
            },
        )
    }
}

/// The bytes of a C-contiguous numpy array, in place. The borrow of
/// `array` keeps the array (and so its memory) alive for as long as the
/// slice; the caller holds the GIL or a reference that prevents a resize
/// (numpy refuses to resize an array that is referenced).
pub(crate) fn array_bytes<'a>(array: &'a Bound<'_, PyAny>) -> PyResult<&'a [u8]> {
    let interface = array.getattr("__array_interface__")?;
    let data = interface.get_item("data")?;
    let address: usize = data.get_item(0)?.extract()?;
    let len: usize = array.getattr("nbytes")?.extract()?;
    let contiguous: bool = array.getattr("flags")?.getattr("c_contiguous")?.extract()?;
    if !contiguous {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "memo: array_bytes needs a C-contiguous array",
        ));
    }
    if len == 0 || address == 0 {
        return Ok(&[]);
    }
    // SAFETY: numpy reports `address` as the start of the array's data and
    // `nbytes` as its length for a C-contiguous array (checked above), so
    // the range is one allocation numpy owns. `array` is borrowed for 'a,
    // so the array object, which owns or keeps alive that memory, outlives
    // the slice; numpy does not free or move the data of an array that has
    // references. Another thread may write into it meanwhile (as with any
    // Python buffer); the bytes are only read and hashed or copied.
    Ok(unsafe { std::slice::from_raw_parts(address as *const u8, len) })
}
