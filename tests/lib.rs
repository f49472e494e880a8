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

/// A small deterministic random generator (xorshift64), so a failing
/// damage or kill sequence replays the same way.
pub struct XorShift(u64);

impl XorShift {
    /// A generator from a non-zero seed.
    #[must_use]
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed | 1)
    }

    /// The next number below `n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
