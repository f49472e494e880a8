//! Helpers shared by memo's integration tests.

/// A fresh store directory for one test.
///
/// # Panics
///
/// If the system's temporary directory cannot be written.
#[must_use]
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("memo-test-")
        .tempdir()
        .expect("temp dir")
}
