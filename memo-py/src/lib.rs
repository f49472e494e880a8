//! memo for Python: the `memo._memo` extension module behind the `memo`
//! package (`python/memo/`). It drives memo-core's call protocol
//! (`memo_core::protocol`), so a Python function runs through the same
//! runtime as a `#[memoize]` one: one engine, not a second implementation.
//!
//! The path a call takes, by module: `sig` binds the arguments to the
//! parameters, `canon` encodes them canonically into the key, `memory`
//! is the decoded in-process tier, `function` runs the call through the
//! protocol, `value` encodes the result (memo's plain-data encoding or a
//! pickle) and decodes stored ones, `mmap` hands numpy the mapped bytes,
//! `store` is the `Store` class, and `errors` the exceptions.

mod canon;
mod errors;
mod function;
mod memory;
mod mmap;
mod sig;
mod store;
mod value;

use pyo3::prelude::*;

/// The `memo` command, run in this process with `argv` (its name first);
/// returns the exit status. The package's `memo` script calls this.
#[pyfunction]
fn cli(py: Python<'_>, argv: Vec<String>) -> u8 {
    py.detach(|| memo_cli::run(argv.into_iter().map(std::ffi::OsString::from)))
}

/// Installs what remote hits of this process left queued for the local
/// store (`memo_core::protocol::settle_installs`): the package calls it as
/// a `multiprocessing` child ends, since those end with `os._exit`, which
/// skips the exit hook that does it otherwise.
#[pyfunction]
fn _settle_installs(py: Python<'_>) {
    py.detach(memo_core::protocol::settle_installs);
}

/// The extension module.
#[pymodule]
fn _memo(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<function::Function>()?;
    m.add_class::<store::Store>()?;
    m.add_class::<mmap::View>()?;
    m.add_function(wrap_pyfunction!(canon::key, m)?)?;
    m.add_function(wrap_pyfunction!(canon::digest, m)?)?;
    m.add_function(wrap_pyfunction!(canon::file_digest, m)?)?;
    m.add_function(wrap_pyfunction!(cli, m)?)?;
    m.add_function(wrap_pyfunction!(_settle_installs, m)?)?;
    Ok(())
}
