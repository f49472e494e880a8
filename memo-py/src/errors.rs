//! The package's exceptions. They are defined in Python
//! (`memo/_errors.py`: `UnhashableArgument` is both a `MemoError` and a
//! `TypeError`, which an extension type cannot easily be) and raised from
//! here.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

static MEMO_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static UNHASHABLE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn class<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyType>>,
    name: &str,
) -> PyResult<&'py Bound<'py, PyType>> {
    cell.import(py, "memo._errors", name)
}

/// A `MemoError` saying `message` (which names the path, URL or key).
pub(crate) fn memo_error(py: Python<'_>, message: impl Into<String>) -> PyErr {
    let message = message.into();
    match class(py, &MEMO_ERROR, "MemoError") {
        Ok(t) => PyErr::from_type(t.clone(), message),
        Err(e) => e,
    }
}

/// A store error as a `MemoError`.
pub(crate) fn store_error(py: Python<'_>, e: &memo_core::Error) -> PyErr {
    memo_error(py, e.to_string())
}

/// An `UnhashableArgument` (a `MemoError` and a `TypeError`).
pub(crate) fn unhashable(py: Python<'_>, message: impl Into<String>) -> PyErr {
    let message = message.into();
    match class(py, &UNHASHABLE, "UnhashableArgument") {
        Ok(t) => PyErr::from_type(t.clone(), message),
        Err(_) => PyTypeError::new_err(message),
    }
}
